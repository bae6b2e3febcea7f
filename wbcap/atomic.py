"""Write files and folders so that readers never see a half-written result.

A file is written under a temporary name in its destination folder and renamed over the final
name (``os.replace``, atomic on POSIX and Windows within one file system) only after the write
succeeded. A failed or interrupted write leaves the previous file (or no file) and no temporary.
This protects against crashes and exceptions of the writing process; it does not ``fsync``, so it
does not promise durability across a power cut.

Temporary names are hidden and keep the final suffix (``.name.tmp-1a2b3c4d.obj``), so writers
that choose the format from the extension (``cv2.imwrite``, trimesh) work on them.

A final name that is a symbolic link is replaced by the new file (the link goes; what it led to
is untouched): the names wbcap chooses in a folder (a run's ``track_0.npz``, a training's
snapshots) may sit in a folder someone else made, and a planted link there had each write replace
any file the user can write (``track_0.npz -> ~/.bashrc``: a security review). A file the user
named on the command line (``--json-out``, ``eval --out``, ``train merge -o``; ``view --html``
refuses a link) is written through a link (``through_link``): the file it points to is replaced
and the link kept, as ``open(path, "w")`` would. Files wbcap appends to or cuts in place in such
folders are opened without following a link, and refused where they have other names (hard
links: the same file elsewhere would change with them; :func:`open_own_file`). A final name that exists but is no
regular file (a device such as ``/dev/null``, a FIFO, a socket) is refused: renaming over it would
replace the device node itself (as root, ``-o /dev/null`` turned /dev/null into a 300 MB file).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from wbcap.errors import InputError

_TEMP_KINDS = ("tmp", "staging", "old")  # every kind _temp_sibling is called with
_TEMP_NAME = re.compile(rf"^\.(?P<stem>.+)\.(?:{'|'.join(_TEMP_KINDS)})-[0-9a-f]{{8}}(?P<suffix>.*)$")


def _temp_sibling(path: Path, kind: str = "tmp") -> Path:
    assert kind in _TEMP_KINDS
    return path.with_name(f".{path.stem}.{kind}-{secrets.token_hex(4)}{path.suffix}")


def final_path(path: str | os.PathLike[str]) -> Path:
    """The file or folder a temporary name of this module stands for, in every component
    (``.render.tmp-1a2b3c4d.mp4`` -> ``render.mp4``, ``out/.photo.staging-1a2b3c4d/person_0/x.obj``
    -> ``out/photo/person_0/x.obj``), for messages about a failed write; any other path as it is."""
    parts = []
    for part in Path(path).parts:
        match = _TEMP_NAME.match(part)
        parts.append(match["stem"] + match["suffix"] if match else part)
    return Path(*parts) if parts else Path(path)


def temporary_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files of :func:`atomic_path` writes of ``path`` that are still beside it (a
    write killed outright, SIGKILL or a power cut, leaves its ``.<stem>.tmp-<8 hex><suffix>``),
    sorted; none where its folder is missing."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir()
                  if (m := _TEMP_NAME.match(p.name)) and m["stem"] + m["suffix"] == path.name
                  and p.name.startswith(f".{path.stem}.tmp-"))


#: The longest file or folder name, in bytes, that common file systems take (``NAME_MAX``: ext4,
#: XFS, btrfs, tmpfs; APFS and NTFS count 255 characters).
NAME_MAX = 255
#: How much longer a temporary name of this module is than the name it stands for
#: (:func:`_temp_sibling`: ``.`` before, ``.staging-`` and 8 hex digits after the stem).
TEMP_NAME_EXTRA = 1 + len(".staging-") + 8


def long_name_message(path: str | os.PathLike[str]) -> str:
    """One line for a path the file system refused as too long (``ENAMETOOLONG``; a temporary
    name of this module is said as its final path, :func:`final_path`): its longest name in bytes
    against :data:`NAME_MAX`, or with the :data:`TEMP_NAME_EXTRA` bytes of the temporary name
    wbcap writes it under first, else the whole path's length; and the fix.
    A name over 255 bytes crashed `wbcap run`, `image`, `export` and `demo` (a paths trial)."""
    final = final_path(path)
    parts = [part for part in final.parts if part != final.anchor]
    longest = max(parts, key=lambda part: len(os.fsencode(part)), default=str(final))
    size = len(os.fsencode(longest))
    shown = os.fsencode(longest).decode("utf-8", "backslashreplace")  # (undecodable bytes as \xff)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    origin = _variable_holding(final)
    if size > NAME_MAX:
        why = f"its name '{shown}' is {size} bytes, and a name may have at most {NAME_MAX}"
    elif size + TEMP_NAME_EXTRA > NAME_MAX:
        why = (f"its name '{shown}' is {size} bytes, and wbcap writes it first under a temporary name "
               f"{TEMP_NAME_EXTRA} bytes longer, past the {NAME_MAX} a name may have")
    else:
        return (f"{final}: too long for the file system: the path is {len(os.fsencode(str(final)))} bytes; choose a "
                f"shorter path (fewer or shorter folders){origin}")
    return f"{final}: too long for the file system: {why}; choose a shorter name{origin}"


#: Variables naming the folders wbcap writes in or reads from by itself (:mod:`wbcap.paths`;
#: not ``$TMPDIR``, often ``/tmp``, where a user's own output may be).
_PATH_VARIABLES = ("WBCAP_HOME", "WBCAP_WEIGHTS", "WBCAP_BODY_MODELS", "XDG_CACHE_HOME", "XDG_DATA_HOME")


def _variable_holding(path: Path) -> str:
    """`` (the path is in $NAME)`` where ``path`` lies in a folder an environment variable of
    :data:`_PATH_VARIABLES` names (a long $WBCAP_HOME was not said to be the cause: a paths
    trial), else ""."""
    for name in _PATH_VARIABLES:
        value = os.environ.get(name)
        if value and Path(value).expanduser() in (path, *path.parents):
            return f" (the path is in ${name})"
    return ""


def check_name_length(path: str | os.PathLike[str], temporary: bool = True) -> None:
    """Refuse a path with a name over :data:`NAME_MAX` bytes, or, with ``temporary`` (an output
    written first under a temporary name of this module), whose last name is over it once
    :data:`TEMP_NAME_EXTRA` bytes longer: before any work (`wbcap train merge -o` of a 249-byte
    name merged, then failed: a break-it trial).

    Raises:
        InputError: :func:`long_name_message`'s line.
    """
    p = Path(path)
    if any(len(os.fsencode(part)) > NAME_MAX for part in p.parts):
        raise InputError(long_name_message(p))
    if temporary and len(os.fsencode(p.name)) + TEMP_NAME_EXTRA > NAME_MAX:
        raise InputError(long_name_message(p))


#: errno values of a write that found no room (disk or quota full, file too large).
_NO_ROOM = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name))


def name_unnamed_write_error(exc: BaseException, path: Path) -> None:
    """Give an ``OSError`` of a write that found no room (:data:`_NO_ROOM`) raised under ``path``
    and naming no file (a full disk met by a library writing through an open file) ``path`` as
    its file, so that its message can say which output failed. Other errors are left alone."""
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM and not exc.filename:
        exc.filename = str(path)


def _written_file(path: Path, through_link: bool = False) -> Path:
    """The file a write to ``path`` replaces: ``path`` (a symbolic link there is replaced), or with
    ``through_link`` the file a link there points to (resolved; it may not exist yet).

    Raises:
        InputError: ``path`` (or with ``through_link`` the file it points to) exists and is no
            regular file, folder or (replaced) link.
    """
    try:
        final = path.resolve() if through_link and path.is_symlink() else path
    except (RuntimeError, OSError) as exc:  # (a loop of links: RuntimeError on Python < 3.13)
        raise InputError(f"{path}: a symbolic link that leads nowhere ({exc}); give a file name for this output") from None
    with contextlib.suppress(OSError):
        mode = final.lstat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "no regular file")
            shown = path if final == path else f"{path} (-> {final})"
            raise InputError(f"{shown}: is {kind}, not a file; give a file name for this output")
    return final


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], through_link: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` when the block succeeds.

    The temporary file does not exist when yielded; the block must create it. On an exception
    (including ``KeyboardInterrupt``) the temporary is removed and ``path`` is untouched. The
    parent folder must exist. A symbolic link at ``path`` is replaced by the file (what it led to
    is untouched); with ``through_link`` (a file the user named) written through: the file it
    points to is replaced, the link kept.

    Example::

        with atomic_path(out / "frame.png") as tmp:
            cv2.imwrite(str(tmp), image_bgr)

    Raises:
        InputError: ``path`` exists and is a device, FIFO or socket (not replaced), or its folder
            refuses new files.
    """
    final = _written_file(Path(path), through_link)
    tmp = _temp_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        name_unnamed_write_error(exc, tmp)
        if _refused_here(exc, tmp):
            raise InputError(f"{final.parent}: cannot write {final.name} in this folder ({exc.strerror}); "
                             "choose another output folder") from None
        raise


#: errno values of a folder that refuses new files (no permission, read-only disk, immutable, a
#: pseudo file system such as /proc).
_REFUSED = frozenset(getattr(errno, name) for name in ("EACCES", "EPERM", "EROFS", "ENOENT") if hasattr(errno, name))


def _refused_here(exc: BaseException, tmp: Path) -> bool:
    """Whether ``exc`` is the folder refusing the temporary file ``tmp`` itself (creating or
    renaming it), not a failure elsewhere: then the writer gets one line, not a crash report."""
    # (ENOENT with the folder missing is the caller's error: atomic_path wants an existing folder)
    return (isinstance(exc, OSError) and exc.errno in _REFUSED and exc.filename is not None
            and Path(exc.filename) == tmp and (exc.errno != errno.ENOENT or tmp.parent.is_dir()))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, through_link: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (file permissions follow the umask, as ``open``);
    ``through_link``: as :func:`atomic_path`'s."""
    with atomic_path(path, through_link) as tmp, open(tmp, "xb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8",
                      through_link: bool = False) -> None:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding``, ``\\n`` line endings;
    ``through_link``: as :func:`atomic_path`'s."""
    atomic_write_bytes(path, text.encode(encoding), through_link)


def open_own_file(path: str | os.PathLike[str], mode: str = "a", encoding: str | None = "utf-8"):
    """``open(path, mode, encoding=...)`` of a file wbcap keeps in a folder it writes and changes
    in place (a run's raw records, appended to and cut on a resume; a training's scalars),
    refusing a symbolic link there rather than writing through it (``O_NOFOLLOW``), and a file
    with other names (hard links, ``st_nlink > 1``), the same file elsewhere (a break-it trial:
    a resume cut and refilled the file a hard link named; a hard-linked backup, ``cp -al``,
    would change with it): see the module's note on links. Nothing is read or written before.

    Raises:
        InputError: ``path`` is a symbolic link or has other names, naming it and the fix.
    """
    p = Path(path)

    def refused() -> InputError:
        try:
            target = os.readlink(p)
        except OSError:  # (not a link itself: a loop of links in a folder on the way)
            target = "a loop of links, or a folder on its way that is one"
        return InputError(f"{p}: is a symbolic link (to {target}) where wbcap keeps its own file, which it does not "
                          "write through; remove the link")

    def opener(name: str, flags: int) -> int:
        return os.open(name, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)

    if not hasattr(os, "O_NOFOLLOW") and p.is_symlink():  # (Windows: no flag to refuse it when opened)
        raise refused()
    try:
        f = open(p, mode, encoding=encoding, opener=opener)  # noqa: SIM115 - returned: the caller closes it
    except OSError as exc:
        if exc.errno == errno.ELOOP or p.is_symlink():
            raise refused() from None
        raise
    links = os.fstat(f.fileno()).st_nlink
    if links > 1:
        f.close()
        raise InputError(f"{p}: has {links - 1} other name(s) (hard links), which a change here would change too; "
                         f"make it a file of its own (cp {p} {p}.copy && mv {p}.copy {p})")
    return f


def check_writable_destination(path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
                               fix: str = "choose another output folder") -> None:
    """Refuse early an output folder that could not be made or written in: the nearest folder of
    ``path`` (itself, when it is one) must be writable (``os.access``, which also says no on a
    read-only disk) and no component of it a file, and must take a new file: one hidden probe
    file is created there and removed at once (``os.access`` says yes to root everywhere, also
    on /proc, where no file can be made). ``output``: the file the caller will write, for the
    message (default ``path``); ``fix``: the end of the message (what the user can do).

    Raises:
        InputError: naming the folder and the fix.
    """
    p = Path(path).absolute()
    shown = Path(output).absolute() if output is not None else p
    dangling = next((a for a in (p, *p.parents) if a.is_symlink() and not a.exists()), None)
    if dangling is not None:  # (a user trial: "cannot create the output folder (File exists)")
        raise InputError(f"{dangling}: is a link to {os.readlink(dangling)}, which does not exist, so {shown} cannot "
                         f"be {'written' if output else 'created'}; create what it points to, or {fix}")
    nearest = next((a for a in (p, *p.parents) if a.exists()), None)
    if nearest is None:
        return
    if not nearest.is_dir():
        kind = "a file" if nearest.is_file() else "not a folder"  # (a device, a FIFO...)
        raise InputError(f"{nearest}: is {kind}, so {shown} cannot be {'written' if output else 'created'}; {fix}")
    if nearest != p:
        what = f"cannot create {shown} in this folder"
    else:
        what = "cannot write in this folder" if output is None else f"cannot write {shown.name} in this folder"
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise InputError(f"{nearest}: {what} (read-only or no permission); {fix}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".wbcap-probe-", dir=nearest)
    except OSError as exc:
        raise InputError(f"{nearest}: {what} ({exc.strerror or exc}); {fix}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_writable_file(path: str | os.PathLike[str], inputs: dict[str, str | os.PathLike[str] | None] | None = None,
                        input_folders: dict[str, str | os.PathLike[str] | None] | None = None) -> None:
    """Refuse early an output file that could not be written: ``path`` must not be a folder, a
    device, FIFO or socket (:func:`atomic_path` would not replace it), nor a file wbcap keeps in
    its own weights, body-model or cache folders (whatever the command reads), nor one of the command's
    ``inputs`` (``{how the message names it: path}``, e.g. ``{"--checkpoint": ck}``, also the
    files found without an option: the checkpoint in the weights folder, the SMPL-X model; the
    same file by any path or link), nor inside one of its ``input_folders`` (the same form: a
    dataset, whose files it reads: a file there may be one of them, and a result written there
    on a first run would be refused as one on the next), and its folder must be writable or
    creatable (:func:`check_writable_destination`).

    Raises:
        InputError: naming the path and the fix (also for a path given with a trailing ``/``,
            which names a folder: ``Path`` drops the slash, and a file named like the folder was
            written).
    """
    given = os.fspath(path)
    if given.endswith(tuple({"/", os.sep})) and given.rstrip("/" + os.sep):
        raise InputError(f"{given}: ends with {os.sep}, so it names a folder; give a file name for this output "
                         f"(e.g. {given}result.json)")
    p = Path(path).expanduser()
    check_name_length(p)
    if p.is_dir():
        raise InputError(f"{p}: is a folder; give a file name for this output")
    final = _written_file(p, through_link=True)
    for name, given in (inputs or {}).items():
        if given is not None and final.exists() and _same_file(final, Path(given).expanduser()):
            what = name if name.startswith("the ") else f"the input {name}"  # ("the SMPL-X model", "--checkpoint")
            raise InputError(f"{p}: is also {what} ({given}) and would be overwritten; "
                             "give another file name for this output")
    if final.exists():  # (a user trial: `--json-out` over the installed checkpoint made it a 3 kB JSON file)
        from wbcap.paths import body_models_dir, user_cache_dir, weights_dir

        for own in (weights_dir(), body_models_dir(), user_cache_dir()):
            if final.resolve().is_relative_to(own.resolve()):
                raise InputError(f"{p}: is a file wbcap keeps in its own folder {own} (weights, models, caches) and "
                                 "would be overwritten; give a file name outside that folder for this output")
    for name, folder in (input_folders or {}).items():
        if folder is not None and final.resolve().is_relative_to(Path(folder).expanduser().resolve()):
            raise InputError(f"{p}: is in the folder of {name} ({folder}), which this command reads; give a file "
                             "name outside that folder for this output")
    check_writable_destination(final.parent, output=p)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


#: The file that marks a staging or moved-aside folder as :func:`staged_dir`'s own, while it is one
#: (taken out before the folder is put in place): :func:`remove_stale_staging` deletes only folders
#: holding it, never a user's folder of a like name (a break-it trial's `.photo.old-deadbeef`).
STAGING_MARKER = ".wbcap-staging"

#: How many times :func:`staged_dir` puts its folder in place when another process writing the same
#: folder puts its own there in between (the last one in stays).
_PLACE_TRIES = 32


@contextlib.contextmanager
def staged_dir(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Build an output folder under a temporary name; put it in place only if the block succeeds.

    Yields a new folder beside ``final_dir`` (``.name.staging-xxxxxxxx``), empty but for
    :data:`STAGING_MARKER` (taken out before it is put in place). When the block
    finishes without an exception the folder is renamed to ``final_dir``; an existing
    ``final_dir`` is replaced (moved aside first, then deleted, so a crash in between leaves it
    under a ``.name.old-xxxxxxxx`` name rather than lost). On an exception the staging folder
    is deleted and ``final_dir`` is untouched. Missing parent folders are created.

    The staging folder is locked (``flock``, released by the kernel when the process ends, also
    when it is killed) while it is built, and so is a folder being moved aside while it is
    deleted: the ``.name.staging-*`` and ``.name.old-*`` folders of ``final_dir`` that no living
    process holds, which a killed writer left, are removed first (:func:`remove_stale_staging`;
    they had piled up in `wbcap image`'s output folder, a break-it trial). Two processes writing
    the same ``final_dir`` at once each put a complete folder in place, the last one staying (they
    had failed on each other's renames and left their staging folders).

    Raises:
        InputError: ``final_dir`` is a symbolic link, exists and is not a folder, or its folder
            cannot be created.
    """
    final = Path(final_dir)
    if final.is_symlink():  # (its rename would move the link, and the user's folder be marked through it)
        raise InputError(f"{final}: is a symbolic link, which a new folder would replace (not what it leads to); "
                         "move it away or choose another output folder")
    if not _folder_or_missing(final):
        raise InputError(f"{final}: exists and is not a folder; choose another output folder")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(final)
        stage, fd = _new_locked_stage(final)
    except OSError as exc:  # a parent is a file, no permission, read-only disk...
        if exc.errno == errno.ENAMETOOLONG:  # (it said the folder could not be written in: a paths trial)
            raise InputError(long_name_message(final)) from None
        what = "cannot write in this folder" if final.parent.is_dir() else "cannot create the output folder"
        raise InputError(f"{final.parent}: {what} ({exc.strerror or exc}); choose another output folder") from None
    # (a child forked meanwhile keeps a copy of the lock while it lives: its folder is then kept, the safe
    # side; no fork hook per folder, which piled up over a long run: a code review)
    try:
        try:
            yield stage
        except BaseException as exc:
            _remove_marked(stage)
            name_unnamed_write_error(exc, stage)
            raise
        try:
            (stage / STAGING_MARKER).unlink(missing_ok=True)
            _put_in_place(stage, final)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def staging_sibling(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """A staging folder beside ``final_dir`` (``.name.staging-xxxxxxxx``: locked and marked as
    :func:`staged_dir`'s, so that one a killed process left is swept by
    :func:`remove_stale_staging`), for files that are then moved one by one into ``final_dir``
    (where :func:`staged_dir` would replace the whole folder, and a user's other files in it):
    removed when the block ends, with whatever is left in it. Messages name its files as
    ``final_dir``'s (:func:`final_path`). Missing parent folders are created.

    Raises:
        OSError: the parent folder cannot be written.
    """
    final = Path(final_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    stage, fd = _new_locked_stage(final)
    try:
        yield stage
    finally:
        try:
            shutil.rmtree(stage, ignore_errors=True)
        finally:
            os.close(fd)


def _new_locked_stage(final: Path) -> tuple[Path, int]:
    """A new staging folder for ``final``, marked (:data:`STAGING_MARKER`), and an open descriptor
    of it holding its ``flock`` (none where locks cannot be taken). The lock is waited for: another
    process's :func:`remove_stale_staging` holds a folder's only while it looks for the marker,
    which a folder this new has not. (Given up at once, the folder was left behind, empty.)"""
    try:
        import fcntl
    except ImportError:  # (no flock on this platform: no sweep deletes anything there either)
        fcntl = None
    stage = _temp_sibling(final, "staging")
    stage.mkdir()  # (unmarked: no sweep deletes it before it is locked)
    try:
        fd = os.open(stage, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        if fcntl is not None:
            with contextlib.suppress(OSError):  # (a file system refusing locks: nothing is swept there)
                fcntl.flock(fd, fcntl.LOCK_EX)
        _mark(stage)
    except BaseException:
        os.close(fd)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage, fd


def _folder_or_missing(path: Path) -> bool:
    """Whether ``path`` is a folder (or a link to one) or does not exist, in one ``stat`` (two
    asked apart gave "not a folder" for a folder another process moved in between)."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):  # (a missing one, or under a file: said when it is created)
        return True
    except OSError:  # (a link's loop, no permission...: as before, not a folder)
        return False


def _put_in_place(stage: Path, final: Path) -> None:
    """Rename ``stage`` to ``final``, an existing ``final`` moved aside (locked while it is
    deleted); again where another writer put its folder there in between."""
    for _ in range(_PLACE_TRIES):
        old = _temp_sibling(final, "old")
        with _folder_locked(final):
            try:
                os.replace(final, old)
            except FileNotFoundError:  # (none, or another writer moved it aside just now)
                old = None
            try:
                os.replace(stage, final)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another writer's folder came in between
                    if old is not None:  # (theirs replaces it either way)
                        _mark(old)
                        _remove_marked(old)
                    time.sleep(secrets.randbelow(4000) / 1e6)  # (apart again, at random: not in step with it)
                    continue
                _put_back(old, final)
                raise
            except BaseException:  # (Ctrl-C, SIGTERM between the two renames)
                _put_back(old, final)
                raise
            if old is not None:  # (marked only now: until the new one is in place it is the result, unmarked)
                _mark(old)
                _remove_marked(old)
            return
    raise OSError(errno.EEXIST, f"other processes kept putting their own {final.name} in place", str(final))


def _put_back(old: Path | None, final: Path) -> None:
    """The folder moved aside to ``old`` back at ``final`` (nothing where none was moved)."""
    if old is not None:
        with contextlib.suppress(OSError):
            os.replace(old, final)


@contextlib.contextmanager
def _folder_locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` while the block runs, so that
    :func:`remove_stale_staging` leaves it alone (also under the name it is renamed to); nothing is
    held where the folder is missing or cannot be opened (no read permission: the rename needs
    none), the platform has no ``flock`` or the file system refuses it."""
    from wbcap.locks import flock_nowait

    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            flock_nowait(fd)
        yield
    finally:
        os.close(fd)


def _mark(folder: Path) -> None:
    """Put :data:`STAGING_MARKER` in ``folder``, not through a link (where it cannot be written,
    the folder is left to its writer alone: one a killed writer left then stays)."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    with contextlib.suppress(OSError):
        if not folder.is_symlink():
            os.close(os.open(folder / STAGING_MARKER, flags, 0o644))


def _remove_marked(folder: Path) -> None:
    """Delete ``folder``, its :data:`STAGING_MARKER` last: stopped part way, what is left is still
    marked, so that a later sweep finishes it (``rmtree`` may take the marker first)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name == STAGING_MARKER:
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    with contextlib.suppress(OSError):
        os.unlink(folder / STAGING_MARKER)
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def remove_stale_staging(final: Path) -> list[Path]:
    """Delete the staging and moved-aside folders of ``final`` (``.name.staging-xxxxxxxx``,
    ``.name.old-xxxxxxxx``, holding :data:`STAGING_MARKER`: :func:`staged_dir`'s) that no living
    process holds: those a killed writer left. One another process is building is locked, and
    kept; a folder of such a name without the marker is not wbcap's, and kept; where locks cannot
    be taken (no ``flock``, a file system refusing it) nothing is deleted.

    Returns:
        The folders deleted.
    """
    from wbcap.locks import flock_nowait

    pattern = re.compile(rf"^\.{re.escape(final.stem)}\.(?:staging|old)-[0-9a-f]{{8}}{re.escape(final.suffix)}$")
    removed = []
    try:
        names = [n for n in os.listdir(final.parent) if pattern.match(n)]
    except OSError:
        return removed
    for name in names:
        path = final.parent / name
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # (gone meanwhile, or not a folder of ours)
            continue
        try:
            try:
                free = flock_nowait(fd)
            except OSError:
                free = None
            try:
                marked = bool(free) and stat.S_ISREG(os.lstat(path / STAGING_MARKER).st_mode)
            except OSError:  # (no marker: not wbcap's)
                marked = False
            if marked:
                _remove_marked(path)
                removed.append(path)
        finally:
            os.close(fd)
    return removed
