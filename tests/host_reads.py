"""Counting host reads of tensors in tests: what would synchronise a GPU, checked on the CPU."""

from __future__ import annotations

import collections
import contextlib

import torch

SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__index__", "__int__", "__float__")


@contextlib.contextmanager
def count_host_reads():
    """Count the Tensor calls that read device data on the host (a synchronisation on a GPU),
    and host-made tensors sent to the device (``new_tensor``, Python-list indices)."""
    counts: collections.Counter = collections.Counter()
    saved = {name: getattr(torch.Tensor, name) for name in (*SYNCS, "new_tensor", "__getitem__")}

    def counting(name, method):
        def wrapper(self, *args, **kwargs):
            if name != "__getitem__":
                counts[name] += 1
            elif any(isinstance(a, list) for a in (args[0] if isinstance(args[0], tuple) else (args[0],))):
                counts["list index"] += 1
            return method(self, *args, **kwargs)

        return wrapper

    for name, method in saved.items():
        setattr(torch.Tensor, name, counting(name, method))
    try:
        yield counts
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def gpu_like_roi_align(monkeypatch) -> None:
    """RoIAlign takes its GPU path (whole-image products, no host read) on the CPU too, for tests
    that check on the CPU what would synchronise a GPU: its CPU default reads the boxes' extents
    back (:func:`wbcap.crop.roi_align.roi_align`'s ``box_extent``), which costs nothing there."""
    import wbcap.crop.roi_align as roi

    monkeypatch.setattr(roi, "_in_extent_by_default", lambda input, grad: False)
