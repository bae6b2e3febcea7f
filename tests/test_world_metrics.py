"""World-frame metrics (:mod:`wbcap.eval.world_metrics`) on known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from wbcap.camera import ImageCamera
from wbcap.eval import world_metrics as wm


def test_foot_sliding_counts_only_steps_in_contact():
    t = np.arange(5)
    points = np.zeros((5, 2, 3))
    points[:, 0, 0] = 0.01 * t  # point 0 slides 1 cm per frame
    points[:, 1, 1] = 0.30 * t  # point 1 swings 30 cm per frame
    contact = np.zeros((5, 2), bool)
    contact[:, 0] = True
    contact[3:, 1] = True  # in contact at frames 3, 4: one step, 3 -> 4
    assert wm.foot_sliding(points, contact) == pytest.approx((4 * 0.01 + 0.30) / 5)
    contact[:, 1] = False
    assert wm.foot_sliding(points, contact) == pytest.approx(0.01)
    assert np.isnan(wm.foot_sliding(points, np.zeros((5, 2), bool)))
    contact_one = np.zeros((5, 2), bool)
    contact_one[::2] = True  # never two frames in a row
    assert np.isnan(wm.foot_sliding(points, contact_one))


def test_contact_from_motion_is_wham_s_threshold():
    x = np.array([0.0, 0.005, 0.03, 0.031, 0.2])
    points = np.stack([x, 0 * x, 0 * x], 1)[:, None]
    np.testing.assert_array_equal(wm.contact_from_motion(points, 0.01)[:, 0], [True, False, True, False, False])


def test_penetration_depth():
    points = np.zeros((3, 2, 3))
    points[:, :, 2] = [[0.01, 0.2], [-0.004, 0.1], [-0.02, -0.03]]
    np.testing.assert_allclose(wm.penetration_depth(points), [0.0, 0.004, 0.03])
    np.testing.assert_allclose(wm.penetration_depth(points[..., [0, 2, 1]], up_axis=1), [0.0, 0.004, 0.03])
    np.testing.assert_allclose(wm.penetration_depth(points, ground=0.05), [0.04, 0.054, 0.08])


def test_w_and_wa_mpjpe():
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 0.5, (150, 22, 3)) + np.linspace(0, 3, 150)[:, None, None]
    m = Rotation.from_rotvec([0.1, 0.4, -0.2]).as_matrix()
    similar = 1.3 * gt @ m.T + [1.0, -2.0, 0.5]
    assert wm.w_mpjpe(similar, gt) == pytest.approx(0.0, abs=1e-6)
    assert wm.wa_mpjpe(similar, gt) == pytest.approx(0.0, abs=1e-6)
    # frames 2.. of each 100-frame segment shifted by 10 cm: W aligns on frames 0-1 (no change)
    shifted = gt.copy()
    shifted[2:100] += [0.1, 0.0, 0.0]
    shifted[102:] += [0.1, 0.0, 0.0]
    expected = 100.0 * (98 + 48) / 150  # mm, mean over all frames
    assert wm.w_mpjpe(shifted, gt) == pytest.approx(expected, rel=1e-9)
    assert wm.wa_mpjpe(shifted, gt) < wm.w_mpjpe(shifted, gt)  # the whole segment aligned: less error


def test_root_translation_error():
    gt = np.stack([np.arange(11.0), np.zeros(11), np.zeros(11)], 1)  # 10 m straight
    m = Rotation.from_rotvec([0.0, 0.0, 1.0]).as_matrix()
    assert wm.root_translation_error(gt @ m.T + [3, 4, 5], gt) == pytest.approx(0.0, abs=1e-9)
    # 10 % too long: the best rigid fit centres it; errors |0.1 (x - 5)|, mean 0.1 * 30 / 11 m
    assert wm.root_translation_error(1.1 * gt, gt) == pytest.approx(100 * 0.1 * 30 / 11 / 10)
    with pytest.raises(ValueError, match="does not move"):
        wm.root_translation_error(gt, np.zeros((11, 3)))


def test_jitter_of_a_cubic():
    fps = 30.0
    t = np.arange(20) / fps
    joints = np.zeros((20, 2, 3))
    joints[:, 0, 0] = 2.0 * t**3  # third derivative 12 m/s^3
    joints[:, 1, 2] = -0.5 * t**3  # 3 m/s^3
    assert wm.jitter(joints, fps) == pytest.approx((12.0 + 3.0) / 2, rel=1e-6)
    joints[:, :, :] += 0.3 * t[:, None, None] ** 2  # a parabola adds nothing
    assert wm.jitter(joints, fps) == pytest.approx(7.5, rel=1e-6)


def test_reprojection_change():
    camera = ImageCamera(focal=(1000.0, 1000.0), princpt=(640.0, 360.0), image_size=(1280, 720))
    before = np.array([[0.0, 0.0, 5.0], [1.0, 0.5, 4.0]])
    after = before + [[0.01, 0.0, 0.0], [0.0, 0.0, 1.0]]
    np.testing.assert_allclose(wm.reprojection_change(before, after, camera),
                               [2.0, np.hypot(1000 * (1 / 4 - 1 / 5), 1000 * (0.5 / 4 - 0.5 / 5))])
