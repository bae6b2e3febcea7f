"""Start a training stage: in this process, or re-launched under ``torchrun`` for several GPUs
or nodes (one process per GPU; ``python -m wbcap.train.launch RUN.json`` is what each runs)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from wbcap.errors import JSON_ERRORS, InputError, WbcapError, respelled, setting
from wbcap.io.run_folder import FILE_IDENTITY
from wbcap.subprocesses import end_with_parent

log = logging.getLogger(__name__)


def run_stage(stage: str, config_file, overrides: dict, *, out: str, data_root, body_models, device, resume: bool,
              overwrite: bool = False, keep_last: int | None = None, gpus: str | None, nnodes: int, node_rank: int,
              master_addr: str, master_port: int, quiet: bool = False) -> None:
    """Resolve the stage config and train, directly or through torchrun.

    Everything that can be checked without training is checked first, before the run folder
    is touched: every setting's value (:func:`~wbcap.train.stages.load_stage`), ``gpus`` (CUDA
    GPUs), the training sets, the start checkpoint (read whole and checked against the model),
    the SMPL-X file, that ``out`` can be written and that it holds no previous run (unless
    ``resume`` or ``overwrite``: :func:`~wbcap.train.trainer.prepare_run_folder`). With
    ``resume`` the run's recorded settings are the defaults (:func:`recorded_stage`; then
    ``config_file``, then ``overrides``), read once a previous run that an ``overwrite`` killed
    before its first snapshot had set aside is put back (node 0, holding ``out``): other model
    settings are refused, other training settings are named in a warning, and a complete run is
    said so and not started. A run that
    fails or is stopped before its first snapshot leaves ``out`` as it found it: removed when
    this call made it, else emptied of the run's files, with a previous run that ``overwrite``
    set aside put back. Without a ``num_workers`` override, the recipe's data-loading workers are
    capped at :func:`wbcap.model.device.available_cpus`. ``quiet``: no progress bar and no
    information lines from the training processes (``wbcap -q``), warnings and errors only.
    """
    from wbcap.atomic import check_writable_destination
    from wbcap.io.run_folder import hold_folder
    from wbcap.train.stages import load_stage
    from wbcap.train.trainer import (
        RUN_SETTINGS_FILE,
        RunConfig,
        check_run_inputs,
        discard_previous_run,
        latest_checkpoint,
        prepare_run_folder,
        restore_previous_run,
        settled_run_folder,
        train,
    )

    folder = Path(out).expanduser()
    if not 0 <= node_rank < nnodes:  # (rank 3 of 1 node trained as a non-zero rank: no run record, no result line)
        raise InputError(f"{setting('node_rank')} {node_rank}: must be below {setting('nnodes')} {nnodes} (machines "
                         f"are numbered 0 to {nnodes - 1}; node 0 writes the run's record)")
    gpu_ids = _gpu_ids(gpus, nnodes)
    if len(gpu_ids) == 1 and nnodes == 1 and str(device or "auto").strip().lower() not in (
            "auto", "cuda", f"cuda:{_visible_index(gpu_ids[0])}"):  # (several: --device cpu is gloo's CPU processes)
        raise InputError(f"{setting('gpus')} {gpus} trains on GPU {int(gpu_ids[0])}, {setting('device')} {device} "
                         f"elsewhere; give one of them")
    if resume and node_rank == 0 and folder.is_dir() and settled_run_folder(folder) != folder:
        with hold_folder(folder):  # (the run an interrupted --overwrite set aside: back, before its settings are read)
            prepare_run_folder(folder, resume=True, overwrite=False)
    if resume and node_rank == 0 and (folder.is_dir() or not folder.exists()):  # (nothing to resume: said first,
        # not a missing dataset of the recipe's; a file as -o is said as such later)
        from wbcap.train.trainer import check_resumable

        check_resumable(settled_run_folder(folder) if folder.is_dir() else folder)
    if resume and overrides.get("init_checkpoint") is not None:  # (it was taken, unused, into stage.json)
        raise InputError(f"{setting('init_checkpoint')} starts a run from a checkpoint, and "
                         f"{setting('resume', api='resume=True')} continues the run in {folder} from its newest "
                         f"snapshot: drop {setting('init_checkpoint')}")
    recorded = recorded_stage(folder, stage) if resume else None
    # (a fine-tuning starts from its --init checkpoint's model, the TOML's [model] keys over it: they are
    # checked together, not against the recipe's, which a key repeating the checkpoint's own did not fit)
    init_named = _init_path(stage, config_file, overrides)
    init_model = _init_model(stage, init_named) if recorded is None else None
    cfg = load_stage(stage, config_file, base=None if recorded is None else recorded[0], model=init_model, **overrides)
    given_cfg = cfg  # (its paths as given: _check_config_paths tells a config file's from a flag's by them)
    cfg = _absolute_stage_paths(cfg, None if recorded is None else recorded[0])
    from wbcap.model.device import available_cpus

    if overrides.get("num_workers") is None and recorded is None and cfg.num_workers > available_cpus():
        # (the recipe's default only: a resumed run keeps its own count, warned about when it was given)
        # (said once the inputs are checked: not above a refusal, a researcher's trial)
        workers_note = (available_cpus(), cfg.num_workers, setting("num_workers"))
        cfg = dataclasses.replace(cfg, num_workers=available_cpus())
    else:
        workers_note = None
    if recorded is not None:
        _compare_resumed(folder, *recorded, cfg)
        if _already_complete(folder, cfg):
            return
    given_body_models = body_models
    if resume:
        data_root, body_models, keep_last = _recorded_run_settings(folder, data_root, body_models, keep_last)
    recorded_models = given_body_models is None and body_models is not None
    run = RunConfig(out=out, data_root=data_root, body_models=body_models, device=device, resume=resume, keep_last=keep_last,
                    quiet=quiet,
                    body_models_named_by=f"the run's record ({RUN_SETTINGS_FILE})" if recorded_models else None)
    if nnodes > 1 and not gpu_ids:
        raise InputError(f"multi-node training needs {setting('gpus')} (the GPU ids of this node)")
    if not resume:
        _check_config_paths(config_file, given_cfg, overrides)
    # (a start checkpoint the TOML named is called by its key there: the refusals said --init, an ML trial)
    from_toml = (f"{Path(config_file).name}'s init_checkpoint" if overrides.get("init_checkpoint") is None
                 and init_named is not None else None)
    with respelled("init_checkpoint", from_toml):
        run = check_run_inputs(cfg, run)  # (with the SMPL-X file decided: passed down, to torchrun's processes too)
    if resume:
        _check_resumed_model_files(folder, run)
    check_writable_destination(folder)
    created = not folder.exists()
    if node_rank == 0:  # held while training (and torchrun's processes) run: a second run is refused
        hold = hold_folder(folder)
    else:  # node 0 checks and holds the shared folder; here it may already hold node 0's first files
        folder.mkdir(parents=True, exist_ok=True)
        hold = contextlib.nullcontext(folder)
    with hold:
        if node_rank == 0:
            try:
                prepare_run_folder(folder, resume=resume, overwrite=overwrite)
            except BaseException:
                if created:  # (made by hold_folder a moment ago: nothing of anyone's in it)
                    shutil.rmtree(folder, ignore_errors=True)
                raise
        if workers_note is not None:  # (once the folder is taken: not above a refusal of it either)
            log.info("%d data-loading workers (the CPUs available; the recipe says %d, %s N sets it)", *workers_note)
        try:
            _launch(cfg, run, gpu_ids, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                    master_port=master_port, train=train)
        except BaseException:  # (also Ctrl-C, and SIGTERM or SIGHUP: the CLI raises them as Ctrl-C)
            if node_rank == 0 and latest_checkpoint(folder) is None:  # (so nothing was resumed either)
                if created:
                    shutil.rmtree(folder, ignore_errors=True)
                    log.info("removed %s (made by this run, which ended before its first snapshot)", folder)
                else:  # the folder was empty or held a previous run, now set aside: as it was again
                    (folder / f"launch_node{node_rank}.json").unlink(missing_ok=True)  # (torchrun's: this run's)
                    if restore_previous_run(folder):
                        log.info("put the previous training run in %s back (this run ended before its first "
                                 "snapshot)", folder)
            raise
        if node_rank == 0:
            discard_previous_run(folder)  # (the training loop did so at its first snapshot; a run with none)


#: The stage settings that name files or folders: recorded absolute in ``stage.json``.
STAGE_PATHS = ("init_checkpoint", "imagenet_weights", "pose_backbone")


def _absolute_stage_paths(cfg, recorded=None):
    """``cfg`` with its :data:`STAGE_PATHS` absolute (:func:`wbcap.io.run_folder.absolute_path`:
    a relative one from the current folder), so ``stage.json`` names them from any folder (a
    relative ``--init`` was recorded as typed: an ML researcher's trial) and a resume compares
    what they name (the same relative flag again warned of a change: a review). A value that is
    the ``recorded`` stage's as it stands (a resume not given it) is kept: a run an older wbcap
    recorded relative keeps its spelling, whose folder is not known (made absolute from the
    resume's folder, it named a file that was not there: a break-it trial)."""
    from wbcap.io.run_folder import absolute_path

    return dataclasses.replace(cfg, **{
        key: getattr(cfg, key) if recorded is not None and getattr(cfg, key) == getattr(recorded, key)
        else absolute_path(getattr(cfg, key)) for key in STAGE_PATHS})


def _check_config_paths(config_file, cfg, overrides: dict) -> None:
    """Refuse a path a ``--config`` file gives (``init_checkpoint``, ``imagenet_weights``, ``pose_backbone``) that
    names nothing, in one line naming the file and the key (it was named as the flag, which the
    user never passed). A relative path is read from the current folder, as the flags' are.

    Raises:
        InputError: naming the file, the key, the value and the folder relative paths start from.
    """
    if config_file is None:
        return
    from wbcap.train.stages import read_stage_file

    given = read_stage_file(config_file)  # (load_stage read and checked it a moment ago)
    for key, kind in zip(STAGE_PATHS, ("file", "folder", "file"), strict=True):
        value = getattr(cfg, key)
        if value is None or overrides.get(key) is not None or given.get(key) != value:
            continue
        path = Path(value).expanduser()
        if not (path.is_file() if kind == "file" else path.is_dir()):
            if kind == "file" and path.is_dir():  # (a folder named as the checkpoint was "no such file": a weights trial)
                raise InputError(f"{config_file}: {key} = {json.dumps(value)}: is a folder, not a file; name the file")
            if path.exists():  # (a pipe, a device; or a file where a folder goes)
                raise InputError(f"{config_file}: {key} = {json.dumps(value)}: not a {kind}; name the {kind}")
            where = "" if path.is_absolute() else f"; a relative path is read from the current folder, {os.getcwd()}"
            raise InputError(f"{config_file}: {key} = {json.dumps(value)}: no such {kind}{where}")


def _check_resumed_model_files(folder: Path, run) -> None:
    """Refuse a ``--resume`` whose SMPL-X or MANO file is not the one the run began with (its
    targets would change mid-run, unsaid): :func:`wbcap.io.run_folder.check_same_files` against
    what :func:`~wbcap.train.trainer.run_settings_text` recorded (a run of an older wbcap
    recorded none: unchecked).

    Raises:
        InputError: one line naming the file, what changed and the fix.
    """
    from wbcap.io.run_folder import check_same_files, file_identity, same_file
    from wbcap.train.trainer import RUN_SETTINGS_FILE, SYNTHETIC_IDENTITY, model_files_identity, settled_run_folder

    try:
        recorded = json.loads((settled_run_folder(folder) / RUN_SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, *JSON_ERRORS):  # (none, or damaged: _recorded_run_settings said so)
        return
    if not isinstance(recorded, dict):
        return
    now = model_files_identity(run)
    ids = recorded.get(FILE_IDENTITY)
    old, new = (ids.get("body_model_file") if isinstance(ids, dict) else None), now["body_model_file"]
    if isinstance(old, dict) and isinstance(new, dict) and old.get("path") != new.get("path") and not same_file(old, new):
        if old.get("path") == SYNTHETIC_IDENTITY["path"]:  # (said as such, not "put back the file": a trial)
            raise InputError(f"the run in {folder} trained on the synthetic stand-in SMPL-X model (no SMPL-X file was "
                             f"found then), and this finds {new.get('path')}; resume it where none is found, or start "
                             f"over with {setting('overwrite', api='overwrite=True')}")
        if same_file(old, file_identity(old.get("path"))):  # (the run's own model, still where it was)
            raise InputError(f"the run in {folder} trained with the SMPL-X model {old.get('path')}, and this finds "
                             f"{new.get('path')}; pass {setting('body_models')} {old.get('path')} to resume it")
    check_same_files(folder, recorded.get(FILE_IDENTITY), now)


def _recorded_run_settings(folder: Path, data_root, body_models, keep_last):
    """``(data_root, body_models, keep_last)`` for a ``--resume``: each given one, else the one
    the run recorded (:func:`~wbcap.train.trainer.run_settings_text`; said in a log line). A run of an older
    wbcap records none; a value of the wrong kind is skipped with a warning."""
    from wbcap.train.trainer import RUN_SETTINGS_FILE, settled_run_folder

    # (the run an interrupted --overwrite set aside is the one resumed: node 0 puts it back, other
    # nodes may read before it has)
    path = settled_run_folder(folder) / RUN_SETTINGS_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return data_root, body_models, keep_last
    except (OSError, *JSON_ERRORS) as exc:
        log.warning("%s: not read (%s); give --data-root, --body-models and --keep-last again if the run used them",
                    path, exc)
        return data_root, body_models, keep_last
    given = {"data_root": data_root, "body_models": body_models, "keep_last": keep_last}
    kinds = {"data_root": str, "body_models": str, "keep_last": int}
    for key, kind in kinds.items():
        value = recorded.get(key) if isinstance(recorded, dict) else None
        if given[key] is not None or value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1):
            log.warning("%s: %s %s is not a setting wbcap writes; not used", path, key, json.dumps(value)[:60])
            continue
        given[key] = value
        log.info("resuming with the run's %s %s", setting(key), value)
    return given["data_root"], given["body_models"], given["keep_last"]


def _gpu_ids(gpus: str | None, nnodes: int = 1) -> list[str]:
    """The ids of ``--gpus`` (none: []): physical GPU ids, refused unless they are whole numbers,
    CUDA has GPUs here, and each is among an inherited ``CUDA_VISIBLE_DEVICES`` of ids (a
    scheduler's share of the machine, e.g. SLURM's) and, for one GPU on one machine (trained in
    this process, :func:`_visible_index`), one this process sees.

    Raises:
        InputError: naming ``--gpus`` and what to give.
    """
    if gpus is None:
        return []
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if not ids or not all(re.fullmatch(r"[0-9]+", g) for g in ids):  # (not str.isdigit: "²" is a digit to it)
        raise InputError(f"{setting('gpus')} {gpus}: expected GPU ids (whole numbers), e.g. 0 or 0,1,2,3")
    import torch

    if not torch.cuda.is_available():
        why = "torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise InputError(f"{setting('gpus')} {gpus} needs CUDA GPUs, and there are none here ({why}); train on the "
                         f"CPU with {setting('device')} cpu without {setting('gpus')}")
    shared = _inherited_gpus()
    outside = [g for g in ids if shared is not None and int(g) not in shared]
    if outside:
        raise InputError(f"{setting('gpus')} {gpus}: GPU {outside[0]} is not among CUDA_VISIBLE_DEVICES="
                         f"{os.environ['CUDA_VISIBLE_DEVICES']}, the GPUs this process may use; give ids from that "
                         "list (they name physical GPUs)")
    if len(ids) == 1 and nnodes == 1 and _visible_index(ids[0]) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise InputError(f"{setting('gpus')} {gpus}: only {count} CUDA device(s) visible here; use an id from 0 "
                         f"to {count - 1}")
    return ids


def _inherited_gpus() -> list[int] | None:
    """The physical GPU ids of an inherited ``CUDA_VISIBLE_DEVICES`` that lists ids, else None
    (unset, or devices named by UUID or MIG name: ``--gpus`` ids then count the visible ones)."""
    listed = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not listed or not all(re.fullmatch(r"[0-9]+", v) for v in listed):
        return None
    return [int(v) for v in listed]


def _visible_index(gpu: str) -> int:
    """This process's CUDA index (``cuda:<index>``) of the physical GPU ``gpu``: its place in an
    inherited ``CUDA_VISIBLE_DEVICES`` of ids (``CUDA_VISIBLE_DEVICES=4,5`` makes GPU 5 ``cuda:1``),
    else the id itself."""
    shared = _inherited_gpus()
    return shared.index(int(gpu)) if shared is not None and int(gpu) in shared else int(gpu)


def recorded_stage(folder: Path, stage: str):
    """The settings the run in ``folder`` trained with, for ``--resume``: ``(StageConfig, source)``
    from its ``stage.json`` (written by each launch that started training: the latest settings,
    also those of a resume stopped before its first snapshot, such as a raised ``--epochs``),
    with the model settings of its newest snapshot (which its weights match); from the snapshot
    alone without a readable ``stage.json``; None when neither records them (nothing to resume
    from is said later).

    Raises:
        InputError: the run is of another stage, or a recorded value is damaged (one line naming the file).
    """
    from wbcap.errors import CheckpointError
    from wbcap.model.checkpoint import load_checkpoint_file
    from wbcap.train.stages import STAGES, check_stage_values
    from wbcap.train.trainer import STAGE_FILE, latest_checkpoint, settled_run_folder

    if not folder.is_dir():
        return None
    run = settled_run_folder(folder)  # (a run an interrupted --overwrite set aside, which is put back)
    data, source, snapshot = None, None, None
    last = latest_checkpoint(run)
    if last is not None:
        try:
            _, raw = load_checkpoint_file(last)
        except CheckpointError:
            raw = None
        if isinstance(raw, dict) and isinstance(raw.get("stage"), dict):
            snapshot = raw["stage"]
    if (run / STAGE_FILE).is_file():
        try:
            data, source = json.loads((run / STAGE_FILE).read_text(encoding="utf-8")), run / STAGE_FILE
        except (*JSON_ERRORS, OSError):
            data = None
    if not isinstance(data, dict) or data.get("stage", stage) != (snapshot or data).get("stage", stage):
        data, source = snapshot, last  # (no stage.json, a damaged one, or one of another stage's launch)
    model_source = source
    if data is not snapshot and snapshot is not None and "model" in snapshot:
        data, model_source = {**data, "model": snapshot["model"]}, last
    if not isinstance(data, dict):
        return None
    given = data.get("stage", stage)
    if given != stage:
        raise InputError(f"{folder} holds a `wbcap train {given}` run (says {source.name}), not a {stage} one; "
                         f"resume it with `wbcap train {given} {setting('resume', api='--resume')}`")
    values = check_stage_values(data, str(source))
    if stage == "hand" and "mano_losses" not in values:  # (a run of a wbcap before the MANO terms: trained without)
        values["mano_losses"] = False
        log.info("%s: a hand run of a wbcap before the MANO loss terms; it goes on without them as it began "
                 "(mano_losses = true in a --config file turns them on)", source)
    model = values.pop("model", None)
    cfg = STAGES[stage]
    if model is not None:
        from wbcap.config import ModelConfig

        try:
            cfg = dataclasses.replace(cfg, model=ModelConfig.from_dict({**cfg.model.to_dict(), **model}))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{model_source}: its [model] settings are not a network wbcap can build ({exc}); "
                             f"start a new run ({setting('overwrite', api='overwrite=True')} or another "
                             f"{setting('out')} folder)") from None
    return dataclasses.replace(cfg, **values), source


def _init_path(stage: str, config_file: str | Path | None, overrides: dict) -> str | None:
    """The fine-tuning start checkpoint a command names: its ``--init``, else its ``--config``
    TOML's ``init_checkpoint`` (the file read as :func:`~wbcap.train.stages.load_stage` reads it);
    None for another stage or none named."""
    if stage != "finetune":
        return None
    if overrides.get("init_checkpoint") is not None:
        return overrides["init_checkpoint"]
    if config_file is None:
        return None
    from wbcap.train.stages import read_stage_file

    named = read_stage_file(config_file).get("init_checkpoint")
    return named if isinstance(named, str) else None


def _init_model(stage: str, init_checkpoint: str | None):
    """The model settings a fine-tuning run starts from: its ``--init`` checkpoint's recorded
    ones (a TOML's ``[model]`` keys go over them), or None (the recipe's) for another stage,
    without one, or for a checkpoint that records none (the released file; then checked against
    the recipe's as before). A fine-tuning of a ResNet-18 model needed its whole ``[model]`` table
    copied into a TOML, the refusal naming every value (an ML trial)."""
    if stage != "finetune" or init_checkpoint is None or not Path(init_checkpoint).expanduser().is_file():
        return None  # (a missing one is said later, naming the flag or the TOML key that gave it)
    from wbcap.errors import CheckpointError
    from wbcap.model.checkpoint import check_checkpoint_file, read_checkpoint

    try:
        check_checkpoint_file(init_checkpoint)  # (the quick look first, as the full check does later)
        ckpt = read_checkpoint(init_checkpoint)
    except CheckpointError:
        return None  # (said by the full check, in its place)
    return ckpt.config if ckpt.config_recorded else None


def _compare_resumed(folder: Path, recorded, source: Path, cfg) -> None:
    """Refuse model settings other than the run's (its snapshots would not load); warn, naming
    each, of training settings other than the run's (the resumed run is then not the run it continues)."""
    from wbcap.train.stages import shown_setting
    from wbcap.train.trainer import model_differences

    diff = model_differences(recorded.model.to_dict(), cfg.model.to_dict())
    if diff:
        raise InputError(f"{folder}: the run trained a model with other settings ({source.name} says [model] "
                         f"{'; '.join(diff)}); resume with the run's model settings, or start a new run "
                         f"({setting('overwrite', api='overwrite=True')} or another {setting('out')} folder)")
    old, new = recorded.to_dict(), cfg.to_dict()
    # (epochs only ends the loop: the learning rate steps at lr_decay_epochs, so the epochs a
    # resumed run trains are those of an uninterrupted run of the new length; a user trial found
    # "train on for more epochs" warned of a difference that was not there)
    changed = [f"{k} {shown_setting(old[k])} -> {shown_setting(new[k])}" for k in old
               if k not in ("model", "stage", "epochs") and old[k] != new[k]]
    if not changed and new.get("epochs", 0) > old.get("epochs", 0):  # (fewer: _already_complete says so)
        log.info("resuming %s to train to epoch %s (its %s says %s); what it trains is what an uninterrupted run of "
                 "%s epochs trains", folder, new.get("epochs"), source.name, old.get("epochs"), new.get("epochs"))
    if changed:
        log.warning("resuming %s with settings other than its run's (%s): %s; the result will differ from an "
                    "uninterrupted run", folder, source.name, ", ".join(changed))


def _already_complete(folder: Path, cfg) -> bool:
    """Whether the run's newest snapshot is of the last epoch (or later), said in a warning.

    Raises:
        CheckpointError: that snapshot is no whole checkpoint (cut short, another kind of file), as
            the resume of an unfinished run says (it was called complete and printed as the result).
    """
    import zipfile

    from wbcap.errors import CheckpointError
    from wbcap.model.checkpoint import check_checkpoint_file
    from wbcap.train.trainer import latest_checkpoint, settled_run_folder, snapshot_epoch, unreadable_snapshot

    run = settled_run_folder(folder)
    last = latest_checkpoint(run)
    if last is None:
        return False
    done = snapshot_epoch(last) + 1
    if done < cfg.epochs:
        return False
    try:  # (its first bytes, then the zip directory torch.save writes at its end: a file cut short has none)
        check_checkpoint_file(last)
        with zipfile.ZipFile(last):
            pass
    except CheckpointError as exc:
        raise unreadable_snapshot(run, last, exc) from None
    except zipfile.BadZipFile:
        raise unreadable_snapshot(run, last, CheckpointError(f"{last}: cut short (no zip directory at its end)")) from None
    log.warning("%s: the run is already complete (%s: %d of %d epochs); nothing to train — raise %s to train on",
                folder, last.name, done, cfg.epochs, setting("epochs"))
    return True


def _launch(cfg, run, gpu_ids: list[str], *, nnodes: int, node_rank: int, master_addr: str, master_port: int,
            train) -> None:
    """Train in this process (one GPU or none), or start one process per GPU under torchrun (with
    ``CUDA_VISIBLE_DEVICES`` set to the ids: each process sees its GPUs numbered from 0).

    One GPU is this process's CUDA device of that id (:func:`_visible_index`): setting
    ``CUDA_VISIBLE_DEVICES`` here would change nothing, as the CUDA driver read it when
    :func:`_gpu_ids` asked whether CUDA is there (it had trained on GPU 0 whichever id was given).

    """
    if len(gpu_ids) <= 1 and nnodes == 1:
        if gpu_ids:
            run = dataclasses.replace(run, device=f"cuda:{_visible_index(gpu_ids[0])}")
        with training_progress(cfg, disable=run.quiet) as on_step:
            train(cfg, run, on_step=on_step)
        return
    spec = Path(run.out).expanduser() / f"launch_node{node_rank}.json"
    from wbcap.atomic import atomic_write_text

    atomic_write_text(spec, json.dumps({"stage": cfg.to_dict(), "run": asdict(run)}))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)}
    cmd = torchrun_command(spec, len(gpu_ids), nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                           master_port=master_port)
    log.info("launching: %s", " ".join(cmd))
    try:  # (best effort: a temporary folder that cannot be made leaves torchrun's exit status to say)
        errors: Path | None = Path(tempfile.mkdtemp(prefix="wbcap-worker-errors-"))
    except OSError:  # (FileNotFoundError: no usable temporary folder)
        errors = None
    try:
        rc = run_torchrun(cmd, env if errors is None else {**env, WORKER_ERRORS_ENV: str(errors)})
        if rc != 0:
            raise (None if errors is None else worker_error(errors)) or InputError(
                f"torchrun exited with status {rc}; see the log above")
    finally:
        if errors is not None:
            shutil.rmtree(errors, ignore_errors=True)


#: Environment variable naming the folder (made by the launcher, in the temporary folder: a full
#: disk is most often the run folder's) where each torchrun worker of this node leaves the error
#: that ended it, ``rank<RANK>.json`` (:func:`leave_worker_error`), for the launcher to say in one
#: line as a single-process run says it (:func:`worker_error`); torchrun itself reports a worker
#: only by its exit status.
WORKER_ERRORS_ENV = "WBCAP_WORKER_ERRORS"


class WorkerError(WbcapError):
    """A torchrun worker's error, said by the launcher: a :class:`~wbcap.errors.WbcapError` of a
    worker (its message and exit status), or a worker's crash (one line, with its crash log)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def leave_worker_error(exc: BaseException, spec: Path) -> bool:
    """Record, for the launcher (:data:`WORKER_ERRORS_ENV`; nothing without it), the error
    ``exc`` that ends this worker of the run ``spec``: a :class:`~wbcap.errors.WbcapError` as its
    message and exit status, a full disk (``OSError`` of :data:`wbcap.cli.DISK_FULL`) as its
    errno and file names, anything else as a crash: its crash log written here (the traceback)
    and one line on it (:func:`wbcap.cli.describe_crash` and :func:`wbcap.cli.crash_hint`) --
    unless another worker of this node recorded an error first: this one is then most often its
    process group losing that worker ("Connection closed by peer"), recorded as ``secondary``
    without a crash log. Best effort: a record that cannot be written leaves the launcher with
    torchrun's exit status. Returns whether the error is secondary."""
    from wbcap.atomic import atomic_write_text
    from wbcap.cli import CRASH_EXIT_CODE, DISK_FULL, crash_hint, describe_crash, save_crash_log

    folder = os.environ.get(WORKER_ERRORS_ENV)
    if not folder:
        return False
    rank = int(os.environ.get("RANK", "0"))
    record: dict = {"time": time.time(), "rank": rank}
    secondary = any(p.name != f"rank{rank}.json" for p in Path(folder).glob("rank*.json"))
    if secondary:
        record.update(kind="secondary", exit_code=CRASH_EXIT_CODE,
                      message=f"wbcap train failed in training process {rank}: {describe_crash(exc)}")
    elif isinstance(exc, WbcapError):
        record.update(kind="error", message=str(exc), exit_code=exc.exit_code)
    elif isinstance(exc, OSError) and exc.errno in DISK_FULL:
        record.update(kind="disk_full", errno=exc.errno, strerror=exc.strerror, filename=exc.filename,
                      filename2=exc.filename2)
    else:
        log_path = save_crash_log(exc, command=f"{sys.executable} -m wbcap.train.launch {spec} (wbcap train, rank {rank})")
        where = f"full traceback in {log_path}" if log_path else "its traceback is above"
        record.update(kind="crash", exit_code=CRASH_EXIT_CODE,
                      message=f"wbcap train failed in training process {rank}: {describe_crash(exc)}{crash_hint(exc, 'train')}; "
                              f"{where}")
    with contextlib.suppress(OSError, TypeError, ValueError):  # (a path that JSON cannot hold: no record)
        atomic_write_text(Path(folder) / f"rank{rank}.json", json.dumps(record))
    return secondary


def worker_error(folder: Path) -> Exception | None:
    """The first error the workers recorded in ``folder`` (:func:`leave_worker_error`; the
    earliest, as the others' are most often their process group losing it) as the exception the
    launcher raises: :class:`WorkerError`, or the ``OSError`` of a full disk (which the CLI says
    as a single process's, with how to resume); None when none was recorded."""
    records = []
    for path in sorted(folder.glob("rank*.json")):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if isinstance(record, dict) and isinstance(record.get("time"), (int, float)):
                records.append(record)
    if not records:
        return None
    primary = [r for r in records if r.get("kind") != "secondary"]
    first = min(primary or records, key=lambda r: r["time"])
    if first.get("kind") == "disk_full":
        return OSError(first.get("errno"), first.get("strerror"), first.get("filename"), None, first.get("filename2"))
    return WorkerError(str(first.get("message")), int(first.get("exit_code", 1)))


def torchrun_command(spec: Path, nproc: int, *, nnodes: int, node_rank: int, master_addr: str,
                     master_port: int) -> list[str]:
    """The torchrun command line that starts ``nproc`` workers of this node, each training ``spec``."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}",
            f"--node_rank={node_rank}", f"--master_addr={master_addr}", f"--master_port={master_port}",
            "-m", "wbcap.train.launch", str(spec)]


#: Seconds a stopped launcher waits for torchrun's agent to stop its workers and exit before it
#: kills the agent: longer than the agent's own wait for its workers (30 s, then SIGKILL).
TORCHRUN_STOP_TIMEOUT_S = 60.0


def run_torchrun(cmd: list[str], env: dict) -> int:
    """Run torchrun's agent (``cmd``) until it exits; its exit status.

    Stopped (Ctrl-C, or SIGTERM/SIGHUP that the CLI raises as Ctrl-C), this process passes the
    stop on, SIGINT for Ctrl-C and SIGTERM otherwise, to the agent, which passes it to its
    workers (each in a session of its own) and waits for them; this process waits for the agent
    (:data:`TORCHRUN_STOP_TIMEOUT_S`, then SIGKILL), and only then re-raises, so that no worker
    writes the run folder while the caller cleans it up or puts a previous run back. The agent
    has a session of its own, so that it gets the stop once, from here (a terminal's Ctrl-C
    reaches this process only; a second signal would cut the agent's wait for its workers
    short), and SIGTERM when this process dies (also when killed: :func:`end_with_parent`).
    """
    from wbcap.stop_signals import held_stop_signals

    agent = None
    try:
        with held_stop_signals():  # (a stop while it starts is acted on once it is known: below)
            agent = subprocess.Popen(cmd, env=env, start_new_session=True,
                                     preexec_fn=functools.partial(end_with_parent, signal.SIGTERM))
        return agent.wait()
    except KeyboardInterrupt as exc:
        if agent is not None:
            _stop_agent(agent, signal.SIGTERM if getattr(exc, "signum", None) else signal.SIGINT)
        raise


def _stop_agent(agent: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to torchrun's agent and wait for it to exit. Further stops while it waits are
    waited out (the agent is stopping its workers). An agent still running after
    :data:`TORCHRUN_STOP_TIMEOUT_S` is killed (SIGKILL), and so are its workers' process groups
    (Linux: the agent's children, found in ``/proc``), as the agent would have killed them."""
    import time

    if agent.poll() is not None:
        return
    log.info("stopping torchrun and its workers (%s)", signal.Signals(sig).name)
    with contextlib.suppress(ProcessLookupError):
        agent.send_signal(sig)
    deadline = time.monotonic() + TORCHRUN_STOP_TIMEOUT_S
    while True:
        try:
            agent.wait(timeout=max(0.0, deadline - time.monotonic()))
            return
        except subprocess.TimeoutExpired:
            break
        except KeyboardInterrupt:  # (asked again: the agent is already stopping its workers)
            log.info("still waiting for torchrun to stop its workers (at most %.0f s more)",
                     max(0.0, deadline - time.monotonic()))
    workers = _child_pids(agent.pid)
    agent.kill()
    agent.wait()
    for pid in workers:  # (each torchrun worker leads a process group of its own: with its data loaders)
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not any(_running(pid) for pid in workers):
            break
        time.sleep(0.1)
    log.warning("torchrun did not stop within %.0f s of %s; killed it and its %d worker(s)",
                TORCHRUN_STOP_TIMEOUT_S, signal.Signals(sig).name, len(workers))


def _child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``; elsewhere none are found)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()  # (after the command name, which may hold spaces)
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2:].split()[:1] != ["Z"]


@contextlib.contextmanager
def training_progress(cfg, disable: bool = False):
    """A rich progress bar over all steps of the stage (loss and steps/s); yields ``on_step``.
    Off with ``disable`` and where standard error is not a terminal (a log file got a blank line
    from the finished bar: an ML researcher's trial), as the other commands' bars."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from wbcap.console import stderr_console, stderr_is_terminal

    disable = disable or not stderr_is_terminal()

    with Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("step {task.completed:.0f}"),
                  TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=stderr_console(),
                  disable=disable, transient=True) as bar:
        task = bar.add_task("train", total=None, epoch=0, loss="-")

        def on_step(epoch: int, step: int, loss: float) -> None:
            bar.update(task, advance=1, epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{loss:.4f}")

        yield on_step


def main(argv: list[str] | None = None) -> None:
    """Entry point of each torchrun worker: read the run spec and train."""
    from wbcap.train.stages import StageConfig
    from wbcap.train.trainer import RunConfig, train

    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    run = RunConfig(**spec["run"])
    main_rank = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(level=logging.INFO if main_rank and not run.quiet else logging.WARNING)
    cfg = StageConfig.from_dict(spec["stage"])
    try:
        with training_progress(cfg, disable=not main_rank or run.quiet) as on_step:
            train(cfg, run, on_step=on_step)
    except Exception as exc:
        from wbcap.cli import CRASH_EXIT_CODE, DISK_FULL, DISK_FULL_EXIT_CODE

        secondary = leave_worker_error(exc, Path(argv[0]))
        # (said by the launcher in one line, as a single process says it; torchrun itself gives only
        # the exit status: without a traceback here; nor for a worker that failed after another did)
        if secondary:
            log.error("%s: %s (after another training process failed)", type(exc).__name__, exc)
            sys.exit(CRASH_EXIT_CODE)
        if isinstance(exc, WbcapError):
            log.error("%s", exc)
            sys.exit(exc.exit_code)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            log.error("%s", exc)
            sys.exit(DISK_FULL_EXIT_CODE)
        raise


if __name__ == "__main__":
    main()
