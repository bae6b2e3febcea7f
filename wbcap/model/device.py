"""Device selection and CUDA numerics settings: ``auto | cpu | cuda | cuda:N`` (never a hard-coded ``.cuda()``)."""

from __future__ import annotations

import contextlib
import logging
import re

import torch

from wbcap.errors import InputError, setting
from wbcap.limits import available_cpus  # noqa: F401  (here for its callers: defined without torch)

log = logging.getLogger(__name__)

_CUDA_SPEC = re.compile(r"cuda(?::(\d+))?")


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a user's device string into a torch.device, checking that it exists.

    ``auto``: the current CUDA device when CUDA is available, else the CPU. ``cuda:N`` also makes
    GPU N the current CUDA device (``torch.cuda.set_device``), so that work that follows the
    current device (pinned host memory, CUDA RNG state, cuDNN handles, the CUDA context itself)
    lands on GPU N instead of creating a context on GPU 0.

    Raises InputError (one line naming the input and the fix) for names other than auto, cpu,
    cuda and cuda:N, for CUDA on a machine without it, and for indices beyond the visible GPUs.
    """
    raw = "auto" if spec is None else str(spec)
    name = raw.strip().lower() or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    m = _CUDA_SPEC.fullmatch(name)
    if m is None:
        raise InputError(f"{setting('device')} {raw!r} is not understood; use auto, cpu, cuda or cuda:N (N = 0, 1, ...)")
    if not torch.cuda.is_available():
        raise InputError(f"{setting('device')} {raw}: CUDA is not available on this machine; "
                         f"use {setting('device')} cpu (or auto)")
    if m.group(1) is None:
        return torch.device("cuda")
    index, count = int(m.group(1)), torch.cuda.device_count()
    if index >= count:
        raise InputError(f"{setting('device')} {raw}: only {count} CUDA device(s) visible; use cuda:0..cuda:{count - 1}")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def cuda_bf16_is_fast(device: torch.device) -> bool:
    """True when ``device`` (CUDA) has bfloat16 tensor cores: compute capability 8.0 (Ampere) or
    newer. Older GPUs run bfloat16 through slow emulated kernels."""
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def _new_tf32_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision")


def get_tf32() -> tuple[str | bool, str | bool]:
    """The current (matmul, convolution) TF32 settings, to give back to :func:`set_tf32`:
    torch >= 2.9's ``fp32_precision`` strings (``"ieee"``, ``"tf32"``, ``"none"`` = inherit), or
    the legacy ``allow_tf32`` booleans on older torch. torch refuses to mix the two APIs, so
    wbcap uses only the new one where it exists."""
    b = torch.backends
    if _new_tf32_api():
        return b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision
    return b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32  # pragma: no cover - torch < 2.9


def set_tf32(matmul: str | bool | None = None, conv: str | bool | None = None) -> None:
    """Set TF32 use of float32 CUDA matmuls (cuBLAS) and convolutions (cuDNN); None leaves one as
    it is. Booleans mean ``"tf32"`` / ``"ieee"``; strings are passed on (see :func:`get_tf32`)."""
    b = torch.backends
    new = _new_tf32_api()

    def value(v: str | bool) -> str | bool:
        if new and isinstance(v, bool):
            return "tf32" if v else "ieee"
        if not new and isinstance(v, str):  # pragma: no cover - torch < 2.9
            return v == "tf32"
        return v

    if matmul is not None:
        if new:
            b.cuda.matmul.fp32_precision = value(matmul)
        else:  # pragma: no cover - torch < 2.9
            b.cuda.matmul.allow_tf32 = value(matmul)
    if conv is not None:
        if new:
            b.cudnn.conv.fp32_precision = value(conv)
        else:  # pragma: no cover - torch < 2.9
            b.cudnn.allow_tf32 = value(conv)


def tf32_allowed() -> tuple[bool, bool]:
    """(matmul, convolution): whether float32 CUDA matmuls / cuDNN convolutions may use TF32 now."""
    matmul, conv = get_tf32()
    if isinstance(matmul, bool):  # pragma: no cover - torch < 2.9
        return matmul, bool(conv)
    generic = torch.backends.fp32_precision  # what "none" inherits
    return (generic if matmul == "none" else matmul) == "tf32", (generic if conv == "none" else conv) == "tf32"


@contextlib.contextmanager
def no_tf32():
    """Float32 CUDA matmuls and cuDNN convolutions in full IEEE float32 (no TF32) inside the
    block; the previous settings are restored on exit. cuDNN runs float32 convolutions in TF32
    by default on Ampere and newer GPUs (about 1e-3 relative error). Process-wide settings: not
    for concurrent use from several threads; code inside must not read the legacy
    ``torch.backends.*.allow_tf32`` flags (torch raises when the two APIs are mixed)."""
    saved = get_tf32()
    set_tf32(False, False)
    try:
        yield
    finally:
        set_tf32(*saved)
