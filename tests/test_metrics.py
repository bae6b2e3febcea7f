"""Known answers for the batched metrics (wbcap.eval.metrics) and the protocol helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from wbcap.eval.metrics import (
    align_at,
    mpjpe,
    mpvpe,
    pa_mpjpe,
    pa_mpvpe,
    part_error,
    procrustes_align,
    regress,
)
from wbcap.eval.protocols import H36M_EVAL_JOINTS, h36m_errors


def _points(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(0.0, 0.3, (batch, n, 3)))


def _rotations(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(Rotation.random(batch, random_state=seed).as_matrix())


def test_a_sample_with_a_nan_is_aligned_to_nan_and_the_others_as_alone():
    """One NaN vertex in one sample made the batch's SVD raise, ending a whole evaluation (a user
    trial); that sample now gets NaN errors (skipped by the means), the others their own."""
    gt = _points(3, 30)
    rot = _rotations(3)
    pred = 1.3 * torch.einsum("bij,bnj->bni", rot, gt) + 0.2
    pred[1, 4, 0] = float("nan")
    pred[2, 7, 2] = float("inf")
    aligned = procrustes_align(pred, gt)
    assert torch.isnan(aligned[1:]).all() and torch.allclose(aligned[0], procrustes_align(pred[:1], gt[:1])[0])
    errors = pa_mpjpe(pred, gt)
    assert errors[0] < 1e-4 and torch.isnan(errors[1:]).all()


def test_similarity_copy_has_zero_pa_and_the_expected_mpjpe():
    gt = _points(4, 30)
    rot = _rotations(4)
    scale = torch.tensor([0.5, 1.0, 1.7, 2.5], dtype=torch.float64)
    trans = torch.tensor([[0.1, -0.2, 3.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 2.0], [0.3, 0.3, 0.3]], dtype=torch.float64)
    pred = scale[:, None, None] * torch.einsum("bij,bnj->bni", rot, gt) + trans[:, None]
    assert torch.all(pa_mpjpe(pred, gt) < 1e-4)
    assert torch.allclose(procrustes_align(pred, gt), gt, atol=1e-9)
    expected = np.linalg.norm((pred - gt).numpy(), axis=-1).mean(1) * 1000.0
    np.testing.assert_allclose(mpjpe(pred, gt).numpy(), expected, rtol=1e-12)
    # a pure 2x scaling about the centroid: MPJPE = 1000 * mean distance to the centroid
    c = gt.mean(1, keepdim=True)
    doubled = c + 2.0 * (gt - c)
    np.testing.assert_allclose(mpjpe(doubled, gt).numpy(), 1000.0 * torch.linalg.norm(gt - c, dim=-1).mean(1).numpy())
    assert torch.all(pa_mpjpe(doubled, gt) < 1e-4)


def test_constant_10mm_offset():
    gt = _points(3, 17, seed=2)
    direction = torch.tensor([[1.0, 2.0, -2.0]], dtype=torch.float64) / 3.0  # unit vector
    pred = gt + 0.010 * direction[:, None]
    np.testing.assert_allclose(mpjpe(pred, gt).numpy(), [10.0, 10.0, 10.0], atol=1e-9)
    np.testing.assert_allclose(mpvpe(pred, gt).numpy(), [10.0, 10.0, 10.0], atol=1e-9)
    assert torch.all(pa_mpjpe(pred, gt) < 1e-4)
    assert torch.all(pa_mpvpe(pred, gt) < 1e-4)
    # translation alignment at a root removes it exactly
    aligned = align_at(pred, gt, pred[:, 0], gt[:, 0])
    assert torch.all(mpjpe(aligned, gt) < 1e-9)


def test_float32_and_numpy_inputs():
    gt = _points(2, 10, seed=3).float()
    pred = gt + torch.tensor([0.0, 0.0, 0.02])
    np.testing.assert_allclose(mpjpe(pred.numpy(), gt.numpy()).numpy(), [20.0, 20.0], atol=1e-4)
    assert mpjpe(pred, gt).dtype == torch.float64
    assert procrustes_align(pred, gt).dtype == torch.float32


def test_per_part_alignment_removes_a_wrist_offset_from_the_hand_only():
    # 10 points; the "hand" is points 6..9 with its wrist at point 6; the pelvis is point 0
    gt = _points(2, 10, seed=4)
    pred = gt.clone()
    pred[:, 6:] += torch.tensor([0.0, 0.010, 0.0], dtype=torch.float64)  # the whole hand moves 10 mm
    hand = [6, 7, 8, 9]
    hand_pve = part_error(pred, gt, hand, pred_root=pred[:, 6], gt_root=gt[:, 6])
    assert torch.all(hand_pve < 1e-9)
    assert torch.all(part_error(pred, gt, hand, procrustes=True) < 1e-4)
    np.testing.assert_allclose(part_error(pred, gt, hand).numpy(), [10.0, 10.0], atol=1e-9)
    body = mpvpe(align_at(pred, gt, pred[:, 0], gt[:, 0]), gt)  # whole body at the pelvis
    np.testing.assert_allclose(body.numpy(), [4.0, 4.0], atol=1e-9)  # 4 of 10 points off by 10 mm


def _reference_pa(pred: np.ndarray, gt: np.ndarray) -> float:
    """Optimal similarity (proper rotation) via scipy's Kabsch, for one sample, in mm."""
    pc, gc = pred - pred.mean(0), gt - gt.mean(0)
    rot, _ = Rotation.align_vectors(gc, pc)  # proper rotation taking pc onto gc
    rp = rot.apply(pc)
    s = float((rp * gc).sum() / (pc * pc).sum())
    return float(np.linalg.norm(s * rp - gc, axis=1).mean() * 1000.0)


def test_reflection_gives_a_proper_rotation():
    gt = _points(3, 25, seed=5)
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # a reflection, not a rotation
    errors = pa_mpjpe(mirrored, gt)
    assert torch.all(errors > 1.0)  # a 3D asymmetric set cannot be rotated onto its mirror image
    for b in range(3):
        assert errors[b].item() == pytest.approx(_reference_pa(mirrored[b].numpy(), gt[b].numpy()), rel=1e-6)
    # the fitted map is orientation-preserving: aligned = A @ mirrored + t with det(A) > 0
    aligned = procrustes_align(mirrored, gt)
    for b in range(3):
        x = np.concatenate([mirrored[b].numpy(), np.ones((25, 1))], 1)
        a = np.linalg.lstsq(x, aligned[b].numpy(), rcond=None)[0][:3].T
        assert np.linalg.det(a) > 0
    # a planar set's mirror image *is* a rotation of it (180 degrees about the y axis)
    planar = gt.clone()
    planar[..., 2] = 0.0
    flipped = planar * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert torch.all(pa_mpjpe(flipped, planar) < 1e-4)


def test_rigid_alignment_without_scale():
    """``scale=False``: a rotated and translated copy aligns exactly; a scaled copy keeps exactly
    its scale error (the centroids matched, ``|s - 1|`` times each point's distance to the
    centroid), which the similarity alignment removes; noisy sets match scipy's Kabsch."""
    gt = _points(4, 30, seed=13)
    rot = _rotations(4, seed=14)
    trans = torch.tensor([[0.1, -0.2, 3.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 2.0], [0.3, 0.3, 0.3]], dtype=torch.float64)
    rigid = torch.einsum("bij,bnj->bni", rot, gt) + trans[:, None]
    assert torch.allclose(procrustes_align(rigid, gt, scale=False), gt, atol=1e-9)
    c = gt.mean(1, keepdim=True)
    scaled = 1.5 * torch.einsum("bij,bnj->bni", rot, gt - c) + trans[:, None]
    expected = 0.5 * torch.linalg.norm(gt - c, dim=-1).mean(1).numpy() * 1000.0  # mm, all > 50
    assert np.all(expected > 50.0)
    np.testing.assert_allclose(mpjpe(procrustes_align(scaled, gt, scale=False), gt).numpy(), expected, rtol=1e-9)
    assert torch.allclose(procrustes_align(scaled, gt), gt, atol=1e-9)  # the default fits the scale
    noisy = rigid + torch.from_numpy(np.random.default_rng(15).normal(0, 0.05, gt.shape))
    aligned = procrustes_align(noisy, gt, scale=False)
    for b in range(4):
        pc, gc = noisy[b].numpy() - noisy[b].numpy().mean(0), gt[b].numpy() - gt[b].numpy().mean(0)
        reference = Rotation.align_vectors(gc, pc)[0].apply(pc) + gt[b].numpy().mean(0)
        np.testing.assert_allclose(aligned[b].numpy(), reference, atol=1e-9)


def test_batched_equals_per_sample():
    gt = _points(6, 20, seed=6)
    pred = gt + torch.from_numpy(np.random.default_rng(7).normal(0, 0.02, gt.shape))
    pred = torch.einsum("bij,bnj->bni", _rotations(6, seed=8), pred) * 1.3
    batched = [pa_mpjpe(pred, gt), mpjpe(pred, gt), pa_mpvpe(pred, gt)]
    for b in range(6):
        single = [pa_mpjpe(pred[b : b + 1], gt[b : b + 1]), mpjpe(pred[b : b + 1], gt[b : b + 1]),
                  pa_mpvpe(pred[b : b + 1], gt[b : b + 1])]  # fmt: skip
        for full, one in zip(batched, single, strict=True):
            assert full[b].item() == pytest.approx(one.item(), rel=1e-10, abs=1e-9)
        assert pa_mpjpe(pred, gt)[b].item() == pytest.approx(_reference_pa(pred[b].numpy(), gt[b].numpy()), rel=1e-6)


def test_validity_mask_excludes_points_from_error_and_alignment():
    gt = _points(2, 12, seed=9)
    pred = gt + torch.tensor([0.01, 0.0, 0.0], dtype=torch.float64)
    pred[:, 11] += torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64)  # a wild outlier
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[:, 11] = False
    np.testing.assert_allclose(mpjpe(pred, gt, valid).numpy(), [10.0, 10.0], atol=1e-9)
    assert torch.all(pa_mpjpe(pred, gt, valid) < 1e-4)
    assert torch.all(pa_mpjpe(pred, gt) > 100.0)
    none_valid = torch.zeros(2, 12)
    assert torch.all(torch.isnan(mpjpe(pred, gt, none_valid)))


def test_regress_and_shape_errors():
    verts = _points(2, 5, seed=10)
    reg = np.zeros((2, 5))
    reg[0, [0, 1]] = 0.5
    reg[1, 4] = 1.0
    joints = regress(reg, verts)
    assert torch.allclose(joints[:, 0], (verts[:, 0] + verts[:, 1]) / 2)
    assert torch.allclose(joints[:, 1], verts[:, 4])
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        mpjpe(verts[0], verts[0])
    with pytest.raises(ValueError, match="differ in shape"):
        pa_mpjpe(verts, verts[:, :4])


def test_h36m_protocol_root_relative_14_joints():
    gt = _points(3, 17, seed=11)
    pred = gt + 0.5  # a global translation: removed by the pelvis
    out = h36m_errors(pred, gt)
    assert torch.all(out["mpjpe"] < 1e-9) and torch.all(out["pa_mpjpe"] < 1e-4)
    moved = gt.clone()
    moved[:, 1:] += torch.tensor([0.0, 0.0, 0.010], dtype=torch.float64)  # every joint but the pelvis
    out = h36m_errors(moved, gt)
    np.testing.assert_allclose(out["mpjpe"].numpy(), [10.0] * 3, atol=1e-9)
    assert torch.all(out["pa_mpjpe"] < 1e-4)
    # torso (7) and head (9) are not among the 14 evaluated joints
    assert 0 not in H36M_EVAL_JOINTS and 7 not in H36M_EVAL_JOINTS and 9 not in H36M_EVAL_JOINTS
    head = gt.clone()
    head[:, [7, 9]] += 0.1
    assert torch.all(h36m_errors(head, gt)["mpjpe"] < 1e-9)


def test_hand_regressors_follow_upstream_row_layout():
    from wbcap.eval.protocols import hand_regressors

    jreg = np.random.default_rng(12).random((55, 10475))
    left, right = hand_regressors(jreg)
    assert left.shape == right.shape == (21, 10475)
    np.testing.assert_array_equal(left[0].numpy(), jreg[20])  # wrist
    np.testing.assert_array_equal(left[1].numpy(), jreg[37])  # thumb 1
    np.testing.assert_array_equal(right[5].numpy(), jreg[40])  # index 1
    tips_l, tips_r = (4, 8, 12, 16, 20), (8079, 7669, 7794, 7905, 8022)
    assert [int(left[r].argmax()) for r in tips_l] == [5361, 4933, 5058, 5169, 5286]
    assert [int(right[r].argmax()) for r in tips_l] == list(tips_r)
    assert all(float(left[r].sum()) == 1.0 for r in tips_l)
