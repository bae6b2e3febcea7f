"""wbcap.camera: crop -> image camera, per-box -> shared camera, OpenCV <-> z-up / y-up frames.

Known answers (hand-computed examples, projections of 3D points under both cameras, an
independent scipy composition), round trips, and batched == one by one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from wbcap.camera import (
    YUP_FROM_OPENCV,
    ZUP_FROM_OPENCV,
    ImageCamera,
    camera_from_dict,
    camera_to_dict,
    change_frame,
    crop_to_image_camera,
    crop_to_image_camera_np,
    frame_rotation,
    image_to_crop_camera,
    rotate_points,
    rotate_root,
    rotate_root_np,
    shared_camera_offset,
    shared_camera_offset_np,
    shared_camera_translation,
    shared_camera_translation_np,
    to_shared_camera,
    to_shared_camera_np,
)
from wbcap.config import ModelConfig

F64 = torch.float64


def project(points: torch.Tensor, focal: torch.Tensor | float, princpt: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) -> (B, N, 2) pixels with a per-row (B,) focal and (B, 2) or (2,) principal point."""
    f = focal[:, None, None] if isinstance(focal, torch.Tensor) and focal.ndim else focal
    c = princpt[:, None, :] if princpt.ndim == 2 else princpt
    return points[..., :2] / points[..., 2:] * f + c


def random_cameras(b: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """b per-box cameras (focal (B,), principal point (B, 2), pixels) and points (B, 5, 3) in front."""
    g = torch.Generator().manual_seed(seed)
    focal_k = 800.0 + 4000.0 * torch.rand(b, generator=g, dtype=F64)
    princpt_k = 2000.0 * torch.rand(b, 2, generator=g, dtype=F64) - 500.0
    points = torch.randn(b, 5, 3, generator=g, dtype=F64)
    points[..., 2] = 2.0 + 30.0 * torch.rand(b, 5, generator=g, dtype=F64)
    return focal_k, princpt_k, points


# --------------------------------------------------------------------------- crop -> image


def test_crop_to_image_camera_hand_computed():
    cfg = ModelConfig()
    assert cfg.focal == (5000.0, 5000.0) and cfg.princpt == (96.0, 128.0) and cfg.input_body_shape == (256, 192)
    boxes = torch.tensor([[100.0, 50.0, 192.0, 256.0], [10.0, 20.0, 96.0, 128.0]], dtype=F64)
    focal, princpt = crop_to_image_camera(torch.tensor(cfg.focal, dtype=F64), torch.tensor(cfg.princpt, dtype=F64),
                                          boxes, cfg.input_body_shape)  # fmt: skip
    assert focal.tolist() == [[5000.0, 5000.0], [2500.0, 2500.0]]
    assert princpt.tolist() == [[196.0, 178.0], [58.0, 84.0]]


def test_crop_camera_on_the_network_input_is_the_same_operation():
    """The 512x384 network input is the box (0, 0, 384, 512) of itself: WholeBodyRegressor.crop_camera."""
    cfg = ModelConfig()
    whole_input = torch.tensor([[0.0, 0.0, 384.0, 512.0]], dtype=F64)
    focal, princpt = crop_to_image_camera(torch.tensor(cfg.focal, dtype=F64), torch.tensor(cfg.princpt, dtype=F64),
                                          whole_input, cfg.input_body_shape)  # fmt: skip
    sx = cfg.input_img_shape[1] / cfg.input_body_shape[1]
    sy = cfg.input_img_shape[0] / cfg.input_body_shape[0]
    assert focal[0].tolist() == [cfg.focal[0] * sx, cfg.focal[1] * sy] == [10000.0, 10000.0]
    assert princpt[0].tolist() == [cfg.princpt[0] * sx, cfg.princpt[1] * sy] == [192.0, 256.0]


def test_crop_to_image_camera_is_upstream_demo_bit_for_bit():
    """Upstream demo.py: focal = f / body_w * w, princpt = c / body_w * w + x (likewise y)."""
    cfg = ModelConfig()
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(-50, 900, (6, 2)), rng.uniform(10, 700, (6, 2))], 1).astype(np.float32)
    focal, princpt = crop_to_image_camera(torch.tensor(cfg.focal, dtype=F64), torch.tensor(cfg.princpt, dtype=F64),
                                          torch.from_numpy(boxes.astype(np.float64)), cfg.input_body_shape)  # fmt: skip
    bh, bw = cfg.input_body_shape
    for i, (x, y, w, h) in enumerate(boxes.tolist()):
        assert focal[i].tolist() == [cfg.focal[0] / bw * w, cfg.focal[1] / bh * h]
        assert princpt[i].tolist() == [cfg.princpt[0] / bw * w + x, cfg.princpt[1] / bh * h + y]
    # the numpy variant (what Pipeline uses) is the same formula, bit for bit
    focal_np, princpt_np = crop_to_image_camera_np(cfg.focal, cfg.princpt, boxes.astype(np.float64), cfg.input_body_shape)
    assert focal_np.dtype == np.float64
    np.testing.assert_array_equal(focal_np, focal.numpy())
    np.testing.assert_array_equal(princpt_np, princpt.numpy())


def test_crop_image_crop_round_trip_and_projection():
    """crop -> image -> crop is the identity, and a point projects onto the crop pixel mapped to the image."""
    g = torch.Generator().manual_seed(1)
    xy, wh = 600 * torch.rand(4, 2, generator=g, dtype=F64), 20 + 500 * torch.rand(4, 2, generator=g, dtype=F64)
    boxes = torch.cat([xy, wh], 1)
    focal = 1000 + 9000 * torch.rand(4, 2, generator=g, dtype=F64)
    princpt = 300 * torch.rand(4, 2, generator=g, dtype=F64)
    f_img, c_img = crop_to_image_camera(focal, princpt, boxes, (256, 192))
    f_back, c_back = image_to_crop_camera(f_img, c_img, boxes, (256, 192))
    torch.testing.assert_close(f_back, focal, rtol=0, atol=1e-9)
    torch.testing.assert_close(c_back, princpt, rtol=0, atol=1e-9)
    points = torch.randn(4, 7, 3, generator=g, dtype=F64)
    points[..., 2] += 10.0
    crop_px = points[..., :2] / points[..., 2:] * focal[:, None] + princpt[:, None]
    img_px = points[..., :2] / points[..., 2:] * f_img[:, None] + c_img[:, None]
    scale = torch.stack((boxes[:, 2] / 192, boxes[:, 3] / 256), 1)[:, None]
    torch.testing.assert_close(img_px, crop_px * scale + boxes[:, None, :2], rtol=0, atol=1e-8)


def test_crop_to_image_camera_batched_equals_one_by_one():
    g = torch.Generator().manual_seed(2)
    boxes = 10 + 400 * torch.rand(5, 4, generator=g, dtype=F64)
    focal, princpt = torch.tensor([5000.0, 5000.0], dtype=F64), torch.tensor([96.0, 128.0], dtype=F64)
    fb, cb = crop_to_image_camera(focal, princpt, boxes, (256, 192))
    for i in range(5):
        fi, ci = crop_to_image_camera(focal, princpt, boxes[i : i + 1], (256, 192))
        assert torch.equal(fi[0], fb[i]) and torch.equal(ci[0], cb[i])


# --------------------------------------------------------------------------- per-box -> shared


def test_to_shared_camera_hand_computed():
    # camera k: f 1000, c (300, 200); shared: f 500, c (320, 240); the point is on pixel (325, 150)
    p = torch.tensor([[[0.1, -0.2, 4.0]]], dtype=F64)
    focal_k, princpt_k = torch.tensor([1000.0], dtype=F64), torch.tensor([[300.0, 200.0]], dtype=F64)
    out = to_shared_camera(p, focal_k, princpt_k, 500.0, (320.0, 240.0))
    torch.testing.assert_close(out, torch.tensor([[[0.02, -0.36, 2.0]]], dtype=F64), rtol=0, atol=1e-12)
    assert project(out, 500.0, torch.tensor([320.0, 240.0], dtype=F64))[0, 0].tolist() == pytest.approx([325.0, 150.0])


@pytest.mark.parametrize("shared_per_row", [False, True])
def test_points_keep_their_pixels_and_apparent_size(shared_per_row):
    focal_k, princpt_k, points = random_cameras(6, seed=3)
    if shared_per_row:
        focal = 700.0 + 3000.0 * torch.rand(6, generator=torch.Generator().manual_seed(9), dtype=F64)
        princpt = torch.rand(6, 2, generator=torch.Generator().manual_seed(10), dtype=F64) * 1000
    else:
        focal, princpt = 1468.6, torch.tensor([640.0, 360.0], dtype=F64)
    out = to_shared_camera(points, focal_k, princpt_k, focal, princpt)
    torch.testing.assert_close(project(out, focal, princpt), project(points, focal_k, princpt_k), rtol=0, atol=1e-9)
    f = focal[:, None] if isinstance(focal, torch.Tensor) else focal
    torch.testing.assert_close(out[..., 2], points[..., 2] * f / focal_k[:, None], rtol=1e-12, atol=0)


def test_pelvis_keeps_its_pixel_and_apparent_size_under_the_translation():
    focal_k, princpt_k, points = random_cameras(5, seed=4)
    root = torch.tensor([0.003, -0.35, 0.01], dtype=F64)  # a rest pelvis (SMPL-X: ~0.35 m below the origin)
    transl = points[:, 0] - root
    focal, princpt = 2202.9, torch.tensor([960.0, 540.0], dtype=F64)
    new = shared_camera_translation(transl, root, focal_k, princpt_k, focal, princpt)
    # the body moves rigidly: pelvis and two points 5 cm across the view, before and after
    d = torch.tensor([[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.05, 0.0]], dtype=F64)
    before = project((root + transl)[:, None] + d, focal_k, princpt_k)
    after = project((root + new)[:, None] + d, focal, princpt)
    torch.testing.assert_close(after[:, 0], before[:, 0], rtol=0, atol=1e-9)  # same pixel
    # same apparent size
    torch.testing.assert_close(after[:, 1:] - after[:, :1], before[:, 1:] - before[:, :1], rtol=0, atol=1e-9)
    # and it is the point map evaluated at the pelvis
    pelvis = to_shared_camera((root + transl)[:, None], focal_k, princpt_k, focal, princpt)[:, 0]
    torch.testing.assert_close(root + new, pelvis, rtol=0, atol=1e-12)


def test_shared_camera_offset_is_the_crop_to_full_translation():
    # the hand-computed example above: the anchor goes to (0.02, -0.36, 2.0), so the body moves by
    # 4 ((300 - 320) / 1000, (200 - 240) / 1000, 500 / 1000 - 1)
    q = torch.tensor([[0.1, -0.2, 4.0]], dtype=F64)
    focal_k, princpt_k = torch.tensor([1000.0], dtype=F64), torch.tensor([[300.0, 200.0]], dtype=F64)
    delta = shared_camera_offset(q, focal_k, princpt_k, 500.0, (320.0, 240.0))
    torch.testing.assert_close(delta, torch.tensor([[-0.08, -0.16, -2.0]], dtype=F64), rtol=0, atol=1e-12)
    # 4D-Humans' cam_crop_to_full with the box camera (f_k, c_k) and the shared (f, c):
    # t_z' = t_z f / f_k, t_x' = t_x + (c_k,x - c_x) t_z' / f (likewise y)
    focal_k, princpt_k, points = random_cameras(6, seed=11)
    t = points[:, 0]
    focal, princpt = 2202.9, torch.tensor([960.0, 540.0], dtype=F64)
    tz = t[:, 2] * focal / focal_k
    want = torch.stack([t[:, 0] + (princpt_k[:, 0] - princpt[0]) * tz / focal,
                        t[:, 1] + (princpt_k[:, 1] - princpt[1]) * tz / focal, tz], -1)
    torch.testing.assert_close(t + shared_camera_offset(t, focal_k, princpt_k, focal, princpt), want, rtol=0, atol=1e-9)
    # the body moves rigidly; its anchor keeps its pixel, nearby points their apparent size
    moved = points + shared_camera_offset(t, focal_k, princpt_k, focal, princpt)[:, None]
    torch.testing.assert_close(torch.cdist(moved, moved), torch.cdist(points, points), rtol=0, atol=1e-12)
    torch.testing.assert_close(project(moved[:, :1], focal, princpt), project(points[:, :1], focal_k, princpt_k),
                               rtol=0, atol=1e-9)
    # the video's translation is this offset at the posed pelvis; numpy wrapper; same camera: no move
    root = torch.tensor([0.003, -0.35, 0.01], dtype=F64)
    assert torch.equal(shared_camera_translation(t - root, root, focal_k, princpt_k, focal, princpt),
                       (t - root) + shared_camera_offset((t - root) + root, focal_k, princpt_k, focal, princpt))
    np.testing.assert_array_equal(shared_camera_offset_np(t.numpy(), focal_k.numpy(), princpt_k.numpy(), focal, princpt.tolist()),
                                  shared_camera_offset(t, focal_k, princpt_k, focal, princpt).numpy())
    torch.testing.assert_close(shared_camera_offset(t, focal_k, princpt_k, focal_k, princpt_k), torch.zeros_like(t),
                               rtol=0, atol=1e-12)


def test_same_camera_is_the_identity():
    focal_k, princpt_k, points = random_cameras(3, seed=5)
    out = to_shared_camera(points, focal_k, princpt_k, focal_k, princpt_k)
    torch.testing.assert_close(out, points, rtol=0, atol=1e-12)


def test_shared_camera_batched_equals_one_by_one():
    focal_k, princpt_k, points = random_cameras(4, seed=6)
    root = torch.tensor([0.0, -0.3, 0.02], dtype=F64)
    shared = (1500.0, (320.0, 240.0))
    out = to_shared_camera(points, focal_k, princpt_k, *shared)
    tr = shared_camera_translation(points[:, 0], root, focal_k, princpt_k, *shared)
    for i in range(4):
        s = slice(i, i + 1)
        assert torch.equal(to_shared_camera(points[s], focal_k[s], princpt_k[s], *shared)[0], out[i])
        assert torch.equal(shared_camera_translation(points[s, 0], root, focal_k[s], princpt_k[s], *shared)[0], tr[i])


def test_numpy_wrappers_equal_torch_and_promote_like_numpy():
    focal_k, princpt_k, points = random_cameras(3, seed=7)
    out = to_shared_camera_np(points.numpy(), focal_k.numpy(), princpt_k.numpy(), 1200.0, (100.0, 80.0))
    np.testing.assert_array_equal(out, to_shared_camera(points, focal_k, princpt_k, 1200.0, (100.0, 80.0)).numpy())
    # the video path: float32 parameters, float64 per-box cameras -> float64 translations
    transl = points[:, 0].numpy().astype(np.float32)
    root = np.array([[0.0, -0.3, 0.0]] * 3, np.float32)
    tr = shared_camera_translation_np(transl, root, focal_k.numpy(), princpt_k.numpy(), 1200.0, (100.0, 80.0))
    assert tr.dtype == np.float64 and tr.shape == (3, 3)
    ref = shared_camera_translation(torch.from_numpy(transl), torch.from_numpy(root), focal_k, princpt_k,
                                    1200.0, (100.0, 80.0))  # fmt: skip
    np.testing.assert_array_equal(tr, ref.numpy())


# --------------------------------------------------------------------------- world frames


def test_frame_rotations_are_proper_and_point_where_documented():
    down, forward, right = torch.eye(3, dtype=F64)[1], torch.eye(3, dtype=F64)[2], torch.eye(3, dtype=F64)[0]
    for name in ("zup", "yup"):
        m = frame_rotation(name)
        torch.testing.assert_close(m @ m.T, torch.eye(3, dtype=F64))
        assert math.isclose(float(torch.linalg.det(m)), 1.0)
        assert (m @ right).tolist() == [1.0, 0.0, 0.0]
    zup, yup = frame_rotation("zup"), frame_rotation("yup")
    assert (zup @ down).tolist() == [0.0, 0.0, -1.0] and (zup @ forward).tolist() == [0.0, 1.0, 0.0]  # gravity -z
    assert (yup @ down).tolist() == [0.0, -1.0, 0.0] and (yup @ forward).tolist() == [0.0, 0.0, -1.0]  # looks down -z
    assert zup.tolist() == [list(r) for r in ZUP_FROM_OPENCV] and yup.tolist() == [list(r) for r in YUP_FROM_OPENCV]
    with pytest.raises(ValueError):
        frame_rotation("xup")  # type: ignore[arg-type]


def test_amass_keeps_its_rotation():
    from wbcap.export.amass import AMASS_FROM_OPENCV

    np.testing.assert_array_equal(AMASS_FROM_OPENCV, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    assert AMASS_FROM_OPENCV.dtype == np.float64


def test_rotate_root_hand_computed():
    go = torch.zeros(1, 3, dtype=F64)
    transl = torch.tensor([[0.1, 0.5, 3.0]], dtype=F64)
    j0 = torch.tensor([0.0, 0.2, 0.0], dtype=F64)
    go_w, tr_w = change_frame(go, transl, j0, "zup")
    torch.testing.assert_close(go_w, torch.tensor([[-math.pi / 2, 0.0, 0.0]], dtype=F64), rtol=0, atol=1e-12)
    # M (J0 + t) - J0 = M (0.1, 0.7, 3.0) - J0 = (0.1, 3.0, -0.7) - (0, 0.2, 0)
    torch.testing.assert_close(tr_w, torch.tensor([[0.1, 2.8, -0.7]], dtype=F64), rtol=0, atol=1e-12)
    go_y, tr_y = change_frame(go, transl, j0, "yup")
    np.testing.assert_allclose(Rotation.from_rotvec(go_y.numpy()).as_matrix()[0], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    torch.testing.assert_close(tr_y, torch.tensor([[0.1, -0.9, -3.0]], dtype=F64), rtol=0, atol=1e-12)


def random_roots(b: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    go = 1.2 * torch.randn(b, 3, generator=g, dtype=F64)
    transl = torch.randn(b, 3, generator=g, dtype=F64) + torch.tensor([0.0, 0.0, 6.0], dtype=F64)
    rest = 0.1 * torch.randn(b, 3, generator=g, dtype=F64) + torch.tensor([0.0, -0.35, 0.0], dtype=F64)
    return go, transl, rest


@pytest.mark.parametrize("frame", ["zup", "yup"])
def test_frame_round_trips_are_the_identity(frame):
    go, transl, rest = random_roots(8, seed=11)
    go2, tr2 = change_frame(*change_frame(go, transl, rest, frame), rest, frame, inverse=True)
    torch.testing.assert_close(go2, go, rtol=0, atol=1e-12)
    torch.testing.assert_close(tr2, transl, rtol=0, atol=1e-12)


@pytest.mark.parametrize("frame", ["zup", "yup"])
def test_rotate_root_matches_an_independent_composition(frame):
    """scipy: R' = M R (quaternions), t' = M (J0 + t) - J0."""
    go, transl, rest = random_roots(8, seed=12)
    m = frame_rotation(frame)
    go_w, tr_w = rotate_root(go, transl, rest, m)
    ref = (Rotation.from_matrix(m.numpy()) * Rotation.from_rotvec(go.numpy())).as_matrix()
    np.testing.assert_allclose(Rotation.from_rotvec(go_w.numpy()).as_matrix(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr_w.numpy(), (rest + transl).numpy() @ m.numpy().T - rest.numpy(), rtol=0, atol=1e-12)
    go_np, tr_np = rotate_root_np(go.numpy().astype(np.float32), transl.numpy(), rest.numpy(), m.numpy())
    assert go_np.dtype == np.float32 and tr_np.dtype == np.float64


def test_rotate_root_batched_equals_one_by_one():
    go, transl, rest = random_roots(5, seed=13)
    m = frame_rotation("yup")
    go_w, tr_w = rotate_root(go, transl, rest, m)
    for i in range(5):
        gi, ti = rotate_root(go[i : i + 1], transl[i : i + 1], rest[i], m)
        assert torch.equal(gi[0], go_w[i]) and torch.equal(ti[0], tr_w[i])


@pytest.mark.parametrize("frame", ["zup", "yup"])
def test_rotate_root_turns_the_posed_body(body_layer, frame):
    """The pelvis subtlety: with the rest pelvis, every vertex of the SMPL-X mesh is M v."""
    g = torch.Generator().manual_seed(14)
    n = 2
    betas = torch.randn(n, 10, generator=g)
    go = 0.8 * torch.randn(n, 3, generator=g)
    transl = torch.tensor([[0.1, 0.2, 5.0], [-0.5, 0.1, 3.0]])
    body_pose = 0.2 * torch.randn(n, 63, generator=g)
    hand, jaw, expr = 0.2 * torch.randn(n, 45, generator=g), torch.zeros(n, 3), torch.randn(n, 10, generator=g)

    def mesh(root_pose: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = body_layer(betas=betas, global_orient=root_pose, body_pose=body_pose, left_hand_pose=hand,
                             right_hand_pose=hand, jaw_pose=jaw, expression=expr)  # fmt: skip
            return out.vertices + t[:, None]

    rest = body_layer.rest_root(betas).double()
    go_w, tr_w = rotate_root(go.double(), transl.double(), rest, frame_rotation(frame))
    m = frame_rotation(frame, torch.float32)
    torch.testing.assert_close(mesh(go_w.float(), tr_w.float()), rotate_points(mesh(go, transl), m), rtol=0, atol=2e-5)
    # rotating global_orient alone moves the mesh (the pelvis is not at the origin)
    naive = mesh(go_w.float(), (transl.double() @ frame_rotation(frame).T).float())
    assert (naive - rotate_points(mesh(go, transl), m)).abs().max() > 1e-3


def test_camera_dict_round_trip_and_damaged_records():
    """The one stored form of the video camera (params.jsonl lines, meta.json): written by
    camera_to_dict, read back by camera_from_dict; a damaged record raises."""
    import json

    camera = ImageCamera(focal=(1100.5, 1100.5), princpt=(320.0, 240.25), image_size=(640, 480))
    stored = json.loads(json.dumps(camera_to_dict(camera)))
    assert stored == {"focal": [1100.5, 1100.5], "princpt": [320.0, 240.25], "image_size": [640, 480]}
    assert camera_from_dict(stored) == camera
    for damaged, error in (({**stored, "focal": [1.0]}, ValueError), ({**stored, "princpt": "ab"}, ValueError),
                           ({"focal": [1, 1]}, KeyError), ({**stored, "image_size": [float("inf"), 1]}, OverflowError)):
        with pytest.raises(error):
            camera_from_dict(damaged)


def test_frame_rotations_are_one_table_and_read_only():
    """The z-up -> y-up turn is derived from the two camera frames, and the module-level arrays
    made from the table cannot be changed by a caller (one was a writable default argument)."""
    from wbcap.camera import YUP_FROM_OPENCV, YUP_FROM_ZUP, ZUP_FROM_OPENCV
    from wbcap.export.amass import AMASS_FROM_OPENCV
    from wbcap.export.clip import YUP_FROM_ZUP as clip_yup_from_zup

    np.testing.assert_array_equal(np.array(YUP_FROM_ZUP), np.array(YUP_FROM_OPENCV) @ np.array(ZUP_FROM_OPENCV).T)
    for array, rows in ((AMASS_FROM_OPENCV, ZUP_FROM_OPENCV), (clip_yup_from_zup, YUP_FROM_ZUP)):
        np.testing.assert_array_equal(array, np.array(rows))
        with pytest.raises(ValueError, match="read-only"):
            array[0, 0] = 2.0


def test_default_camera_of_an_unknown_lens():
    """`wbcap run`'s camera: focal sqrt(W^2 + H^2) (a 3-4-5 frame: 2000 px for 1600x1200),
    square pixels, principal point at the centre; a given focal is kept."""
    from wbcap.camera import ImageCamera

    cam = ImageCamera.default((1600, 1200))
    assert cam == ImageCamera(focal=(2000.0, 2000.0), princpt=(800.0, 600.0), image_size=(1600, 1200))
    diagonal = 2 * np.arctan(np.hypot(*cam.image_size) / 2 / cam.focal[0])
    assert (np.degrees(diagonal), np.degrees(cam.yfov)) == pytest.approx((53.13, 33.40), abs=0.01)  # fields of view
    assert ImageCamera.default((640, 480), focal=500).focal == (500.0, 500.0)
    for bad in ({"image_size": (0, 10)}, {"image_size": (10.5, 10)}, {"image_size": (10, 10), "focal": 0},
                {"image_size": (10, 10), "focal": float("nan")}, {"image_size": (10, 10), "focal": -5}):
        with pytest.raises(ValueError):  # (focal 0 was taken as the default, a side 0 divided by zero)
            ImageCamera.default(**bad)
