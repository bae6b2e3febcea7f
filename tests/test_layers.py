"""The package's layering along a frame's path (io -> detect/track -> crop -> model -> body ->
smooth -> export): a stage imports nothing from one after it."""

from __future__ import annotations

import ast
from pathlib import Path

import wbcap

PACKAGE = Path(wbcap.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside a function (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def test_io_imports_nothing_from_export():
    """(wbcap.io.run_folder read meta.json's camera with wbcap.export.params_jsonl's reader.)"""
    offending = {f"{path.relative_to(PACKAGE)}: {name}" for path in sorted((PACKAGE / "io").rglob("*.py"))
                 for name in imported_modules(path) if name == "wbcap.export" or name.startswith("wbcap.export.")}
    assert not offending, sorted(offending)
