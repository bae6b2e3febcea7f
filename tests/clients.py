"""The real clients some tests read wbcap's files with (node + the npm packages pinned in tests/js,
Debian Chromium, Blender as a Python module, OpenSim in its own Python), and one rule for when one is missing: the test
skips and says how to install it, except where ``WBCAP_REQUIRE_CLIENTS=1`` (set by ``.ci/run``,
which installs them all): there a missing client fails the test, since a skip proves nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent / "js"
NODE_MODULES = JS / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")
#: OpenSim's Python (``pip install opensim==4.6`` in its own venv: it needs numpy 2, Blender 5.0.1
#: numpy 1), made by ``.ci/run``.
OPENSIM_PYTHON = Path(__file__).resolve().parent / "opensim" / ".venv" / "bin" / "python"
REQUIRE_ENV = "WBCAP_REQUIRE_CLIENTS"


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; fail instead when the environment requires every client."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: this run must have every client)")
    pytest.skip(reason)


def node_packages_missing(*packages: str) -> str | None:
    """Why node or one of the npm ``packages`` of tests/js cannot be used, or None."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs)"
    for name in packages:
        if not (NODE_MODULES / name / "package.json").is_file():
            return f"{NODE_MODULES / name} is missing (run: npm ci --prefix tests/js)"
    return None


def browser_missing() -> str | None:
    """Why three.js in headless Chromium through playwright-core cannot run, or None."""
    return node_packages_missing("three", "playwright-core") or (
        None if CHROMIUM.is_file() else f"{CHROMIUM} is missing (apt-get install chromium)")


def blender_missing() -> str | None:
    """Why Blender as a Python module cannot run in a subprocess, or None (wbcap's own check,
    :func:`wbcap.export.fbx.bpy_import_error`)."""
    from wbcap.export.fbx import blender_available, bpy_import_error

    if not blender_available():
        return 'Blender as a Python module (bpy) is not installed: pip install "wbcap[blender]"'
    why = bpy_import_error()
    return None if why is None else f"bpy does not import in a subprocess: {why}"


def opensim_missing() -> str | None:
    """Why OpenSim's Python (:data:`OPENSIM_PYTHON`) cannot read files, or None."""
    import subprocess

    fix = "python3 -m venv tests/opensim/.venv && tests/opensim/.venv/bin/python -m pip install opensim==4.6"
    if not OPENSIM_PYTHON.is_file():
        return f"{OPENSIM_PYTHON} is missing (run: {fix})"
    r = subprocess.run([str(OPENSIM_PYTHON), "-c", "import opensim"], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return f"opensim does not import in {OPENSIM_PYTHON}: {r.stderr.strip()[-300:]} (run: {fix})"
    return None
