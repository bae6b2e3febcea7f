"""``tomllib`` (Python 3.11+) or, on Python 3.10, ``tomli``, its source (the same API:
``loads``, ``load``, ``TOMLDecodeError``): the weights manifest and training recipes are TOML, and
``requires-python`` is 3.10 (a packager's trial: every command that touched weights failed there
with ``No module named 'tomllib'``)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pyproject.toml installs tomli there)
    import tomli as tomllib

__all__ = ["tomllib"]
