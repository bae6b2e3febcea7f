"""RoIAlign: torchvision C++-kernel semantics, checked against recorded outputs and a scalar reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from host_reads import count_host_reads

from wbcap.crop.roi_align import roi_align


# ------------------------------------------------------------------------------------------------
# Obviously-correct scalar reference: a line-by-line reading of torchvision's roi_align_kernel.cpp
# (forward), in Python floats, one sample at a time.
# ------------------------------------------------------------------------------------------------
def _bilinear(img: np.ndarray, y: float, x: float) -> float:
    height, width = img.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * img[y_low, x_low]
        + hy * lx * img[y_low, x_high]
        + ly * hx * img[y_high, x_low]
        + ly * lx * img[y_high, x_high]
    )


def _reference(x: np.ndarray, boxes: np.ndarray, out_hw, scale=1.0, sampling_ratio=-1, aligned=False):
    oh, ow = out_hw
    k, c = boxes.shape[0], x.shape[1]
    out = np.zeros((k, c, oh, ow), dtype=np.float64)
    offset = 0.5 if aligned else 0.0
    for r in range(k):
        b = int(boxes[r, 0])
        sx = boxes[r, 1] * scale - offset
        sy = boxes[r, 2] * scale - offset
        ex = boxes[r, 3] * scale - offset
        ey = boxes[r, 4] * scale - offset
        rw, rh = ex - sx, ey - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bw, bh = rw / ow, rh / oh
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / oh)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / ow)
        count = max(gh * gw, 1)
        for ch in range(c):
            for ph in range(oh):
                for pw in range(ow):
                    acc = 0.0
                    for iy in range(gh):
                        y = sy + ph * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            xx = sx + pw * bw + (ix + 0.5) * bw / gw
                            acc += _bilinear(x[b, ch], y, xx)
                    out[r, ch, ph, pw] = acc / count
    return out


def _random_boxes(rng: np.random.Generator, n_img: int, h: int, w: int) -> np.ndarray:
    """Boxes of every awkward kind: inside, crossing each border, fully outside, zero-size,
    inverted, larger than the image, tiny fractional, and exactly on pixel centres/edges."""
    boxes = [
        [0, 2.3, 1.7, 9.6, 7.2],  # inside, fractional
        [1, -3.5, -2.0, 4.0, 5.5],  # crosses top-left
        [0, w - 4.2, h - 3.1, w + 6.0, h + 2.5],  # crosses bottom-right
        [1, -20.0, 1.0, -8.0, 6.0],  # fully left of the image
        [0, 1.0, h + 5.0, 6.0, h + 9.0],  # fully below
        [1, 5.0, 4.0, 5.0, 4.0],  # zero size
        [0, 8.0, 6.0, 3.0, 2.0],  # inverted
        [1, -15.0, -12.0, w + 17.0, h + 13.0],  # larger than the image
        [0, 4.41, 3.13, 4.52, 3.37],  # tiny fractional
        [1, -1.0, -1.0, float(w), float(h)],  # on the zeroing boundaries
        [0, 0.0, 0.0, float(w - 1), float(h - 1)],  # pixel centres of the corners
    ]
    for _ in range(9):
        b = int(rng.integers(0, n_img))
        x1, y1 = rng.uniform(-0.5 * w, 1.2 * w), rng.uniform(-0.5 * h, 1.2 * h)
        boxes.append([b, x1, y1, x1 + rng.uniform(0.0, 1.5 * w), y1 + rng.uniform(0.0, 1.5 * h)])
    return np.asarray(boxes, dtype=np.float64)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(7)
    n, c, h, w = 2, 2, 9, 11
    x = rng.normal(size=(n, c, h, w))
    return x, _random_boxes(rng, n, h, w)


@pytest.fixture(scope="module")
def roi_cases(shared_dir):
    """Inputs and outputs recorded from torchvision's C++ kernel (../shared/reference)."""
    path = shared_dir / "reference" / "roi_align_cases.npz"
    if not path.is_file():
        pytest.skip(f"shared reference not found: {path}")
    return dict(np.load(path))


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,size", [("out_16x16", (16, 16)), ("out_12x12", (12, 12)), ("out_8x6", (8, 6))])
def test_matches_torchvision_cpp_reference(roi_cases, name, size):
    data = roi_cases
    x = torch.from_numpy(data["x"])
    boxes = torch.from_numpy(data["boxes"])
    expected = torch.from_numpy(data[name])
    out = roi_align(x, boxes, size, spatial_scale=1.0, sampling_ratio=-1, aligned=False)
    assert out.shape == expected.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # the reference covers border crossing: some outputs must be non-trivially nonzero
    assert expected.abs().sum() > 0


@pytest.mark.parametrize(
    "out_hw,scale,sampling_ratio,aligned",
    [
        ((5, 4), 1.0, -1, False),
        ((3, 7), 1.0, -1, False),
        ((4, 4), 0.5, -1, False),
        ((4, 3), 1.0, 2, False),
        ((5, 4), 1.0, -1, True),
        ((2, 3), 2.0, 3, True),
    ],
)
@pytest.mark.parametrize("box_extent", [False, True])  # (True: the CPU's default)
def test_matches_scalar_reference(case, out_hw, scale, sampling_ratio, aligned, box_extent):
    x, boxes = case
    expected = _reference(x, boxes, out_hw, scale, sampling_ratio, aligned)
    out = roi_align(
        torch.from_numpy(x), torch.from_numpy(boxes), out_hw, scale, sampling_ratio, aligned, box_extent=box_extent
    )
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-10, rtol=0)
    # boxes fully outside the image give exactly zero; the others do not vanish
    assert np.all(out.numpy()[3:5] == 0.0) or scale != 1.0
    assert np.abs(out.numpy()[0]).sum() > 0


def test_float32_close_to_reference(case):
    x, boxes = case
    expected = _reference(x, boxes, (6, 5))
    out = roi_align(torch.from_numpy(x).float(), torch.from_numpy(boxes).float(), (6, 5))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5, rtol=0)


def test_border_is_zeroed_not_clamped():
    """A box hanging off the left edge: samples left of x = -1 read 0 (C++ kernel); samples in
    [-1, 0) are clamped to column 0. torchvision's python fallback would clamp all of them (-> 1)."""
    x = torch.ones(1, 1, 4, 4)
    # roi 8 wide, 4 bins of width 2, grid 2 -> x samples per bin: (-7.5, -6.5), ..., (-1.5, -0.5);
    # only -0.5 is inside the window, so the last bin averages 4 rows x (0 + 1) over 8 samples.
    out = roi_align(x, torch.tensor([[0.0, -8.0, 0.0, 0.0, 4.0]]), (1, 4))
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 0.0, 0.0, 0.5]]]]), atol=0, rtol=0)


def test_batch_equals_one_by_one(case):
    x, boxes = case
    xt, bt = torch.from_numpy(x), torch.from_numpy(boxes)
    together = roi_align(xt, bt, (5, 4))
    alone = torch.cat([roi_align(xt, bt[i : i + 1], (5, 4)) for i in range(bt.shape[0])])
    torch.testing.assert_close(together, alone, atol=1e-12, rtol=0)


def test_list_of_boxes_and_empty(case):
    x, boxes = case
    xt, bt = torch.from_numpy(x), torch.from_numpy(boxes)
    as_list = [bt[bt[:, 0] == i, 1:] for i in range(x.shape[0])]
    order = torch.cat([torch.nonzero(bt[:, 0] == i)[:, 0] for i in range(x.shape[0])])
    torch.testing.assert_close(roi_align(xt, as_list, (3, 3)), roi_align(xt, bt[order], (3, 3)))
    empty = roi_align(xt, bt[:0], (3, 2))
    assert empty.shape == (0, x.shape[1], 3, 2)
    assert roi_align(xt, bt[:2], 4).shape == (2, x.shape[1], 4, 4)


def test_gradient():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor(
        [[0, 0.3, 0.6, 3.2, 4.1], [1, -1.5, -0.5, 2.0, 2.5], [0, 2.0, 3.0, 6.0, 7.5]], dtype=torch.float64
    )
    assert torch.autograd.gradcheck(lambda inp: roi_align(inp, boxes, (2, 3)), (x,))
    # the adjoint is the same linear map: <roi_align(x), g> == <x, grad>
    g = torch.randn(3, 2, 2, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((roi_align(x, boxes, (2, 3)) * g).sum(), x)
    lhs = (roi_align(x.detach(), boxes, (2, 3)) * g).sum()
    torch.testing.assert_close(lhs, (x.detach() * grad).sum())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(case):
    x, boxes = case
    xt, bt = torch.from_numpy(x).float(), torch.from_numpy(boxes).float()
    cpu = roi_align(xt, bt, (6, 5))
    gpu = roi_align(xt.cuda(), bt.cuda(), (6, 5))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


@pytest.mark.parametrize("aligned", [False, True])
def test_matches_torchvision(case, aligned):
    tv_ops = pytest.importorskip("torchvision.ops")
    x, boxes = case
    xt, bt = torch.from_numpy(x).float(), torch.from_numpy(boxes).float()
    for size, sr in [((5, 4), -1), ((3, 3), 2)]:
        expected = tv_ops.roi_align(xt, bt, size, spatial_scale=1.0, sampling_ratio=sr, aligned=aligned)
        torch.testing.assert_close(roi_align(xt, bt, size, 1.0, sr, aligned), expected, atol=1e-5, rtol=0)


def test_any_box_size_without_host_reads(monkeypatch):
    """Boxes 40-200x the output (grids of 100+ samples per bin, starting far outside the image)
    equal the scalar reference, computed without reading anything back from the device (no
    ``item``/``bool``/``tolist``/index conversion: nothing that synchronises a GPU)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 2, 9, 11))
    boxes = np.array([[0, -200.0, -150.0, 200.0, 160.0], [1, -60.5, 3.0, 15.25, 90.0], [1, 2.0, 1.0, 7.0, 6.0]])
    expected = _reference(x, boxes, (2, 2))

    def refuse(*args, **kwargs):
        raise AssertionError("host read of a tensor inside roi_align")

    xt, bt = torch.from_numpy(x), torch.from_numpy(boxes)
    for name in ("item", "tolist", "__bool__", "__index__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    out = roi_align(xt, bt, (2, 2), box_extent=False)  # (the GPUs' path, here on the CPU)
    monkeypatch.undo()
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-10, rtol=0)
    assert np.abs(expected[0]).sum() > 0
    # the CPU's default reads the boxes' extents back (free there) and gives the same crops
    np.testing.assert_allclose(roi_align(xt, bt, (2, 2)).numpy(), expected, atol=1e-10, rtol=0)


def test_use_torchvision_flag(case):
    from wbcap.crop.roi_align import _torchvision_roi_align

    x, boxes = case
    xt, bt = torch.from_numpy(x).float(), torch.from_numpy(boxes).float()
    if _torchvision_roi_align() is None:
        with pytest.raises(RuntimeError, match="torchvision"):
            roi_align(xt, bt, (3, 3), use_torchvision=True)
    else:
        torch.testing.assert_close(roi_align(xt, bt, (3, 3), use_torchvision=True), roi_align(xt, bt, (3, 3)),
                                   atol=1e-5, rtol=0)
    # on the CPU the default is wbcap's own (no torchvision import attempted there)
    _torchvision_roi_align.cache_clear()
    roi_align(xt, bt, (3, 3))
    assert _torchvision_roi_align.cache_info().currsize == 0


def test_bfloat16_products_stay_within_bfloat16_rounding(case):
    """compute_dtype=bfloat16 (the fast mode's hand/face crops): float32 out, within a few
    bfloat16 roundings of the exact crop on 0..1 images, and really computed in bfloat16."""
    x, boxes = case
    img = torch.from_numpy((x - x.min()) / (x.max() - x.min())).float()
    bt = torch.from_numpy(boxes).float()
    exact = roi_align(img, bt, (6, 5))
    fast = roi_align(img, bt, (6, 5), compute_dtype=torch.bfloat16)
    assert fast.dtype == torch.float32
    err = (fast - exact).abs().max().item()
    assert 0 < err < 4 * 2**-8


@pytest.mark.parametrize("compute_dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("box_extent", [False, True])
def test_mirror_equals_flipping_the_crops_bit_for_bit(compute_dtype, box_extent):
    """Mirrored boxes (Hand4Whole's left hands) come back as torch.flip of the plain crop, bit for
    bit, more boxes than one chunk (the in-place output) and with gradients (the training path),
    on the whole image or on each box's extent."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 64, 48, generator=g)
    xy = torch.rand(37, 2, generator=g) * torch.tensor([40.0, 50.0])
    rois = torch.cat([(torch.arange(37) % 3)[:, None].float(), xy, xy + 2 + torch.rand(37, 2, generator=g) * 20], 1)
    mirror = torch.rand(37, generator=g) < 0.5
    with torch.inference_mode():
        plain = roi_align(x, rois, (16, 12), compute_dtype=compute_dtype, box_extent=box_extent)
        mirrored = roi_align(x, rois, (16, 12), compute_dtype=compute_dtype, mirror=mirror, box_extent=box_extent)
    want = torch.where(mirror[:, None, None, None], plain.flip(3), plain)
    assert mirror.any() and (~mirror).any() and torch.equal(mirrored, want)
    xg = x.clone().requires_grad_()
    out = roi_align(xg, rois, (16, 12), compute_dtype=compute_dtype, mirror=mirror, box_extent=box_extent)
    assert torch.equal(out.detach(), want)
    out[mirror].sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


@pytest.mark.parametrize("compute_dtype", [None, torch.bfloat16])
def test_boxes_in_runs_over_the_images_read_the_input_in_place_bit_for_bit(compute_dtype):
    """``image_blocks``: boxes that come as runs over the images in order (Hand4Whole's left then
    right hands of images 0..B-1, its faces) take their images as views of the input instead of
    gathered copies, without reading the boxes (no host read); the crops are the gathered ones
    bit for bit, also past one chunk of boxes. A count that does not match gathers."""
    from wbcap.crop import roi_align as module

    g = torch.Generator().manual_seed(5)
    for images, blocks in ((8, 2), (20, 2), (8, 1), (1, 2), (3, 1)):
        x = torch.rand(images, 3, 64, 48, generator=g).contiguous(memory_format=torch.channels_last)
        k = images * blocks
        xy = torch.rand(k, 2, generator=g) * torch.tensor([40.0, 50.0])
        rois = torch.cat([(torch.arange(k) % images).float()[:, None], xy, xy + 2 + torch.rand(k, 2, generator=g) * 20], 1)
        mirror = torch.arange(k) < k // 2
        gathered = roi_align(x, rois, (16, 12), compute_dtype=compute_dtype, mirror=mirror, box_extent=False)
        groups = module._box_groups(k, images, module._CHUNK, blocks)
        with torch.inference_mode(), count_host_reads() as reads:
            got = roi_align(x, rois, (16, 12), compute_dtype=compute_dtype, mirror=mirror, image_blocks=blocks,
                            box_extent=False)
        assert torch.equal(got, gathered) and not reads, (images, blocks, dict(reads))
        assert all(first is not None for _, _, first in groups)
        assert [b for s, e, _ in groups for b in range(s, e)] == list(range(k))
        assert [first + i for s, e, first in groups for i in range(e - s)] == (torch.arange(k) % images).tolist()
    assert all(first is None for _, _, first in module._box_groups(5, 3, 16, 2))  # 5 boxes are not 2 runs of 3



@pytest.mark.parametrize("compute_dtype", [None, torch.bfloat16])
def test_box_extents_give_the_whole_image_crops(case, compute_dtype):
    """Each box's products on the pixels its samples read (the CPU's default) against the
    whole-image products: the awkward boxes (outside, crossing, inverted, larger than the image)
    and Hand4Whole-sized ones (80-pixel hands in 512 x 384 crops, 256 x 256 out), float32 to the
    summation order's rounding, bfloat16 as exact as its products; gradients too."""
    x, boxes = case
    g = torch.Generator().manual_seed(6)
    img = torch.rand(3, 3, 512, 384, generator=g).contiguous(memory_format=torch.channels_last)
    xy = torch.rand(6, 2, generator=g) * torch.tensor([300.0, 420.0])
    hands = torch.cat([(torch.arange(6) % 3).float()[:, None], xy, xy + 60 + 40 * torch.rand(6, 2, generator=g)], 1)
    small = torch.from_numpy((x - x.min()) / (x.max() - x.min())).float()
    for inp, rois, size in ((small, torch.from_numpy(boxes).float(), (6, 5)), (img, hands, (256, 256))):
        with torch.inference_mode():
            whole = roi_align(inp, rois, size, compute_dtype=compute_dtype, box_extent=False)
            boxed = roi_align(inp, rois, size, compute_dtype=compute_dtype)  # (the default here)
        assert boxed.dtype == whole.dtype == torch.float32 and boxed.shape == whole.shape
        tol = 1e-6 if compute_dtype is None else 2**-8
        assert (boxed - whole).abs().max().item() <= tol and whole.abs().sum() > 0
        assert torch.equal(roi_align(inp, rois, size, compute_dtype=compute_dtype, box_extent=True), boxed)
    # boxes that read no pixel are zeros, not left unwritten
    assert (roi_align(small, torch.from_numpy(boxes[3:5]).float(), (6, 5)) == 0).all()
    # with a gradient (training) on the extents, the same crops and the same gradient
    xg = small.clone().double().requires_grad_()
    rois = torch.from_numpy(boxes)
    outs, grads = [], []
    for extent in (False, True):
        out = roi_align(xg, rois, (6, 5), box_extent=extent)
        (grad,) = torch.autograd.grad((out * torch.arange(out.numel()).view_as(out)).sum(), xg)
        outs.append(out.detach())
        grads.append(grad)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-9, rtol=0)


def test_box_extents_are_the_pixels_read_and_only_the_cpus_default():
    """The extent of a box is the rows (columns) its samples weigh, no more: a box from row 2.0
    with 2 bins of 1.5 rows, one sample each (at 2.75 and 4.25), reads rows 2-5 (end exclusive:
    6); one from -1.5 (samples at -0.75, clamped to row 0, and 0.75) rows 0-1; one below the
    image none. The extents are read back only on the CPU without a gradient (a GPU would
    synchronise)."""
    import wbcap.crop.roi_align as roi

    start = torch.tensor([2.0, -1.5, 20.0])
    bins = torch.tensor([1.5, 1.5, 1.5])
    grid = torch.tensor([1, 1, 1])
    weights, first, end = roi._axis_weights(start, bins, grid, 2, 9, -1, extent=True)
    assert first.tolist()[:2] == [2, 0] and end.tolist()[:2] == [6, 2]
    for k in range(2):  # nonzero exactly between them
        used = torch.nonzero(weights[k].ne(0).any(0))[:, 0]
        assert used.min().item() == first[k].item() and used.max().item() == end[k].item() - 1
    assert end[2].item() <= first[2].item() and not weights[2].any()  # (below the image: nothing)
    x = torch.rand(1, 1, 4, 4)
    assert roi._in_extent_by_default(x, grad=False) and not roi._in_extent_by_default(x, grad=True)
    assert not roi._in_extent_by_default(torch.empty(1, 1, 4, 4, device="meta"), grad=False)
