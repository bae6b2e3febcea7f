"""Rotation conversions: checked against scipy and the upstream 6D layout, at singular angles too."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from wbcap.body.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    rot6d_to_axis_angle,
    rot6d_to_matrix,
)


def _rotvecs(n: int = 400, seed: int = 0) -> np.ndarray:
    """Random rotation vectors plus the hard cases: angle 0, tiny angles, angles at/near pi."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(0.0, math.pi, n)
    special = [0.0, 1e-12, 1e-8, 1e-6, 1e-4, 1e-2, math.pi - 1e-2, math.pi - 1e-4, math.pi - 1e-6]
    angles[: len(special)] = special
    angles[len(special) : len(special) + 3] = math.pi  # exactly a half turn
    vecs = axes * angles[:, None]
    vecs[len(special) + 3] = (0.0, 0.0, math.pi)  # axis-aligned half turns
    vecs[len(special) + 4] = (math.pi, 0.0, 0.0)
    vecs[len(special) + 5] = (0.0, -math.pi / 2, 0.0)
    return vecs


def _gram_schmidt_reference(x: np.ndarray) -> np.ndarray:
    """Upstream rot6d_to_axis_angle's matrix step, one sample at a time in float64."""
    out = []
    for row in x.reshape(-1, 6):
        m = row.reshape(3, 2)
        a1, a2 = m[:, 0], m[:, 1]
        b1 = a1 / np.linalg.norm(a1)
        b2 = a2 - b1.dot(a2) * b1
        b2 /= np.linalg.norm(b2)
        b3 = np.cross(b1, b2)
        out.append(np.stack((b1, b2, b3), axis=1))
    return np.asarray(out).reshape(*x.shape[:-1], 3, 3)


def test_axis_angle_to_matrix_matches_scipy() -> None:
    vecs = _rotvecs()
    ours = axis_angle_to_matrix(torch.from_numpy(vecs)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(vecs).as_matrix(), atol=1e-12)
    ours32 = axis_angle_to_matrix(torch.from_numpy(vecs).float()).numpy()
    np.testing.assert_allclose(ours32, Rotation.from_rotvec(vecs).as_matrix(), atol=2e-6)
    assert np.array_equal(axis_angle_to_matrix(torch.zeros(2, 3)).numpy(), np.stack([np.eye(3)] * 2))


def test_matrix_to_axis_angle_matches_scipy_for_all_angles() -> None:
    vecs = _rotvecs()
    mats = Rotation.from_rotvec(vecs).as_matrix()
    ours = matrix_to_axis_angle(torch.from_numpy(mats)).numpy()
    ref = Rotation.from_matrix(mats).as_rotvec()
    angles = np.linalg.norm(vecs, axis=1)
    assert np.all(np.isfinite(ours))
    assert np.all(np.linalg.norm(ours, axis=1) <= math.pi + 1e-12)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), angles, atol=1e-7)
    unique = angles < math.pi - 1e-5  # below pi the axis-angle vector is unique
    np.testing.assert_allclose(ours[unique], ref[unique], atol=1e-9)
    # At exactly pi both signs are right: compare up to sign and through the matrix.
    half = ~unique
    sign = np.sign(np.sum(ours[half] * ref[half], axis=1, keepdims=True))
    np.testing.assert_allclose(ours[half], sign * ref[half], atol=1e-5)
    back = axis_angle_to_matrix(torch.from_numpy(ours)).numpy()
    np.testing.assert_allclose(back, mats, atol=1e-9)
    assert np.array_equal(matrix_to_axis_angle(torch.eye(3)[None]).numpy(), np.zeros((1, 3)))


def test_matrix_to_axis_angle_float32_is_finite_and_accurate() -> None:
    vecs = _rotvecs(seed=1)
    mats = torch.from_numpy(Rotation.from_rotvec(vecs).as_matrix()).float()
    ours = matrix_to_axis_angle(mats)
    assert torch.isfinite(ours).all()
    assert (ours.norm(dim=-1) <= math.pi + 1e-6).all()
    np.testing.assert_allclose(axis_angle_to_matrix(ours).numpy(), mats.numpy(), atol=5e-6)


def test_gradients_are_finite_at_singular_points() -> None:
    mats = torch.from_numpy(Rotation.from_rotvec(_rotvecs()[:16]).as_matrix()).requires_grad_(True)
    matrix_to_axis_angle(mats).sum().backward()
    assert torch.isfinite(mats.grad).all()
    vec = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(vec).sum().backward()
    assert torch.isfinite(vec.grad).all()


def test_quaternion_is_scalar_first_with_nonnegative_w() -> None:
    vecs = _rotvecs()
    quat = matrix_to_quaternion(torch.from_numpy(Rotation.from_rotvec(vecs).as_matrix())).numpy()
    ref = Rotation.from_rotvec(vecs).as_quat()[:, [3, 0, 1, 2]]  # scipy is scalar-last
    ref *= np.where(ref[:, :1] < 0, -1.0, 1.0)
    assert np.all(quat[:, 0] >= 0)
    unique = quat[:, 0] > 1e-6
    np.testing.assert_allclose(quat[unique], ref[unique], atol=1e-9)


def test_rot6d_layout_is_upstream() -> None:
    # a1 = x[0, 2, 4] and a2 = x[1, 3, 5] become the first two columns.
    eye = rot6d_to_matrix(torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]]))
    assert torch.equal(eye, torch.eye(3)[None])
    rz90 = rot6d_to_matrix(torch.tensor([0.0, -1.0, 1.0, 0.0, 0.0, 0.0]))  # columns (0,1,0), (-1,0,0)
    np.testing.assert_allclose(rz90.numpy(), Rotation.from_rotvec([0, 0, math.pi / 2]).as_matrix(), atol=1e-7)
    x = np.random.default_rng(2).normal(size=(50, 6))
    ours = rot6d_to_matrix(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, _gram_schmidt_reference(x), atol=1e-12)
    assert np.allclose(np.linalg.det(ours), 1.0)
    # Scaling a1 or shifting a2 along a1 does not change the rotation (Gram-Schmidt).
    y = x.copy()
    y[:, [0, 2, 4]] *= 3.0
    y[:, [1, 3, 5]] += 0.7 * x[:, [0, 2, 4]]
    np.testing.assert_allclose(rot6d_to_matrix(torch.from_numpy(y)).numpy(), ours, atol=1e-12)


def test_rot6d_round_trip() -> None:
    mats = torch.from_numpy(Rotation.from_rotvec(_rotvecs()).as_matrix())
    six = matrix_to_rot6d(mats)
    assert six.shape == (len(mats), 6)
    assert torch.equal(six[:, [0, 2, 4]], mats[:, :, 0]) and torch.equal(six[:, [1, 3, 5]], mats[:, :, 1])
    np.testing.assert_allclose(rot6d_to_matrix(six).numpy(), mats.numpy(), atol=1e-12)
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(20, 6)))
    once = rot6d_to_matrix(x)
    np.testing.assert_allclose(rot6d_to_matrix(matrix_to_rot6d(once)).numpy(), once.numpy(), atol=1e-12)


def test_rot6d_to_axis_angle_matches_scipy() -> None:
    x = np.random.default_rng(4).normal(size=(64, 6))
    ref = Rotation.from_matrix(_gram_schmidt_reference(x)).as_rotvec()
    np.testing.assert_allclose(rot6d_to_axis_angle(torch.from_numpy(x)).numpy(), ref, atol=1e-9)
    ours32 = rot6d_to_axis_angle(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(ours32, ref, atol=1e-4)


@pytest.mark.parametrize("shape", [(3,), (3, 3), (2, 3), (1,), (4, 5, 3)])
def test_batches_of_three_equal_one_by_one(shape: tuple[int, ...]) -> None:
    # upstream's torch.cross without dim picks the batch dim when it has size 3
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(*shape, 6)))
    mats = rot6d_to_matrix(x)
    vecs = rot6d_to_axis_angle(x)
    assert mats.shape == (*shape, 3, 3) and vecs.shape == (*shape, 3)
    flat = x.reshape(-1, 6)
    singles = torch.cat([rot6d_to_matrix(flat[i : i + 1]) for i in range(len(flat))])
    np.testing.assert_allclose(mats.reshape(-1, 3, 3).numpy(), singles.numpy(), atol=1e-14)
    np.testing.assert_allclose(mats.reshape(-1, 3, 3).numpy(), _gram_schmidt_reference(flat.numpy()), atol=1e-12)
    single_vecs = torch.cat([rot6d_to_axis_angle(flat[i : i + 1]) for i in range(len(flat))])
    np.testing.assert_allclose(vecs.reshape(-1, 3).numpy(), single_vecs.numpy(), atol=1e-14)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        rot6d_to_matrix(torch.zeros(2, 5))
    with pytest.raises(ValueError):
        matrix_to_axis_angle(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        axis_angle_to_matrix(torch.zeros(2, 4))
