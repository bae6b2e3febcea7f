"""three.js inside the package: which files, from which npm release, and how to update them.

The page imports three.js as ES modules from ``wbcap/view/static/vendor/three/``, a byte-for-byte
copy of these files of the npm package ``three`` at :data:`THREE_VERSION` (MIT licence, its
``LICENSE`` copied beside them). ``build/<file>`` is copied to ``<file>`` and ``examples/jsm/<path>``
to ``addons/<path>`` (:func:`vendored_name`; a folder named ``build`` would be ignored by git), so
the page's import map is the one the three.js documentation uses (``three`` ->
``three.module.js``, ``three/addons/`` -> ``addons/``) and the addons' relative imports resolve.

To update: pin the new version in ``tests/js/package.json``, ``npm ci --prefix tests/js``, then
``python -m wbcap.view.vendor tests/js/node_modules/three`` (copies the files, after checking the
package's version) and set :data:`THREE_VERSION`; ``tests/test_view.py`` checks that the copy
equals the installed npm package.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

__all__ = ["THREE_FILES", "THREE_VERSION", "compare_three", "copy_three", "vendored_name", "vendored_three"]

THREE_VERSION = "0.187.0"

#: The files the page needs, relative to the npm package's folder: the core, and the addons the
#: page imports (GLTFLoader, OrbitControls) with what they import.
THREE_FILES: tuple[str, ...] = (
    "LICENSE",
    "build/three.core.js",
    "build/three.module.js",
    "examples/jsm/controls/OrbitControls.js",
    "examples/jsm/loaders/GLTFLoader.js",
    "examples/jsm/utils/BufferGeometryUtils.js",
    "examples/jsm/utils/SkeletonUtils.js",
)


def vendored_name(rel: str) -> str:
    """Where the npm package's file ``rel`` goes in the copy (``build/x`` -> ``x``, ``examples/jsm/y`` -> ``addons/y``)."""
    if rel.startswith("build/"):
        return rel[len("build/"):]
    if rel.startswith("examples/jsm/"):
        return "addons/" + rel[len("examples/jsm/"):]
    return rel


def vendored_three() -> Path:
    """The package's copy: ``wbcap/view/static/vendor/three``."""
    return Path(__file__).resolve().parent / "static" / "vendor" / "three"


def _package_version(npm_three: Path) -> str:
    return str(json.loads((npm_three / "package.json").read_text(encoding="utf-8"))["version"])


def compare_three(npm_three: Path, vendored: Path | None = None) -> list[str]:
    """Differences between the copy and the npm package folder ``npm_three`` (empty: equal)."""
    vendored = vendored or vendored_three()
    problems = []
    version = _package_version(npm_three)
    if version != THREE_VERSION:
        problems.append(f"{npm_three} is three {version}, the copy is {THREE_VERSION}")
    for rel in THREE_FILES:
        a, b = npm_three / rel, vendored / vendored_name(rel)
        if not b.is_file():
            problems.append(f"{b}: missing")
        elif a.read_bytes() != b.read_bytes():
            problems.append(f"{b}: differs from {a}")
    return problems


def copy_three(npm_three: Path, vendored: Path | None = None) -> list[Path]:
    """Copy :data:`THREE_FILES` from the npm package folder ``npm_three``; returns the files written."""
    vendored = vendored or vendored_three()
    written = []
    for rel in THREE_FILES:
        dst = vendored / vendored_name(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(npm_three / rel, dst)
        written.append(dst)
    return written


def main(argv: list[str]) -> int:
    """``python -m wbcap.view.vendor NODE_MODULES/three``: copy the files (maintainers only)."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m wbcap.view.vendor tests/js/node_modules/three\n")
        return 2
    npm_three = Path(argv[0])
    version = _package_version(npm_three)
    if version != THREE_VERSION:
        sys.stderr.write(f"{npm_three} is three {version}; set THREE_VERSION in {__file__} to it first\n")
        return 2
    for path in copy_three(npm_three):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
