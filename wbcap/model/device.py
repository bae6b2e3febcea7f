"""Device selection: ``auto | cpu | cuda | cuda:N`` (never a hard-coded ``.cuda()``)."""

from __future__ import annotations

import torch

from wbcap.errors import InputError


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a user's device string into a torch.device, checking that it exists."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {spec}: CUDA is not available on this machine; use --device cpu (or auto)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible; use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
        return dev
    raise InputError(f"--device {spec!r} is not understood; use auto, cpu, cuda or cuda:N")
