"""The weights manifest and the user's weights folder.

``manifest.toml`` (package data) lists every network file wbcap knows (the Hand4Whole
checkpoints and the YOLOX person detectors): file name, download URL, size and sha256 where
known, source, licence and architecture. Files are found by: explicit path -> the
``WBCAP_WEIGHTS`` environment variable (a folder holding the manifest's file names; or a file,
which is the default whole-body checkpoint and no other weights file) -> ``<user data>/weights``
(:func:`find_weights_file`, the one rule behind loading, ``wbcap weights list|verify`` and
``wbcap doctor``). Entries with a URL are downloaded by :func:`fetch` into
``<user data>/weights`` (``$WBCAP_WEIGHTS_MIRROR`` replaces the official host).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from wbcap.errors import CHECKPOINT_TOO, CheckpointError, InputError, ModelFileError, WbcapError, setting
from wbcap.paths import (
    ENV_HOME,
    ENV_MIRROR,
    ENV_OFFLINE,
    ENV_WEIGHTS,
    download_url,
    env_path,
    offline_from_env,
    search_folders,
    weights_dir,
)
from wbcap.tomllib_compat import tomllib

log = logging.getLogger(__name__)

#: After a failed automatic download (``--detector auto``), wait this long before trying again
#: on its own; ``wbcap weights fetch NAME`` always tries.
AUTO_RETRY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class WeightsEntry:
    """One ``manifest.toml`` entry.

    ``size`` in bytes (0 = unknown); ``sha256`` hex ("" = not published); ``url`` "" = no
    download (the user imports the file); ``input_size`` (pixels), ``outputs``
    (``"raw"``/``"decoded"``) and ``parameters`` (millions, the YOLOX README's count: 0 =
    not given) describe YOLOX exports only.
    """

    name: str
    file: str
    sha256: str
    source: str
    licence: str
    architecture: str
    description: str
    default: bool
    url: str = ""
    size: int = 0
    input_size: int = 0
    outputs: str = ""
    parameters: float = 0.0


def manifest() -> dict[str, WeightsEntry]:
    """The entries of ``manifest.toml`` by name."""
    text = resources.files("wbcap.weights").joinpath("manifest.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return {name: WeightsEntry(name=name, **fields) for name, fields in data.items()}


def default_entry(architecture: str = "hand4whole") -> WeightsEntry:
    """The default entry of an architecture (``hand4whole`` checkpoint, ``yolox`` detector)."""
    return next(e for e in manifest().values() if e.default and e.architecture == architecture)


def entry(name: str) -> WeightsEntry:
    """The manifest entry ``name``; InputError listing the known names otherwise."""
    entries = manifest()
    if name not in entries:
        raise InputError(f"unknown weights name {name!r}; known: {', '.join(entries)}")
    return entries[name]


#: A sha256 as an import record holds it.
_SHA256 = re.compile(r"[0-9a-f]{64}")


def weights_candidates(item: WeightsEntry) -> list[Path]:
    """Where the file of ``item`` may be when none is named, in order: ``$WBCAP_WEIGHTS`` when it
    names a file and ``item`` is the default checkpoint (:func:`default_entry`: the network
    loaded without ``--checkpoint``), then ``item.file`` in each of :func:`search_dirs`."""
    env = env_path(ENV_WEIGHTS)
    own = [env] if env is not None and env.is_file() and item.name == default_entry().name else []
    return own + [d / item.file for d in search_dirs()]


def find_weights_file(item: WeightsEntry) -> Path | None:
    """The file of ``item`` wbcap uses when none is named: the first of
    :func:`weights_candidates` that exists, or None. Loading the network (:func:`find_checkpoint`),
    ``wbcap weights list|verify`` (:func:`installed`, :func:`verify`) and ``wbcap doctor`` all
    find files here, so they agree."""
    return next((p for p in weights_candidates(item) if p.is_file()), None)


def search_dirs() -> list[Path]:
    """Folders searched for weights, in order: ``$WBCAP_WEIGHTS`` (when it names a folder),
    then ``<user data>/weights`` (:func:`wbcap.paths.search_folders`)."""
    found: list[Path] = []
    for d in search_folders(None, ENV_WEIGHTS, weights_dir()):
        # ($WBCAP_WEIGHTS naming wbcap's own folder is one place: doctor named it twice, a weights trial)
        if not d.is_file() and all(d.resolve() != f.resolve() for f in found):
            found.append(d)
    return found


def check_weights_env() -> None:
    """Refuse a ``$WBCAP_WEIGHTS`` that names nothing: loading the network, ``wbcap doctor`` and
    ``wbcap weights list|verify`` all refuse it alike, rather than silently using (or listing) the
    files found elsewhere.

    Raises:
        CheckpointError: one line naming the variable, its value and the fix.
    """
    env = env_path(ENV_WEIGHTS)
    if env is not None and not env.exists():
        raise CheckpointError(f"{ENV_WEIGHTS}={os.environ[ENV_WEIGHTS]}: no such file or folder; point it at the "
                              "checkpoint or the folder that holds it, or unset it (then `wbcap weights list` shows "
                              "where wbcap looks; it says this too while the variable is set)")


def find_checkpoint(path: str | Path | None = None, name: str | None = None, option: str = "checkpoint") -> Path:
    """The checkpoint to use: ``path`` when given, else the file of manifest entry ``name``
    (default: the default checkpoint) that :func:`find_weights_file` finds; raise
    CheckpointError listing every place looked (or naming a ``$WBCAP_WEIGHTS`` that does not exist).
    ``option``: the setting that names the file, for the messages (``hand_ckpt``: `train merge --hand`)."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            try:
                inside = sorted(q.name for q in p.iterdir() if q.suffix in (".tar", ".pth", ".pt") and q.is_file())[:3]
            except OSError:
                inside = []
            raise CheckpointError(f"{setting(option)} {p} is a folder: pass the checkpoint file in it"
                                  + (f" (e.g. {', '.join(inside)})" if inside else ""))
        raise CheckpointError(f"checkpoint not found: {p}; pass an existing file to {setting(option)} "
                              "(`wbcap weights list` shows where wbcap looks)")
    item = manifest()[name] if name else default_entry()
    check_weights_env()
    found = find_weights_file(item)
    if found is not None:
        return found
    candidates = weights_candidates(item)
    looked = ", ".join(str(p) for p in candidates)
    below = checkpoint_below(item, candidates, option)
    missing = CheckpointError(
        f"no {item.name} checkpoint (looked in {looked}); download {item.file} from {item.source} "
        f"and run `wbcap weights import {item.name} /path/to/{item.file}` (or pass {setting(option)} FILE"
        + ("" if os.environ.get(ENV_WEIGHTS) else f", or set {ENV_WEIGHTS} to "
           + ("the file or its folder" if item.name == default_entry().name else "its folder")) + ")"
        + (f"; {below}" if below else "")
    )
    missing.found_below = below
    raise missing


def checkpoint_below(item: WeightsEntry, looked: list[Path] | None = None, option: str = "checkpoint") -> str:
    """What a missing checkpoint's message adds where the folders searched, or the folders below
    them (:func:`wbcap.paths.files_below`), hold ``item``'s file (``Hand4Whole/snapshot_6.pth.tar``,
    unpacked one folder down) or, for the default checkpoint, a checkpoint file of another name
    (``hand4whole.pth``: a new user's trial renamed the download and was told only where
    ``snapshot_6.pth.tar`` had been looked for). Other manifest entries' files are not offered, nor
    another name for another entry (a review: one file was offered for both checkpoints).
    ``looked``: the names already looked for (default :func:`weights_candidates`); ``option``: the
    setting that names the file. Returns ``"<file> is there: ..."`` (paths as shell words in a
    command), or "" when there is none."""
    from wbcap.console import shell_word
    from wbcap.paths import files_below

    others = {e.file for e in manifest().values() if e.name != item.name}

    def wanted(name: str) -> bool:
        if name.startswith(".") or name in others:
            return False
        return name == item.file or (item.default and name.endswith((".pth.tar", ".pth", ".pt")))

    found = files_below(search_dirs(), wanted, weights_candidates(item) if looked is None else looked)
    if not found:
        return ""
    path = next((f for f in found if f.name == item.file), found[0])
    flag = setting(option)
    word = shell_word(str(path), True) if " -" in f" {flag}" else repr(str(path))  # (a command's option, or the API's)
    use = (f"`wbcap weights import {item.name} {shell_word(str(path), True)}` checks and installs it (or pass "
           f"{flag} {word})")
    return f"{path} is there: {use}" if path.name == item.file else f"{path} is there: if it is {item.file} renamed, {use}"


def note_missing_checkpoint(exc: ModelFileError, checkpoint: str | Path | None) -> None:
    """Add to a missing (or wrongly named) SMPL-X model's error ``exc`` the checkpoint's, when
    ``checkpoint`` (None: the search order of :func:`find_checkpoint`) is missing too, so that one
    message names both files (a new user's trial was told of the model, then after fixing it, of
    the checkpoint); the checkpoint's message is kept as ``exc.checkpoint_error``."""
    try:
        find_checkpoint(checkpoint)
    except CheckpointError as missing:
        exc.checkpoint_error = str(missing)  # type: ignore[attr-defined]
        exc.args = (f"{exc}; {CHECKPOINT_TOO}{missing}",)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: Checks that a file holds what its architecture needs and returns a one-line summary; raises a
#: one-line WbcapError otherwise. The reader of each format provides it (the caller passes it in:
#: this storage layer sits below the model and detector code): see
#: :func:`wbcap.weight_formats.validator`.
Validator = Callable[[Path], str]


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_weights` or :func:`fetch` put in place.

    ``official``: True when the file's sha256 equals the manifest's, False when it differs (a
    re-export of a detector, accepted), None when the manifest publishes no hash. ``before``:
    the sha256 of the file it replaced at ``path``, None where there was none (a user's own
    detector export was replaced without a word: a user trial).
    """

    name: str
    path: Path
    sha256: str
    summary: str
    official: bool | None
    before: str | None = None

    @property
    def replaced(self) -> str:
        """What became of the file that was at :attr:`path`, for a result line: "" where there
        was none, else ``" (the same file was there already)"`` or ``" (replaced another file
        there, sha256 <12 hex>…)"``."""
        if self.before is None:
            return ""
        if self.before == self.sha256:
            return " (the same file was there already)"
        if self.before == UNREADABLE:
            return " (replaced a file there that could not be read)"
        return f" (replaced another file there, sha256 {self.before[:12]}…)"


#: :attr:`ImportResult.before` of a file that was there but could not be read.
UNREADABLE = "unreadable"


def _present_digest(dest: Path) -> str | None:
    """sha256 of the file at ``dest``, None where there is none, :data:`UNREADABLE` where one
    is there that cannot be read (no permission: it was said to be nothing there, a weights trial)."""
    if not dest.is_file():
        return None
    try:
        return sha256_file(dest)
    except OSError:
        return UNREADABLE


def import_weights(name: str, source: Path, validate: Validator, replace: bool = False) -> ImportResult:
    """Validate ``source`` as weights ``name`` and copy it into the user weights folder.

    Checkpoints must match a published sha256; a detector whose hash differs from the official
    file is accepted (any YOLOX export with the right signature works) and reported as
    not official. The copy is atomic; its sha256 is recorded in ``<file>.sha256`` for
    :func:`verify`. Another file already there (an earlier import: a user's own detector
    export) is replaced only with ``replace`` (a new user found its silent replacement risky);
    the same file there is fine.

    Raises:
        InputError: unknown name, no such file, not a valid file of that architecture, a
            folder where the file goes, or another file there without ``replace``.
        CheckpointError: a checkpoint whose sha256 differs from the published one.
    """
    from wbcap.atomic import atomic_path

    item = entry(name)
    source = Path(source).expanduser()
    if not source.is_file():
        raise InputError(f"{source}: " + ("a folder, not a weights file; pass the file" if source.is_dir()
                                            else "no such file; check the path"))
    _check_weights_folder()
    _check_not_a_folder(weights_dir() / item.file, item)
    digest = sha256_file(source)
    summary = validate(source)
    official = (digest == item.sha256.lower()) if item.sha256 else None
    if official is False and item.architecture != "yolox":
        raise CheckpointError(f"{source}: sha256 {digest[:12]}… differs from the published {item.sha256[:12]}… — re-download it")
    dest = weights_dir() / item.file
    before = _present_digest(dest)
    if before not in (None, digest) and not replace:
        held = "a file that cannot be read" if before == UNREADABLE else f"another {name} file (sha256 {before[:12]}…)"
        raise InputError(f"{dest}: holds {held}; pass {setting('replace', api='replace=True')} to put {source.name} in "
                         f"its place (`wbcap weights verify` says what is there)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    _write_record(dest, digest)
    return ImportResult(name, dest, digest, summary, official, before)


def _check_weights_folder() -> None:
    """Refuse, before any work, a user weights folder that cannot take a new file (read-only,
    no permission, immutable), naming what fixes it (there is no output option to change).

    Raises:
        InputError: one line naming the folder.
    """
    from wbcap.atomic import check_writable_destination

    check_writable_destination(weights_dir(), fix=f"this is wbcap's weights folder: fix that, or set {ENV_HOME} to a "
                               "writable folder (weights go in $WBCAP_HOME/weights)")


def _write_record(dest: Path, digest: str) -> None:
    from wbcap.atomic import atomic_write_text

    atomic_write_text(dest.with_name(dest.name + ".sha256"), f"{digest}  {dest.name}\n")
    _failure_marker(dest).unlink(missing_ok=True)


def fetch(name: str, validate: Validator, progress: Callable[[int, int | None], None] | None = None,
          timeout: float = 30.0) -> ImportResult:
    """Download weights ``name`` into the user weights folder; check size, sha256 and format.

    The file comes from the manifest's URL (or ``$WBCAP_WEIGHTS_MIRROR/<file>``), is written
    under a temporary name, checked (size and sha256 where the manifest has them, then the
    network signature) and renamed into place only then; its sha256 is recorded beside it.
    Where the file in place already has the published sha256, nothing is downloaded.

    Args:
        name: manifest name, e.g. ``"yolox-nano"``.
        validate: checks the downloaded file's format (:data:`Validator`) before it is kept.
        progress: called with ``(bytes done, total bytes or None)`` while downloading.
        timeout: seconds without data before the download is abandoned.

    Raises:
        InputError: unknown name, an entry without a URL (a licensed checkpoint), or a folder
            where the file goes.
        wbcap.weights.download.DownloadError: the download failed or the file is not what the
            manifest describes; nothing is left behind.
    """
    from wbcap.weights.download import download

    item = check_downloadable(name)
    dest = weights_dir() / item.file
    _check_not_a_folder(dest, item)
    before = _present_digest(dest)
    if item.sha256 and before == item.sha256.lower():  # (the official file is there: no download, offline too)
        summary = validate(dest)
        with contextlib.suppress(OSError):  # (a read-only folder: the record is only a shortcut for verify)
            _write_record(dest, before)
        return ImportResult(name, dest, before, summary, True, before)
    _check_weights_folder()
    url = download_url(item.file, item.url)
    if offline_from_env() and not url.startswith("file:"):  # (a mirror folder on a shared drive is no download)
        raise InputError(f"{name}: {ENV_OFFLINE} is set, so nothing is downloaded; unset it, set {ENV_MIRROR} to a "
                         f"file:// folder holding {item.file}, or `wbcap weights import {name} FILE`")
    summaries: list[str] = []

    def check(tmp: Path) -> None:  # (its errors name what was downloaded, not the temporary file it is in)
        try:
            summaries.append(validate(tmp))
        except WbcapError as exc:
            raise type(exc)(str(exc).replace(str(tmp), f"{url} (downloaded)")) from None

    # (the import command whole: a new user's trial got `wbcap weights import` alone)
    digest = download(url, dest, size=item.size or None, sha256=item.sha256 or None, progress=progress,
                      timeout=timeout, check=check,
                      by_hand=f"download it by hand and import it with `wbcap weights import {name} FILE`")
    _write_record(dest, digest)
    if not item.sha256:
        log.warning("%s: no published sha256; recorded %s of the downloaded file", name, digest)
    return ImportResult(name, dest, digest, summaries[0], (digest == item.sha256.lower()) if item.sha256 else None,
                        before)


def check_downloadable(name: str) -> WeightsEntry:
    """The manifest entry ``name``, refused when wbcap cannot download it (a licensed checkpoint).

    Raises:
        InputError: an unknown name, or one without a URL: naming where the file comes from and
            how to import it.
    """
    item = entry(name)
    if not item.url:
        raise InputError(f"{name} cannot be downloaded by wbcap ({item.licence}); download {item.file} from "
                         f"{item.source} and run `wbcap weights import {name} FILE`")
    return item


def _failure_marker(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.fetch-failed")


def recent_auto_failure(name: str) -> tuple[str, str] | None:
    """``(when, why)`` of :func:`auto_fetch`'s failed download of weights ``name`` when it was
    less than :data:`AUTO_RETRY_SECONDS` ago (so it does not try again on its own yet: ``wbcap
    doctor`` says so, where it said the next run would download it, a new user's trial), ``when``
    local time as written, ``why`` the error's first line; None otherwise."""
    try:
        marker = _failure_marker(weights_dir() / entry(name).file)
        if time.time() - marker.stat().st_mtime >= AUTO_RETRY_SECONDS:
            return None
        text = marker.read_text(encoding="utf-8", errors="replace").strip()
    except (OSError, WbcapError):
        return None
    when, _, why = text.partition(" ")
    return when, why.splitlines()[0] if why else "no reason recorded"


def auto_fetch(name: str, offline: bool, validate: Validator) -> Path | None:
    """The file of weights ``name``, downloading it once when it is absent.

    Used on first use by ``--detector auto`` and named detectors. With ``offline`` nothing is
    downloaded. A failed download is remembered (``.<file>.fetch-failed`` beside it) and not
    tried again on its own for :data:`AUTO_RETRY_SECONDS`; the failure is logged as one
    warning naming the command that fixes it. Returns None when the file is still absent.
    """
    item = entry(name)
    check_weights_env()
    found = find_weights_file(item)
    if found is not None or offline or offline_from_env() or not item.url:
        return found
    from wbcap.weights.download import DownloadError
    dest = weights_dir() / item.file
    try:
        _check_weights_folder()
        _check_not_a_folder(dest, item)
    except InputError as exc:  # (nowhere to keep it: the caller falls back, as without a download)
        log.warning("%s: not downloaded: %s", name, exc)
        return None
    marker = _failure_marker(dest)
    try:
        if time.time() - marker.stat().st_mtime < AUTO_RETRY_SECONDS:
            log.info("%s: not downloading again on its own after a failure less than a day ago (%s)", name, marker)
            return None
    except FileNotFoundError:
        pass
    size = f" ({item.size / 1e6:.1f} MB)" if item.size else ""
    log.warning("downloading %s%s from %s to %s (once; %s or WBCAP_OFFLINE=1 forbid it)",
                name, size, download_url(item.file, item.url), dest, setting("offline", api="offline=True"))
    try:
        return fetch(name, validate).path
    except DownloadError as exc:
        dest.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {exc}\n", encoding="utf-8")
        log.warning("%s", exc)
        return None


def recorded_sha256(path: Path) -> str:
    """The sha256 recorded beside ``path`` when it was imported or fetched (``<file>.sha256``),
    or "" when there is no record, or none that holds a sha256 (:func:`record_damaged`)."""
    record = path.with_name(path.name + ".sha256")
    if not record.is_file():
        return ""
    try:
        words = record.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return ""
    return words[0].lower() if words and _SHA256.fullmatch(words[0].lower()) else ""


def record_damaged(path: Path) -> bool:
    """Whether ``path``'s import record (``<file>.sha256``) exists but holds no sha256 (64 hex
    digits first): edited or damaged, so no hash of it is trusted (a user trial's "garbage" was
    shown as the file's sha256)."""
    return path.with_name(path.name + ".sha256").is_file() and not recorded_sha256(path)


def blocking_folder(item: WeightsEntry) -> Path | None:
    """A folder where the file of ``item`` would be found or installed (:func:`weights_candidates`
    and the user weights folder), or None: such a file reads as missing, and an import or
    download into it cannot replace the folder."""
    return next((p for p in [*weights_candidates(item), weights_dir() / item.file] if p.is_dir()), None)


def _check_not_a_folder(dest: Path, item: WeightsEntry) -> None:
    """Refuse, before any work, a folder at ``dest``, where ``item``'s file goes.

    Raises:
        InputError: one line naming the folder and the fix.
    """
    if dest.is_dir():
        raise InputError(f"{dest}: is a folder, where the {item.name} file goes; move or delete it, then run this again")
    if dest.is_symlink() and not dest.exists():  # (a crash with a traceback: a weights trial)
        raise InputError(f"{dest}: is a link to {os.readlink(dest)}, which does not exist, where the {item.name} file "
                         "goes; remove the link or make its target, then run this again")


@dataclass(frozen=True)
class InstalledFile:
    """A weights file found where wbcap looks (:func:`installed`).

    ``size`` in bytes; ``sha256``: the hash recorded at import/fetch when the record is not
    older than the file's last change (modification or status change), else computed now when there is a published hash to compare with, else
    "" (unknown); ``official``: whether it equals the published hash (None when either is unknown);
    ``changed``: the file was written after its import/fetch record and no longer has the recorded
    hash (damaged, e.g. truncated, or replaced by hand); ``recorded``: an import/fetch record
    holds this file's hash (so a non-official file is a re-export someone imported).
    """

    path: Path
    size: int
    sha256: str
    official: bool | None
    changed: bool = False
    recorded: bool = False
    record_damaged: bool = False

    def provenance(self, name: str) -> str:
        """What the file is, in the words ``wbcap weights list`` and ``wbcap doctor`` both use
        (``name``: its manifest entry, for the fix): "the official file", "not the official file
        (a re-export)" (recorded at import), "not the official file; no import record ...", ""
        (no published hash to compare with), or that it changed since its import or download."""
        if self.changed:
            return "CHANGED since its import or download: damaged or replaced, see `wbcap weights verify`"
        record = self.path.with_name(self.path.name + ".sha256")
        damaged = (f"its import record {record.name} is damaged (no sha256 in it; `wbcap weights import {name} FILE` "
                   "writes it again)") if self.record_damaged else ""
        if self.official is None:
            return damaged
        if self.official:
            return "the official file" + (f"; {damaged}" if damaged else "")
        if self.recorded:
            return "not the official file (a re-export)"
        if self.path.parent.resolve() != weights_dir().resolve():  # ($WBCAP_WEIGHTS: an import copies it elsewhere)
            return (f"not the official file; wbcap keeps no import record for a file in {ENV_WEIGHTS} (to keep "
                    f"one: `wbcap weights import {name} FILE`, then unset {ENV_WEIGHTS})")
        return damaged or (f"not the official file, and no import record (if it is a re-export, `wbcap weights "
                           f"import {name} FILE` records it)")


def installed(item: WeightsEntry, *, rehash: bool = False) -> InstalledFile | None:
    """The file of ``item`` that wbcap would use (:func:`find_weights_file`), described without
    re-hashing it when its import/fetch record is current (a checkpoint is 0.3 GB) unless
    ``rehash`` (:func:`verify`); None when absent."""
    found = find_weights_file(item)
    if found is None:
        return None
    stat = found.stat()
    record = found.with_name(found.name + ".sha256")
    recorded = recorded_sha256(found) if record.is_file() else ""
    # The record is current when written after the file last changed: its status-change time
    # too, which a copy that keeps the old modification time (`cp -p`, `rsync -t`) cannot keep.
    current = not rehash and bool(recorded) and record.stat().st_mtime >= max(stat.st_mtime, stat.st_ctime)
    digest = recorded if current else ""
    if not digest and (rehash or item.sha256 or recorded or record.is_file()):  # (a stale or damaged record)
        digest = sha256_file(found)
    official = (digest == item.sha256.lower()) if digest and item.sha256 else None
    changed = bool(recorded) and digest != recorded
    return InstalledFile(found, stat.st_size, digest, official, changed, recorded=bool(recorded) and digest == recorded,
                         record_damaged=record_damaged(found))


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path | None
    status: str  # "ok", "missing", "mismatch", "unverified"
    detail: str


def verify() -> list[VerifyResult]:
    """Check every present file against the hash recorded at import/fetch, else the published one.

    A file that is not the official one is described as ``wbcap weights list`` and ``wbcap
    doctor`` describe it (:meth:`InstalledFile.provenance`): a re-export when its import record
    holds its hash, else with how to record it.
    """
    results = []
    for item in manifest().values():
        present = installed(item, rehash=True)
        if present is None:
            how = f"`wbcap weights {'fetch' if item.url else 'import'} {item.name}{'' if item.url else ' FILE'}`"
            folder = blocking_folder(item)
            results.append(VerifyResult(item.name, None, "missing", f"run {how}" if folder is None else
                                        f"{folder} is a folder, where the file goes: move or delete it, then run {how}"))
            continue
        digest = present.sha256
        expected = recorded_sha256(present.path) or item.sha256.lower()
        about = f": {present.provenance(item.name)}" if present.official is False or present.record_damaged else ""
        if not expected:
            results.append(VerifyResult(item.name, present.path, "unverified",
                                        f"sha256 {digest} (no published or recorded hash){about}"))
        elif present.changed:
            results.append(VerifyResult(item.name, present.path, "mismatch", f"sha256 {digest} != expected {expected}"))
        elif digest != expected and not present.recorded and item.architecture == "yolox":
            # (any YOLOX export with the right signature works: no record to check it against)
            results.append(VerifyResult(item.name, present.path, "unverified", f"sha256 {digest}{about}"))
        else:
            results.append(VerifyResult(item.name, present.path, "ok" if digest == expected else "mismatch",
                                        f"sha256 {digest}{about}"))
    return results
