"""The checkpoint manifest and the user's weights folder.

``manifest.toml`` (package data) lists every checkpoint wbcap knows: file name, sha256 where
known, source, licence and architecture. Checkpoints are found by: explicit path -> the
``WBCAP_WEIGHTS`` environment variable (a file, or a folder holding the manifest's file names) ->
``<user data>/weights``.
"""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from wbcap.errors import CheckpointError, InputError
from wbcap.paths import ENV_WEIGHTS, env_path, weights_dir


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    file: str
    sha256: str
    source: str
    licence: str
    architecture: str
    description: str
    default: bool


def manifest() -> dict[str, WeightsEntry]:
    """The entries of ``manifest.toml`` by name."""
    text = resources.files("wbcap.weights").joinpath("manifest.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return {name: WeightsEntry(name=name, **fields) for name, fields in data.items()}


def default_entry() -> WeightsEntry:
    return next(e for e in manifest().values() if e.default)


def search_dirs() -> list[Path]:
    """Folders searched for checkpoints, in order."""
    dirs = []
    env = env_path(ENV_WEIGHTS)
    if env is not None and not env.is_file():
        dirs.append(env)
    dirs.append(weights_dir())
    return dirs


def find_checkpoint(path: str | Path | None = None, name: str | None = None) -> Path:
    """Resolve the checkpoint to use; raise CheckpointError listing every place looked."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        raise CheckpointError(f"checkpoint not found: {p}")
    entry = manifest()[name] if name else default_entry()
    env = env_path(ENV_WEIGHTS)
    if env is not None and env.is_file():
        return env
    looked = []
    for d in search_dirs():
        candidate = d / entry.file
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    raise CheckpointError(
        f"no {entry.name} checkpoint (looked in {', '.join(looked)}); download {entry.file} from {entry.source} "
        f"and run `wbcap weights import {entry.name} /path/to/{entry.file}` (or pass --checkpoint FILE)"
    )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def validate_checkpoint_file(name: str, path: Path) -> str:
    """Check that ``path`` holds the tensors the named architecture needs; return a summary."""
    entry = manifest().get(name)
    if entry is None:
        raise InputError(f"unknown checkpoint name {name!r}; known: {', '.join(manifest())}")
    if entry.architecture == "hand4whole":
        import torch

        from wbcap.model.checkpoint import check_state_dict, read_checkpoint
        from wbcap.model.hand4whole import Hand4Whole

        ckpt = read_checkpoint(path)
        with torch.device("meta"):
            net = Hand4Whole(ckpt.config)
        check_state_dict(net, ckpt.state_dict, path)
        n = sum(v.numel() for v in ckpt.state_dict.values())
        return f"{len(ckpt.state_dict)} tensors, {n / 1e6:.1f} M values, {ckpt.kind} format"
    if entry.architecture == "hand4whole-hand":
        from wbcap.model.checkpoint import read_checkpoint_raw_keys

        keys = read_checkpoint_raw_keys(path)
        backbone = [k for k in keys if k.startswith(("backbone.", "hand_backbone."))]
        if not backbone:
            raise CheckpointError(f"{path}: no hand backbone tensors ('module.backbone.*' or 'module.hand_backbone.*')")
        return f"{len(keys)} tensors ({len(backbone)} hand-backbone)"
    raise InputError(f"{name}: unsupported architecture {entry.architecture!r}")


def import_checkpoint(name: str, source: Path) -> Path:
    """Validate ``source`` as checkpoint ``name`` and copy it into the user weights folder.

    The copy is atomic; its sha256 is recorded in ``<file>.sha256`` for ``verify``.
    """
    from wbcap.export.atomic import atomic_path, atomic_write_text

    source = Path(source).expanduser()
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    validate_checkpoint_file(name, source)
    entry = manifest()[name]
    digest = sha256_file(source)
    if entry.sha256 and digest != entry.sha256:
        raise CheckpointError(f"{source}: sha256 {digest[:12]}… differs from the published {entry.sha256[:12]}… — re-download it")
    dest = weights_dir() / entry.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    atomic_write_text(dest.with_name(dest.name + ".sha256"), f"{digest}  {entry.file}\n")
    return dest


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path | None
    status: str  # "ok", "missing", "mismatch", "unverified"
    detail: str


def verify() -> list[VerifyResult]:
    """Check every present checkpoint against the published hash or the one recorded at import."""
    results = []
    for entry in manifest().values():
        found = next((d / entry.file for d in search_dirs() if (d / entry.file).is_file()), None)
        if found is None:
            results.append(VerifyResult(entry.name, None, "missing", f"run `wbcap weights import {entry.name} FILE`"))
            continue
        digest = sha256_file(found)
        recorded_file = found.with_name(found.name + ".sha256")
        recorded = recorded_file.read_text().split()[0] if recorded_file.is_file() else ""
        expected = entry.sha256 or recorded
        if not expected:
            results.append(VerifyResult(entry.name, found, "unverified", f"sha256 {digest} (no published or recorded hash)"))
        elif digest == expected:
            results.append(VerifyResult(entry.name, found, "ok", f"sha256 {digest}"))
        else:
            results.append(VerifyResult(entry.name, found, "mismatch", f"sha256 {digest} != expected {expected}"))
    return results
