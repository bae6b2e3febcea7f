"""Shared fixtures: a synthetic SMPL-X model, checkpoints with the official key names, and an
isolated user data folder so tests never read a developer's real files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"

# A small architecture (all ResNet-18) for fast tests; the full-size model is used only in the
# few end-to-end tests that need the official checkpoint layout.
SMALL = dict(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18)
# SMALL with smaller network inputs (96x64 body, 64 px hands and face; the crops stay 256x192, the
# recipe's 3:4) for the end-to-end tests of `wbcap run` and `wbcap image` whose claims (timing,
# tracking, resume, outputs, errors) do not depend on the crop size. The pipeline takes the
# geometry from the checkpoint's config; same tensor shapes as SMALL. (64 px is the smallest side
# ModelConfig takes: heatmaps 2 cells a side; 1 gave NaN joint coordinates.)
MICRO = dict(SMALL, input_img_shape=(256, 192), input_body_shape=(96, 64), output_hm_shape=(8, 3, 2),
             input_hand_shape=(64, 64), output_hand_hm_shape=(8, 2, 2), input_face_shape=(64, 64))

# The network of the checkpoints the commands' end-to-end tests run (micro_ckpt, micro_ckpt_raw):
# MICRO with ResNets 16 channels wide (ModelConfig.backbone_width; 9 M weights, not 43 M), which
# load, pack and run in a quarter of the time. Those tests' claims (outputs, timing, tracking,
# resume, errors) do not depend on the width; the inference forms' tests keep MICRO's ResNet-18s.
MICRO_CKPT = dict(MICRO, backbone_width=16)


# `-n auto` (README: Tests) starts one pytest-xdist worker per core, at most this many: every
# worker builds the session fixtures (synthetic SMPL-X, full-size checkpoints) for itself.
MAX_WORKERS = 4


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.hookimpl(optionalhook=True)  # (pytest without xdist: -p no:xdist)
def pytest_xdist_auto_num_workers(config) -> int:
    return max(1, min(_cores(), MAX_WORKERS))


def _take_ctrl_c() -> None:
    """SIGINT handled (Python's Ctrl-C) where pytest was started with it ignored, as a shell
    starts a background job (`pytest ... &` in a script): the servers and runs the tests start
    inherit an ignored SIGINT, so the tests' Ctrl-C to them did nothing and each stop waited for
    its timeout (measured: four waits of 10 s in tests/test_view.py alone). A
    handled signal is set back to its default in a child, which Python takes as Ctrl-C."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config) -> None:
    _take_ctrl_c()
    _cache_bytecode()
    _share_cores(config)
    _huge_pages()
    _keep_freed_memory()


def _huge_pages() -> None:
    """torch's CPU allocator asks for no transparent huge pages in the tests
    (``THP_MEM_ALLOC_ENABLE=0``; :mod:`wbcap.huge_pages`): every test builds its networks,
    optimizers and snapshots afresh, and on the project's KVM machines the kernel's zeroing of
    freshly faulted 2 MiB pages (``clear_page_erms``, 37 % of all samples of a two-process torchrun
    test, ``perf record -a``) made the heaviest tests a quarter slower: five of them (two torchrun
    runs, two trainings, the full-size network) took 37.6 s against 48.1 s wall with the ``wbcap``
    command's ``1`` (system CPU 12.4 s against 29.7 s; medians of 3 pairs, 2-core Zen 4 EPYC,
    2026-12-06). Set, where not set already, in the process pytest started, before xdist starts
    its workers (which inherit it, and import torch later) and so in every ``wbcap`` the tests run,
    whose own ``setdefault`` keeps it (a user's setting wins, as tests/test_huge_pages.py checks).
    The tests' claims do not depend on it; the huge-page tests set the variable they need."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "0")


#: glibc's allocator settings for the processes the tests run in (:func:`_keep_freed_memory`).
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(16 << 30)}


def _keep_freed_memory() -> None:
    """glibc's allocator keeps the memory the tests free, for their next tensors, instead of
    giving it back to the kernel (allocations up to 32 MB from its heap, which is not trimmed):
    every test builds networks, optimizers and snapshots afresh, and on the project's KVM machines
    the kernel's zeroing of freshly faulted pages (``clear_page_erms``) took 39 % of a training
    test's samples (``perf record``, 2-core Zen 4 EPYC, 2026-12-06). With these, that test took
    16.8 s against 20.0-20.6 (system CPU 7.7 s against 10.6-11.0), and tests/test_train.py,
    test_fused.py and test_cli_run.py together 91.5 s against 102.7 with two workers. Set, where
    not set already, in the process pytest started, before xdist starts its workers (which
    inherit it; a process reads them when it starts); the tests' claims do not depend on the
    allocator. wbcap itself does not set them: for inference they gave no gain
    (docs/performance.md)."""
    for name, value in KEEP_FREED_MEMORY.items():
        os.environ.setdefault(name, value)


def _cache_bytecode() -> None:
    """Python's bytecode cache (``__pycache__``, git-ignored) written even where
    ``PYTHONDONTWRITEBYTECODE`` is set, as it is on the project's machines: there every xdist worker
    compiled wbcap and the test modules again (pytest's collection took 14.9 s instead of 7.6 s
    on the Zen 3 EPYC), and so did each of the ~100 Python processes the tests start (0.4-0.6 s
    each for wbcap). Set here, in the process pytest started, before xdist starts its workers,
    which inherit the environment; pytest writes its rewritten test modules' cache by this flag
    too."""
    if not sys.dont_write_bytecode and "PYTHONDONTWRITEBYTECODE" not in os.environ:
        return
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def _share_cores(config) -> None:
    """In an xdist worker: the cores shared out between the workers (torch's intra-op threads,
    and OpenMP's in the processes tests start). Measured on a 2-core Zen 1 EPYC: two workers with
    two threads each made the fast loop slower than one process (5:04 vs 3:43, OpenMP threads
    spinning against each other); with one thread each it took 2:44."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not hasattr(config, "workerinput") or not workers or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, _cores() // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # (read by torch when it is imported; here only if a plugin did)
        sys.modules["torch"].set_num_threads(threads)


def _isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("WBCAP_HOME", str(home))
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    # Tests never download on their own (--detector auto would fetch YOLOX); the tests of the
    # downloader serve files on 127.0.0.1 and lift this themselves.
    monkeypatch.setenv("WBCAP_OFFLINE", "1")
    monkeypatch.delenv("WBCAP_WEIGHTS_MIRROR", raising=False)
    # One fixed CPU inference form: the per-machine measurement (wbcap.model.strategy) takes
    # seconds and its own tests (tests/test_strategy.py) lift this.
    monkeypatch.setenv("WBCAP_CPU_STRATEGY", "fused")
    # Renders drawn in the test process: a render child (wbcap.export.render_process) hides its
    # imports behind loading a full-size model, but the tests' tiny models load in no time, so
    # every command would wait for it. tests/test_render_process.py lifts this.
    monkeypatch.setenv("WBCAP_RENDER_PROCESS", "0")
    # The strategy's huge-page trial (two more builds of a part, and a process-wide switch) only
    # where a test asks for it (tests/test_strategy.py): the fake timers answer forms, not it.
    monkeypatch.setattr("wbcap.huge_pages.huge_pages_measurable", lambda: False)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session(tmp_path_factory):
    """The same isolation for module- and session-scoped fixtures, which pytest sets up before
    any function-scoped one: without it a module fixture that runs the pipeline would measure
    the CPU strategy into the developer's real ``~/.cache/wbcap``."""
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, tmp_path_factory.mktemp("wbcap_session_home"))
        yield


@pytest.fixture(scope="session")
def mano_dir(tmp_path_factory) -> Path:
    """A folder holding ``mano/MANO_RIGHT.npz``: the synthetic right-hand MANO model
    (:mod:`wbcap.testing.synthetic_mano`), converted as users convert the release's pickle."""
    from wbcap.body.mano_layer import convert_mano_pickle
    from wbcap.testing.synthetic_mano import write_synthetic_mano

    folder = tmp_path_factory.mktemp("mano_models")
    convert_mano_pickle(write_synthetic_mano(folder))
    return folder


@pytest.fixture(scope="session", autouse=True)  # (autouse: set up before any module fixture runs a job)
def _huge_pages_at_start() -> bool:
    """Whether this test process had transparent huge pages on (its process switch) when its
    first test began."""
    from wbcap.huge_pages import process_huge_pages_disabled

    return process_huge_pages_disabled() is False


def _huge_pages_as_at_start(on_at_start: bool) -> None:
    """A short job (a photo, the demo) turns huge pages off for the whole process
    (wbcap.model.strategy.apply_machine_huge_pages), also in a module fixture's set-up: each test
    begins and ends with them as the process had them, and so do the Pythons it starts, which
    inherit the switch (two huge-page tests failed after an image test in the same worker)."""
    from wbcap.huge_pages import SHORT_JOB_MARK, process_huge_pages_disabled, set_process_huge_pages

    if on_at_start and process_huge_pages_disabled():
        set_process_huge_pages(True)
    os.environ.pop(SHORT_JOB_MARK, None)


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch, _huge_pages_at_start):
    _isolate(monkeypatch, tmp_path_factory.mktemp("wbcap_home"))
    _huge_pages_as_at_start(_huge_pages_at_start)
    yield
    _huge_pages_as_at_start(_huge_pages_at_start)


#: bpy_import_error's answers in this worker, per PYTHONPATH (see _bpy_import_checked_once).
_BPY_IMPORT_ERRORS: dict[str | None, str | None] = {}


@pytest.fixture(autouse=True)
def _bpy_import_checked_once(monkeypatch):
    """``wbcap.export.fbx.bpy_import_error`` imports bpy in a fresh Python (about a second), and
    `wbcap doctor` and every command exporting FBX ask it: asked once per test worker and
    PYTHONPATH (the tests' stand-in bpy that does not import comes on PYTHONPATH), as the same
    interpreter and bpy answer the same. Tests that stand in for it patch over this."""
    import wbcap.export.fbx as fbx

    real = fbx.bpy_import_error

    def once() -> str | None:
        key = os.environ.get("PYTHONPATH")
        if key not in _BPY_IMPORT_ERRORS:
            _BPY_IMPORT_ERRORS[key] = real()
        return _BPY_IMPORT_ERRORS[key]

    monkeypatch.setattr(fbx, "bpy_import_error", once)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (it is only beside the project checkout)")
    return SHARED


@pytest.fixture(scope="session")
def body_dir(tmp_path_factory) -> Path:
    """Folder with smplx/SMPLX_NEUTRAL.npz (synthetic, exact SMPL-X format)."""
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    folder = tmp_path_factory.mktemp("body_models")
    write_synthetic_smplx(folder)
    return folder


@pytest.fixture()
def train_args(body_dir):
    """``train_args(stage, *extra)``: the arguments of a one-step synthetic `wbcap train STAGE` on the CPU."""

    def make(stage="body", *extra):
        return ["train", stage, "--datasets", "synthetic", "--max-steps", "1", "--batch-size", "2", "--workers", "0",
                "--body-models", body_dir, "--device", "cpu", *extra]

    return make


@pytest.fixture(scope="session")
def body_layer(body_dir):
    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer

    return SMPLXLayer.from_file(find_body_model("neutral", body_dir))


@pytest.fixture(scope="session")
def small_config():
    from wbcap.config import ModelConfig

    return ModelConfig(**SMALL)


@pytest.fixture(scope="session")
def small_net(small_config):
    from wbcap.testing.checkpoints import random_network

    return random_network(small_config, seed=0, upright=True)


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory, small_net) -> Path:
    """A wbcap-format checkpoint of the small network (config inside)."""
    from wbcap.model.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pth", small_net, epoch=1)


@pytest.fixture(scope="session")
def micro_ckpt(tmp_path_factory) -> Path:
    """A wbcap-format checkpoint of the :data:`MICRO_CKPT` network, heads upright
    (:func:`wbcap.testing.checkpoints.upright_heads`)."""
    from wbcap.config import ModelConfig
    from wbcap.model.checkpoint import save_checkpoint
    from wbcap.testing.checkpoints import random_network

    net = random_network(ModelConfig(**MICRO_CKPT), seed=0, upright=True)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt_micro") / "micro.pth", net, epoch=1)


@pytest.fixture(scope="session")
def micro_ckpt_raw(tmp_path_factory) -> Path:
    """The :data:`MICRO_CKPT` network with every head left as drawn: its outputs depend on the pixels
    (for comparisons of two runs, which upright heads would pass whatever the crops)."""
    from wbcap.config import ModelConfig
    from wbcap.model.checkpoint import save_checkpoint
    from wbcap.testing.checkpoints import random_network

    net = random_network(ModelConfig(**MICRO_CKPT), seed=1)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt_micro_raw") / "micro_raw.pth", net, epoch=1)


@pytest.fixture(scope="session")
def official_ckpt(tmp_path_factory) -> Path:
    """A full-size checkpoint in the released file's layout ('module.' keys), deterministic values."""
    from wbcap.testing.checkpoints import write_official_checkpoint

    return write_official_checkpoint(tmp_path_factory.mktemp("official") / "snapshot_6.pth.tar", seed=0, upright=True)


@pytest.fixture(scope="session")
def official_ckpt_raw(tmp_path_factory) -> Path:
    """Like ``official_ckpt`` but with every head left as drawn (not upright), so poses, shape,
    camera and boxes all depend on the image features (for precision tests)."""
    from wbcap.testing.checkpoints import write_official_checkpoint

    return write_official_checkpoint(tmp_path_factory.mktemp("official_raw") / "snapshot_6.pth.tar", seed=0)


@pytest.fixture()
def one_torch_thread():
    """Run the test with one torch intra-op thread (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: A RAM folder is used for training runs' outputs only where /dev/shm and the memory have this
#: much room (two test workers write a few 0.5 GB snapshots each).
RAM_TMP_MIN_FREE = 8 * 2**30
_RAM_TMP_PREFIX = "wbcap-test-"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``): ``ram_tmp_path`` keeps a
    failed test's folder."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _memory_available() -> int:
    """MemAvailable of /proc/meminfo, bytes (0 where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _remove_folders_of_ended_sessions(shm: Path) -> None:
    """``wbcap-test-<pid>-*`` folders in ``shm`` whose pytest process is gone (killed, so its
    teardown never ran): RAM is not freed by pytest's own clean-up of its base folders."""
    import shutil

    for folder in shm.glob(f"{_RAM_TMP_PREFIX}*-*"):
        try:
            pid = int(folder.name[len(_RAM_TMP_PREFIX):].split("-")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # (another user's process: alive)
            continue


@pytest.fixture()
def ram_tmp_path(request, tmp_path: Path):
    """A new folder in /dev/shm (RAM) where it and the memory have :data:`RAM_TMP_MIN_FREE`
    bytes free, else ``tmp_path``. For the tests whose training runs write snapshots (about
    0.5 GB each with Adam's state): torch.save wrote 520 MB there in 0.32 s against 1.48 s on the
    disk (2-core Zen 4 project machine). Used as ``tmp_path`` by the training test modules (each
    overrides it). Removed after the test; a failed test's is moved into its ``tmp_path`` first
    (kept as pytest keeps failed tests' folders), and folders of sessions that were killed are
    removed when the next one makes its first."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    try:
        room = shutil.disk_usage(shm).free if shm.is_dir() and os.access(shm, os.W_OK) else 0
    except OSError:
        room = 0
    if min(room, _memory_available()) < RAM_TMP_MIN_FREE:
        yield tmp_path
        return
    _remove_folders_of_ended_sessions(shm)
    folder = Path(tempfile.mkdtemp(prefix=f"{_RAM_TMP_PREFIX}{os.getpid()}-", dir=shm))
    try:
        yield folder
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            shutil.move(str(folder), str(tmp_path / "ram_tmp_path"))
        shutil.rmtree(folder, ignore_errors=True)
