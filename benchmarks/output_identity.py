"""Outputs of ``wbcap image`` and ``wbcap run`` before and after a change: the same to 1e-6 (issue 12).

    python benchmarks/output_identity.py --base <git-ref> [--shared ../shared] [--keep DIR]
        [--model official|micro] [--frames 8] [--max-people 3] [--render] [--threads N] [--allow-new]
    python benchmarks/output_identity.py --compare BASE_OUT NEW_OUT [--allow-new]

Exports ``<git-ref>`` with ``git archive`` into a temporary folder and runs the same two commands
with the base's code and with this working tree's code (uncommitted edits included), each in its
own process with ``PYTHONPATH`` and the working directory set to its tree (checked: each side
imports ``wbcap`` from its own tree), the same Python, the same environment:

    wbcap -q image ../shared/media/messi5.jpg --detector-model ../shared/models/yolox_nano.onnx ...
    wbcap -q run ../shared/media/vtest.avi --max-frames 8 --max-people 3 --obj --detector-model ... ...

Both sides get the same inputs, made once with the working tree's code and no licensed file: a
synthetic SMPL-X model (``wbcap.testing.synthetic_body``) and a checkpoint with deterministic
values; ``--model official`` (default) writes the released file's layout (full-size network,
``snapshot_6.pth.tar``), ``--model micro`` a small wbcap-format one (all ResNet-18 at half the input
size, minutes faster on a CPU). The heads are left as drawn (``--upright`` straightens them), so
every pose, shape and camera depends on the pixels of the crop. ``WBCAP_OFFLINE=1``, an empty
``WBCAP_HOME``, ``--device cpu``, ``--precision exact``. Renders are skipped (``--no-render``)
unless ``--render``. A flag that one side's ``--help`` does not list is left out on both sides (and
said so).

Then every file of the two output folders is compared by name: JSON/JSONL numerically (every
number within ``--tol``, 1e-6, absolute for values up to 1 and relative above: ``|a - b| / max(1, |a|)``,
since float32 cannot hold 1e-6 at tens of metres; every other value equal), ``.npz`` (same keys, dtypes, shapes;
values within ``--tol``), OBJ (vertex lines within ``--tol``, other lines equal), images and
videos by their largest pixel difference (informative: GL renders may differ by a pixel; a
different size or frame count fails), anything else byte for byte. The output folder's path is
replaced by ``<OUT>`` in text before comparing. Prints a table (file, max abs difference, verdict)
and exits with 1 when a file differs beyond the tolerance or exists on one side only (a file only
in the working tree is listed as ``new`` and passes with ``--allow-new``), 2 when a command fails.
A number beyond the tolerance is named with its value (``largest at line 1571, value 57.31465``):
OBJ vertices are in camera space, tens of metres away with these weights, where one float32 step
is 3.8e-6 (relative 6e-8), so float32 arithmetic done in another order shows there first and is
within the (relative) tolerance.

About 2.5 min on 2 CPU cores with ``--model official``, 1 min with ``--model micro``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

#: Half the input geometry of an all-ResNet-18 network (tests/conftest.py's MICRO).
MICRO = dict(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18, input_img_shape=(256, 192),
             input_body_shape=(128, 96), output_hm_shape=(8, 4, 3), input_hand_shape=(128, 128),
             output_hand_hm_shape=(8, 4, 4), input_face_shape=(96, 96))

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}
#: ``python -c`` code running the CLI of the wbcap that the process imports (the console script,
#: ``wbcap.cli:console_main``, runs the same ``main`` and then ends the process quickly).
CLI = "from wbcap.cli import main; main()"


# -- comparison ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One line of the result table.

    ``verdict``: ``same`` (byte-equal or no number differs), ``close`` (within the tolerance),
    ``DIFF`` (beyond it, or a non-numeric difference), ``info`` (an image/video that differs by
    some pixels: reported, not a failure), ``only in base``, ``new`` (only in the working tree).
    """

    name: str
    diff: float | None
    verdict: str
    note: str = ""

    @property
    def failed(self) -> bool:
        """Whether this row fails the check (``new`` is judged by the caller)."""
        return self.verdict in ("DIFF", "only in base")


class Mismatch(Exception):
    """A difference that no number measures (other keys, lengths, dtypes, strings...)."""


def _json_diff(a, b, where: str = "") -> tuple[float, str]:
    """Largest absolute difference between the numbers of two JSON values of the same structure,
    and where it is (``.key[index]...`` after ``where``).

    Raises:
        Mismatch: the structures, keys, lengths or non-numeric values differ.
    """
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        if math.isnan(a) and math.isnan(b):
            return 0.0, where
        if math.isinf(a) or math.isinf(b):
            if a == b:
                return 0.0, where
            raise Mismatch(f"{where or 'value'}: {a} vs {b}")
        return abs(float(a) - float(b)) / max(1.0, abs(float(a))), f"{where}, value {a:.7g}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            raise Mismatch(f"{where or 'object'}: keys {sorted(set(a) ^ set(b))} on one side only")
        return max((_json_diff(a[k], b[k], f"{where}.{k}") for k in a), default=(0.0, where), key=lambda d: d[0])
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise Mismatch(f"{where or 'list'}: length {len(a)} vs {len(b)}")
        return max((_json_diff(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b))), default=(0.0, where),
                   key=lambda d: d[0])
    if type(a) is not type(b) or a != b:
        raise Mismatch(f"{where or 'value'}: {a!r:.60} vs {b!r:.60}")
    return 0.0, where


def _text(path: Path, out_root: Path) -> str:
    """The file's text with its output folder's path replaced by ``<OUT>``."""
    return path.read_text(encoding="utf-8").replace(str(out_root), "<OUT>")


def compare_json(a: Path, b: Path, a_root: Path, b_root: Path) -> tuple[float, str]:
    """Largest number difference between two JSON files and where (see :func:`_json_diff`)."""
    return _json_diff(json.loads(_text(a, a_root)), json.loads(_text(b, b_root)))


def compare_jsonl(a: Path, b: Path, a_root: Path, b_root: Path) -> tuple[float, str]:
    """Largest number difference between two JSON-lines files, line by line, and where."""
    la, lb = _text(a, a_root).splitlines(), _text(b, b_root).splitlines()
    if len(la) != len(lb):
        raise Mismatch(f"{len(la)} vs {len(lb)} lines")
    return max((_json_diff(json.loads(x), json.loads(y), f"line {i + 1}") for i, (x, y) in enumerate(zip(la, lb))),
               default=(0.0, ""), key=lambda d: d[0])


def compare_npz(a: Path, b: Path) -> tuple[float, str]:
    """Largest difference between the arrays of two ``.npz`` files (same keys, dtypes, shapes), and its key."""
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        if set(za.files) != set(zb.files):
            raise Mismatch(f"keys {sorted(set(za.files) ^ set(zb.files))} on one side only")
        worst, where = 0.0, ""
        for key in za.files:
            x, y = za[key], zb[key]
            if x.dtype != y.dtype or x.shape != y.shape:
                raise Mismatch(f"{key}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
            if x.dtype.kind in "biufc":
                xf, yf = x.astype(np.float64), y.astype(np.float64)
                if not np.array_equal(np.isnan(xf), np.isnan(yf)):
                    raise Mismatch(f"{key}: NaN in other places")
                ok = ~np.isnan(xf)
                if not np.array_equal(xf[~np.isfinite(xf) & ok], yf[~np.isfinite(xf) & ok]):
                    raise Mismatch(f"{key}: infinities differ")
                fin = np.isfinite(xf) & np.isfinite(yf)
                err = np.where(fin, np.abs(xf - yf) / np.maximum(1.0, np.abs(xf)), 0.0)
                d = float(err.max()) if err.size else 0.0
                if d > worst:
                    worst, where = d, f"{key}, value {xf.flat[int(err.argmax())]:.7g}"
            elif not np.array_equal(x, y):
                raise Mismatch(f"{key}: values differ")
        return worst, where


def compare_obj(a: Path, b: Path) -> tuple[float, str]:
    """Largest coordinate difference between the vertex lines of two OBJ files (and its line); other lines equal."""
    la = a.read_text(encoding="utf-8").splitlines()
    lb = b.read_text(encoding="utf-8").splitlines()
    if len(la) != len(lb):
        raise Mismatch(f"{len(la)} vs {len(lb)} lines")
    worst, where = 0.0, ""
    for i, (x, y) in enumerate(zip(la, lb)):
        if x == y:
            continue
        fx, fy = x.split(), y.split()
        if not fx or fx[0] not in ("v", "vn", "vt") or fx[0] != fy[0] or len(fx) != len(fy):
            raise Mismatch(f"line {i + 1}: {x!r:.60} vs {y!r:.60}")
        d, value = max((abs(float(p) - float(q)) / max(1.0, abs(float(p))), float(p)) for p, q in zip(fx[1:], fy[1:]))
        if d > worst:
            worst, where = d, f"line {i + 1}, value {value:.7g}"
    return worst, where


def _image_array(path: Path) -> np.ndarray:
    """Pixels of an image file (H, W, C) as int16."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im).astype(np.int16)


def compare_image(a: Path, b: Path) -> float:
    """Largest pixel difference (0-255) between two images of the same size."""
    x, y = _image_array(a), _image_array(b)
    if x.shape != y.shape:
        raise Mismatch(f"size {x.shape} vs {y.shape}")
    return float(np.abs(x - y).max()) if x.size else 0.0


def compare_video(a: Path, b: Path) -> float:
    """Largest pixel difference (0-255) between two videos with the same frame count and size."""
    import av

    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        fa = ca.decode(ca.streams.video[0])
        fb = cb.decode(cb.streams.video[0])
        worst, n = 0.0, 0
        while True:
            x, y = next(fa, None), next(fb, None)
            if x is None or y is None:
                if x is not None or y is not None:
                    raise Mismatch(f"frame counts differ (after {n} frames)")
                return worst
            x, y = x.to_ndarray(format="rgb24").astype(np.int16), y.to_ndarray(format="rgb24").astype(np.int16)
            if x.shape != y.shape:
                raise Mismatch(f"frame size {x.shape} vs {y.shape}")
            worst, n = max(worst, float(np.abs(x - y).max())), n + 1


def compare_file(a: Path, b: Path, a_root: Path, b_root: Path, tol: float) -> Row:
    """Compare one file present in both output folders (``a`` in ``a_root``, ``b`` in ``b_root``)."""
    name = a.relative_to(a_root).as_posix()
    if a.read_bytes() == b.read_bytes():
        return Row(name, 0.0, "same")
    suffix = a.suffix.lower()
    pixels = suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES
    try:
        if suffix == ".json":
            diff, where = compare_json(a, b, a_root, b_root)
        elif suffix == ".jsonl":
            diff, where = compare_jsonl(a, b, a_root, b_root)
        elif suffix == ".npz":
            diff, where = compare_npz(a, b)
        elif suffix == ".obj":
            diff, where = compare_obj(a, b)
        elif suffix in IMAGE_SUFFIXES:
            diff, where = compare_image(a, b), ""
        elif suffix in VIDEO_SUFFIXES:
            diff, where = compare_video(a, b), ""
        else:
            try:
                same = _text(a, a_root) == _text(b, b_root)
            except UnicodeDecodeError:
                same = False
            return Row(name, 0.0 if same else None, "same" if same else "DIFF",
                       "" if same else f"bytes differ ({a.stat().st_size} vs {b.stat().st_size} bytes)")
    except Mismatch as exc:
        return Row(name, None, "DIFF", str(exc))
    except (ValueError, OSError) as exc:  # unreadable on one side: a difference, reported with its reason
        return Row(name, None, "DIFF", f"{type(exc).__name__}: {exc}")
    if pixels:
        return Row(name, diff, "same" if diff == 0 else "info", "" if diff == 0 else "pixel difference (0-255)")
    if diff == 0:
        return Row(name, diff, "same")
    return Row(name, diff, "close" if diff <= tol * (1 + 1e-9) else "DIFF", f"largest at {where.lstrip('.')}" if where else "")


def compare_trees(base: Path, new: Path, tol: float = 1e-6) -> list[Row]:
    """Compare every file under ``base`` with the file of the same relative name under ``new``.

    Files on one side only become ``only in base`` / ``new`` rows. Rows are sorted by name.
    """
    names_a = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    names_b = {p.relative_to(new).as_posix() for p in new.rglob("*") if p.is_file()}
    rows = [compare_file(base / n, new / n, base, new, tol) for n in sorted(names_a & names_b)]
    rows += [Row(n, None, "only in base") for n in sorted(names_a - names_b)]
    rows += [Row(n, None, "new", f"{(new / n).stat().st_size} bytes") for n in sorted(names_b - names_a)]
    return sorted(rows, key=lambda r: r.name)


def failures(rows: list[Row], allow_new: bool = False) -> list[Row]:
    """The rows that fail the check (``new`` ones too unless ``allow_new``)."""
    return [r for r in rows if r.failed or (r.verdict == "new" and not allow_new)]


def print_table(rows: list[Row], title: str, group: int = 4) -> None:
    """Print ``rows`` as a table; runs of ``group`` or more same-verdict rows of one folder (e.g.
    ``meshes/0/*.obj``) with an equal note are folded into one line with their count and largest difference."""
    folded: list[tuple[str, Row]] = []
    i = 0
    while i < len(rows):
        r = rows[i]
        parent = r.name.rsplit("/", 1)[0] if "/" in r.name else ""
        j = i
        while (j + 1 < len(rows) and rows[j + 1].verdict == r.verdict and rows[j + 1].note == r.note
               and (rows[j + 1].name.rsplit("/", 1)[0] if "/" in rows[j + 1].name else "") == parent
               and Path(rows[j + 1].name).suffix == Path(r.name).suffix):
            j += 1
        if parent and j - i + 1 >= group:
            diffs = [x.diff for x in rows[i : j + 1]]
            worst = None if any(d is None for d in diffs) else max(diffs)
            label = f"{parent}/*{Path(r.name).suffix} ({j - i + 1} files)"
            folded.append((label, Row(label, worst, r.verdict, r.note)))
        else:
            folded.extend((x.name, x) for x in rows[i : j + 1])
        i = j + 1
    width = max([len(n) for n, _ in folded] + [4])
    print(f"\n{title}")
    print(f"  {'file':<{width}}  {'max abs diff':>12}  verdict")
    for label, r in folded:
        diff = "-" if r.diff is None else f"{r.diff:.3g}"
        print(f"  {label:<{width}}  {diff:>12}  {r.verdict}" + (f"  ({r.note})" if r.note else ""))


# -- running both trees ----------------------------------------------------------------------------


def git(*args: str) -> str:
    """Output of ``git args`` in this checkout (stripped)."""
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def export_tree(ref: str, dest: Path) -> str:
    """Write the files of git ``ref`` to ``dest`` (``git archive``: no worktree to clean up).
    Returns the commit's short hash and subject."""
    try:
        git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--base {ref}: not a commit of {ROOT}") from None
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return git("log", "-1", "--format=%h %s", ref)


def side_env(tree: Path, home: Path, threads: int | None) -> dict[str, str]:
    """The environment of one side's commands: its tree first on the path, offline, isolated user folders."""
    env = {k: v for k, v in os.environ.items() if k not in ("WBCAP_BODY_MODELS", "WBCAP_WEIGHTS", "WBCAP_WEIGHTS_MIRROR")}
    env.update(PYTHONPATH=str(tree), WBCAP_OFFLINE="1", WBCAP_HOME=str(home), XDG_CACHE_HOME=str(home / "cache"),
               PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def check_import(tree: Path, env: dict[str, str]) -> None:
    """Fail unless a process with ``env`` in ``tree`` imports ``wbcap`` from ``tree``."""
    got = subprocess.run([sys.executable, "-c", "import wbcap; print(wbcap.__file__)"], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    if not Path(got).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"wbcap for {tree} is imported from {got}: the comparison would run one tree's code twice")


def cli_flags(tree: Path, env: dict[str, str], command: str) -> set[str]:
    """The ``--flags`` that ``wbcap <command> --help`` of ``tree``'s code lists."""
    out = subprocess.run([sys.executable, "-c", CLI, command, "--help"], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))


def common_args(args: list[str], flags: set[str]) -> tuple[list[str], list[str]]:
    """``args`` without the options whose flag is not in ``flags`` (with their value, when the
    next item is not a flag). Returns (kept, dropped flags)."""
    kept, dropped, i = [], [], 0
    while i < len(args):
        a = args[i]
        has_value = a.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("-")
        if a.startswith("--") and a not in flags:
            dropped.append(a)
            i += 2 if has_value else 1
            continue
        kept.append(a)
        i += 1
    return kept, dropped


def make_inputs(work: Path, model: str, upright: bool) -> tuple[Path, Path]:
    """A synthetic SMPL-X folder and a deterministic checkpoint (this tree's code). Returns (body, checkpoint)."""
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    body = work / "body_models"
    write_synthetic_smplx(body)
    if model == "official":
        from wbcap.testing.checkpoints import write_official_checkpoint

        ckpt = write_official_checkpoint(work / "checkpoint" / "snapshot_6.pth.tar", seed=0, upright=upright)
    else:
        from wbcap.config import ModelConfig
        from wbcap.model.checkpoint import save_checkpoint
        from wbcap.testing.checkpoints import random_network

        (work / "checkpoint").mkdir()
        net = random_network(ModelConfig(**MICRO), seed=1, upright=upright)
        ckpt = save_checkpoint(work / "checkpoint" / "micro.pth", net, epoch=1)
    return body, Path(ckpt)


def run_side(label: str, tree: Path, env: dict[str, str], argv: list[str], log: Path) -> float:
    """Run ``wbcap argv`` with ``tree``'s code; stdout/stderr to ``log``. Returns seconds.

    Raises:
        SystemExit(2): the command failed (the log's tail is printed).
    """
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        rc = subprocess.run([sys.executable, "-c", CLI, *argv], cwd=tree, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        print(f"{label}: wbcap {argv[1]} failed with status {rc} after {seconds:.0f} s:\n  " + "\n  ".join(tail))
        raise SystemExit(2)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="git ref of the code before the change (e.g. HEAD~3, a commit)")
    ap.add_argument("--compare", nargs=2, metavar=("BASE_OUT", "NEW_OUT"), help="only compare two existing output folders")
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared folder (media/, models/)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this (new) folder and keep it: inputs, trees, outputs, logs")
    ap.add_argument("--model", choices=["official", "micro"], default="official",
                    help="checkpoint: the released layout (full size) or a small wbcap-format network")
    ap.add_argument("--upright", action="store_true", help="heads predicting a standing body (outputs then barely depend on pixels)")
    ap.add_argument("--frames", type=int, default=8, help="`wbcap run --max-frames`")
    ap.add_argument("--max-people", type=int, default=3, help="`wbcap run --max-people`")
    ap.add_argument("--render", action="store_true", help="also write and compare the renders (needs GL)")
    ap.add_argument("--threads", type=int, default=None, help="OMP/MKL threads of both sides (default: as the environment says)")
    ap.add_argument("--tol", type=float, default=1e-6, help="largest allowed absolute difference of a number")
    ap.add_argument("--allow-new", action="store_true", help="files only in the working tree's output are not a failure")
    args = ap.parse_args()

    if args.compare:
        a, b = (Path(p).resolve() for p in args.compare)
        rows = compare_trees(a, b, args.tol)
        print_table(rows, f"{a} vs {b}")
        sys.exit(report(rows, args.allow_new, args.tol))
    if not args.base:
        ap.error("give --base REF (or --compare A B)")

    image = args.shared / "media" / "messi5.jpg"
    video = args.shared / "media" / "vtest.avi"
    yolox = args.shared / "models" / "yolox_nano.onnx"
    for needed in (image, video):
        if not needed.is_file():
            raise SystemExit(f"{needed} is absent (give --shared)")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        work = args.keep.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="wbcap_identity_"))
    try:
        sys.exit(run_both(args, work, image.resolve(), video.resolve(), yolox.resolve() if yolox.is_file() else None))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run_both(args: argparse.Namespace, work: Path, image: Path, video: Path, yolox: Path | None) -> int:
    """Export the base, make the inputs, run both sides, compare, print. Returns the exit status."""
    sides = {"base": work / "base_tree", "new": ROOT}
    print(f"base: {args.base} = {export_tree(args.base, sides['base'])}")
    edited = git("status", "--short", "--untracked-files=no").splitlines()
    print(f"new:  working tree {ROOT} (HEAD {git('log', '-1', '--format=%h')}, {len(edited)} tracked files edited)")
    t0 = time.perf_counter()
    body, ckpt = make_inputs(work, args.model, args.upright)
    print(f"inputs: synthetic SMPL-X, {args.model} checkpoint ({ckpt.stat().st_size / 2**20:.0f} MB, "
          f"{'upright' if args.upright else 'raw'} heads), detector {yolox or 'HOG (no YOLOX model in --shared)'}"
          f" [{time.perf_counter() - t0:.0f} s]")
    common = ["--checkpoint", str(ckpt), "--body-models", str(body), "--device", "cpu", "--precision", "exact"]
    common += ["--detector-model", str(yolox)] if yolox else ["--detector", "hog"]
    common += [] if args.render else ["--no-render"]
    commands = {
        "image": ["image", str(image), *common],
        "run": ["run", str(video), "--max-frames", str(args.frames), "--max-people", str(args.max_people), "--obj", *common],
    }
    envs = {side: side_env(tree, work / f"home_{side}", args.threads) for side, tree in sides.items()}
    for side, tree in sides.items():
        check_import(tree, envs[side])
    status_code = 0
    for name, argv in commands.items():
        flags = [cli_flags(tree, envs[side], name) for side, tree in sides.items()]
        argv, dropped = common_args(argv, flags[0] & flags[1])
        if dropped:
            print(f"wbcap {name}: left out on both sides (one side lacks them): {' '.join(dropped)}")
        outs = {}
        for side, tree in sides.items():
            outs[side] = work / "out" / side / name
            seconds = run_side(side, tree, envs[side], ["-q", *argv, "-o", str(outs[side])], work / f"{side}_{name}.log")
            print(f"wbcap {name} with the {side} code: {seconds:.0f} s")
        rows = compare_trees(outs["base"], outs["new"], args.tol)
        print_table(rows, "wbcap " + " ".join(argv).replace(str(work), "<work>"))
        status_code = max(status_code, report(rows, args.allow_new, args.tol))
    if args.keep:
        print(f"\nkept: {work}")
    return status_code


def report(rows: list[Row], allow_new: bool, tol: float) -> int:
    """Print the verdict line for ``rows``; 1 when something fails, else 0."""
    bad = failures(rows, allow_new)
    new = [r for r in rows if r.verdict == "new"]
    info = [r for r in rows if r.verdict == "info"]
    line = f"{len(rows)} files: {len(bad)} failing (beyond {tol:g} or on one side only)"
    if new:
        line += f", {len(new)} new in the working tree" + (" (allowed)" if allow_new else "")
    if info:
        line += f", {len(info)} images/videos with pixel differences (informative)"
    print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    main()
