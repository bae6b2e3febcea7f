"""Build a viewer site for an output folder, then serve it or leave it as a folder to send.

A site is a plain folder::

    index.html  app.js  timeline.js  style.css   the page (wbcap/view/static)
    vendor/three/...                  three.js r187, unmodified (wbcap.view.vendor)
    view.json                         the manifest (wbcap.view.manifest)
    media/...                         the output folder's files the page shows (render.mp4, GLBs,
                                      photos' overlays, OBJs, smplx_param.json)
    params/track_<id>/<n>.json        params.jsonl split per track into chunks

:func:`serve_view` builds it in a temporary folder with symbolic links to the output folder's
files (nothing is copied or written into the output folder) and serves it on 127.0.0.1
(:mod:`wbcap.view.server`). :func:`write_html` writes ``FILE.html`` and ``FILE_files/`` (the site
with copies, or hard links where the file system allows, plus ``serve.py``): a folder a colleague
can open with ``python3 FILE_files/serve.py``; browsers refuse ES modules and ``fetch`` from
``file://`` pages, so the page then says how to serve it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from wbcap.console import shell_word
from wbcap.errors import InputError, setting
from wbcap.temp_folders import remove_abandoned, temp_folder
from wbcap.view.manifest import SiteContent, read_output

if TYPE_CHECKING:
    from wbcap.view.server import ViewServer

log = logging.getLogger(__name__)

__all__ = ["ViewJob", "build_site", "serve_view", "static_dir", "write_html"]

#: Name of the file that marks a folder written by :func:`write_html` (so it may be replaced).
MARKER = "view.json"
#: In that folder: the files :func:`write_html` wrote there, one relative path per line (a file
#: not listed was added by someone else, and is not deleted without asking).
WRITTEN_LIST = ".wbcap-files"
#: What marks a page written by :func:`write_html` (``static/index.html``'s own meta tag).
PAGE_MARK = '<meta name="generator" content="wbcap view">'
_PAGE_FILES = ("app.js", "timeline.js", "style.css")


@dataclass(frozen=True)
class ViewJob:
    """What ``wbcap view`` was asked to do (built once by the CLI).

    Attributes:
        out: a finished ``wbcap run`` or ``wbcap image`` output folder.
        html: write the page here (``.html``) with its files in ``<stem>_files/``; None: serve.
        port: the port to serve on (0: a free one).
        body_models: SMPL-X file or folder, only needed for a run without GLB files (they are
            then made from ``params.jsonl`` as ``wbcap export`` does); None: as ``wbcap export`` (the
            model the run was made with while it exists, else the usual places).
        allow_pickle: also accept a ``.pkl`` body model.
        camera: a ``wbcap fuse`` folder's page through this run's camera, with its ``render.mp4``
            (the run's folder name in ``fuse.json``); None: no video, the first person's source camera.
    """

    out: str
    html: str | None = None
    port: int = 0
    body_models: str | None = None
    allow_pickle: bool = False
    camera: str | None = None


#: The prefix of a served page's temporary folder (:func:`serve_view`).
_SERVED_PREFIX = "wbcap-view-"


def static_dir() -> Path:
    """The page's own files (``index.html``, ``app.js``, ``timeline.js``, ``style.css``, ``vendor/``) in the package."""
    return Path(__file__).resolve().parent / "static"


def _place(src: Path, dst: Path, link: bool) -> None:
    """``src`` at ``dst``: with ``link`` (a site served from here) a hard link where the two
    share a file system, so that the page keeps the files it was built from when a later
    ``wbcap run --resume`` removes and rewrites the run's (they are the same file until then),
    else a symbolic link; without (a folder to send) a hard link or a copy. Of the file a link at
    ``src`` leads to (inside the folder: :func:`wbcap.view.manifest.read_output`), not of the
    link itself (``os.link`` does not follow one on Linux)."""
    src = src.resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
        except OSError:
            os.symlink(src, dst)
        return
    try:
        os.link(src, dst)  # same file system: no copy, and the folder still copies as plain files
    except OSError:
        shutil.copyfile(src, dst)


def _page(base: str | None, serve_command: str) -> str:
    html = (static_dir() / "index.html").read_text(encoding="utf-8")
    # (percent-encoded: a folder named "take#2_files/" or "50%_files/" is otherwise read as an anchor or an escape)
    html = html.replace("<!--BASE-->", f'<base href="{escape(urllib.parse.quote(base, errors="surrogateescape"))}">' if base else "")
    shown = serve_command.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # (the page is UTF-8 text)
    return html.replace("{{SERVE_COMMAND}}", escape(shown))


def _make_missing_glbs(job: ViewJob, content: SiteContent, site: Path) -> None:
    """Make the GLB files of tracks that have none (``--export none``) into ``site``, as
    ``wbcap export`` would (with ``--world`` when meta.json says the run's files are in the world
    frame, so they show what its npz files and render.mp4 show), and add them to the manifest."""
    if not content.missing_glb:
        return
    from wbcap.export.animation import AnimationExport
    from wbcap.export.from_run import ExportJob, export_run
    from wbcap.view.manifest import end_parts_at_their_rows, part_entry, set_view_frame

    world = content.frame == "world"
    ids = sorted(content.missing_glb)
    log.info("making the animation files of track(s) %s from params.jsonl (the run has none)%s",
             ", ".join(map(str, ids)), "; the ground estimated again, as `wbcap export --world` does" if world else "")
    dest = site / "media" / "generated"
    written = export_run(ExportJob(run=job.out, export=AnimationExport(formats=("glb",)), dest=str(dest),
                                   body_models=job.body_models, allow_pickle=job.allow_pickle, tracks=tuple(ids),
                                   frame="world" if world else "camera", warn_unfinished=False))  # (read_output said so)
    tracks = {t["id"]: t for t in content.manifest["tracks"]}
    for path in sorted(written):
        tid = int(path.stem.split("_")[1])
        tracks[tid]["parts"].append(part_entry(f"media/generated/{path.name}", path))
    for track in tracks.values():
        track["parts"].sort(key=lambda p: p["t0"])
        end_parts_at_their_rows(track, content.row_times.get(track["id"], []))
    set_view_frame(content.manifest)


def build_site(job: ViewJob, site: Path, *, link: bool) -> dict:
    """Write the site of ``job.out`` into the empty folder ``site``; returns the manifest.

    ``link``: hard links (or, across file systems, symbolic links) to the output folder's files
    and the package's page files (a site to serve from here); else hard links or copies (a
    folder to send).

    Raises:
        InputError: ``job.out`` is not an output folder (see :func:`wbcap.view.manifest.read_output`).
    """
    t0 = time.perf_counter()
    out = Path(job.out).expanduser()
    content = read_output(out, job.camera)
    static = static_dir()
    # wbcap's own page files: linked into a served site (gone with it), copied into an --html
    # folder (a hard link there would be the installed file itself: a page edited in place
    # would change wbcap and every other page)
    for name in _PAGE_FILES:
        if link:
            _place(static / name, site / name, link)
        else:
            shutil.copyfile(static / name, site / name)
    if link:
        os.symlink(static / "vendor", site / "vendor", target_is_directory=True)
    else:  # (file by file: copytree gathers its errors into shutil.Error, so a full disk was a crash report)
        for src in sorted(p for p in (static / "vendor").rglob("*") if p.is_file()):
            (site / src.relative_to(static)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, site / src.relative_to(static))
    for url, path in content.files.items():
        _place(path, site / url, link)
    for url, data in content.generated.items():
        dst = site / url
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
    _make_missing_glbs(job, content, site)
    (site / MARKER).write_text(json.dumps(content.manifest, separators=(",", ":")), encoding="utf-8")
    log.info("viewer site for %s built in %.2f s: %d of the run's files %s, %d written for the page",
             out, time.perf_counter() - t0, len(content.files), "linked" if link else "linked or copied",
             len(content.generated) + 1)  # (an HCI trial could not tell what "of its files, made" meant)
    for warning in content.warnings:
        log.warning("%s", warning)
    return content.manifest


def serve_command(page: Path) -> str:
    """The shell command, run in ``page``'s folder, that serves a page :func:`write_html` wrote
    (``python3 <name>_files/serve.py``: "my take_files/" quoted, "-x_files/" not read as an
    option); browsers do not run it from a ``file://`` address."""
    files = page.with_name(f"{page.stem}_files")
    return f"python3 {shell_word(files.name + '/serve.py', option_safe=True)}"


def write_html(job: ViewJob) -> Path:
    """Write ``job.html`` and its folder ``<stem>_files/`` (replaced if an earlier ``wbcap view``
    wrote it); returns the page's path.

    Raises:
        InputError: ``job.html`` does not end in ``.html`` or lies inside ``job.out``, or
            ``<stem>_files/`` exists and was not written by ``wbcap view``.
    """
    from wbcap.atomic import check_writable_destination

    page = Path(job.html or "").expanduser()
    if page.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"{setting('html')} {page}: must name an .html file (e.g. view.html)")
    _check_name_length(page)
    try:  # (a name from bytes that are not UTF-8: no address can name it)
        page.name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(str(page)).decode("utf-8", "backslashreplace")
        raise InputError(f"{setting('html')} {shown}: its name is not valid UTF-8 text, which a web address needs; "
                         "choose another name") from None
    # (under a file or a device: one line naming --html, not "cannot create the output folder (File exists)")
    check_writable_destination(page.parent, output=page, fix=f"choose another {setting('html')} file")
    # a killed server's folder goes here too, as the README says of every `wbcap view` (it went only
    # with the next served page: a new user's trial)
    remove_abandoned(_SERVED_PREFIX)
    out = Path(job.out).expanduser().resolve()
    if out == page.parent.resolve() or out in page.parent.resolve().parents:
        # (its files would then be files wbcap run does not know: the run could no longer be replaced)
        raise InputError(f"{setting('html')} {page}: inside the folder it shows ({job.out}); write the page beside "
                         f"it, e.g. {setting('html')} {Path(job.out).expanduser().parent / (out.name + '.html')}")
    files = page.with_name(f"{page.stem}_files")
    for path in (page, files):  # (wbcap writes no links: one there, dangling or not, is someone else's)
        if path.is_symlink():
            raise InputError(f"{path}: is a link, which `wbcap view` did not write; move it away or choose another "
                             f"{setting('html')} file")
    if files.exists() and not (files / MARKER).is_file():
        raise InputError(f"{files}: exists and was not written by `wbcap view`; move it away or choose "
                         f"another {setting('html')} file")
    _check_replaceable(page, files)
    serve = serve_command(page)
    made = [a for a in (page.parent, *page.parent.parents) if not a.exists()]  # (innermost first)
    try:
        _write_site(job, page, files, serve)
    except BaseException:  # (a refused folder left the page's new empty folders: a security review)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    log.info("wrote %s and %s/", page, files)
    return page


def _write_site(job: ViewJob, page: Path, files: Path, serve: str) -> None:
    """:func:`write_html`'s writing, its checks passed."""
    from wbcap.atomic import STAGING_MARKER, atomic_write_text, staged_dir

    with staged_dir(files) as stage:
        build_site(job, stage, link=False)
        shutil.copyfile(Path(__file__).resolve().parent / "server.py", stage / "serve.py")
        (stage / "README.txt").write_text(
            f"wbcap viewer for {Path(job.out).name}. Open it with:\n\n    {serve}\n\n"
            f"in the folder holding {page.name} (Python 3.10+, nothing else to install), then open the address "
            "it prints.\nBrowsers do not run this page from a file:// address (ES modules and fetch need http).\n",
            encoding="utf-8", errors="surrogateescape")
        written = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*")
                         if p.is_file() and p != stage / STAGING_MARKER)  # (the marker: taken out)
        (stage / WRITTEN_LIST).write_text("".join(f"{name}\n" for name in written), encoding="utf-8",
                                          errors="surrogateescape")  # (names as the file system has them)
    atomic_write_text(page, _page(f"{files.name}/", serve))


def _check_name_length(page: Path) -> None:
    """Refuse a page name whose longest name beside it, its folder's staging name
    (``.<stem>_files.staging-xxxxxxxx``, :mod:`wbcap.atomic`), is longer than the file system
    takes (``NAME_MAX``, 255 bytes where it cannot be asked); it failed half-way with errno 36.

    Raises:
        InputError: naming the longest stem allowed.
    """
    where = page.parent
    while not where.is_dir() and where != where.parent:
        where = where.parent
    try:
        name_max = os.pathconf(where, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # (no pathconf here, or no answer)
        name_max = 255
    extra = len(".") + len("_files.staging-00000000")
    if len(os.fsencode(page.stem)) + extra > name_max:
        raise InputError(f"{setting('html')} {page}: the name is too long for the folder written beside it (at most "
                         f"{name_max - extra} bytes before {page.suffix} here); choose a shorter name")


def _check_replaceable(page: Path, files: Path) -> None:
    """Refuse to replace a page or files that an earlier :func:`write_html` did not write: a
    ``page`` without :data:`PAGE_MARK`, or in ``files`` (which holds :data:`MARKER`) a file
    missing from its :data:`WRITTEN_LIST` (a folder from before that list: not checked).

    Raises:
        InputError: naming the page or the first such file.
    """
    fix = f"move it away or choose another {setting('html')} file"
    if page.is_file():
        try:
            head = page.read_text(encoding="utf-8", errors="replace")[:4096]
        except OSError as exc:
            raise InputError(f"{page}: cannot be read to check that `wbcap view` wrote it ({exc.strerror or exc}); "
                             f"{fix}") from None
        if PAGE_MARK not in head:
            raise InputError(f"{page}: exists and was not written by `wbcap view`; {fix}")
    listed = files / WRITTEN_LIST
    if not listed.is_file():
        return
    known = set(listed.read_text(encoding="utf-8", errors="surrogateescape").splitlines()) | {WRITTEN_LIST}
    folders = {parent.as_posix() for name in known for parent in PurePosixPath(name).parents}
    # (anything else: a file, a folder holding none of its files, a link, a pipe; links are not followed)
    foreign = sorted(p for p in files.rglob("*") if p.relative_to(files).as_posix() not in known
                     and (p.is_symlink() or not p.is_dir() or p.relative_to(files).as_posix() not in folders))
    if foreign:
        raise InputError(f"{foreign[0]}: added to a page folder `wbcap view` wrote, which this page would replace "
                         f"({len(foreign)} such file{'s' if len(foreign) > 1 else ''}); move "
                         f"{'them' if len(foreign) > 1 else 'it'} away or choose another {setting('html')} file")


@contextlib.contextmanager
def serve_view(job: ViewJob) -> Iterator[ViewServer]:
    """Build the site in a temporary folder and serve it on ``127.0.0.1:job.port``; yields the
    running :class:`~wbcap.view.server.ViewServer` (``.url``). The folder is removed on exit, and
    one that a killed server left is removed by the next (:func:`wbcap.temp_folders.temp_folder`).

    Raises:
        InputError: not an output folder, or the port is taken.
    """
    from wbcap.view.server import ViewServer

    # (the folder holds a mark, so that one a server killed by SIGKILL left is removed by the next
    # `wbcap view`: the site goes in a folder of it, which serves no mark)
    with temp_folder(_SERVED_PREFIX) as tmp:
        site = tmp.path / "site"
        site.mkdir()
        try:  # (the port first: a taken one is said before the seconds of building; a user trial)
            server = ViewServer(site, job.port)
        except OSError as exc:
            raise InputError(f"{setting('port')} {job.port}: cannot serve on 127.0.0.1 ({exc.strerror or exc}); "
                             f"choose another port or 0 for a free one") from None
        try:
            build_site(job, site, link=True)
            (site / "index.html").write_text(_page(None, "wbcap view OUT"), encoding="utf-8")
        except BaseException:
            server.server.server_close()  # (bound, never started: shutdown() would wait for ever)
            raise
        with server:
            yield server
