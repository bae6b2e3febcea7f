"""RoIAlign in plain torch, bit-for-bit in semantics with torchvision's C++/CUDA kernel.

Hand4Whole crops the hand and face patches out of the 512x384 body crop with
``torchvision.ops.roi_align(img, rois, out_size, aligned=False)`` (spatial_scale 1, adaptive
sampling). We write it here instead of calling torchvision because torchvision cannot be imported
in our supported environment: for the pinned ``torch==2.13.0`` CPU build the only torchvision
wheel is a CUDA build, and a dependency on it would drag gigabytes of CUDA libraries into every
install. Note that torchvision's *pure-python* fallback (``torchvision.ops._roi_align``) clamps
sample points at the image border instead of zeroing them, so it differs from the compiled kernel
(which the released checkpoint was trained and evaluated with) for boxes that cross the border;
this module follows the compiled kernel.

Kernel semantics (``roi_align_kernel.cpp``), per box ``[b, x1, y1, x2, y2]`` and output bin
``(ph, pw)``:

* ``start = x1 * spatial_scale - offset`` with ``offset = 0.5`` only when ``aligned``;
  ``roi_w = x2 * spatial_scale - offset - start`` (same for y); when not aligned
  ``roi_w = max(roi_w, 1)``.
* ``bin_w = roi_w / out_w``; grid ``gw = sampling_ratio`` if ``> 0`` else ``ceil(roi_w / out_w)``
  (per box); ``count = max(gh * gw, 1)``.
* sample ``y = start_y + ph * bin_h + (iy + 0.5) * bin_h / gh`` (``iy < gh``), same for x.
* bilinear sample: 0 if ``y < -1 or y > H or x < -1 or x > W``; else clamp ``y, x`` at 0 from
  below, ``y_low = int(y)``; if ``y_low >= H - 1`` then ``y_low = y_high = H - 1`` and
  ``y = y_low``, else ``y_high = y_low + 1`` (same for x); standard bilinear weights.
* output = sum of the samples / count.

Coordinates are pixel coordinates of the input feature map scaled by ``spatial_scale``; pixel
``i`` has its centre at ``i`` (not ``i + 0.5``) when ``aligned=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["roi_align", "roi_align_sampled"]


def _boxes_to_rois(boxes: Tensor | Sequence[Tensor], like: Tensor) -> Tensor:
    """Return ``(K, 5)`` rois ``[batch_idx, x1, y1, x2, y2]`` in ``like``'s dtype and device.

    Accepts a ``(K, 5)`` tensor or, like torchvision, a list of ``(K_i, 4)`` tensors (one per image).
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes must be (K, 5) [batch_idx, x1, y1, x2, y2], got {tuple(boxes.shape)}")
        rois = boxes
    else:
        parts = [torch.as_tensor(b, dtype=like.dtype, device=like.device).reshape(-1, 4) for b in boxes]
        coords = torch.cat(parts) if parts else like.new_zeros((0, 4))
        counts = torch.tensor([p.shape[0] for p in parts], device=like.device, dtype=torch.int64)
        idx = torch.repeat_interleave(torch.arange(len(parts), device=like.device), counts)
        rois = torch.cat([idx[:, None].to(like.dtype), coords], dim=1)
    # torchvision gives no gradient w.r.t. the boxes; neither do we.
    return rois.detach().to(device=like.device, dtype=like.dtype)


def _axis_samples(
    start: Tensor, bin_size: Tensor, grid: Tensor, i: int, n_out: int, size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Sample positions along one axis for grid index ``i`` of every box and output bin.

    Args:
        start: ``(K,)`` roi start (already scaled and offset), input dtype.
        bin_size: ``(K,)`` bin size, input dtype.
        grid: ``(K,)`` int64 sampling grid size along this axis (may be 0).
        i: grid index (same for all boxes; boxes with ``grid <= i`` are masked out).
        n_out: number of output bins along this axis.
        size: input extent along this axis (H or W).

    Returns:
        ``low, high`` int64 ``(K, n_out)`` indices, ``w_low, w_high`` ``(K, n_out)`` weights and
        ``valid`` bool ``(K, n_out)`` (inside the ``[-1, size]`` window and ``i < grid``).
    """
    dtype = start.dtype
    p = torch.arange(n_out, device=start.device, dtype=dtype)
    grid_f = grid.clamp_min(1).to(dtype)
    # Same operation order as the C++ kernel: start + p*bin + ((i + .5) * bin) / grid.
    pos = start[:, None] + p[None, :] * bin_size[:, None] + ((i + 0.5) * bin_size / grid_f)[:, None]
    valid = (pos >= -1.0) & (pos <= size) & (grid > i)[:, None]
    # Clamp to [0, size] (the upper clamp only guards the int conversion of masked-out samples).
    pos = pos.clamp(0.0, float(size))
    low = pos.to(torch.int64)  # truncation == floor for pos >= 0
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    pos = torch.where(at_end, low.to(dtype), pos)
    w_high = pos - low.to(dtype)
    w_low = 1.0 - w_high
    return low, high, w_low, w_high, valid


def roi_align(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with torchvision's compiled-kernel semantics (see module docstring).

    Vectorised over boxes and output pixels; loops only over the largest per-box sampling grid
    (``max(gh) * max(gw)`` iterations, usually 1-4), masking boxes whose grid is smaller, so memory
    stays ``O(K * C * oh * ow)``. Differentiable w.r.t. ``input`` (not the boxes, as in torchvision).
    Works on any device; computes in ``input``'s dtype.

    Args:
        input: ``(N, C, H, W)`` feature map or image (any float dtype; channel order preserved).
        boxes: ``(K, 5)`` rois ``[batch_idx, x1, y1, x2, y2]`` in input pixel coordinates before
            ``spatial_scale``, or a list of ``(K_i, 4)`` ``[x1, y1, x2, y2]`` tensors, one per image.
        output_size: ``(oh, ow)`` or an int for square output.
        spatial_scale: factor from box coordinates to ``input`` pixel coordinates.
        sampling_ratio: samples per bin along each axis; ``<= 0`` means adaptive
            ``ceil(roi_size / output_size)`` per box.
        aligned: if True, shift box coordinates by -0.5 pixel (pixel-centre model) and do not
            clamp the roi size to >= 1.

    Returns:
        ``(K, C, oh, ow)`` tensor, same dtype and device as ``input``, in channels_last memory
        format (call ``.contiguous()`` for NCHW memory).
    """
    if input.dim() != 4:
        raise ValueError(f"input must be (N, C, H, W), got {tuple(input.shape)}")
    if isinstance(output_size, int):
        out_h, out_w = output_size, output_size
    else:
        out_h, out_w = int(output_size[0]), int(output_size[1])
    n, c, h, w = input.shape
    rois = _boxes_to_rois(boxes, input)
    k = rois.shape[0]
    dtype = input.dtype

    offset = 0.5 if aligned else 0.0
    batch_idx = rois[:, 0].to(torch.int64)
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_x
    roi_h = rois[:, 4] * spatial_scale - offset - start_y
    if not aligned:
        roi_w = roi_w.clamp_min(1.0)
        roi_h = roi_h.clamp_min(1.0)
    bin_w = roi_w / out_w
    bin_h = roi_h / out_h
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.int64, device=input.device)
        grid_w = grid_h.clone()
    else:
        grid_h = torch.ceil(roi_h / out_h).to(torch.int64).clamp_min(0)
        grid_w = torch.ceil(roi_w / out_w).to(torch.int64).clamp_min(0)
    count = (grid_h * grid_w).clamp_min(1).to(dtype)

    out = input.new_zeros((k, out_h, out_w, c))
    if k == 0 or n == 0:
        return out.permute(0, 3, 1, 2).contiguous()
    max_gh = int(grid_h.max().item())
    max_gw = int(grid_w.max().item())

    # Channels-last flat view: one gather of (K, oh, ow) indices yields (K, oh, ow, C).
    flat = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
    base = (batch_idx * (h * w))[:, None, None]  # (K, 1, 1)

    x_samples = [_axis_samples(start_x, bin_w, grid_w, ix, out_w, w) for ix in range(max_gw)]
    for iy in range(max_gh):
        y_low, y_high, wy_low, wy_high, y_valid = _axis_samples(start_y, bin_h, grid_h, iy, out_h, h)
        row_low = base + (y_low * w)[:, :, None]  # (K, oh, 1)
        row_high = base + (y_high * w)[:, :, None]
        for x_low, x_high, wx_low, wx_high, x_valid in x_samples:
            valid = (y_valid[:, :, None] & x_valid[:, None, :]).to(dtype)  # (K, oh, ow)
            hy, ly = wy_low[:, :, None], wy_high[:, :, None]
            hx, lx = wx_low[:, None, :], wx_high[:, None, :]
            w1 = (hy * hx * valid)[..., None]
            w2 = (hy * lx * valid)[..., None]
            w3 = (ly * hx * valid)[..., None]
            w4 = (ly * lx * valid)[..., None]
            xl, xh = x_low[:, None, :], x_high[:, None, :]
            out = out + (
                w1 * flat[row_low + xl]
                + w2 * flat[row_low + xh]
                + w3 * flat[row_high + xl]
                + w4 * flat[row_high + xh]
            )
    out = out / count[:, None, None, None]
    # (K, C, oh, ow) view of the NHWC result: channels_last memory, what the fused backbones read
    # (a .contiguous() here would cost two copies per crop).
    return out.permute(0, 3, 1, 2)


def roi_align_sampled(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | tuple[int, int],
    aligned: bool = False,
) -> Tensor:
    """:func:`roi_align` (spatial_scale 1, adaptive sampling) through ``F.grid_sample``: equal up to
    float rounding (~1e-5 of the input's range), about 6x faster on CPU.

    When every box is at most as large as the output (one sample per bin, the usual case for the
    hand and face crops), the kernel's bilinear sample is ``grid_sample(align_corners=True,
    padding_mode="border")`` at the bin centres, zeroed outside ``[-1, size]`` as the kernel does.
    Other boxes, and inputs of width or height 1, fall back to :func:`roi_align`. The sample
    positions go through grid_sample's normalised coordinates, so results differ from the kernel
    in the last bits: the fast precision mode uses this, the exact mode uses :func:`roi_align`.
    Output ``(K, C, oh, ow)``, like :func:`roi_align`.
    """
    from torch.nn import functional as F

    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else (int(output_size[0]), int(output_size[1]))
    n, c, h, w = input.shape
    rois = _boxes_to_rois(boxes, input)
    k = rois.shape[0]
    offset = 0.5 if aligned else 0.0
    start_x, start_y = rois[:, 1] - offset, rois[:, 2] - offset
    roi_w, roi_h = rois[:, 3] - offset - start_x, rois[:, 4] - offset - start_y
    if not aligned:
        roi_w, roi_h = roi_w.clamp_min(1.0), roi_h.clamp_min(1.0)
    if k == 0 or h < 2 or w < 2:
        return roi_align(input, rois, (out_h, out_w), aligned=aligned)
    grid_h = torch.ceil(roi_h / out_h)
    grid_w = torch.ceil(roi_w / out_w)
    if not bool(((grid_h == 1) & (grid_w == 1)).all()):
        return roi_align(input, rois, (out_h, out_w), aligned=aligned)
    bin_w, bin_h = roi_w / out_w, roi_h / out_h
    px = torch.arange(out_w, device=input.device, dtype=input.dtype)
    py = torch.arange(out_h, device=input.device, dtype=input.dtype)
    # the kernel's order: start + p * bin + (0 + 0.5) * bin / 1
    xs = start_x[:, None] + px[None, :] * bin_w[:, None] + (0.5 * bin_w)[:, None]  # (K, ow)
    ys = start_y[:, None] + py[None, :] * bin_h[:, None] + (0.5 * bin_h)[:, None]  # (K, oh)
    valid = ((ys >= -1.0) & (ys <= h))[:, :, None] & ((xs >= -1.0) & (xs <= w))[:, None, :]
    gx = (xs / (w - 1) * 2 - 1)[:, None, :].expand(k, out_h, out_w)
    gy = (ys / (h - 1) * 2 - 1)[:, :, None].expand(k, out_h, out_w)
    images = input[rois[:, 0].to(torch.int64)]
    out = F.grid_sample(images, torch.stack((gx, gy), 3), mode="bilinear", padding_mode="border", align_corners=True)
    return out * valid[:, None].to(out.dtype)
