"""The ``wbcap`` command. Subcommands load lazily so ``wbcap --help`` imports neither torch nor av.

Every subcommand module only parses options, builds a config and calls one library function.
A :class:`~wbcap.errors.WbcapError` becomes one ``error: ...`` line on stderr and exit status 2;
while a subcommand runs, messages name settings by its flags (:func:`option_spelling`).
Any other exception (a bug, or a failure wbcap did not foresee) becomes one line on stderr,
``error: wbcap <command> failed: <Type>: <message> (<where>); full traceback in <log file>``,
and exit status 1; the log file (:func:`crash_log_dir`) holds the traceback, which ``--debug``
or ``-v`` also prints. A write that finds the disk or quota full is not a crash: one ``error:``
line naming the file (its final name) and the fix, exit status 2. Neither is a stdout that
cannot be written (``> /dev/full``), whatever the command: one ``error:`` line when the command
ends, repeating what it printed (:mod:`wbcap.cli.stdout`), except a closed pipe (``| head``): quiet,
status 141. Ctrl-C prints ``interrupted`` and
exits with 130 (the ``wbcap`` command, :func:`console_main`, then ends by SIGINT itself, which a
shell reports as 130 too: a shell loop over clips stops there, as for any program, where a
plain exit 130 let it start the next clip, an HCI researcher's trial); SIGTERM and SIGHUP are
taken as Ctrl-C (:func:`wbcap.stop_signals.stop_as_ctrl_c`: the same cleanup), ``stopped by
SIGTERM``, exit status 143 (129).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import importlib
import logging
import os
import re
import signal
import sys
import tempfile
import traceback
from pathlib import Path

import click

with contextlib.suppress(ImportError):  # (not Unix)
    # loaded now for open_files_limit: loading it once the limit is reached would fail
    import resource  # noqa: F401

from wbcap.console import PrintableFormatter, printable
from wbcap.limits import SUGGESTED_OPEN_FILES, open_files_limit  # (loaded now, as resource is: a code review)

SUBCOMMANDS = {
    "image": ("wbcap.cli.image", "image", "Recover SMPL-X bodies of the people in images."),
    "record": ("wbcap.cli.record", "record_cmd", "Record a live stream or a camera into a file that wbcap run reads."),
    "run": ("wbcap.cli.run", "run", "Track and reconstruct every person in a video or image sequence."),
    "export": ("wbcap.cli.export", "export_cmd", "Write a finished run's files again: glb, bvh, fbx, npz, csv (3D joints), angles, trc (OpenSim), c3d."),
    "fuse": ("wbcap.cli.fuse", "fuse", "Fuse several calibrated cameras' runs into one motion per person."),
    "view": ("wbcap.cli.view", "view", "Look at a finished run or image folder in a web browser (video + 3D)."),
    "train": ("wbcap.cli.train", "train", "Train: body | hand | merge | finetune (the Hand4Whole recipe)."),
    "eval": ("wbcap.cli.eval", "eval_cmd", "Evaluate on EHF, 3DPW, Human3.6M or AGORA with the standard protocols."),
    "bench": ("wbcap.cli.bench", "bench", "Time every stage, FLOPs and memory on this device."),
    "demo": ("wbcap.cli.demo", "demo", "Try the pipeline without the model files: a bundled photo, or --video SOURCE."),
    "weights": ("wbcap.cli.weights", "weights", "List, download, import and verify weights: checkpoints, detectors."),
    "doctor": ("wbcap.cli.doctor", "doctor", "Report what is installed and what is missing, with fixes."),
    "convert": ("wbcap.cli.convert", "convert", "Convert MANO and evaluation-file pickles once into the numpy files wbcap reads."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attr, _ = SUBCOMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        """click's ``main`` with stdout behind a :class:`~wbcap.cli.stdout.StdoutGuard`: a
        failed write to it (help and usage text included) ends as one ``error:`` line that
        repeats what was to be written, exit status the command's own or 2."""
        from wbcap.cli.stdout import UNWRITTEN_EXIT_CODE, guarded_stdout

        # shell completion (click's `_WBCAP_COMPLETE=bash_source wbcap`, and each completion) runs no
        # command and writes its script as bytes, which the text-only guard refused: a traceback in
        # every shell that set it up (a review)
        completing = complete_var or f"_{prog_name or self.name or 'wbcap'}_COMPLETE".replace("-", "_").upper()
        if os.environ.get(completing):
            try:
                return super().main(args, prog_name, complete_var, standalone_mode, **extra)
            except OSError as exc:  # (`> /dev/full`: one line, as a command's, not a traceback; a break-it trial)
                if exc.errno == errno.EPIPE:
                    _quiet_closed_stdout()
                    sys.exit(CLOSED_PIPE_EXIT_CODE)
                click.echo(f"error: could not write to standard output ({exc.strerror or exc}); the shell completion "
                           "was not written", err=True)
                sys.exit(UNWRITTEN_EXIT_CODE)
        with guarded_stdout() as guard:
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode, **extra)
            except SystemExit as exc:  # (standalone mode: how every command ends)
                if guard is None or not guard.failed:
                    raise
                code = exc.code if isinstance(exc.code, int) and exc.code else UNWRITTEN_EXIT_CODE
            else:  # (standalone_mode=False: the command's return value, or its exit status)
                if guard is None or not guard.failed:
                    return rv
                code = rv if isinstance(rv, int) and rv else UNWRITTEN_EXIT_CODE
            guard.reported = True
            with contextlib.suppress(OSError):  # (stderr on the same full disk: nothing left to say it on)
                click.echo(printable(f"error: {guard.message()}", one_line=True), err=True)
        if standalone_mode:
            sys.exit(code)
        return code

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            ctx = super().make_context(info_name, list(args), parent, **extra)
        except OSError as exc:  # `wbcap --help | head`: the top level's help and version are written here
            if exc.errno != errno.EPIPE:
                raise
            _quiet_closed_stdout()
            raise click.exceptions.Exit(CLOSED_PIPE_EXIT_CODE) from None
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # wbcap's own options: one line too (`wbcap --offline image X` printed a usage block)
            if isinstance(exc, OneLineUsageError):
                raise
            message = exc.format_message()
            named = next((word for word in args if word in SUBCOMMANDS), None)
            try:  # (a command that fails to import: its own run says so; here, no hint)
                command = self.get_command(exc.ctx, named) if isinstance(exc, click.NoSuchOption) and named else None
            except Exception:
                command = None
            if command is not None and any(exc.option_name in (*o.opts, *o.secondary_opts) for o in command.params):
                message = (f"No such option '{exc.option_name}' of wbcap itself: a command's options go after its "
                           f"name (wbcap {named} {exc.option_name} ...)")
            raise OneLineUsageError(message, exc.ctx) from None
        ctx.meta.setdefault("wbcap.args", tuple(args))  # (the words typed: see _unknown_home)
        return ctx

    def invoke(self, ctx: click.Context):
        from wbcap.errors import WbcapError, spelling
        from wbcap.stop_signals import stop_as_ctrl_c

        try:
            # SIGTERM and SIGHUP (timeout, docker stop, a batch scheduler, a closed terminal) end every
            # command as Ctrl-C does: its temporary files removed, its output left as it was
            try:
                with stop_as_ctrl_c(), spelling(lambda name: option_spelling(ctx, name)):
                    return super().invoke(ctx)
            except Exception as exc:  # (out of open files, whatever it became: one line, before the rest)
                line = None if isinstance(exc, _CLICK_OWN) else _out_of_file_descriptors(exc)
                if line is None:
                    raise
                click.echo(printable(f"error: {line}", one_line=True), err=True)
                ctx.exit(2)
        except WbcapError as exc:
            click.echo(printable(f"error: {exc}", one_line=True), err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:  # (Ctrl-C, SIGTERM, SIGHUP)
            from wbcap.stop_signals import exit_status, stop_message

            click.echo(stop_message(exc), err=True)
            if exit_status(exc) == INTERRUPTED_EXIT_CODE:  # (Ctrl-C: console_main ends by SIGINT once it is done)
                raise InterruptedExit(INTERRUPTED_EXIT_CODE) from None
            ctx.exit(exit_status(exc))
        except click.exceptions.NoArgsIsHelpError:
            raise  # (a command given nothing: click shows its help)
        except click.UsageError as exc:  # a bad option value or argument of a command: one line
            if isinstance(exc, OneLineUsageError):
                raise
            message = exc.format_message()
            if isinstance(exc, click.NoSuchOption) and exc.option_name in _TOP_OPTIONS:  # (`wbcap run X -q`)
                message = (f"No such option '{exc.option_name}': {exc.option_name} is an option of wbcap itself, "
                           f"given before the command (wbcap {exc.option_name} {ctx.invoked_subcommand or 'COMMAND'} ...)")
            raise OneLineUsageError(message, exc.ctx) from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # --help, ctx.exit(): click reports them itself
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # `wbcap ... | head`: quietly, as a shell tool the pipe killed
                _quiet_closed_stdout()
                ctx.exit(CLOSED_PIPE_EXIT_CODE)
            if exc.errno in DISK_FULL:  # not a crash: the user can act on it
                click.echo(printable(f"error: {_disk_full_message(exc, ctx)}", one_line=True), err=True)
                ctx.exit(DISK_FULL_EXIT_CODE)
            if exc.errno == errno.ENAMETOOLONG and exc.filename:  # a name over 255 bytes, from wherever it is met
                from wbcap.atomic import long_name_message

                click.echo(printable(f"error: {long_name_message(os.fsdecode(exc.filename))}", one_line=True), err=True)
                ctx.exit(2)
            _report_crash(ctx, exc)
        except RuntimeError as exc:
            line = _unknown_home(ctx, exc)
            if line is None:
                _report_crash(ctx, exc)
            click.echo(printable(f"error: {line}", one_line=True), err=True)
            ctx.exit(2)
        except Exception as exc:
            _report_crash(ctx, exc)


#: The exit status of a command Ctrl-C stopped (128 + SIGINT).
INTERRUPTED_EXIT_CODE = 130


class InterruptedExit(SystemExit):
    """The end of a command Ctrl-C stopped, once it has cleaned up (``code`` 130, as
    ``CliRunner`` and a Python caller of :func:`main` see it): :func:`console_main` then ends the
    process by SIGINT (:func:`exit_without_finalising`)."""


#: click's own exceptions (--help, ctx.exit(), usage errors, aborts): reported by click or below.
_CLICK_OWN = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)


def _out_of_file_descriptors(exc: BaseException) -> str | None:
    """One line where ``exc``, or an error it was raised while handling (``__context__``, also
    under ``from None``), is a process or the system out of open files (``EMFILE``, ``ENFILE``):
    a file read then was not damaged (`ulimit -n 9` had the SMPL-X file called unreadable, with
    "download it again": a break-it trial). None otherwise."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.EMFILE:
            limit = open_files_limit()
            said = f"this process may have {limit} open at once" if limit else "this process's limit is reached"
            hard = open_files_limit(hard=True)
            below = (f"; its hard limit, {hard}, is lower: ask the administrator"
                     if hard is not None and hard < SUGGESTED_OPEN_FILES else "")
            return (f"too many open files: {said} (ulimit -n); raise the limit (ulimit -n {SUGGESTED_OPEN_FILES}{below}) "
                    "and run the command again")
        if isinstance(error, OSError) and error.errno == errno.ENFILE:
            return ("the system has too many open files (ENFILE): close other programs or raise the system's "
                    "limit (sysctl fs.file-max), then run the command again")
        error = error.__cause__ or error.__context__
    return None


def _quiet_closed_stdout() -> None:
    """After a write to a closed pipe: what is left unwritten in stdout's buffer goes to
    /dev/null at exit, as Python's documentation advises (else a second BrokenPipeError at
    interpreter exit)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(fd, sys.stdout.fileno())
        finally:
            os.close(fd)


#: A command whose standard output was a pipe its reader closed (``wbcap weights list | head -1``)
#: ends quietly with this status, 128 + SIGPIPE, as a shell tool the signal ends (click's own is 1,
#: which the README reserves for unexpected failures).
CLOSED_PIPE_EXIT_CODE = 141


#: The options of ``wbcap`` itself, given before the command (``wbcap -q run ...``): one given
#: after it is "No such option" with where it goes (a user trial typed ``wbcap run X -q``).
_TOP_OPTIONS = ("-v", "--verbose", "-q", "--quiet", "--debug")  # (click names -vv "-v")


class OneLineUsageError(click.UsageError):
    """A command's usage error (an option value out of range, a missing argument, options that
    exclude each other) shown as wbcap's other input errors are: one ``error: ...`` line, which
    points at the command's ``--help``, instead of click's usage block; exit status 2."""

    def show(self, file=None) -> None:
        where = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(printable(f"error: {self.format_message().removesuffix('.')}{where}", one_line=True), err=True, file=file)


def _unknown_home(ctx: click.Context, exc: RuntimeError) -> str | None:
    """The line for pathlib's ``Path.expanduser()`` failing on a path typed as ``~name...``
    where this machine has no user ``name`` (``~name`` means that user's home folder, and
    pathlib reads ``./~name`` as ``~name`` too), naming the first such word typed; None for
    any other RuntimeError."""
    if "home directory" not in str(exc):
        return None
    for word in ctx.meta.get("wbcap.args", ()):
        path = str(word).partition("=")[2] if str(word).startswith("-") else str(word)
        bare = path
        while bare.startswith("./"):  # (as pathlib reads it)
            bare = bare[2:].lstrip("/")
        if bare.startswith("~") and os.path.expanduser(bare) == bare:
            user = bare[1:].split("/", 1)[0]
            return (f"{path}: there is no user {user!r} on this machine, whose home folder ~{user} would be; give "
                    f"that path in full (e.g. {os.path.join(os.getcwd(), bare)})")
    return None


#: The commands :func:`option_spelling` looks in first for a setting the running command lacks, in order.
_MAIN_COMMANDS = ("run", "image")


def _search_order(first: str | None):
    """Sort key of command names: ``first``, then :data:`_MAIN_COMMANDS` in order, then the rest (stable)."""
    order = (first, *_MAIN_COMMANDS)
    return lambda name: order.index(name) if name in order else len(order)


def option_spelling(root: click.Context, name: str, first: str | None = None) -> str:
    """How messages name the setting ``name`` (:func:`wbcap.errors.setting`) in this command line.

    The option whose parameter is ``name`` in the running (sub)command or the groups above it,
    as first declared (``min_height_frac`` -> ``--min-height``, ``boxes_file`` -> ``--boxes``,
    ``out`` -> ``-o``); an argument's metavar (``source`` -> ``SOURCE``); else the option of
    another command of the top group that sets it, with that command's name (``min_length`` ->
    ``wbcap run --min-track`` in ``wbcap demo``'s messages, which has no such flag), looked for
    in the command named ``first`` before the others (the one the running command stands in for:
    ``wbcap demo --video`` runs ``wbcap run``'s pipeline), then in ``wbcap run`` and ``wbcap
    image`` (the commands whose settings the others' messages are about), then in the group's
    order; else ``--`` + the name with dashes.
    ``root`` stands in off the main thread, where click has no current context.
    """
    ctx: click.Context | None = click.get_current_context(silent=True) or root
    top = ctx
    while ctx is not None:
        for param in ctx.command.params:
            if param.name == name:
                return param.human_readable_name if isinstance(param, click.Argument) else param.opts[0]
        top, ctx = ctx, ctx.parent
    groups = [(top.command, top.info_name or "wbcap")] if top is not None and isinstance(top.command, click.Group) else []
    while groups:  # the other commands, in the group's order, subgroups after (wbcap's import lazily: ~40 ms)
        group, path = groups.pop(0)
        for n in sorted(group.list_commands(top), key=_search_order(first)):
            command = group.get_command(top, n)
            if isinstance(command, click.Group):
                groups.append((command, f"{path} {n}"))
            for param in getattr(command, "params", ()):
                if param.name == name and isinstance(param, click.Option):
                    return f"{path} {n} {param.opts[0]}"
    return "--" + name.replace("_", "-")


#: Exit status of an unexpected failure (user errors exit with 2, Ctrl-C with 130).
CRASH_EXIT_CODE = 1
#: Exit status when the disk (or the user's quota) is full: an error the user fixes, as bad input.
DISK_FULL_EXIT_CODE = 2
#: errno values of a write that found no room: a full disk or quota (``EDQUOT`` is missing on
#: some platforms), or a file over the largest the file system or the process's file size limit
#: (``ulimit -f``) allows (``EFBIG``: a user trial got a crash log for it).
DISK_FULL = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name))


#: Parameter names of the options that name a command's output (``-o``, ``--dest``, ``--html``,
#: ``--json-out``): the full-disk message names the running command's.
_OUTPUT_PARAMS = ("out", "dest", "html", "json_out")


def _disk_full_message(exc: OSError, ctx: click.Context | None = None) -> str:
    """One line for a write that found the disk or quota full (or the file too large,
    ``EFBIG``): the file it was writing (the
    error's second file name when it has two, as a copy's has; the final name, not the temporary
    it was written under: :func:`wbcap.atomic.final_path`) and the
    fix: for a file in wbcap's own folders (weights; the synthetic SMPL-X model in the cache)
    ``WBCAP_HOME`` on another disk, else the output option of the command ``ctx`` runs, if it has
    one; for a file too large, the file size limit first."""
    from wbcap.atomic import final_path
    from wbcap.paths import ENV_HOME, user_cache_dir, user_data_dir

    reason = exc.strerror or "no space left on device"
    # (a copy's error names the source first and the file being written second: shutil.copyfile)
    written = exc.filename2 or exc.filename
    path = final_path(written) if written else None
    where = f"cannot write {path} ({reason})" if path else f"cannot write ({reason})"
    first = ("raise the file size limit (ulimit -f)" if getattr(errno, "EFBIG", None) == exc.errno
             else "free disk space")
    if path is not None and any(_is_within(Path(path), own) for own in (user_data_dir(), user_cache_dir())):
        return f"{where}: {first} or set {ENV_HOME} to a folder on another disk"
    option = _output_option(ctx)
    line = f"{where}: {first}" + (f" or point {option} to another disk" if option else "")
    then = getattr(exc, "wbcap_next_step", None)  # (the command's own next step, e.g. `wbcap run`'s --resume)
    return f"{line}; {then}" if then else line


def _output_option(ctx: click.Context | None) -> str | None:
    """The output option (:data:`_OUTPUT_PARAMS`, as first declared) of the command the group
    context ``ctx`` ran; for a subgroup (``train``, ``weights``) the one all its commands share.
    None when there is none (``doctor``, ``weights``)."""
    if ctx is None or not isinstance(ctx.command, click.Group) or ctx.invoked_subcommand is None:
        return None
    command = ctx.command.get_command(ctx, ctx.invoked_subcommand)
    leaves = ([command.get_command(ctx, n) for n in command.list_commands(ctx)] if isinstance(command, click.Group)
              else [command])
    found = {next((p.opts[0] for p in leaf.params if isinstance(p, click.Option) and p.name in _OUTPUT_PARAMS), None)
             for leaf in leaves if leaf is not None}
    return found.pop() if len(found) == 1 else None


def _is_within(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def crash_log_dir() -> Path:
    """Where crash logs go: :func:`wbcap.paths.user_log_dir`."""
    from wbcap.paths import user_log_dir

    return user_log_dir()


def _where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame in wbcap's code (else the innermost)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    package = str(Path(__file__).resolve().parents[1])

    def absolute(filename: str) -> str:  # (a relative one from a working folder deleted since: as it is)
        try:
            return str(Path(filename).resolve())
        except OSError:
            return filename

    ours = [f for f in frames if absolute(f.filename).startswith(package)]
    frame = (ours or frames)[-1]
    name = frame.filename
    if ours:
        name = str(Path(absolute(name)).relative_to(Path(package).parent))
    return f"{name}:{frame.lineno} in {frame.name}"


def _write_crash_log(text: str) -> Path | None:
    """Write ``text`` to a new ``crash-<time>-<pid>.log``; the log folder, else this user's own
    folder of the temp folder (``wbcap-logs-<uid>``, readable by the user only: a shared temp
    folder's ``wbcap-logs`` of one user refused the next one's logs, and showed everyone the
    command lines and paths: an admin's trial)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for folder in (crash_log_dir(), Path(tempfile.gettempdir()) / f"wbcap-logs-{uid}"):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / f"crash-{stamp}-{os.getpid()}.log"
            # (surrogateescape: a path or argument that is not UTF-8 is written back as its own bytes;
            # strict UTF-8 made the crash report itself crash, leaving an empty log)
            with open(path, "x", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return None


def describe_crash(exc: BaseException) -> str:
    """``Kind: message (file:line in function; notes)`` of an unexpected exception, on one line
    (the message cut at 300 characters): what the crash line says of it."""
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:297] + "..."
    details = [_where(exc)] + [" ".join(n.split()) for n in getattr(exc, "__notes__", [])]
    details = [d for d in details if d]
    text = type(exc).__name__ + (f": {message}" if message else "")
    return text + (f" ({'; '.join(details)})" if details else "")


def crash_hint(exc: BaseException, command: str | None = None) -> str:
    """What a crash line adds on the likely cause and its fix: a working folder deleted, or memory
    run out (:func:`memory_hint`, for ``command``, the wbcap command that failed) (``"; ..."``);
    empty otherwise."""
    from wbcap.errors import is_out_of_memory

    if _working_folder_gone():  # (the likely cause, and its fix: an admin's trial)
        return f"; {_NO_WORKING_FOLDER}"
    thread = (isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)) or _encoder_threads_refused(exc)
    if is_out_of_memory(exc) or thread:
        return "; " + memory_hint(exc, command, thread)
    return ""


def _encoder_threads_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is the video encoder's EAGAIN (``BlockingIOError``, "Resource temporarily
    unavailable", raised where wbcap renders and writes videos): libx264 could not start its threads, as under a tight memory limit (a
    low-memory trial: `wbcap run` under ``ulimit -v 2500000`` failed so while rendering)."""
    return isinstance(exc, BlockingIOError) and _crash_stage(exc) == "render"


#: The commands with ``--batch-size``, whose batches a smaller one makes smaller.
_BATCH_COMMANDS = frozenset({"run", "image", "eval", "train"})
#: The commands with ``--no-render``.
_RENDER_COMMANDS = frozenset({"run", "image"})


def memory_hint(exc: BaseException, command: str | None = None, thread: bool = False) -> str:
    """The advice for a crash that ran out of memory (``thread``: could not start a thread), by
    where it failed (its traceback) and for the ``command`` that failed: only the options that
    command has and that lower the peak there (a low-memory trial: `--batch-size` was advised
    where the network was being prepared, and to `wbcap view`, which has none; rendering's
    failure advised nothing of `--no-render`), and the limit that is set, with its size
    (:func:`wbcap.limits.memory_limits`; `ulimit -v` was named under `ulimit -d`). A GPU's is said
    as such (it was told to raise `ulimit -v`)."""
    from wbcap.limits import (
        NEEDED_ADDRESS_SPACE,
        NEEDED_ADDRESS_SPACE_NO_RENDER,
        NEEDED_MEMORY,
        gigabytes,
        memory_limits,
    )

    if "CUDA out of memory" in str(exc):
        fewer = "use fewer images per batch (--batch-size, where it is above 1), " if command in _BATCH_COMMANDS else ""
        return (f"the GPU ran out of memory: {fewer}free GPU memory (other programs on it), use a GPU with more, or "
                "--device cpu")
    stage = _crash_stage(exc)
    what = ("it could not start a thread (a memory limit, or the limit on processes and threads, ulimit -u)" if thread
            else "it ran out of memory")
    limits = memory_limits()
    fixes = [f"raise the memory limit ({limits[0][0]}, now {gigabytes(limits[0][1])})" if limits
             else "free memory (close other programs)"]
    if stage == "render" and command in _RENDER_COMMANDS:
        what += " while rendering"
        fixes.insert(0, "leave the renders out (--no-render)")
    elif stage == "prepare":
        what += f" while preparing the network (it takes about {gigabytes(NEEDED_MEMORY)} of memory)"
    elif command in _BATCH_COMMANDS:
        fixes.append("use fewer images per batch (--batch-size, where it is above 1)")
    need = ""
    if any(name == "ulimit -v" for name, _ in limits) and command in _RENDER_COMMANDS:
        need = (f" (`wbcap run` took about {gigabytes(NEEDED_ADDRESS_SPACE)} of address space with its video, "
                f"{gigabytes(NEEDED_ADDRESS_SPACE_NO_RENDER)} without)")
    again = "; the frames done are kept: the same command with --resume goes on" if command == "run" else ""
    return f"{what}: {', '.join(fixes[:-1]) + ' or ' if len(fixes) > 1 else ''}{fixes[-1]}{need}{again}"


#: wbcap's files that render and write videos (:func:`_crash_stage`).
_RENDER_FILES = tuple(f"/wbcap/{name}" for name in ("export/render.py", "export/render_process.py",
                                                     "export/video_render.py", "io/video_writer.py"))


#: wbcap's files that build, fold and pack the network before it runs (:func:`_crash_stage`).
_PREPARE_FILES = tuple(f"/wbcap/model/{name}.py" for name in (
    "checkpoint", "fused", "graph_resnet", "init", "int8", "ort_resnet", "strategy", "winograd"))


def _crash_stage(exc: BaseException) -> str | None:
    """Where ``exc`` was raised: ``"render"`` (a frame in wbcap's rendering or video writing),
    ``"prepare"`` (its innermost frame in wbcap in one of the files that build the network,
    :data:`_PREPARE_FILES`, and none of its frames in a network's ``forward`` or in the batches'
    loop, ``wbcap/model/batching.py``, through which a run's decoding, detecting and cropping go:
    a review found those said to be preparing), else None."""
    frames = [(Path(f.filename).as_posix(), f.name) for f in traceback.extract_tb(exc.__traceback__)]
    if any(name.endswith(_RENDER_FILES) for name, _ in frames):
        return "render"
    # (wbcap's own: after the last "/wbcap/" of the path, no site-packages: not a library's file in a
    # virtual environment that lies in a folder named wbcap)
    ours = [(name, func) for name, func in frames if "/wbcap/" in name and "site-packages" not in name.rsplit("/wbcap/", 1)[1]]
    running = any(func in ("forward", "__call__") or name.endswith("/wbcap/model/batching.py") for name, func in frames)
    if ours and ours[-1][0].endswith(_PREPARE_FILES) and not running:
        return "prepare"
    return None


def save_crash_log(exc: BaseException, command: str | None = None) -> Path | None:
    """Write a crash log of ``exc`` (wbcap's and Python's versions, ``command``, by default this
    process's wbcap command line, the time, the traceback; :func:`_write_crash_log`); its path,
    None when it could not be written."""
    from wbcap.versions import wbcap_version

    command = f"wbcap {' '.join(sys.argv[1:])}" if command is None else command
    return _write_crash_log(
        f"wbcap {wbcap_version()}, Python {sys.version.split()[0]}, {sys.platform}\n"
        f"command: {command}\n"
        f"time: {datetime.datetime.now().isoformat(timespec='seconds')}\n\n"
        + "".join(traceback.format_exception(exc)))


def _report_crash(ctx: click.Context, exc: Exception) -> None:
    """One ``error:`` line on stderr, the traceback to a log file (and stderr with --debug/-v)."""
    command = ctx.invoked_subcommand or ctx.info_name or "wbcap"
    log_path = save_crash_log(exc)
    params = ctx.params or {}
    if params.get("debug") or params.get("verbose"):
        click.echo("".join(traceback.format_exception(exc)).rstrip("\n"), err=True)
    line = f"error: wbcap {command} failed: {describe_crash(exc)}{crash_hint(exc, command)}"
    line += f"; full traceback in {log_path}" if log_path else "; the traceback could not be saved (rerun with --debug)"
    click.echo(printable(line, one_line=True), err=True)  # (the unexpected failure's one line)
    ctx.exit(CRASH_EXIT_CODE)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    # Logs go to stderr: stdout stays clean for results (e.g. `wbcap bench --json > out.json`).
    # On a terminal through rich (levels in colour, long lines wrapped to its width); to a file or
    # a pipe, or a terminal that says it is dumb (TERM=dumb: Emacs' shell, some CI consoles),
    # one plain line per record, with the same level column: rich would wrap them at 80 columns
    # and pad them with spaces (a locales trial).
    from rich.console import Console

    console = Console(stderr=True)
    handler: logging.Handler
    if console.is_terminal and not console.is_dumb_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(levelname)-8s %(message)s"
    # Replace the handler of an earlier call (and what a bare basicConfig installed), but keep
    # any other handler: a log file, or pytest's caplog when tests invoke the CLI in-process.
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_wbcap_cli", False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    handler.setFormatter(PrintableFormatter(fmt))  # (names of files wbcap did not make, escaped)
    handler._wbcap_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    if verbose < 2:
        for noisy in ("PIL", "matplotlib", "trimesh", "OpenGL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # Pillow's own warnings on damaged pictures ("Corrupt EXIF data" of a cut TIFF, printed with
        # its source line beside wbcap's one line saying the file is damaged: a break-it review)
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wbcap")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True,
              help="Only warnings and errors: no progress bars, no result lines. doctor then prints only what is "
                   "missing or warned about; bench, weights list|verify and view (a served page's address) still "
                   "print what they are run for.")
@click.option("--debug", is_flag=True,
              help="On an unexpected failure also print the Python traceback (it is always saved to a crash log).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, debug: bool) -> None:
    """wbcap: whole-body motion capture (SMPL-X body, hands and face) from images.

    Start with `wbcap demo`, then `wbcap doctor` to see which files are missing.
    """
    from wbcap.huge_pages import request_huge_pages

    # (before the command imports torch, whose allocator reads the variable once; not for training)
    request_huge_pages(ctx.invoked_subcommand)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    ctx.obj["debug"] = debug
    _setup_logging(verbose, quiet)


#: The fix said when the working folder is gone (deleted or moved away under the shell).
_NO_WORKING_FOLDER = "its working folder no longer exists (deleted or moved); cd to an existing folder and run it again"


def _working_folder_gone() -> bool:
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def _only_help(args: list[str]) -> bool:
    """Whether the command line only asks for help or the version: ``--help``, ``-h`` or
    ``--version`` after command names alone (``wbcap train body --help``), which need no working
    folder: in a deleted one they were refused with the rest (a locales trial). Not ``wbcap image
    a.jpg -o --help``, where it is an option's value (a review: torch's MKL then ended the process)."""
    flags = {"--help", "-h", "--version"}
    return any(w in flags for w in args) and all(w in flags or re.fullmatch(r"[a-z][a-z0-9-]*", w) for w in args)


def _text_streams_never_fail_on_characters() -> None:
    """Standard output and error in a text encoding other than UTF-8 (``LANG=C`` with Python's
    UTF-8 mode off, ``PYTHONIOENCODING=latin-1``): characters they cannot hold (the help's dashes
    and ellipses, a file name) are written as ``?`` instead of failing the command with a
    ``UnicodeEncodeError`` (an admin's trial: `wbcap weights list` and two ``--help`` pages)."""
    import codecs

    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        try:
            utf8 = encoding is not None and codecs.lookup(encoding).name == "utf-8"
        except LookupError:
            utf8 = False
        if not utf8 and getattr(stream, "errors", "strict") == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors="replace")


def main(argv: list[str] | None = None) -> None:
    """Run the ``wbcap`` command line (``argv``: the arguments, default ``sys.argv[1:]``); ends by
    raising :class:`SystemExit` as click does, so it can be called from Python and tested. A
    working folder that no longer exists is one line and exit 2 before anything is imported
    (torch's MKL then ended the process with a bare "FATAL ERROR": an admin's trial), except
    for ``--help`` and ``--version``. Every
    command but ``train`` gives torch's large CPU tensors transparent huge pages unless the
    environment says otherwise (:mod:`wbcap.huge_pages`, asked in :func:`cli` before the command
    runs)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if _working_folder_gone() and not _only_help(args):
        click.echo(f"error: wbcap cannot run: {_NO_WORKING_FOLDER}", err=True)
        raise SystemExit(2)
    _text_streams_never_fail_on_characters()
    cli.main(args=argv, prog_name="wbcap")


def console_main() -> None:
    """The ``wbcap`` console script: :func:`main`, then the process ends at once when nothing is
    left running (:func:`exit_without_finalising`); after Ctrl-C (:class:`InterruptedExit`) by
    SIGINT, as Python itself ends on an unhandled ``KeyboardInterrupt``: a shell running wbcap in
    a loop sees its child killed by the signal and stops the loop (on a plain exit status 130 it
    takes the signal as handled by the child and goes on).

    Python's own shutdown tears down every module and object one by one: after ``wbcap image``
    that took 0.4 s (0.9 s with the OpenGL renderer loaded) on a 2-core Xeon, for nothing a user
    can see, since every output file is closed and moved into place before the command returns.
    """
    signum = None
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
        signum = signal.SIGINT if isinstance(exc, InterruptedExit) else None
    exit_without_finalising(code, signum)


def exit_without_finalising(code: object, signum: int | None = None) -> None:
    """Exit with ``code`` (``sys.exit``'s meaning: None is 0, another non-integer is printed and
    gives 1) through ``os._exit`` after flushing logs, the standard streams and C stdio, unless
    something could still be lost that way: a thread other than the main one that is not a
    daemon (normal exit would wait for it) or a live ``multiprocessing`` child (normal exit would
    join it); then through ``sys.exit``. Atexit handlers do not run: wbcap registers none that
    writes a file (the offscreen renderer's clean-up frees GL memory the process gives back anyway).
    With ``signum`` the process ends by that signal at its default action instead of ``os._exit``
    (by ``sys.exit(code)`` where something is still running).
    """
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):  # as Python exits with any other object: printed, status 1
        print(code, file=sys.stderr)
        code = 1
    busy = any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate())
    mp = sys.modules.get("multiprocessing")
    if busy or (mp is not None and mp.active_children()):
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`wbcap ... | head`), a full disk, a closed stream, none at all (`>&-`)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    with contextlib.suppress(Exception):  # C libraries' own stdio buffers (no libc: nothing to flush)
        import ctypes

        ctypes.CDLL(None).fflush(None)
    if signum is not None:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(code)
