"""Installed package versions, read from the package metadata (nothing is imported).

wbcap's own version lives in one place, ``pyproject.toml``; :func:`wbcap_version` reads it from
the installed distribution's metadata, so that the caches keyed by it (the CPU strategy, the int8
calibration ranges), the crash log, ``wbcap --version`` and the files' ``generator`` fields all
change together when it is bumped.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["installed_version", "wbcap_version"]

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
