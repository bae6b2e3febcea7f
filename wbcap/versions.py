"""Installed package versions, read from the package metadata (nothing is imported).

wbcap's own version lives in one place, ``pyproject.toml``; :func:`wbcap_version` reads it from
the installed distribution's metadata, so that the caches keyed by it (the CPU strategy, the int8
calibration ranges), the crash log, ``wbcap --version`` and the files' ``generator`` fields all
change together when it is bumped.
"""

from __future__ import annotations

import contextlib
import platform
from importlib import metadata

__all__ = ["installed_version", "library_versions", "wbcap_version"]

#: What :func:`wbcap_version` says when wbcap runs from a source tree that was never installed
#: (no package metadata): a PEP 440 local version, so that it never equals a release's.
UNINSTALLED = "0+unknown"


def installed_version(dist: str) -> str | None:
    """The version of the installed distribution ``dist`` (e.g. ``"onnxruntime"``), or None when it
    is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def wbcap_version() -> str:
    """wbcap's version (``pyproject.toml``'s, through the installed metadata), or
    :data:`UNINSTALLED`."""
    return installed_version("wbcap") or UNINSTALLED


def library_versions() -> dict[str, str | None]:
    """Versions of Python, wbcap and the libraries its results and speed depend on (torch,
    numpy, PyAV and its FFmpeg, OpenCV, onnxruntime, CUDA and cuDNN where present; None for one
    that is absent): ``wbcap bench``'s report and a run's ``meta.json`` (what a paper's methods
    section reports). Imports torch, numpy and OpenCV (already loaded where it is called)."""
    import cv2
    import numpy
    import torch

    av_version = ffmpeg = None
    with contextlib.suppress(Exception):
        import av

        av_version = str(av.__version__)
        info = getattr(av, "ffmpeg_version_info", None)
        ffmpeg = str(info) if info else "libavcodec " + ".".join(str(v) for v in av.library_versions["libavcodec"])
    return {
        "python": platform.python_version(),
        "wbcap": wbcap_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "av": av_version,
        "ffmpeg": ffmpeg,
        "opencv": cv2.__version__,
        "onnxruntime": installed_version("onnxruntime"),
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }
