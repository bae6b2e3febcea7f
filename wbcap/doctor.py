"""Environment checks behind ``wbcap doctor``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wbcap.errors import setting
from wbcap.versions import installed_version


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False
    #: a file the user brings under its own licence, ``"body"`` (the SMPL-X model) or
    #: ``"checkpoint"``, else ``""``: while one is missing, ``wbcap doctor`` also says how to try
    #: the commands without it (:func:`wbcap.demo.try_without_files`)
    licensed: Literal["", "body", "checkpoint"] = ""
    #: the file found is the demo's stand-in for a licensed one (``$WBCAP_BODY_MODELS`` at the
    #: demo's model): the user is trying the commands already, so no hint on how to
    stand_in: bool = False


def _version(pkg: str) -> str:
    return installed_version(pkg) or "not installed"


def photo_formats_check() -> Check:
    """The phone photo formats OpenCV does not decode, as :func:`wbcap.io.images.load_image`
    reads them: AVIF through Pillow's libavif, HEIC through pi-heif (libheif). Optional: other
    pictures need neither."""
    from PIL import features

    avif = bool(features.check("avif"))
    try:
        import pi_heif  # noqa: F401
        heic = True
    except ImportError:
        heic = False
    detail = (f"AVIF {'yes' if avif else 'no'} (Pillow {_version('pillow')}), "
              f"HEIC {'yes' if heic else 'no'} (pi-heif {_version('pi-heif')})")
    fixes = ([] if avif else ["`pip install -U 'pillow>=11.3'` (PyPI's wheel) for AVIF"]) + (
        [] if heic else ["`pip install pi-heif` for HEIC"])
    return Check("photo formats", avif and heic, detail, "; ".join(fixes) + (", or convert such photos to JPEG or PNG"
                                                                            if fixes else ""), optional=True)


def cuda_check() -> Check:
    """The CUDA devices torch sees; without one, the fix for this build of torch: a CUDA build
    needs only a GPU and its driver (it was told to install a CUDA build: a packaging trial), a
    CPU build a CUDA build. Optional: wbcap runs on the CPU."""
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("CUDA", True, f"{torch.cuda.device_count()} device(s): {names}")
    fix = (f"optional: this build of torch (CUDA {torch.version.cuda}) uses an NVIDIA GPU where one and its driver "
           "are found (none was)" if torch.version.cuda
           else "optional: install a CUDA build of torch 2.13 on a machine with an NVIDIA GPU")
    return Check("CUDA", False, f"not available (torch {torch.__version__}); running on CPU", fix, optional=True)


def c3d_check() -> Check:
    """``--export c3d``'s writer, ezc3d (installed with wbcap; a compiled extension, which a broken
    install or another platform's wheel can leave unimportable). Optional: other formats need it not."""
    try:
        import ezc3d  # noqa: F401
    except ImportError as exc:
        return Check("C3D export", False, f"ezc3d {_version('ezc3d')} does not import ({exc})",
                     "`pip install --force-reinstall ezc3d` for --export c3d (the TRC holds the same markers)",
                     optional=True)
    return Check("C3D export", True, f"ezc3d {_version('ezc3d')}", optional=True)


def body_model_check(gender: str, body_models: str | None, required: bool = False) -> Check:
    """One SMPL-X gender: the file found, read and checked as wbcap reads it (a damaged,
    truncated or foreign file fails here, not in the next run), or what was missing where
    (detail) and what to do (fix)."""
    from wbcap.body.model_files import (
        BodyModelNotFoundError,
        find_body_model,
        is_demo_body_model,
        load_body_model_data,
        real_body_model_fix,
    )
    from wbcap.errors import WbcapError

    name = f"SMPL-X {gender}"
    optional = gender != "neutral" and not required  # (required: the one file a path names, used for every gender)
    try:
        path = find_body_model(gender, body_models)
    except BodyModelNotFoundError as exc:
        places = " or ".join(dict.fromkeys(f"{p.parent}/" for p in exc.looked))
        target = f"{exc.target}/ {exc.demo_fix}".rstrip()  # (wbcap's folder, not the demo's, when that was searched)
        # (a folder not made yet: `cp` into it, as the fix said, failed: a new user's trial)
        from wbcap.console import make_folder_hint

        make = make_folder_hint(exc.target)
        fix = (f"register at https://smpl-x.is.tue.mpg.de, download the SMPL-X npz models, "
               f"copy {exc.file_name} to {target}{make}")
        from wbcap.paths import ENV_BODY_MODELS, demo_body_models_dir, env_path

        if (body_models is None and env_path(ENV_BODY_MODELS) is not None and not exc.folders[0].exists()
                and not exc.demo and not is_demo_body_model(exc.folders[0])):  # (the demo's folder: its own advice)
            # (a Quick-start path copied where the demo's model is elsewhere: it said to copy the
            # licensed file into that missing folder, a new user's trial)
            fix = (f"{ENV_BODY_MODELS} names {exc.folders[0]}, which does not exist: point it at the folder that holds "
                   f"{exc.file_name} (`wbcap demo`'s synthetic one is {demo_body_models_dir()}), or unset it")
        elif exc.found_below or exc.misplaced:  # (an unpacked download one folder too high, a folder named like
            # the file, the file in the weights folder: new users' trials)
            fix = exc.found_below or exc.misplaced
        return Check(name, False, f"{exc.file_name} not found in {places}", fix, optional=optional, licensed="body")
    except WbcapError as exc:  # only a .pkl was found, or a named file is missing: the message says which and what to do
        text = str(exc)  # ("<what>: <fix>", or "<file>: <what>; <fix>")
        detail, _, fix = text.partition("; ") if "; " in text else text.partition(": ")
        return Check(name, False, detail, fix or "use the SMPL-X .npz release", optional=optional, licensed="body")
    if is_demo_body_model(path):  # ($WBCAP_BODY_MODELS left at the Quick start's stand-in: found before a real one)
        return Check(name, False, f"{path} is the demo's synthetic model (not a human body)", real_body_model_fix(),
                     optional=optional, licensed="body", stand_in=True)
    try:
        load_body_model_data(path)
    except WbcapError as exc:
        return Check(name, False, str(exc), "download the SMPL-X npz models again from https://smpl-x.is.tue.mpg.de "
                     f"and replace {path.name}", optional=optional, licensed="body")
    return Check(name, True, str(path), licensed="body")


def mano_check(body_models: str | None) -> Check:
    """The MANO hand model (only ``wbcap train hand`` reads it, for its MANO loss terms): the
    converted file found and read as the stage reads it, else what is missing and how to convert."""
    from wbcap.body.mano_layer import MANONotFoundError, find_mano_model, load_mano_data
    from wbcap.errors import WbcapError

    name = "MANO (hand training)"
    only = f"only `wbcap train hand` uses it (or trains without: {setting('mano_losses', api='--no-mano-losses')})"
    try:
        path = find_mano_model(body_models)
        load_mano_data(path)
    except MANONotFoundError as exc:
        return Check(name, False, f"MANO_RIGHT.npz not found in {' or '.join(exc.looked)}", f"optional, {only}: {exc.fix}",
                     optional=True)
    except WbcapError as exc:  # (a pickle to convert, a damaged file: "<what>: <fix>")
        detail, _, fix = str(exc).partition(": ")
        return Check(name, False, detail, f"optional, {only}: {fix}", optional=True)
    return Check(name, True, str(path))


def checkpoint_check(entry) -> Check:
    """One checkpoint of the weights manifest (``entry``): found and read as wbcap reads it
    (:func:`wbcap.weight_formats.validate_weights_file`: a damaged or foreign file fails here), or
    where wbcap looked and how to get it."""
    from wbcap.errors import WbcapError
    from wbcap.paths import env_path
    from wbcap.weight_formats import validate_weights_file
    from wbcap.weights import ENV_WEIGHTS, check_weights_env, find_checkpoint, installed, search_dirs

    name = f"checkpoint {entry.name}"
    try:
        check_weights_env()
    except WbcapError as exc:  # (the reason a run gives: $WBCAP_WEIGHTS names nothing)
        # (not `licensed`: the fix is the variable, not a stand-in checkpoint, which doctor's last line
        # would advise training: a README audit)
        return Check(name, False, str(exc), f"point {ENV_WEIGHTS} at the checkpoint or its folder, or unset it",
                     optional=not entry.default)
    try:
        path = find_checkpoint(name=entry.name)
    except WbcapError as exc:
        below = getattr(exc, "found_below", "")  # (a file below the folders searched: a new user's trial)
        return Check(
            name, False, f"{entry.file} not found in {' or '.join(f'{d}/' for d in search_dirs())}",
            f"download it from {entry.source}, then `wbcap weights import {entry.name} FILE`"
            + (f"; or: {below}" if below else ""),
            optional=not entry.default, licensed="checkpoint",
        )
    fix = f"download it again from {entry.source}, then `wbcap weights import {entry.name} FILE`"
    named = env_path(ENV_WEIGHTS)
    if named is not None and _through_variable(named, path, entry.default):  # (its import would change nothing: a weights trial)
        fix = (f"point {ENV_WEIGHTS} at the {entry.name} checkpoint (it names {named}), or unset it to use the one "
               f"`wbcap weights import {entry.name} FILE` installs")
    try:
        summary = validate_weights_file(entry.architecture, path)
    except WbcapError as exc:
        return Check(name, False, str(exc), fix, optional=not entry.default, licensed="checkpoint")
    present = installed(entry)
    if present is not None and present.path == path and present.changed:  # (it said [ok], hidden by -q: a weights trial)
        return Check(name, False, f"{path} ({summary}) changed since its import or download (its sha256 is no longer "
                     "the recorded one: damaged or replaced; runs use it as it is)",
                     f"`wbcap weights verify`; if it is not a checkpoint you put there yourself, {fix}", optional=True,
                     licensed="checkpoint")
    what = present.provenance(entry.name) if present is not None and present.path == path else ""
    return Check(name, True, f"{path} ({summary}{'; ' + what if what else ''})", licensed="checkpoint")


def _through_variable(named: Path, found, default: bool) -> bool:
    """Whether the file ``found`` was found through ``$WBCAP_WEIGHTS`` (``named``): in the folder
    it names (a link there too), or, for the ``default`` checkpoint only (a file the variable
    names is taken for that one alone), the file it names; not wbcap's own weights folder,
    which an import writes to."""
    from wbcap.weights import weights_dir

    if named.is_dir():
        return (Path(found).absolute().parent.resolve() == named.resolve()
                and named.resolve() != weights_dir().resolve())
    return default and Path(found).resolve() == named.resolve()


def _detector_check() -> Check:
    """Which detector ``--detector auto`` uses here (no download is attempted; with
    ``WBCAP_OFFLINE`` set, the fix does not offer the download ``auto`` would not make)."""
    from wbcap.detect.base import HOG_FALLBACK
    from wbcap.paths import ENV_WEIGHTS, env_path, offline_from_env
    from wbcap.weights import (
        default_entry,
        find_weights_file,
        installed,
        manifest,
        recent_auto_failure,
        search_dirs,
        weights_dir,
    )

    best = default_entry("yolox")
    found = [e for e in manifest().values() if e.architecture == "yolox" and find_weights_file(e)]
    changed = [e.name for e in found if (record := installed(e)) is not None and record.changed]
    names = [e.name for e in found if e.name not in changed]  # (a file changed since its download is no advice)
    runtime = f"onnxruntime {_version('onnxruntime')}" if _version("onnxruntime") != "not installed" else "OpenCV dnn"
    present = installed(best)  # (as `wbcap weights list` says it: the import record when current)
    if present is None:
        path_places = " or ".join(f"{d}/" for d in search_dirs())
        detector = setting("detector")
        others = f"; installed: {', '.join(names)} (use {detector} NAME)" if names else ""
        if changed:
            others += (f"; {', '.join(changed)} changed since its import or download (damaged or replaced: "
                       f"`wbcap weights fetch NAME` again)")
        failed = None if offline_from_env() else recent_auto_failure(best.name)
        if failed is not None:  # (auto will not try again on its own for a day: said, a new user's trial)
            others += (f"; its download on first use failed at {failed[0]} ({failed[1]}), and {detector} auto does "
                       f"not try again on its own until a day after that")
        auto = ("" if offline_from_env() or failed is not None
                else f"; `{detector} auto` also downloads it once on first use")
        shared = [d for d in search_dirs() if d.resolve() != weights_dir().resolve() and d.is_dir()]
        # (a team's $WBCAP_WEIGHTS folder is where a copy would go: the fix named only wbcap's own, a weights trial)
        put = f", or put a copy of {best.file} in {shared[0]}/ (${ENV_WEIGHTS})" if shared else ""
        return Check("person detector", False, f"auto uses {HOG_FALLBACK}: no {best.file} in {path_places}{others}",
                     f"`wbcap weights fetch {best.name}` ({best.size / 1e6:.1f} MB), or on a machine without internet "
                     f"`wbcap weights import {best.name} FILE`{put}" + auto,
                     optional=True)
    from wbcap.errors import WbcapError
    from wbcap.weight_formats import validator

    fetch = f"`wbcap weights fetch {best.name}`"
    again = f"{fetch}, or `wbcap weights import {best.name} FILE` again"
    named = env_path(ENV_WEIGHTS)
    if named is not None and _through_variable(named, present.path, default=False):
        # (found in $WBCAP_WEIGHTS, searched first: a fetch into wbcap's own folder would not be
        # used while this file is there; the fix said to fetch, a review)
        again = (f"replace {present.path} (in ${ENV_WEIGHTS}, searched before {weights_dir()}/) with a good copy of "
                 f"{best.file}, or remove it and run {fetch}")
    try:
        validator(best)(present.path)
    except WbcapError as exc:  # (every run of the default detector fails on it: not optional, a weights trial)
        return Check("person detector", False, f"auto would use {best.name}, but {exc} (every run with the default "
                     f"{setting('detector')} fails)", again)
    if present.changed:
        return Check("person detector", False,
                     f"{present.path} changed since it was imported or fetched (its sha256 is no longer the recorded "
                     "one: damaged, e.g. truncated, or replaced)", again, optional=True)
    what = present.provenance(best.name) or "no published hash"
    return Check("person detector", True,
                 f"auto uses {best.name} ({present.path}, {what}; {runtime}); installed: {', '.join(names)}")


def _cpu_strategy_check() -> Check:
    """Which CPU inference form the network runs in here (:mod:`wbcap.model.strategy`): forced
    by the environment, measured earlier (from the cache; nothing is measured now), or not yet."""
    from wbcap.errors import InputError
    from wbcap.model import strategy

    name = "CPU inference form"
    raw = os.environ.get(strategy.ENV_STRATEGY)
    try:
        request = strategy.StrategyRequest.parse(raw)
    except InputError as exc:
        return Check(name, False, str(exc), f"unset {strategy.ENV_STRATEGY} or give it one of the values named")
    if request.mode == "measure":
        return Check(name, True, f"{strategy.ENV_STRATEGY}=measure: the next run of the network measures it again "
                                 "(10-30 s on 2 cores, longer beside other jobs)")
    if request.mode == "forced":
        form = request.form
        which = (f"{form} for the {strategy.ONLY_FOR[form]}, every other part fused" if form in strategy.ONLY_FOR
                 else f"every part {form}")
        images = "image" if request.chunk == 1 else "images"
        return Check(name, True, f"forced by {strategy.ENV_STRATEGY}={raw} ({which}, at most {request.chunk} {images} "
                                 "per convolution call)")
    path = strategy.cache_path()
    choices = strategy.cached_choices(path)
    if not choices:
        problem = strategy.cache_problem(path)
        unusable = f" (its cache {path} cannot be used: {problem})" if problem else ""
        return Check(name, True, f"not measured on this machine yet{unusable}: the first longer job (`wbcap run` of more "
                                 f"than 60 frames, `wbcap image` of more than four photos, `wbcap bench`, `wbcap eval`) "
                                 f"measures it once (10-30 s on 2 cores, longer beside other jobs) and keeps it in "
                                 f"{path}; photos, short runs and the demo run the default form until then")
    by_dtype: dict[str, list[str]] = {}
    for pid, c in choices.items():  # "<part>: <architecture> <dtype>[(fast)][ no-onednn]" (strategy._part_id)
        part, _, rest = pid.partition(": ")
        tokens = rest.split()
        plain = bool(tokens) and tokens[-1] == "no-onednn"
        tokens = tokens[:-1] if plain else tokens
        dtype = tokens[-1] if tokens else "?"
        part += f" ({' '.join(tokens[:-1])}{', no oneDNN' if plain else ''})"
        sub_gemm = tuple(s and g for s, g in zip(c.subpixel, c.gemm))
        col2im = tuple(g and not s for s, g in zip(c.subpixel, c.gemm))
        extra = [f"{label} {sum(flags)}/{len(flags)}" for label, flags in (
            ("sub-pixel", c.subpixel), ("matrix product", sub_gemm), ("col2im", col2im)) if any(flags)]
        if c.winograd_used():
            extra.append(f"Winograd {c.winograd_used()}/{len(c.winograd)}")
        if c.single:
            extra.append(f"one-image calls {c.single}")
        by_dtype.setdefault(dtype, []).append(f"{part} {c.form}" + (f" ({', '.join(extra)})" if extra else ""))
    text = "; ".join(f"{dtype}: {', '.join(parts)}" for dtype, parts in sorted(by_dtype.items(), reverse=True))
    return Check(name, True, f"measured on this machine: {text} (kept in {path}; "
                             f"{strategy.ENV_STRATEGY}=measure measures again)")


def _genders_to_check(body_models: str | None) -> tuple[str, ...]:
    """All three SMPL-X genders; where ``--body-models`` (or ``$WBCAP_BODY_MODELS``) names a file,
    only the gender that file is used as (:func:`wbcap.body.model_files.resolve_gender`), since
    it is the one file used whatever the gender (a path that is no file: one check, which says so)."""
    from wbcap.body.model_files import GENDERS, named_model_file, resolve_gender
    from wbcap.errors import WbcapError

    try:
        return GENDERS if named_model_file(body_models) is None else (resolve_gender(None, body_models),)
    except WbcapError:
        return ("neutral",)


#: The name of the check of wbcap's own folders (:func:`user_folders_check`): without them wbcap
#: finds and keeps nothing there, and ``wbcap demo`` does not run.
USER_FOLDERS = "user folders"


def user_folders_check() -> Check:
    """Whether wbcap can keep files in its user data folder (body models, weights) and its cache
    folder (the CPU inference form, calibrations, the demo's files): each must be a folder, or
    creatable, and take a new file (:func:`wbcap.atomic.check_writable_destination`: one probe
    file made and removed). A ``$WBCAP_HOME`` naming a file was only seen as "not found" items
    with fixes that could not work, and a CPU form measured again on every run."""
    from wbcap.atomic import check_writable_destination
    from wbcap.errors import InputError
    from wbcap.paths import ENV_HOME, user_cache_dir, user_data_dir

    folders = {"data": user_data_dir(), "cache": user_cache_dir()}
    problems: list[str] = []
    for folder in folders.values():
        nearest = next((a for a in (folder, *folder.parents) if a.exists()), None)
        if nearest is not None and not nearest.is_dir():  # ($WBCAP_HOME a file: one line for both)
            problem = f"{nearest} is {'a file' if nearest.is_file() else 'not a folder'}, where wbcap keeps its files"
        else:
            try:
                check_writable_destination(folder, fix="")
                continue
            except InputError as exc:
                problem = str(exc).removesuffix("; ")
        if problem not in problems:
            problems.append(problem)
    shown = ", ".join(f"{what} {folder}" for what, folder in folders.items())
    if not problems:
        return Check(USER_FOLDERS, True, shown)
    def readable(folder) -> bool:
        return folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)

    # (a shared home without the cache folder ran every command, the cache kept elsewhere: it was
    # called missing, "nothing runs", a weights trial)
    from wbcap.paths import cache_file

    cache = folders["cache"]
    nearest = next((a for a in (cache, *cache.parents) if a.exists()), None)
    elsewhere = cache_file("x").parent != cache  # (what is measured goes to the user's own cache)
    if readable(folders["data"]) and (readable(cache) or (not cache.exists() and nearest is not None
                                                          and nearest.is_dir() and elsewhere)):
        # (a shared install, read-only for this user: every command works, reading the weights and
        # models there; it was called missing, with the fix of leaving it: an admin's trial)
        demo = "" if cache.exists() else f"; `wbcap demo` needs {cache}/ for its synthetic model"
        return Check(USER_FOLDERS, False, f"{'; '.join(problems)}: read-only here, which a shared install may be "
                     f"(its files are read; what wbcap measures is kept in {cache_file('x').parent}{demo})",
                     "nothing for a shared install; else make them writable", optional=True)
    home = os.environ.get(ENV_HOME)
    fix = (f"set {ENV_HOME} to a writable folder (it is {home}), or unset it" if home else
           f"make them writable, or set {ENV_HOME} to a writable folder")
    return Check(USER_FOLDERS, False, "; ".join(problems), fix)


def _renderer_check() -> Check:
    """The renderer the photos' and videos' renders use here, as they choose it (``WBCAP_RENDERER``
    and ``WBCAP_RENDER_PROCESS`` read as they read them: a value they refuse is [MISS] with the
    fix, not an end of the whole report, nor [ok] while every render refuses it)."""
    from wbcap.errors import InputError
    from wbcap.export.render import render_backend
    from wbcap.export.render_process import ENV_RENDER_PROCESS, render_process_setting

    try:
        backend = render_backend()
        render_process_setting()
    except InputError as exc:
        named = ENV_RENDER_PROCESS if str(exc).startswith(ENV_RENDER_PROCESS) else "WBCAP_RENDERER"
        return Check("renderer", False, f"{exc} (every render refuses it)", f"unset {named}, or set it as said")
    return Check("renderer", backend != "software", backend,
                 "for faster, nicer renders install EGL or OSMesa (Debian/Ubuntu: apt-get install libegl1 "
                 "libgl1-mesa-dri, or libosmesa6)", optional=True)


def open_files_check() -> Check | None:
    """A failed check where this process may have fewer than
    :data:`~wbcap.limits.MIN_OPEN_FILES` files open
    at once (the soft ``RLIMIT_NOFILE``), None otherwise or where it cannot be read: under
    `ulimit -n 8` doctor blamed the renderer and Blender, with fixes to install them (a break-it
    trial)."""
    from wbcap.limits import MIN_OPEN_FILES, SUGGESTED_OPEN_FILES, open_files_limit, too_few_open_files

    if not too_few_open_files():
        return None
    soft = open_files_limit()
    return Check("open files", False, f"this process may have {soft} open at once, too few for wbcap (the renderer's "
                 "probe, Blender's check and the commands' reads fail for want of them, and are reported so below)",
                 f"raise the limit (ulimit -n {SUGGESTED_OPEN_FILES}; at least {MIN_OPEN_FILES})")


def memory_check() -> Check:
    """Memory for the full-size network's commands: what is available and the limits set on this
    process (``ulimit -v``, ``ulimit -d``, a container's; :func:`wbcap.limits.memory_limits`)
    against what they took in a low-memory trial (:data:`wbcap.limits.NEEDED_MEMORY`). A limit
    below that fails (the commands stop with "it ran out of memory"); one that fits only without
    rendering, and little memory available, are said as optional (doctor said nothing of memory:
    that trial)."""
    from wbcap.limits import (
        NEEDED_ADDRESS_SPACE,
        NEEDED_ADDRESS_SPACE_NO_RENDER,
        NEEDED_MEMORY,
        NEEDED_MEMORY_ALL_PROCESSES,
        available_memory,
        gigabytes,
        memory_limits,
    )

    available, limits = available_memory(), memory_limits()
    said = ([f"{gigabytes(available)} available"] if available is not None else []) + [
        f"limited to {gigabytes(size)} ({name})" for name, size in limits]
    detail = (f"{', '.join(said) or 'unknown'}; `wbcap run` needs about {gigabytes(NEEDED_MEMORY)} "
              f"({gigabytes(NEEDED_ADDRESS_SPACE)} of address space with its video, "
              f"{gigabytes(NEEDED_ADDRESS_SPACE_NO_RENDER)} without)")
    # (a container's limit counts all its processes: `wbcap image`'s render child too, a review)
    need = {name: NEEDED_ADDRESS_SPACE_NO_RENDER if name == "ulimit -v" else NEEDED_MEMORY if name == "ulimit -d"
            else NEEDED_MEMORY_ALL_PROCESSES for name, _ in limits}
    short = [(name, size) for name, size in limits if size < need[name]]
    if short:
        name, _ = short[0]
        return Check("memory", False, detail, f"raise the memory limit ({name}) to at least {gigabytes(need[name])}")
    if any(name == "ulimit -v" and size < NEEDED_ADDRESS_SPACE for name, size in limits):
        return Check("memory", False, detail, f"`wbcap run` with its video needs ulimit -v of about "
                     f"{gigabytes(NEEDED_ADDRESS_SPACE)}: raise it, or run with --no-render", optional=True)
    if available is not None and available < NEEDED_MEMORY:
        return Check("memory", False, detail, "close other programs: with less memory the commands swap, or the "
                     "system stops them", optional=True)
    return Check("memory", True, detail)


def recording_check() -> Check:
    """What ``wbcap record`` can open here (:mod:`wbcap.io.record`): the input devices of PyAV's
    FFmpeg and, on Linux, the cameras ``/dev/video*``. Optional: files need neither."""
    import glob

    import av

    from wbcap.io.record import input_devices

    cameras = sorted(glob.glob("/dev/video[0-9]*"), key=lambda d: (len(d), d))
    detail = (f"streams (rtsp, rtmp, udp, tcp, http, hls) and FFmpeg's devices {', '.join(input_devices()) or 'none'} "
              f"(PyAV {av.__version__}); " + (f"cameras: {', '.join(cameras)}" if cameras else "no camera device found"))
    return Check("Recording", True, detail, optional=True)


def run_checks(body_models: str | None = None) -> list[Check]:
    """Every check, in display order (wbcap's user folders, the open-files limit where it is too
    low, memory, body models, MANO, checkpoints, detector, renderer, CUDA, the CPU inference form, huge
    pages, HOG, FBX, photo formats, C3D, recording, libraries).

    A failed check's ``detail`` says what is missing and where wbcap looked; its ``fix`` says
    what to do, without repeating the detail.
    """
    from wbcap.weights import manifest

    genders = _genders_to_check(body_models)
    checks: list[Check] = [user_folders_check()]
    low = open_files_check()
    if low is not None:  # (said only when too low: the other items' answers follow from it)
        checks.append(low)
    checks.append(memory_check())
    checks += [body_model_check(g, body_models, required=len(genders) == 1) for g in genders]
    checks.append(mano_check(body_models))
    checks += [checkpoint_check(entry) for entry in manifest().values() if entry.architecture != "yolox"]
    checks.append(_detector_check())
    checks.append(_renderer_check())
    checks.append(cuda_check())
    checks.append(_cpu_strategy_check())
    from wbcap.huge_pages import huge_pages_state
    from wbcap.model import strategy

    huge, fix = huge_pages_state()
    if strategy.machine_huge_pages() is False:  # (a build would turn them off; doctor builds none)
        huge, fix = (f"off on this CPU (measured slower here; kept in {strategy.cache_path()}, "
                     "WBCAP_CPU_STRATEGY=measure measures again)"), ""
    if not fix and huge.startswith("on"):  # (`wbcap train` asks for none; the kernel's "always" gives them anyway)
        huge += (" (for long inference jobs; a few photos, a short run and the demo run without them"
                 f"{'; `wbcap train` does not ask for them' if huge == 'on' else ''})")
    checks.append(Check("Huge pages", not fix, f"torch's large CPU tensors: {huge}",
                        f"optional (exact ran ~10 % faster with them on an Intel Xeon, no faster on an AMD EPYC Zen 3): "
                        f"{fix}" if fix else "", optional=True))
    import cv2

    has_hog = hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector")
    checks.append(Check("HOG detector", has_hog, f"opencv {cv2.__version__}",
                        "" if has_hog else "pip install 'opencv-python-headless<5' (5.x removed HOG)"))
    from wbcap.export.fbx import INSTALL_HINT, blender_available, bpy_fix, bpy_import_error

    found = blender_available()
    why = bpy_import_error() if found else None  # (found is not enough: it must import)
    has_bpy = found and why is None
    detail = (f"Blender as a Python module (bpy {_version('bpy')})" if has_bpy
              else f"bpy {_version('bpy')} is installed but does not import ({why})" if found
              else f"{setting('export')} fbx needs Blender's bpy (GLB and BVH need nothing more)")
    checks.append(Check("FBX export", has_bpy, detail, "" if has_bpy else f"optional: {bpy_fix(why) if why else INSTALL_HINT}",
                        optional=True))
    checks.append(photo_formats_check())
    checks.append(c3d_check())
    checks.append(recording_check())
    libs = ", ".join(f"{p} {_version(p)}" for p in ("torch", "smplx", "av", "trimesh", "pyrender", "pygltflib", "numpy", "onnxruntime", "onnx"))
    checks.append(Check("libraries", True, libs))
    return checks
