"""The README's and docs/'s links to files and sections of the repository lead somewhere.

A section anchor is GitHub's: the heading in lower case, without punctuation but ``-`` and
``_``, spaces as ``-`` (``### World-grounded motion (`--world`)`` -> ``world-grounded-motion---world``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: ``[text](target)`` outside code spans; web addresses are not checked (no network in tests).
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading's text."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The section anchors of a Markdown file (headings outside fenced code)."""
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(anchor(m.group(1)))
    return found


def test_anchor_follows_githubs_rule():
    assert anchor("World-grounded motion (`--world`)") == "world-grounded-motion---world"
    assert anchor("CPU inference form, chosen per machine") == "cpu-inference-form-chosen-per-machine"
    assert anchor("Animation files: GLB, BVH, FBX") == "animation-files-glb-bvh-fbx"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_to_a_file_and_section(doc: Path):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, section = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.is_file():
            broken.append(f"{target}: no file {linked}")
        elif section and linked.suffix == ".md" and section not in anchors(linked):
            broken.append(f"{target}: no section '{section}' in {linked.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_the_game_engine_table_names_every_joint_of_the_files_once():
    """docs/game_engines.md's table (SMPL-X -> Unity Humanoid, Unreal): its first column, with
    ``left_thumb1``, ``2``, ``3`` read as three joints and ``right_…`` as every left one mirrored,
    is the files' 55 joints and the root bone, each once."""
    import re

    from wbcap.export.gltf import ROOT_BONE
    from wbcap.export.rig import JOINT_NAMES_55

    rows = [line.split("|")[1] for line in (ROOT / "docs" / "game_engines.md").read_text().splitlines()
            if line.startswith("| `")]
    names: list[str] = []
    for cell in rows:
        for token in re.findall(r"`([^`-][^`]*)`", cell):  # (not `--root-bone`)
            if token.isdigit():
                names.append(re.sub(r"\d$", token, names[-1]))
            elif token == "right_…":
                names += [n.replace("left_", "right_", 1) for n in names if n.startswith("left_") and "eye" not in n]
            else:
                names.append(token)
    assert sorted(names) == sorted([ROOT_BONE, *JOINT_NAMES_55])
