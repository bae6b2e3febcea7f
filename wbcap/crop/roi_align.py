"""RoIAlign in plain torch, bit-for-bit in semantics with torchvision's C++/CUDA kernel.

Hand4Whole crops the hand and face patches out of the 512x384 body crop with
``torchvision.ops.roi_align(img, rois, out_size, aligned=False)`` (spatial_scale 1, adaptive
sampling). We write it here instead of calling torchvision because torchvision cannot be imported
in our supported environment: for the pinned ``torch==2.13.0`` CPU build the only torchvision
wheel is a CUDA build, and a dependency on it would drag gigabytes of CUDA libraries into every
install. Note that torchvision's *pure-python* fallback (``torchvision.ops._roi_align``) clamps
sample points at the image border instead of zeroing them, so it differs from the compiled kernel
(which the released checkpoint was trained and evaluated with) for boxes that cross the border;
this module follows the compiled kernel. On CUDA, :func:`roi_align` calls the compiled kernel
itself (``torchvision.ops.roi_align``) when torchvision imports there.

wbcap's own implementation writes the kernel's sampling as two interpolation matrices per box
(one per axis, see :func:`_axis_weights`) and computes ``A_y @ image @ A_x^T``. On a GPU it does
so over the whole image for every box: a fixed amount of work per box whatever its size, and no
loops or host reads that depend on the boxes (so no device synchronisation). On the CPU, by
default, each box's products cover only the pixels its samples read (``box_extent``): a
Hand4Whole hand box is ~80 x 80 of the 512 x 384 crop, and 16 hand crops (256 x 256) took 8
instead of 43 ms in float32, 7 instead of 12 with bfloat16 products (2-core Xeon,
``benchmarks/roi_align.py``); the weights themselves are still built for the whole image. Either way it is 30x faster than sampling bin by bin for
boxes several times larger than the image.

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

import contextlib
import functools
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["roi_align", "roi_input"]


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


def _axis_weights(
    start: Tensor, bin_size: Tensor, grid: Tensor, n_out: int, size: int, sampling_ratio: int, extent: bool = False
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """The kernel's sampling along one axis as a ``(K, n_out, size)`` interpolation matrix.

    ``A[k, p, i]`` is the sum, over the samples of output bin ``p`` of box ``k``, of the kernel's
    bilinear weight on pixel ``i`` (samples outside ``[-1, size]`` weigh 0). Since the kernel's
    bilinear sample is separable and zeroes a sample when *either* coordinate is outside its
    window, the RoIAlign sum over a bin's ``gh x gw`` samples is ``A_y @ image @ A_x^T``.

    Sample ``j`` of a box (``p = j // grid``, ``i = j % grid``) lies at
    ``start + p * bin + ((i + 0.5) * bin) / grid`` (the kernel's operation order). Only samples in
    ``[-1, size]`` matter, and consecutive samples are ``bin / grid`` apart: with adaptive sampling
    that step is ``bin`` (< 1, one sample per bin: at most ``n_out`` samples) or above 0.5 (at most
    ``2 * size + 3`` samples in the window). So a fixed number of sample slots per box, starting at
    the first sample at or after -1, covers every sample that contributes, for any box: no
    data-dependent loop and no host read of box sizes.

    Args:
        start: ``(K,)`` roi start (scaled, offset), compute dtype.
        bin_size: ``(K,)`` bin size, compute dtype.
        grid: ``(K,)`` int64 samples per bin along this axis (0 for empty boxes).
        n_out: output bins along this axis; size: input extent (H or W).
        sampling_ratio: the caller's fixed grid (``> 0``) or ``<= 0`` for adaptive.

    Returns:
        ``(K, n_out, size)`` weights in ``start``'s dtype; with ``extent`` also the ``(K,)`` int64
        first and end (one past the last) pixel any sample of each box weighs (end <= first:
        none), the columns outside which its weights are 0.
    """
    k, dtype, device = start.shape[0], start.dtype, start.device
    grid_c = grid.clamp_min(1)
    total = n_out * grid  # samples per box
    if sampling_ratio > 0:
        slots = n_out * sampling_ratio
        first = torch.zeros(k, dtype=torch.int64, device=device)
    else:
        slots = max(n_out, 2 * size + 3) + 4  # + margin for the rounding of ``first``
        step = bin_size / grid_c.to(dtype)
        guess = torch.nan_to_num(torch.ceil((-1.0 - start) / step - 0.5), nan=0.0) - 2.0
        # in [0, total] before the int conversion (boxes far outside give huge guesses)
        first = torch.minimum(guess.clamp_min(0.0), total.to(dtype)).to(torch.int64)
    j = first[:, None] + torch.arange(slots, device=device)[None, :]  # (K, S) sample index
    in_box = j < total[:, None]
    g = grid_c[:, None]
    p = torch.div(j, g, rounding_mode="floor").clamp_max(n_out - 1)
    i = j - p * g
    pos = start[:, None] + p.to(dtype) * bin_size[:, None] + ((i.to(dtype) + 0.5) * bin_size[:, None]) / g.to(dtype)
    valid = in_box & (pos >= -1.0) & (pos <= size)
    # Clamp to [0, size] (the upper clamp and nan_to_num only guard the int conversion of
    # masked-out samples).
    pos = torch.nan_to_num(pos, nan=0.0).clamp(0.0, float(size))
    low = pos.to(torch.int64)  # truncation == floor for pos >= 0
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    pos = torch.where(at_end, low.to(dtype), pos)
    w_high = pos - low.to(dtype)
    w_low = 1.0 - w_high
    zero = torch.zeros((), dtype=dtype, device=device)
    w_low = torch.where(valid, w_low, zero)
    w_high = torch.where(valid, w_high, zero)
    row = (torch.arange(k, device=device)[:, None] * n_out + p) * size  # (K, S)
    weights = torch.zeros(k * n_out * size, dtype=dtype, device=device)
    weights.scatter_add_(0, (row + low).reshape(-1), w_low.reshape(-1))
    weights.scatter_add_(0, (row + high).reshape(-1), w_high.reshape(-1))
    weights = weights.view(k, n_out, size)
    if not extent:
        return weights
    return weights, torch.where(valid, low, size).amin(1), torch.where(valid, high, -1).amax(1) + 1


@functools.lru_cache(maxsize=1)
def _torchvision_roi_align():
    """``torchvision.ops.roi_align`` when torchvision imports, else None (tried once)."""
    try:
        from torchvision.ops import roi_align as tv_roi_align
    except Exception:
        return None
    return tv_roi_align


# Boxes per matrix-product chunk: bounds the gathered images and intermediates (~80 MB for
# 512x384 RGB crops and 256x256 outputs per 16 boxes).
_CHUNK = 16


def roi_align(
    input: Tensor,
    boxes: Tensor | Sequence[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    use_torchvision: bool | None = None,
    compute_dtype: torch.dtype | None = None,
    mirror: Tensor | None = None,
    image_blocks: int | None = None,
    box_extent: bool | None = None,
) -> Tensor:
    """RoIAlign with torchvision's compiled-kernel semantics (see module docstring).

    On CUDA, ``torchvision.ops.roi_align`` (the kernel itself) is used when torchvision imports
    (``use_torchvision=None``, the default; ``False`` forces wbcap's own, ``True`` requires
    torchvision). wbcap's own computes each box as ``A_y @ image @ A_x^T`` with per-axis
    interpolation matrices (:func:`_axis_weights`): off the CPU vectorised over boxes, without
    data-dependent control flow or host reads (no device synchronisation), for any box size; on
    the CPU box by box on the pixels each reads (``box_extent``); equal to the kernel up to the
    float rounding of the summation order (~1e-7 relative in float32). It computes in
    ``input``'s dtype (or ``compute_dtype`` for the two matrix products, e.g. bfloat16 when the
    crops feed a bfloat16 network, faster on CPU) with
    autocast disabled, and is differentiable w.r.t. ``input`` (not the boxes, as in
    torchvision). Non-finite pixels are not supported (0 * inf in the products).

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
        use_torchvision: see above.
        compute_dtype: dtype of the matrix products of wbcap's own (default: ``input``'s).
        mirror: ``(K,)`` bool, the boxes whose crops come back mirrored left-right (columns
            reversed: ``torch.flip(crop, [2])``, bit for bit). wbcap's own reverses the rows of
            those boxes' column-interpolation matrices, so mirroring costs nothing (Hand4Whole's
            left hands, :class:`wbcap.model.hand4whole.HandRoI`).
        image_blocks: the caller's promise that the boxes come as this many runs over the images
            in order (box ``b * N + i`` crops image ``i``; Hand4Whole's hands: 2, its faces: 1).
            wbcap's own then reads each run's images as a view of the input instead of gathering
            a copy per box (bit for bit the same crops). The boxes' batch indices are not read
            to check it (that would synchronise a GPU). Ignored when ``K != image_blocks * N`` and
            for ``boxes`` given as per-image lists.
        box_extent: wbcap's own computes each box's products on the pixels its samples read only
            (its extent: a hand box's ~80 x 80 of a 512 x 384 crop, instead of the whole image),
            which reads every box's extent and image index back to the host once. None (the
            default): on the CPU (where that costs nothing) unless a gradient w.r.t. ``input`` is
            needed; never on other devices (it would synchronise them). False: the whole-image
            products, vectorised over the boxes, no host read. True: always. The same crops up to
            the float rounding of the summation order (~1e-7 relative in float32, tested).

    Returns:
        ``(K, C, oh, ow)`` tensor, same dtype and device as ``input``.
    """
    if input.dim() != 4:
        raise ValueError(f"input must be (N, C, H, W), got {tuple(input.shape)}")
    if isinstance(output_size, int):
        out_h, out_w = output_size, output_size
    else:
        out_h, out_w = int(output_size[0]), int(output_size[1])
    rois = _boxes_to_rois(boxes, input)
    if use_torchvision or (use_torchvision is None and input.is_cuda):
        tv = _torchvision_roi_align()
        if tv is not None:
            out = tv(input, rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned)
            return out if mirror is None else torch.where(mirror[:, None, None, None], out.flip(3), out)
        if use_torchvision:
            raise RuntimeError("use_torchvision=True but torchvision.ops does not import")
    n, c, h, w = input.shape
    k = rois.shape[0]
    dtype = input.dtype
    if k == 0 or n == 0:
        return input.new_zeros((k, c, out_h, out_w))

    with torch.autocast(input.device.type, enabled=False) if torch.amp.is_autocast_available(
        input.device.type
    ) else contextlib.nullcontext():
        offset = 0.5 if aligned else 0.0
        batch_idx = rois[:, 0].to(torch.int64).clamp(0, n - 1)
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
            grid_w = grid_h
        else:
            # in [0, 2**31) before the int conversion (a huge or NaN box must not wrap around)
            grid_h = torch.nan_to_num(torch.ceil(roi_h / out_h), nan=0.0).clamp(0, 2**31 - 1).to(torch.int64)
            grid_w = torch.nan_to_num(torch.ceil(roi_w / out_w), nan=0.0).clamp(0, 2**31 - 1).to(torch.int64)
        count = (grid_h * grid_w).clamp_min(1).to(dtype)
        grad = torch.is_grad_enabled() and input.requires_grad
        in_extent = box_extent if box_extent is not None else _in_extent_by_default(input, grad)
        a_y = _axis_weights(start_y, bin_h, grid_h, out_h, h, sampling_ratio, extent=in_extent)  # (K, oh, H)
        a_x = _axis_weights(start_x, bin_w, grid_w, out_w, w, sampling_ratio, extent=in_extent)  # (K, ow, W)
        mm_dtype = dtype if compute_dtype is None else compute_dtype
        if in_extent:
            (a_y, y0, y1), (a_x, x0, x1) = a_y, a_x
            out = _products_in_extents(input, batch_idx, a_y, a_x, (y0, y1, x0, x1), mirror, mm_dtype, grad).to(dtype)
            if grad:
                return out / count[:, None, None, None]
            # (no pass over the crops where every box has one sample per bin: hands and faces
            # smaller than their crops)
            return out if bool((count == 1).all()) else out.div_(count[:, None, None, None])
        if mirror is not None:  # output column j of a mirrored crop is column ow - 1 - j
            a_x = torch.where(mirror.to(a_x.device)[:, None, None], a_x.flip(1), a_x)
        src = input.contiguous().to(mm_dtype)  # NCHW: each (H, W) plane is one matrix
        a_y, a_x = a_y.to(mm_dtype), a_x.to(mm_dtype)
        chunks = range(0, k, _CHUNK)
        if torch.is_grad_enabled() and src.requires_grad:  # training: out= has no gradient
            parts = [torch.matmul(torch.matmul(a_y[s : s + _CHUNK, None], src[batch_idx[s : s + _CHUNK]]),
                                  a_x[s : s + _CHUNK, None].transpose(2, 3)) for s in chunks]
            out = parts[0] if len(parts) == 1 else torch.cat(parts)
            return out.to(dtype) / count[:, None, None, None]
        # Inference: each chunk's products written into one output, divided in place. The crops
        # are the largest tensors here (32 hand crops: 25 MB in float32); concatenating the
        # chunks and dividing into a new tensor were two more passes over them.
        out = torch.empty((k, c, out_h, out_w), dtype=mm_dtype, device=input.device)
        # (boxes given as per-image lists come image by image, not in blocks over the images)
        blocks = image_blocks if isinstance(boxes, Tensor) else None
        for s, e, first in _box_groups(k, n, _CHUNK, blocks):
            # (k', C, H, W): a view when the boxes crop consecutive images, else gathered (5x
            # faster than index_select on CPU)
            images = src[first : first + e - s] if first is not None else src[batch_idx[s:e]]
            rows = torch.matmul(a_y[s:e, None], images)  # (k', C, oh, W)
            # (k', C*oh, W) @ (k', W, ow): one product per box over all its channels (broadcasting
            # a_x over the channels made matmul copy it C times: 2.8 of a 16-box call's ms)
            torch.bmm(rows.view(e - s, c * out_h, w), a_x[s:e].transpose(1, 2), out=out[s:e].view(e - s, c * out_h, out_w))
        return out.to(dtype).div_(count[:, None, None, None])


def _in_extent_by_default(input: Tensor, grad: bool) -> bool:
    """``box_extent=None``'s choice (see :func:`roi_align`): on the CPU without a gradient
    w.r.t. ``input``."""
    return input.device.type == "cpu" and not grad


def _products_in_extents(input: Tensor, batch_idx: Tensor, a_y: Tensor, a_x: Tensor,
                         extents: tuple[Tensor, Tensor, Tensor, Tensor], mirror: Tensor | None,
                         mm_dtype: torch.dtype, grad: bool) -> Tensor:
    """``A_y @ image @ A_x^T`` of each box on the pixels its samples read: ``(K, C, oh, ow)`` in
    ``mm_dtype``. ``extents``: ``(K,)`` first and end row, first and end column of each box
    (:func:`_axis_weights`; its weights are 0 outside them), read to the host here with the
    boxes' image indices and ``mirror`` flags (see :func:`roi_align`); only those slices of the
    weights are converted to ``mm_dtype`` and (mirrored boxes) reversed. A box reading no pixel
    gives zeros. ``grad``: build the result from differentiable operations (else written in
    place)."""
    k, out_h, _ = a_y.shape
    out_w, c = a_x.shape[1], input.shape[1]
    flip = torch.zeros_like(batch_idx) if mirror is None else mirror.to(batch_idx.device, torch.int64)
    rows_of = torch.stack((*extents, batch_idx, flip), 1).tolist()
    out = None if grad else torch.empty((k, c, out_h, out_w), dtype=mm_dtype, device=input.device)
    crops = []
    for i, (y0, y1, x0, x1, b, mirrored) in enumerate(rows_of):
        if y1 <= y0 or x1 <= x0:
            if grad:
                crops.append(input.new_zeros((c, out_h, out_w), dtype=mm_dtype))
            else:
                out[i].zero_()
            continue
        # (C, y1 - y0, x1 - x0): the box's pixels in the compute dtype, a converted NCHW copy (a
        # view of the image where it already has that dtype: matmul reads the strides)
        patch = input[b, :, y0:y1, x0:x1].to(mm_dtype, memory_format=torch.contiguous_format)
        cols = a_x[i, :, x0:x1]
        cols = (cols.flip(0) if mirrored else cols).to(mm_dtype)  # (output column j: row ow - 1 - j)
        rows = torch.matmul(a_y[i, :, y0:y1].to(mm_dtype), patch)  # (C, oh, x1 - x0)
        if grad:
            crops.append(torch.matmul(rows, cols.t()))
        else:  # (C * oh, x1 - x0) @ (x1 - x0, ow) straight into the output
            torch.mm(rows.view(c * out_h, x1 - x0), cols.t(), out=out[i].view(c * out_h, out_w))
    return torch.stack(crops) if grad else out


def roi_input(img: Tensor) -> Tensor:
    """``img`` ``(N, C, H, W)`` laid out as :func:`roi_align`'s default path reads it best, for
    a caller cropping it more than once (Hand4Whole's hands and face): NCHW for the whole-image
    products (GPUs; a copy of a channels_last image), as it is on the CPU (each box's pixels are
    copied out on their own there)."""
    return img if img.device.type == "cpu" else img.contiguous()


def _box_groups(k: int, n: int, limit: int, blocks: int | None) -> list[tuple[int, int, int | None]]:
    """``k`` boxes over ``n`` images in groups of at most ``limit``, as ``(start, stop, first)``:
    with ``first`` an image index, boxes ``start..stop`` crop images ``first, first + 1, ...``, whose
    pixels are then a view of the input rather than a gathered copy; ``first`` is None for a
    group to gather by the boxes' own indices. ``blocks`` (see :func:`roi_align`): the boxes are
    that many runs over images ``0..n-1``; None: nothing is known (gathered). Nothing is read
    from the boxes (no host read, no GPU synchronisation)."""
    if blocks is None or blocks * n != k:
        return [(s, min(s + limit, k), None) for s in range(0, k, limit)]
    return [(b * n + s, b * n + min(s + limit, n), s) for b in range(blocks) for s in range(0, n, limit)]
