"""Timed calls and what they ran on: :class:`Timing`, :func:`time_call`, peak memory, the
device and the package versions."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Timing:
    """``runs_s``: seconds of each timed call; ``items``: frames or crops per call."""

    runs_s: list[float]
    items: int
    unit: str  # "frame" | "crop"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.runs_s))

    def to_dict(self) -> dict[str, Any]:
        med = self.median_s
        return {
            "median_s": med,
            "min_s": float(min(self.runs_s)),
            "runs_s": [float(r) for r in self.runs_s],
            "items": int(self.items),
            "unit": self.unit,
            "per_item_s": med / self.items,
            "throughput": self.items / med if med > 0 else math.inf,
            "throughput_unit": f"{self.unit}s/s",
            **self.extra,
        }


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (``getrusage``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def sync_fn(device) -> Callable[[], None]:
    """A function that waits for ``device`` (CUDA: ``torch.cuda.synchronize``; otherwise nothing)."""
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_call(fn: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (``sync`` around each)."""
    for _ in range(max(0, warmup)):
        fn()
    sync()
    runs = []
    for _ in range(max(1, repeats)):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - t0)
    return runs


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_info(device) -> dict[str, Any]:
    """Name and properties of ``device`` (a torch.device)."""
    import torch

    info: dict[str, Any] = {
        "type": device.type,
        "spec": str(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    from wbcap.huge_pages import huge_pages_state

    info["huge_pages"] = huge_pages_state()[0]  # (torch's CPU tensors: ~10 % of exact's crops/s on a Xeon)
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(
            name=props.name,
            index=idx,
            total_memory_bytes=int(props.total_memory),
            capability=f"{props.major}.{props.minor}",
            multiprocessors=int(props.multi_processor_count),
        )
    else:
        info["name"] = info["cpu"]
    return info
