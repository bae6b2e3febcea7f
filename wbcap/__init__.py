"""wbcap: whole-body motion capture (SMPL-X body, hands and face) from images.

Importing ``wbcap`` is cheap; :class:`Pipeline` (which needs torch) loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # (one place for the version: pyproject.toml, through the package metadata)
        from wbcap.versions import wbcap_version

        return wbcap_version()
    if name == "Pipeline":
        from wbcap.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'wbcap' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the lazy ones (:data:`__all__`), for ``dir()`` and tab completion
    (a user trial: ``Pipeline`` was missing from them)."""
    return sorted(set(globals()) | set(__all__))
