"""Body-box processing and the affine crop (upstream Hand4Whole preprocessing semantics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wbcap.crop.bbox import (
    BODY_ASPECT_RATIO,
    crop_image,
    crops_to_tensor,
    get_affine_transform,
    process_bbox,
    process_bboxes,
    sanitize_bbox,
    sanitize_bboxes,
    transform_points,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def _h(trans: np.ndarray) -> np.ndarray:
    """(2, 3) affine -> (3, 3) homogeneous, float64."""
    return np.vstack([trans.astype(np.float64), [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------------------------------------
# boxes
# ------------------------------------------------------------------------------------------------
def test_box_format_roundtrip():
    xyxy = np.array([[10.0, 20.0, 110.0, 220.0], [-5.5, 3.25, 7.0, 9.0]])
    xywh = xyxy_to_xywh(xyxy)
    np.testing.assert_array_equal(xywh, [[10, 20, 100, 200], [-5.5, 3.25, 12.5, 5.75]])
    np.testing.assert_array_equal(xywh_to_xyxy(xywh), xyxy)
    t = torch.tensor(xyxy, dtype=torch.float32)
    torch.testing.assert_close(xywh_to_xyxy(xyxy_to_xywh(t)), t)
    assert xyxy_to_xywh(t).dtype == torch.float32


def test_sanitize_shifts_rather_than_clips():
    # upstream quirk: the corner is clamped to 0 and the box keeps its w - 1 / h - 1 extent
    np.testing.assert_array_equal(sanitize_bbox([-50.0, -20.0, 200.0, 100.0], 640, 480), [0, 0, 199, 99])
    # far side is clipped at img - 1
    np.testing.assert_array_equal(sanitize_bbox([600.0, 400.0, 100.0, 200.0], 640, 480), [600, 400, 39, 79])
    # an inside box loses one pixel of width and height
    np.testing.assert_array_equal(sanitize_bbox([10.5, 20.0, 30.0, 40.0], 640, 480), [10.5, 20, 29, 39])


@pytest.mark.parametrize(
    "box",
    [
        [10.0, 10.0, 0.0, 50.0],  # zero width
        [10.0, 10.0, 50.0, -5.0],  # negative height
        [10.0, 10.0, -5.0, -5.0],  # both negative (w * h > 0 but extent 0)
        [700.0, 10.0, 50.0, 50.0],  # right of the image
        [10.0, 480.0, 50.0, 50.0],  # below the image
        [10.0, 10.0, 1.0, 50.0],  # 1 px wide -> x2 == x1
        [float("nan"), 10.0, 50.0, 50.0],
    ],
)
def test_degenerate_boxes_are_none(box):
    assert sanitize_bbox(box, 640, 480) is None
    assert process_bbox(box, 640, 480) is None


def test_process_bbox_known_answers():
    # tall box: sanitized to 99 x 199, centre (149.5, 149.5); width grows to 0.75 * 199 = 149.25
    out = process_bbox([100.0, 50.0, 100.0, 200.0], 1000, 1000)
    assert out.dtype == np.float32 and out.shape == (4,)
    np.testing.assert_array_equal(out, [56.21875, 25.125, 186.5625, 248.75])
    # wide box: sanitized to 400 x 100, centre (210, 70); height grows to 400 / 0.75
    out = process_bbox([10.0, 20.0, 401.0, 101.0], 1000, 1000)
    h = np.float32(400 / 0.75 * 1.25)
    np.testing.assert_array_equal(out, np.array([210 - 250, 70 - h / 2, 500, h], dtype=np.float32))
    # box with exactly the target aspect ratio is only scaled
    out = process_bbox([0.0, 0.0, 76.0, 101.0], 1000, 1000)
    np.testing.assert_array_equal(out, [37.5 - 75 * 1.25 / 2, 50 - 125 / 2, 75 * 1.25, 125])


def test_process_bbox_aspect_and_scale():
    rng = np.random.default_rng(1)
    boxes = np.column_stack(
        [rng.uniform(0, 500, 50), rng.uniform(0, 300, 50), rng.uniform(5, 400, 50), rng.uniform(5, 400, 50)]
    )
    out, valid = process_bboxes(boxes, 900, 700)
    assert valid.all() and out.dtype == np.float32
    assert BODY_ASPECT_RATIO == 0.75
    np.testing.assert_allclose(out[:, 2] / out[:, 3], 0.75, rtol=1e-6)
    san, _ = sanitize_bboxes(boxes, 900, 700)
    # the longer side (relative to 0.75) is exactly scaled by 1.25; centres are kept
    longer = np.maximum(san[:, 2] / 0.75, san[:, 3])
    np.testing.assert_allclose(out[:, 3], longer * 1.25, rtol=1e-6)
    np.testing.assert_allclose(out[:, :2] + out[:, 2:] / 2, san[:, :2] + san[:, 2:] / 2, rtol=1e-6)
    # custom ratio / scale
    sq, _ = process_bboxes(boxes, 900, 700, aspect_ratio=1.0, scale=1.0)
    np.testing.assert_allclose(sq[:, 2], sq[:, 3], rtol=1e-6)


def test_batched_equals_single():
    rng = np.random.default_rng(2)
    boxes = rng.uniform(-200, 800, (40, 4)) * [1, 1, 0.6, 0.6]
    boxes[::5, 2] *= -1
    out, valid = process_bboxes(boxes, 640, 480)
    assert 0 < valid.sum() < len(boxes)
    for b, o, v in zip(boxes, out, valid):
        single = process_bbox(list(map(float, b)), 640, 480)
        assert (single is not None) == bool(v)
        if v:
            np.testing.assert_array_equal(single, o)


# ------------------------------------------------------------------------------------------------
# affine transforms
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale,rot", [(1.0, 0.0), (1.2, 0.0), (0.8, 30.0), (1.0, -75.0)])
def test_affine_inverse_and_centre(scale, rot):
    args = (321.5, 140.25, 180.0, 240.0, 384, 512)
    trans = get_affine_transform(*args, scale=scale, rot_deg=rot)
    inv = get_affine_transform(*args, scale=scale, rot_deg=rot, inv=True)
    assert trans.shape == (2, 3) and trans.dtype == np.float32 and inv.dtype == np.float32
    np.testing.assert_allclose(_h(inv) @ _h(trans), np.eye(3), atol=1e-5)
    np.testing.assert_allclose(transform_points(np.array([321.5, 140.25]), trans), [192, 256], atol=1e-3)
    # scale of the map: patch pixels per image pixel
    det = np.linalg.det(trans[:, :2].astype(np.float64))
    np.testing.assert_allclose(det, (384 / (180 * scale)) * (512 / (240 * scale)), rtol=1e-5)


def test_affine_corners_and_rotation_direction():
    trans = get_affine_transform(100.0, 200.0, 60.0, 80.0, 30, 40)
    corners = np.array([[70.0, 160.0], [130.0, 240.0]])
    np.testing.assert_allclose(transform_points(corners, trans), [[0, 0], [30, 40]], atol=1e-4)
    # rotated by 90 degrees: the box's "down" direction is image-left (upstream rotate_2d)
    rot = get_affine_transform(100.0, 200.0, 60.0, 80.0, 30, 40, rot_deg=90.0)
    np.testing.assert_allclose(transform_points(np.array([60.0, 200.0]), rot), [15, 40], atol=1e-4)


def test_transform_points_batched_roundtrip():
    rng = np.random.default_rng(3)
    pts = rng.uniform(0, 500, (4, 7, 2))
    trans = get_affine_transform(250.0, 240.0, 300.0, 400.0, 192, 256, rot_deg=20.0)
    inv = get_affine_transform(250.0, 240.0, 300.0, 400.0, 192, 256, rot_deg=20.0, inv=True)
    back = transform_points(transform_points(pts, trans), inv)
    assert back.shape == pts.shape
    np.testing.assert_allclose(back, pts, atol=1e-2)


# ------------------------------------------------------------------------------------------------
# crop
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)


def test_unit_scale_crop_is_a_slice(image):
    # a 96x128 box into a 128x96 patch with an integer offset: warpAffine is an exact copy
    patch, trans, inv = crop_image(image, [100.0, 50.0, 96.0, 128.0], out_shape=(128, 96))
    assert patch.shape == (128, 96, 3) and patch.dtype == np.float32
    np.testing.assert_array_equal(patch, image[50:178, 100:196].astype(np.float32))
    np.testing.assert_allclose(trans, [[1, 0, -100], [0, 1, -50]], atol=1e-6)
    np.testing.assert_allclose(inv, [[1, 0, 100], [0, 1, 50]], atol=1e-6)


def test_crop_outside_is_black(image):
    patch, _, _ = crop_image(image, [-40.0, -30.0, 96.0, 128.0], out_shape=(128, 96))
    assert np.all(patch[:30] == 0) and np.all(patch[:, :40] == 0)
    np.testing.assert_array_equal(patch[30:, 40:], image[: 128 - 30, : 96 - 40].astype(np.float32))


def test_crop_centres_the_box():
    img = np.zeros((480, 640, 3), dtype=np.uint8)
    img[236:244, 396:404] = (255, 128, 0)  # 8x8 RGB square centred at (400, 240)
    bbox = process_bbox([350.0, 140.0, 100.0, 200.0], 640, 480)
    np.testing.assert_allclose(bbox[:2] + bbox[2:] / 2, [399.5, 239.5])  # sanitize drops 1 px
    patch, trans, _ = crop_image(img, bbox)
    assert patch.shape == (512, 384, 3)
    ys, xs = np.nonzero(patch[..., 0] > 0)
    # square centre (399.5, 239.5) in pixel-centre coordinates lands on the patch centre
    np.testing.assert_allclose([xs.mean(), ys.mean()], [192, 256], atol=1.0)
    centre = patch[250:262, 186:198]
    assert np.all(centre[..., 0] == 255) and np.all(centre[..., 1] == 128) and np.all(centre[..., 2] == 0)
    np.testing.assert_allclose(transform_points(np.array([399.5, 239.5]), trans), [192, 256], atol=1e-3)


def test_flip_semantics(image):
    box = [100.0, 50.0, 96.0, 128.0]
    patch, _, _ = crop_image(image, box, out_shape=(128, 96))
    flipped, trans_f, inv_f = crop_image(image, box, out_shape=(128, 96), flip=True)
    # upstream mirrors the image and moves the centre to img_w - c_x - 1, so the flipped patch is
    # the mirrored patch shifted by one column
    np.testing.assert_array_equal(flipped[:, 1:], patch[:, ::-1][:, :-1])
    # the transforms refer to the mirrored image: image column c_x maps to patch centre
    c_x = 400 - (100 + 48) - 1
    np.testing.assert_allclose(transform_points(np.array([c_x, 114.0]), trans_f), [48, 64], atol=1e-4)
    np.testing.assert_allclose(_h(inv_f) @ _h(trans_f), np.eye(3), atol=1e-6)
    # same as cropping the mirrored image at the mirrored centre
    mirrored = np.ascontiguousarray(image[:, ::-1])
    same, _, _ = crop_image(mirrored, [c_x - 48.0, 50.0, 96.0, 128.0], out_shape=(128, 96))
    np.testing.assert_array_equal(flipped, same)


def test_crop_rotation_and_scale(image):
    box = [100.0, 50.0, 96.0, 128.0]
    rot, trans, inv = crop_image(image, box, out_shape=(128, 96), scale=1.0, rot_deg=180.0)
    np.testing.assert_allclose(trans[:, :2], -np.eye(2), atol=1e-6)
    up, _, _ = crop_image(image, box, out_shape=(128, 96))
    # 180-degree rotation mapping (148, 114) -> (48, 64): patch[j, i] = img[178 - j, 196 - i]
    np.testing.assert_array_equal(rot, image[51:179, 101:197][::-1, ::-1].astype(np.float32))
    corners = transform_points(np.array([[0.0, 0.0], [100.0, 50.0]]), inv)
    np.testing.assert_allclose(corners, [[196, 178], [96, 128]], atol=1e-4)
    big, trans2, _ = crop_image(image, box, out_shape=(128, 96), scale=2.0)
    np.testing.assert_allclose(trans2[:, :2], 0.5 * np.eye(2), atol=1e-6)
    # scale 2: the patch shows a box twice as large, half resolution, same centre
    pts = transform_points(np.array([[148.0, 114.0], [52.0, -14.0]]), trans2)
    np.testing.assert_allclose(pts, [[48, 64], [0, 0]], atol=1e-4)
    assert not np.array_equal(big, up)


def test_crops_to_tensor():
    a = np.zeros((4, 3, 3), dtype=np.float32)
    a[..., 0] = 255.0  # red
    b = np.full((4, 3, 3), 51.0, dtype=np.float32)
    t = crops_to_tensor([a, b])
    assert t.shape == (2, 3, 4, 3) and t.dtype == torch.float32
    assert torch.all(t[0, 0] == 1.0) and torch.all(t[0, 1:] == 0.0)
    torch.testing.assert_close(t[1], torch.full((3, 4, 3), 0.2))
    torch.testing.assert_close(crops_to_tensor(np.stack([a, b])), t)


def test_a_crop_of_an_image_over_32766_pixels_a_side(monkeypatch):
    """OpenCV's warp refuses images of SHRT_MAX pixels a side: a 40000 x 342 panorama was a crash
    report (a user trial). The crop now warps only the part of the image its patch samples: the
    same pixels as the whole-image warp (checked with the limit lowered, rotated and mirrored
    boxes too, and boxes partly outside); a box itself that wide is area-averaged first."""
    import wbcap.crop.bbox as bbox

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (342, 4000, 3), dtype=np.uint8)
    cases = [dict(bbox_xywh=[2059.3, 58.2, 415.0, 277.5]), dict(bbox_xywh=[-50, -20, 300, 300]),
             dict(bbox_xywh=[3900, 100, 400, 300], flip=True), dict(bbox_xywh=[1000, 50, 200, 250], rot_deg=30.0, scale=1.2),
             dict(bbox_xywh=[9000, 50, 100, 100])]  # (wholly outside: zeros)
    whole = [crop_image(img, **c) for c in cases]
    monkeypatch.setattr(bbox, "_CV_MAX_SIDE", 1000)
    for c, (patch, trans, _) in zip(cases, whole):
        got = crop_image(img, **c)
        np.testing.assert_array_equal(got[0], patch, err_msg=str(c))
        np.testing.assert_array_equal(got[1], trans)
    monkeypatch.undo()
    wide = np.full((64, 33000, 3), 90, np.uint8)
    wide[:, 20000:20400] = 200
    patch, _, _ = crop_image(wide, [20100, 4, 200, 56])
    assert patch.shape == (512, 384, 3) and patch.min() == patch.max() == 200  # (all of it in the bright part)
    full, _, _ = crop_image(wide, [0, 0, 33000, 64])  # (wider than the limit itself: shrunk first)
    assert full.shape == (512, 384, 3) and 150 < full[:, 230:240].max() <= 200 and full.max() <= 200
