"""`wbcap weights` (manifest, import, verify, search order) and `wbcap doctor`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.errors import CheckpointError
from wbcap.weights import find_checkpoint, manifest, weights_dir


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_manifest_entries_are_complete():
    entries = manifest()
    assert "hand4whole" in entries and entries["hand4whole"].file == "snapshot_6.pth.tar"
    for arch in {e.architecture for e in entries.values()}:  # one default per architecture that has one
        assert sum(e.default for e in entries.values() if e.architecture == arch) <= 1, arch
    assert [e.name for e in entries.values() if e.default] == ["hand4whole", "yolox-nano"]
    for e in entries.values():
        assert e.file and e.source and e.licence and e.architecture


def test_list_shows_every_entry_and_how_to_get_it():
    r = run("weights", "list")
    assert r.exit_code == 0, r.output
    for e in manifest().values():
        assert f"{e.name}" in r.output and f"file:     {e.file}" in r.output, e.name
    assert "present:  no — run `wbcap weights import hand4whole FILE`" in r.output  # no URL: import
    assert "present:  no — run `wbcap weights fetch yolox-nano`" in r.output  # a URL: fetch
    assert str(weights_dir()) in r.output.split("search order:")[1]


def _block(output: str, name: str) -> list[str]:
    """The lines `weights list` prints about ``name`` (its header to the next entry's)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:") or line.startswith(f"{name} ("))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def test_list_shows_the_file_present_and_whether_it_is_the_official_one(tmp_path, monkeypatch):
    """After importing a re-export, `list` showed the official size and sha256 as if present (only
    verify and doctor said otherwise): now the file present, from its import record (not re-hashed)."""
    import wbcap.weights as weights
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    model = write_tiny_yolox(tmp_path / "my_nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64,
                             parameters=NANO_PARAMETERS)
    assert run("weights", "import", "yolox-nano", model).exit_code == 0
    size, digest = model.stat().st_size, hashlib.sha256(model.read_bytes()).hexdigest()

    def no_hashing(path, *args, **kwargs):
        raise AssertionError(f"re-hashed {path}")

    monkeypatch.setattr(weights, "sha256_file", no_hashing)  # the import's record says it
    r = run("weights", "list")
    assert r.exit_code == 0, r.output
    nano = "\n".join(_block(r.output, "yolox-nano"))
    official = manifest()["yolox-nano"]
    assert f"present:  {weights_dir() / 'yolox_nano.onnx'} ({size:,} bytes; not the official file (a re-export))" in nano
    assert f"sha256:   {digest} (the official file: {official.sha256}, {official.size:,} bytes)" in nano
    assert f"file:     yolox_nano.onnx ({official.size:,}" not in nano, nano
    # the official file is said to be it (a manifest that publishes this file's hash)
    monkeypatch.setattr(weights, "manifest", lambda real=weights.manifest: {
        **real(), "yolox-nano": dataclasses.replace(real()["yolox-nano"], sha256=digest, size=size)})
    nano = "\n".join(_block(run("weights", "list").output, "yolox-nano"))
    assert f"({size:,} bytes; the official file)" in nano and f"sha256:   {digest}" in nano, nano


def test_list_and_verify_print_a_hostile_folder_name_escaped(tmp_path, monkeypatch):
    """A weights folder named with a terminal escape sequence (a window title) is printed with
    the control characters escaped, by `weights list` and `weights verify` alike."""
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    folder = tmp_path / "w\x1b]0;pwned\x07"
    folder.mkdir()
    write_tiny_yolox(folder / "yolox_nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64,
                             parameters=NANO_PARAMETERS)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(folder))
    for command in ("list", "verify"):
        r = run("weights", command)
        assert "\x1b" not in r.output and "\x07" not in r.output, repr(r.output)
        assert str(tmp_path / "w\\x1b]0;pwned\\x07" / "yolox_nano.onnx") in r.output, r.output


def test_weights_help_says_detectors_too():
    for command in ("list", "verify"):
        text = " ".join(run("weights", command, "--help").output.split())
        assert "checkpoints and person detectors" in text, text


def test_missing_checkpoint_message_names_places_and_fix(monkeypatch):
    """The places looked in and the fixes, the variable too while it is not set (a biomechanics
    researcher's trial set another name and was not told which one wbcap reads)."""
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    with pytest.raises(CheckpointError) as info:
        find_checkpoint()
    msg = str(info.value)
    assert str(weights_dir()) in msg and "wbcap weights import hand4whole" in msg and "\n" not in msg
    assert msg.endswith("(or pass checkpoint FILE, or set WBCAP_WEIGHTS to the file or its folder)")


def test_a_renamed_checkpoint_where_wbcap_looks_is_named_with_its_import(tmp_path, micro_ckpt, monkeypatch):
    """A new user's trial renamed the download (``hand4whole.pth``) and was told only where
    ``snapshot_6.pth.tar`` had been looked for: the message, and doctor's fix after its download
    advice, name the file and its import (paths as shell words). The file under its own name one
    folder down is named too; the other manifest entries' files, temporary names, and another name
    for the hand-only checkpoint are not offered (a review)."""
    from wbcap.doctor import checkpoint_check

    folder = tmp_path / "my weights"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(micro_ckpt, folder / "snapshot_12_hand.pth.tar")  # (another entry's file)
    shutil.copy(micro_ckpt, folder / ".snapshot_6.tmp-0a1b2c3d.pth.tar")  # (an import's temporary name)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(folder))
    with pytest.raises(CheckpointError) as info:
        find_checkpoint()
    assert "is there" not in str(info.value) and info.value.found_below == ""
    renamed = folder / "sub" / "hand4whole.pth"
    shutil.copy(micro_ckpt, renamed)
    word = f"'{renamed}'"  # (the path has a space: quoted where a shell reads it)
    with pytest.raises(CheckpointError) as info:
        find_checkpoint()
    assert str(info.value).endswith(f"(or pass checkpoint FILE); {renamed} is there: if it is snapshot_6.pth.tar "
                                    f"renamed, `wbcap weights import hand4whole {word}` checks and installs it "
                                    f"(or pass checkpoint '{renamed}')"), str(info.value)
    check = checkpoint_check(manifest()["hand4whole"])  # (doctor's line: the download advice, then the file)
    assert not check.ok and check.fix == ("download it from https://github.com/mks0601/Hand4Whole_RELEASE (README: "
                                          "'Download the pre-trained Hand4Whole'), then `wbcap weights import hand4whole "
                                          f"FILE`; or: {info.value.found_below}"), check.fix
    assert find_checkpoint(renamed) == renamed  # (the option it names: what --checkpoint reads)
    (folder / "snapshot_12_hand.pth.tar").unlink()  # the hand-only checkpoint is not offered another name
    hand = checkpoint_check(manifest()["hand4whole_hand"])
    assert not hand.ok and "hand4whole.pth" not in hand.fix and "or:" not in hand.fix, hand.fix
    # its own name one folder down (unpacked into a folder of its own): named without "renamed"
    own = folder / "Hand4Whole" / "snapshot_6.pth.tar"
    own.parent.mkdir()
    shutil.copy(micro_ckpt, own)
    with pytest.raises(CheckpointError) as info:
        find_checkpoint()
    assert info.value.found_below == (f"{own} is there: `wbcap weights import hand4whole '{own}'` checks and installs "
                                      f"it (or pass checkpoint '{own}')")


@pytest.mark.slow  # a full-size checkpoint (0.3 GB) written, copied and hashed
def test_import_validates_copies_and_verify_checks_hash(tmp_path, official_ckpt):
    r = run("weights", "import", "hand4whole", official_ckpt)
    assert r.exit_code == 0, r.output
    dest = weights_dir() / "snapshot_6.pth.tar"
    assert dest.read_bytes() == official_ckpt.read_bytes()
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    assert (weights_dir() / "snapshot_6.pth.tar.sha256").read_text().split()[0] == digest
    assert find_checkpoint() == dest
    r = run("weights", "verify")
    assert r.exit_code == 0 and "ok" in r.output and digest in r.output, r.output
    r = run("weights", "list")
    assert r.exit_code == 0 and str(dest) in r.output.replace("\n", "")
    # a changed file is caught
    with open(dest, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    r = run("weights", "verify")
    assert r.exit_code == 1 and "mismatch" in r.output


def test_import_rejects_wrong_keys(tmp_path, micro_ckpt):
    import torch

    bad = tmp_path / "hand_only.pth"
    torch.save({"network": {"module.backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}}, bad)
    r = CliRunner().invoke(cli, ["weights", "import", "hand4whole", str(bad)])
    assert r.exit_code == 2 and r.output.startswith("error:") and "hand_only.pth" in r.output, r.output
    assert not (weights_dir() / "snapshot_6.pth.tar").exists()
    # a text file (torch's legacy reader raised IndexError on this one: a crash report, before)
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    r = CliRunner().invoke(cli, ["weights", "import", "hand4whole", str(text)])
    assert r.exit_code == 2 and r.output == (f"error: {text}: not a PyTorch checkpoint (neither of the formats "
                                             "torch.save writes); pass a PyTorch checkpoint, a file torch.save wrote "
                                             "(the Hand4Whole snapshot_6.pth.tar, a wbcap snapshot, a torchvision "
                                             ".pth)\n"), r.output
    assert not (weights_dir() / "snapshot_6.pth.tar").exists()


def test_import_hand_refuses_a_whole_body_checkpoint(tmp_path, small_net):
    """`weights import hand4whole_hand` took the whole-body checkpoint (its body ResNet under
    'backbone.' passed for the hand backbone) and doctor then said [ok]: the merge's check now."""
    from collections import OrderedDict

    import torch

    whole = tmp_path / "snapshot_6.pth.tar"
    torch.save({"network": OrderedDict(("module." + k, v) for k, v in small_net.state_dict().items())}, whole)
    r = CliRunner().invoke(cli, ["weights", "import", "hand4whole_hand", str(whole)])
    assert r.exit_code == 2 and r.output.startswith(f"error: {whole}: a whole-body checkpoint (it has hand_roi_net, "
                                                    "body_rotation_net, ..."), r.output
    assert r.output.count("\n") == 1 and not (weights_dir() / manifest()["hand4whole_hand"].file).exists()
    # a hand-only model still imports
    from wbcap.model.hand_model import HandModel

    hand = tmp_path / "hand.pth.tar"
    torch.save({"network": OrderedDict(("module." + k, v) for k, v in HandModel(18).state_dict().items())}, hand)
    r = run("weights", "import", "hand4whole_hand", hand)
    assert r.exit_code == 0 and "hand-backbone" in r.output, r.output


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_a_checkpoint_with_nan_values_is_refused_at_import_and_at_load(tmp_path, small_net, micro_ckpt, body_dir):
    """A diverged training run's checkpoint (a NaN in one head's bias) was imported ("438
    tensors"), then `wbcap image` crashed writing NaN vertices (leaving an empty output folder)
    and `wbcap eval` in its SVD: now one line naming the file and the tensor, exit 2, nothing written."""
    from collections import OrderedDict

    import cv2
    import torch

    from wbcap.model.checkpoint import save_checkpoint
    from wbcap.model.hand_model import HandModel
    from wbcap.testing.images import person_image

    net = torch.load(micro_ckpt, weights_only=True)["network"]
    net["body_rotation_net.root_pose_out.0.bias"][0] = float("nan")
    bad = tmp_path / "diverged.pth"
    torch.save({**torch.load(micro_ckpt, weights_only=True), "network": net}, bad)
    said = f"error: {bad}: tensor body_rotation_net.root_pose_out.0.bias holds NaN or infinite values"
    r = run("weights", "import", "hand4whole", bad)
    assert r.exit_code == 2 and r.output.startswith(said) and r.output.count("\n") == 1, r.output
    assert not (weights_dir() / "snapshot_6.pth.tar").exists()
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), person_image(96, 128)[:, :, ::-1])
    r = run("image", photo, "--checkpoint", bad, "--body-models", body_dir, "--device", "cpu", "--full-image",
            "--no-render", "-o", tmp_path / "out")
    assert r.exit_code == 2 and r.output.startswith(said), r.output
    assert not (tmp_path / "out").exists()
    # an infinity in a hand-only model (the merge's input), one whose values sum past float32's range still loads
    hand = OrderedDict(("module." + k, v.clone()) for k, v in HandModel(18).state_dict().items())
    hand["module.backbone.conv1.weight"][0, 0, 0, 0] = float("-inf")
    torch.save({"network": hand}, tmp_path / "hand.pth.tar")
    r = run("weights", "import", "hand4whole_hand", tmp_path / "hand.pth.tar")
    assert r.exit_code == 2 and "tensor module.backbone.conv1.weight holds NaN or infinite values" in r.output
    big = dict(small_net.state_dict())
    big["body_rotation_net.root_pose_out.0.bias"] = torch.full_like(big["body_rotation_net.root_pose_out.0.bias"], 3e38)
    net = type(small_net)(small_net.config)
    net.load_state_dict(big)
    r = run("weights", "import", "hand4whole", save_checkpoint(tmp_path / "large.pth", net.eval(), epoch=1))
    assert r.exit_code == 0, r.output


def test_env_var_points_at_checkpoint(monkeypatch, micro_ckpt, tmp_path):
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    assert find_checkpoint() == micro_ckpt
    # set to a file that is not there: an error, not silently the checkpoint found elsewhere
    import shutil

    weights_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(micro_ckpt, weights_dir() / "snapshot_6.pth.tar")
    monkeypatch.setenv("WBCAP_WEIGHTS", str(tmp_path / "nonexistent.pth.tar"))
    with pytest.raises(CheckpointError, match=r"^WBCAP_WEIGHTS=.*nonexistent.pth.tar: no such file or folder; point"):
        find_checkpoint()
    monkeypatch.delenv("WBCAP_WEIGHTS")
    assert find_checkpoint() == weights_dir() / "snapshot_6.pth.tar"
    # a folder holding the checkpoint (README: "file or folder")
    folder = tmp_path / "my_weights"
    folder.mkdir()
    shutil.copy(micro_ckpt, folder / "snapshot_6.pth.tar")
    monkeypatch.setenv("WBCAP_WEIGHTS", str(folder))
    assert find_checkpoint() == folder / "snapshot_6.pth.tar"


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_env_var_naming_a_file_is_the_default_checkpoint_for_doctor_list_and_verify_alike(monkeypatch, micro_ckpt):
    """$WBCAP_WEIGHTS naming a file: `wbcap doctor` reported it as both checkpoints (whole-body
    and hand-only) while `weights list` and `verify` called both missing. One rule for all three
    and for loading: the file is the default (whole-body) checkpoint, and no other weights file."""
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    assert find_checkpoint() == micro_ckpt
    doctor = run("doctor").output
    assert f"[ok  ] checkpoint hand4whole: {micro_ckpt} (" in doctor, doctor
    assert "[warn] checkpoint hand4whole_hand: snapshot_12_hand.pth.tar not found" in doctor, doctor
    listed = run("weights", "list").output
    assert f"  present:  {micro_ckpt} (" in "\n".join(_block(listed, "hand4whole")), listed
    assert "  present:  no — run `wbcap weights import hand4whole_hand FILE`" in _block(listed, "hand4whole_hand"), listed
    verified = {line.split()[0]: line.split()[1:3] for line in run("weights", "verify").output.splitlines()}
    assert verified["hand4whole"] == ["unverified", str(micro_ckpt)] and verified["hand4whole_hand"][0] == "missing"


@pytest.mark.slow  # (a doctor run; doctor's other lines stay in the fast loop)
def test_doctor_with_wbcap_weights_naming_nothing_says_to_fix_the_variable_not_to_train(monkeypatch, tmp_path, body_dir):
    """A README audit: doctor's last line advised a checkpoint trained on synthetic data, where the
    fix is the mistyped variable its [MISS] line names."""
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(body_dir))
    monkeypatch.setenv("WBCAP_WEIGHTS", str(tmp_path / "nothing"))
    r = run("doctor")
    assert r.exit_code == 1, r.output
    assert f"[MISS] checkpoint hand4whole: WBCAP_WEIGHTS={tmp_path / 'nothing'}: no such file or folder" in r.output
    assert "fix: point WBCAP_WEIGHTS at the checkpoint or its folder, or unset it" in r.output
    assert "wbcap train body" not in r.output, r.output


def test_doctor_reports_missing_files_with_fixes(body_dir, micro_ckpt, monkeypatch):
    """Each missing file with its fix; while the SMPL-X model or the checkpoint is missing, the
    last line is how to try the commands without them (the README's recipe: a user trial found
    only `wbcap demo` pointing to it); with both found, exit 0 and no such line."""
    from wbcap.demo import try_without_files

    r = run("doctor")
    assert r.exit_code == 1
    assert "SMPL-X neutral" in r.output and "smpl-x.is.tue.mpg.de" in r.output
    assert "wbcap weights import hand4whole" in r.output and "renderer" in r.output
    assert r.output.splitlines()[-2:] == ["2 required item(s) missing; `wbcap demo` still runs without them.",
                                          try_without_files()], r.output
    both = try_without_files()
    assert "README, Quick start" in both and "wbcap train body --datasets synthetic" in both and "WBCAP_BODY_MODELS" in both
    # the folder to copy the model into, not made yet: its fix makes it (`cp` into it failed: a new user's trial)
    from wbcap.paths import body_models_dir

    (fix,) = [ln for ln in r.output.splitlines() if "copy SMPLX_NEUTRAL.npz to" in ln]
    assert not body_models_dir().exists() and fix.endswith(f"(make it first: mkdir -p {body_models_dir() / 'smplx'})")
    subprocess.run(["bash", "-c", fix.partition("mkdir -p ")[2].rstrip(")")
                    .join(["mkdir -p ", f" && cp {body_dir / 'smplx' / 'SMPLX_NEUTRAL.npz'} {body_models_dir() / 'smplx'}/"])],
                   check=True)
    assert "[ok  ] SMPL-X neutral" in run("doctor").output
    shutil.rmtree(body_models_dir())
    r = run("doctor", "--body-models", body_dir)
    assert "[ok  ] SMPL-X neutral" in r.output, r.output
    # (the checkpoint still missing: that stand-in only; a new user's trial, a checkpoint installed, was told to train one)
    assert r.exit_code == 1 and r.output.splitlines()[-1] == try_without_files(body=False), r.output
    assert "WBCAP_BODY_MODELS" not in try_without_files(body=False) and "wbcap train" not in try_without_files(checkpoint=False)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    r = run("doctor")
    assert r.exit_code == 1 and r.output.splitlines()[-1] == try_without_files(checkpoint=False), r.output
    monkeypatch.delenv("WBCAP_WEIGHTS")
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    r = run("doctor", "--body-models", body_dir)
    assert r.exit_code == 0 and "missing" not in r.output.splitlines()[-1] and "To try" not in r.output, r.output
    monkeypatch.setenv("WBCAP_CPU_STRATEGY", "nonsense")  # (a required item, not a licensed file: no such line)
    r = run("doctor", "--body-models", body_dir)
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith("1 required item(s) missing"), r.output


def _near_duplicates(a: str, b: str) -> bool:
    """Whether two messages say mostly the same words (paths and URLs masked: they may repeat)."""
    import difflib
    import re

    def norm(s: str) -> str:
        return re.sub(r"\S*/\S*", "<path>", s.lower())

    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio() > 0.5


def test_doctor_says_each_missing_item_once(tmp_path):
    from wbcap.doctor import run_checks

    given = tmp_path / "my_models"
    checks = run_checks(str(given))
    missing = [c for c in checks if not c.ok and c.fix]
    assert {c.name for c in missing} >= {"SMPL-X neutral", "SMPL-X male", "checkpoint hand4whole"}
    for c in missing:
        assert not _near_duplicates(c.detail, c.fix), (c.detail, c.fix)
        # the detail says what is missing and where wbcap looked; only the fix says what to do
        assert not any(w in c.detail for w in ("download", "register", "install", "put ", "copy ")), c.detail
    neutral = next(c for c in checks if c.name == "SMPL-X neutral")
    assert neutral.detail == f"SMPLX_NEUTRAL.npz not found in {given / 'smplx'}/ or {given}/"
    assert neutral.fix.endswith(f"copy SMPLX_NEUTRAL.npz to {given / 'smplx'}/ (make it first: mkdir -p "
                                f"{given / 'smplx'})")  # the folder given, not the default
    ckpt = next(c for c in checks if c.name == "checkpoint hand4whole")
    assert ckpt.detail == f"snapshot_6.pth.tar not found in {weights_dir()}/"
    assert "wbcap weights import hand4whole FILE" in ckpt.fix

    r = run("doctor", "--body-models", given)
    lines = [line.strip() for line in r.output.splitlines()]
    assert len(lines) == len(set(lines)), r.output
    for prev, line in zip(lines, lines[1:]):
        if line.startswith("fix: "):
            assert not _near_duplicates(prev.split(": ", 1)[1], line[5:]), (prev, line)


def test_doctor_names_the_cpu_inference_form(monkeypatch):
    """Forced by the environment, not measured yet, or what was measured for this machine
    (read from the strategy cache, for this wbcap and machine only; nothing is measured)."""
    import torch

    from wbcap.model import strategy
    from wbcap.model.fused import ChunkPlan

    def form_line() -> str:
        r = run("doctor")
        (line,) = [ln for ln in r.output.splitlines() if "CPU inference form" in ln]
        return line

    monkeypatch.setenv(strategy.ENV_STRATEGY, "fused:2")  # (the tests' own setting is "fused")
    assert form_line() == ("[ok  ] CPU inference form: forced by WBCAP_CPU_STRATEGY=fused:2 (every part fused, at "
                           "most 2 images per convolution call)")
    monkeypatch.setenv(strategy.ENV_STRATEGY, "graph:1")  # a form for some parts: which, from strategy.ONLY_FOR
    assert form_line() == (f"[ok  ] CPU inference form: forced by WBCAP_CPU_STRATEGY=graph:1 (graph for the "
                           f"{strategy.ONLY_FOR['graph']}, every other part fused, at most 1 image per convolution call)")
    monkeypatch.delenv(strategy.ENV_STRATEGY)
    path = strategy.cache_path()
    assert not path.exists() and form_line().startswith("[ok  ] CPU inference form: not measured on this machine yet")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")  # an unusable cache is named, not taken for a missing one
    assert form_line().startswith(f"[ok  ] CPU inference form: not measured on this machine yet (its cache {path} "
                                  "cannot be used: Expecting property name")
    path.unlink()
    plans = (((1, 2),),) * 3 + ((),) * 10
    body = strategy.PartChoice("fused", ChunkPlan(((1, 0.04), (4, 0.03))), (), 1, winograd=plans, single="onnxruntime")
    box = strategy.PartChoice("plain", ChunkPlan.fixed(2), (True, False, True), 1, gemm=(True, True, False))
    strategy.write_cache(path, strategy.machine_key(), {"body_backbone: resnet50 3x256x192 float32": body,
                                                        "box_net: deconv 2248-256-256-256 8x6 bfloat16": box})
    line = form_line()
    assert line.startswith("[ok  ] CPU inference form: measured on this machine: float32: body_backbone (resnet50 "
                           "3x256x192) fused (Winograd 3/13, one-image calls onnxruntime); bfloat16: box_net (deconv 2248-256-256-256 8x6) plain "
                           "(sub-pixel 2/3, matrix product 1/3, col2im 1/3)"), line
    assert str(path) in line
    strategy.write_cache(path, strategy.machine_key(), {"face_backbone: resnet18 3x96x96 float32 no-onednn": body})
    line = form_line()
    assert "face_backbone (resnet18 3x96x96, no oneDNN) fused (Winograd 3/13, one-image calls onnxruntime)" in line and "no-onednn:" not in line
    assert line.index("face_backbone") < line.index("bfloat16:")  # grouped with the float32 parts
    # another machine's entry or another wbcap's is not this machine's choice
    other = dict(strategy.machine_key(), threads=torch.get_num_threads() + 1)
    path.unlink()
    strategy.write_cache(path, other, {"body_backbone: resnet50 3x256x192 float32": body})
    assert "not measured on this machine yet" in form_line()
    strategy.write_cache(path, strategy.machine_key(), {"body_backbone: resnet50 3x256x192 float32": body})
    assert "measured on this machine: float32: body_backbone" in form_line()
    data = json.loads(path.read_text())
    for slot in data["machines"].values():
        for entry in slot["parts"].values():
            entry["wbcap"] = "0.0.0-other"
    path.write_text(json.dumps(data))
    assert "not measured on this machine yet" in form_line()
    monkeypatch.setenv(strategy.ENV_STRATEGY, "measure")
    assert form_line() == ("[ok  ] CPU inference form: WBCAP_CPU_STRATEGY=measure: the next run of the network "
                           "measures it again (10-30 s on 2 cores, longer beside other jobs)")
    monkeypatch.setenv(strategy.ENV_STRATEGY, "bogus")
    r = run("doctor")
    assert "[MISS] CPU inference form: CPU strategy 'bogus'" in r.output and "unset WBCAP_CPU_STRATEGY" in r.output


def test_a_detector_without_an_import_record_is_described_alike_by_doctor_list_and_verify(tmp_path, monkeypatch):
    """A non-official detector dropped into a $WBCAP_WEIGHTS folder (never imported): doctor said
    "a re-export" and [ok], list "a re-export", verify a bare mismatch (found by a user trial).
    All three now say it is not the official file and that no import record is kept there, with
    the way that works (the advice to import it changed nothing while $WBCAP_WEIGHTS was still
    searched first, and verify called it a mismatch for ever: a later trial); verify says
    "unverified", as any YOLOX export works. Once imported, it is a re-export for all three, and a
    truncated import is not called one."""
    import os
    import time

    from wbcap.doctor import _detector_check
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    folder = tmp_path / "weights"
    folder.mkdir()
    model = write_tiny_yolox(folder / "yolox_nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64,
                             parameters=NANO_PARAMETERS)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(folder))
    how = ("not the official file; wbcap keeps no import record for a file in WBCAP_WEIGHTS (to keep one: `wbcap "
           "weights import yolox-nano FILE`, then unset WBCAP_WEIGHTS)")
    check = _detector_check()
    assert check.ok and how in check.detail and "a re-export, not the official" not in check.detail, check
    nano = "\n".join(_block(run("weights", "list").output, "yolox-nano"))
    assert f"({model.stat().st_size:,} bytes; {how})" in nano, nano
    r = run("weights", "verify")
    line = next(x for x in r.output.splitlines() if x.startswith("yolox-nano"))
    assert r.exit_code == 0 and line.split()[1] == "unverified" and line.endswith(f": {how}"), line
    monkeypatch.delenv("WBCAP_WEIGHTS")
    assert run("weights", "import", "yolox-nano", model).exit_code == 0
    check = _detector_check()
    assert check.ok and "not the official file (a re-export)" in check.detail, check
    r = run("weights", "verify")
    line = next(x for x in r.output.splitlines() if x.startswith("yolox-nano"))
    assert r.exit_code == 0 and line.split()[1] == "ok" and line.endswith(": not the official file (a re-export)"), line
    installed = weights_dir() / "yolox_nano.onnx"
    later = time.time() + 5
    with open(installed, "r+b") as f:
        f.truncate(installed.stat().st_size // 2)
    os.utime(installed, (later, later))
    from wbcap.weights import installed as present

    described = present(manifest()["yolox-nano"]).provenance("yolox-nano")
    assert described.startswith("CHANGED") and "re-export" not in described


def test_a_detector_damaged_after_its_import_is_not_reported_ok(tmp_path):
    """Truncated after `wbcap weights import`: doctor said [ok] (a re-export) and list showed it
    as present while verify said mismatch and every run failed to load it."""
    import os
    import time

    from wbcap.doctor import _detector_check
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    model = write_tiny_yolox(tmp_path / "my_nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64,
                             parameters=NANO_PARAMETERS)
    assert run("weights", "import", "yolox-nano", model).exit_code == 0
    assert _detector_check().ok
    installed = weights_dir() / "yolox_nano.onnx"
    later = time.time() + 5
    with open(installed, "r+b") as f:
        f.truncate(installed.stat().st_size // 2)
    os.utime(installed, (later, later))  # (written after the record, as a truncation is)
    check = _detector_check()
    # (a file that no longer loads breaks every default run: required, not a warning, a weights trial)
    assert not check.ok and not check.optional and "cannot load" in check.detail, check
    assert check.detail.endswith("(every run with the default detector fails)"), check
    assert check.fix == "`wbcap weights fetch yolox-nano`, or `wbcap weights import yolox-nano FILE` again", check.fix
    nano = "\n".join(_block(run("weights", "list").output, "yolox-nano"))
    assert "CHANGED since its import or download" in nano, nano


def test_doctor_of_a_broken_yolox_in_the_wbcap_weights_folder_says_to_replace_that_file(tmp_path, monkeypatch):
    """A damaged yolox_nano.onnx in $WBCAP_WEIGHTS (searched first): the fix said to fetch, into
    wbcap's own folder, a file that would not be used while that one is there (a review)."""
    from wbcap.doctor import _detector_check

    shared = tmp_path / "team"
    shared.mkdir()
    (shared / "yolox_nano.onnx").write_bytes(b"not a model" * 10)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(shared))
    check = _detector_check()
    assert not check.ok and "cannot load" in check.detail, check
    assert check.fix == (f"replace {shared / 'yolox_nano.onnx'} (in $WBCAP_WEIGHTS, searched before {weights_dir()}/) "
                         "with a good copy of yolox_nano.onnx, or remove it and run `wbcap weights fetch yolox-nano`"), check.fix


def test_doctor_says_a_body_models_variable_naming_no_folder(tmp_path, monkeypatch):
    """The Quick start's WBCAP_BODY_MODELS copied where the demo wrote its model elsewhere: doctor
    said to copy the licensed file into that missing folder (a new user's trial)."""
    from wbcap.doctor import body_model_check
    from wbcap.paths import demo_body_models_dir

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(tmp_path / "nope"))
    check = body_model_check("neutral", None)
    assert not check.ok and check.fix == (
        f"WBCAP_BODY_MODELS names {tmp_path / 'nope'}, which does not exist: point it at the folder that holds "
        f"SMPLX_NEUTRAL.npz (`wbcap demo`'s synthetic one is {demo_body_models_dir()}), or unset it")
    (tmp_path / "there").mkdir()
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(tmp_path / "there"))  # (an existing folder: where to copy it)
    assert body_model_check("neutral", None).fix.startswith("register at https://smpl-x.is.tue.mpg.de")
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(demo_body_models_dir()))  # (the try-out's, not written yet: a review)
    assert not demo_body_models_dir().exists()
    assert not body_model_check("neutral", None).fix.startswith("WBCAP_BODY_MODELS names")


def test_the_weights_variable_is_named_only_where_it_found_the_file(tmp_path, monkeypatch):
    """A variable naming a file stands for the default checkpoint alone; wbcap's own weights
    folder is where an import writes, so naming it is no cause (a review)."""
    from wbcap.doctor import _through_variable

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "a.pth").write_bytes(b"x")
    (tmp_path / "elsewhere.pth").write_bytes(b"x")
    (folder / "link.pth").symlink_to(tmp_path / "elsewhere.pth")
    assert _through_variable(folder, folder / "a.pth", default=False)
    assert _through_variable(folder, folder / "link.pth", default=True)  # (a link in the folder)
    assert _through_variable(folder / "a.pth", folder / "a.pth", default=True)
    assert not _through_variable(folder / "a.pth", folder / "a.pth", default=False)  # (the hand model)
    assert not _through_variable(folder, tmp_path / "elsewhere.pth", default=True)
    own = weights_dir()
    own.mkdir(parents=True)
    assert not _through_variable(own, own / "a.pth", default=True)


def test_a_cache_folder_that_cannot_exist_is_missing_not_a_shared_install(tmp_path, monkeypatch):
    """A cache under a file was called a read-only shared install (a review)."""
    from wbcap.doctor import user_folders_check

    monkeypatch.delenv("WBCAP_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    (tmp_path / "data" / "wbcap").mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cachefile"))
    (tmp_path / "cachefile").write_text("not a folder")
    check = user_folders_check()
    assert not check.ok and not check.optional and "is a file" in check.detail, check


def test_doctor_reads_what_it_finds_and_fails_unusable_files(tmp_path, monkeypatch, body_dir, micro_ckpt):
    """Found is not usable: doctor said [ok] for a zero-byte or truncated SMPL-X file, a
    1.3 kB foreign checkpoint and a random yolox_nano.onnx, and every run then failed. It now
    reads each as wbcap reads it."""
    import shutil

    from wbcap.doctor import _detector_check, body_model_check, checkpoint_check

    good = next(Path(body_dir).rglob("SMPLX_NEUTRAL.npz"))
    for name, data in (("empty", b""), ("truncated", good.read_bytes()[: good.stat().st_size // 2])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "SMPLX_NEUTRAL.npz").write_bytes(data)
        check = body_model_check("neutral", str(folder))
        assert not check.ok and str(folder / "SMPLX_NEUTRAL.npz") in check.detail, check
        assert "download the SMPL-X npz models again" in check.fix and "\n" not in check.detail
    assert body_model_check("neutral", str(body_dir)).ok
    hand4whole = manifest()["hand4whole"]
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    check = checkpoint_check(hand4whole)
    assert check.ok and check.detail.startswith(f"{micro_ckpt} (") and "tensors" in check.detail, check
    garbage = tmp_path / "snapshot_6.pth.tar"
    garbage.write_bytes(b"PK\x03\x04" + bytes(1300))
    monkeypatch.setenv("WBCAP_WEIGHTS", str(garbage))
    check = checkpoint_check(hand4whole)
    assert not check.ok and str(garbage) in check.detail and "wbcap weights import hand4whole FILE" in check.fix, check
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "yolox_nano.onnx").write_bytes(bytes(range(256)) * 20)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(folder))
    check = _detector_check()
    assert not check.ok and "auto would use yolox-nano, but" in check.detail and "yolox_nano.onnx" in check.detail, check
    shutil.rmtree(folder)
    r = run("doctor", "--body-models", str(tmp_path / "empty"))
    assert r.exit_code == 1 and "[MISS] SMPL-X neutral: " in r.output, r.output


def test_a_copy_that_keeps_the_old_time_is_not_taken_for_the_imported_file(tmp_path):
    """`cp -p garbage yolox_nano.onnx` over an imported detector keeps a modification time older
    than the import record: doctor and list trusted the record ("a re-export"), verify said
    mismatch. The file's status-change time shows the copy."""
    import os

    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox
    from wbcap.weights import installed

    model = write_tiny_yolox(tmp_path / "my_nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64,
                             parameters=NANO_PARAMETERS)
    assert run("weights", "import", "yolox-nano", model).exit_code == 0
    target = weights_dir() / "yolox_nano.onnx"
    record_time = (target.parent / "yolox_nano.onnx.sha256").stat().st_mtime
    stale = tmp_path / "garbage.onnx"
    stale.write_bytes(b"garbage" * 100)
    os.utime(stale, (record_time - 3600, record_time - 3600))
    os.replace(stale, target)  # (as `cp -p` leaves it: old mtime, new ctime)
    assert target.stat().st_mtime < record_time
    found = installed(manifest()["yolox-nano"])
    assert found.changed and found.provenance("yolox-nano").startswith("CHANGED"), found



def test_a_weights_variable_naming_nothing_is_refused_alike_everywhere(tmp_path, monkeypatch, micro_ckpt):
    """WBCAP_WEIGHTS naming nothing: `wbcap run` refused it, while doctor said the checkpoint was
    "not found in <that path> or <user data>" and `weights list|verify` used the user data
    folder's files silently. All now give the run's reason."""
    import shutil

    from wbcap.doctor import checkpoint_check

    weights_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(micro_ckpt, weights_dir() / "snapshot_6.pth.tar")  # (found, were the variable not set)
    missing = tmp_path / "missing_x"
    monkeypatch.setenv("WBCAP_WEIGHTS", str(missing))
    said = f"WBCAP_WEIGHTS={missing}: no such file or folder"
    check = checkpoint_check(manifest()["hand4whole"])
    assert not check.ok and check.detail.startswith(said + "; point it at the checkpoint"), check
    assert check.fix == "point WBCAP_WEIGHTS at the checkpoint or its folder, or unset it", check
    for args in (("weights", "list"), ("weights", "verify")):
        r = run(*args)
        assert r.exit_code == 2 and r.output.startswith(f"error: {said}; point it at"), (args, r.output)
    monkeypatch.delenv("WBCAP_WEIGHTS")
    assert checkpoint_check(manifest()["hand4whole"]).ok and run("weights", "verify").exit_code == 0


def test_a_weights_folder_that_cannot_be_written_names_the_fix(tmp_path, monkeypatch):
    """`weights import` into a read-only weights folder said "choose another output folder" (it
    has no such option) and `weights fetch` "free disk space": both now name the folder and what
    fixes it, before hashing or downloading anything."""
    import errno
    import tempfile

    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    model = write_tiny_yolox(tmp_path / "my_nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64,
                             parameters=NANO_PARAMETERS)
    weights_dir().mkdir(parents=True, exist_ok=True)
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == weights_dir():
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    said = (f"error: {weights_dir()}: cannot write in this folder (Read-only file system); this is wbcap's weights "
            "folder: fix that, or set WBCAP_HOME to a writable folder")
    r = run("weights", "import", "yolox-nano", model)
    assert r.exit_code == 2 and r.output.startswith(said), r.output
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "yolox_m.onnx").write_bytes(b"garbage" * 100)
    monkeypatch.setenv("WBCAP_WEIGHTS_MIRROR", mirror.as_uri())
    r = run("weights", "fetch", "yolox-m")
    assert r.exit_code == 2 and said in r.output, r.output
    assert list(weights_dir().iterdir()) == []
    # `--detector auto` fetching on first use falls back (to HOG) instead of stopping the run
    from wbcap.weights import auto_fetch

    monkeypatch.setenv("WBCAP_WEIGHTS_MIRROR", mirror.as_uri())
    monkeypatch.delenv("WBCAP_OFFLINE")  # (the tests' isolation sets it: auto_fetch would try nothing)
    (mirror / "yolox_nano.onnx").write_bytes(model.read_bytes())
    warned = []
    monkeypatch.setattr("wbcap.weights.log.warning", lambda msg, *a: warned.append(msg % a))
    assert auto_fetch("yolox-nano", offline=False, validate=lambda p: "ok") is None
    assert len(warned) == 1 and warned[0].startswith(f"yolox-nano: not downloaded: {said.removeprefix('error: ')}"), warned
    assert not (weights_dir() / "yolox_nano.onnx").exists()
    monkeypatch.setattr(tempfile, "mkstemp", real)
    r = run("weights", "fetch", "yolox-m")  # (the folder writable again: a garbage download is named by its URL)
    line = next(x for x in r.output.splitlines() if x.startswith("error:"))
    assert r.exit_code != 0 and f"{(mirror / 'yolox_m.onnx').as_uri()} (downloaded): cannot load" in line, line
    assert ".tmp-" not in line and list(weights_dir().iterdir()) == []


def test_doctor_of_a_named_model_file_checks_that_file_as_its_gender(tmp_path):
    from wbcap.doctor import run_checks
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    male = write_synthetic_smplx(tmp_path / "models", genders=("male",)) / "smplx" / "SMPLX_MALE.npz"
    body = [c for c in run_checks(str(male)) if c.name.startswith("SMPL-X")]
    assert [(c.name, c.ok, c.detail) for c in body] == [("SMPL-X male", True, str(male))]
    broken = tmp_path / "broken" / "SMPLX_FEMALE.npz"  # (the one file every command would use: required)
    broken.parent.mkdir()
    broken.write_bytes(b"\x00" * 64)
    body = [c for c in run_checks(str(broken)) if c.name.startswith("SMPL-X")]
    assert [(c.name, c.ok, c.optional) for c in body] == [("SMPL-X female", False, False)], body
    typo = tmp_path / "models" / "SMPLX_MAEL.npz"
    body = [c for c in run_checks(str(typo)) if c.name.startswith("SMPL-X")]
    assert [(c.name, c.ok, c.detail) for c in body] == [("SMPL-X neutral", False, f"{typo}: no such file (named by "
                                                                                 f"body_models)")]
    assert body[0].fix == "check the path, or name the folder that holds SMPLX_NEUTRAL.npz"


def test_doctors_detector_fix_offers_no_download_when_offline(monkeypatch):
    """With WBCAP_OFFLINE set, `--detector auto` downloads nothing: the fix does not say it would."""
    from wbcap.doctor import _detector_check

    monkeypatch.setenv("WBCAP_OFFLINE", "1")
    check = _detector_check()
    assert not check.ok and check.fix.endswith("`wbcap weights import yolox-nano FILE`"), check.fix
    monkeypatch.setenv("WBCAP_OFFLINE", "0")
    assert _detector_check().fix.endswith("also downloads it once on first use")


def test_doctor_says_a_failed_download_on_first_use_and_when_auto_tries_again(tmp_path, monkeypatch):
    """After `--detector auto` failed to download its model, doctor said the next run would
    download it, where auto waits a day before trying again on its own (a new user's trial)."""
    import os
    import time

    from wbcap.doctor import _detector_check
    from wbcap.weights import AUTO_RETRY_SECONDS, auto_fetch

    monkeypatch.setenv("WBCAP_WEIGHTS_MIRROR", (tmp_path / "nowhere").as_uri())  # (no such file there)
    monkeypatch.setenv("WBCAP_OFFLINE", "0")
    monkeypatch.setattr("wbcap.weights.log.warning", lambda *a: None)
    assert auto_fetch("yolox-nano", offline=False, validate=lambda p: "ok") is None
    check = _detector_check()
    assert not check.ok and "; its download on first use failed at " in check.detail, check.detail
    assert check.detail.endswith(" auto does not try again on its own until a day after that"), check.detail
    assert "nowhere" in check.detail  # (the reason: the download's error names where it looked)
    assert check.fix.endswith("`wbcap weights import yolox-nano FILE`"), check.fix
    # a day on, auto tries again: said as before
    marker = weights_dir() / ".yolox_nano.onnx.fetch-failed"
    old = time.time() - AUTO_RETRY_SECONDS - 5
    os.utime(marker, (old, old))
    check = _detector_check()
    assert "failed at" not in check.detail and check.fix.endswith("also downloads it once on first use"), check


def test_doctor_does_not_recommend_a_detector_changed_since_its_import(tmp_path, monkeypatch):
    """A yolox-l damaged after its import was offered as "installed: yolox-l (use --detector NAME)"."""
    import wbcap.weights as weights
    from wbcap.doctor import _detector_check
    from wbcap.testing.onnx_models import write_tiny_yolox

    real = weights.manifest  # (a tiny graph as yolox-l: its parameter count not checked)
    monkeypatch.setattr(weights, "manifest", lambda: {**real(), "yolox-l": dataclasses.replace(real()["yolox-l"],
                                                                                              parameters=0.0)})

    model = write_tiny_yolox(tmp_path / "yolox_l.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64)
    assert run("weights", "import", "yolox-l", model).exit_code == 0
    assert "installed: yolox-l (use" in _detector_check().detail
    import os
    import time

    installed = weights_dir() / "yolox_l.onnx"
    with open(installed, "r+b") as f:
        f.truncate(installed.stat().st_size // 2)
    later = time.time() + 5  # (as a later write: a change is looked for when the file's time moved)
    os.utime(installed, (later, later))
    check = _detector_check()
    assert not check.ok and "installed: yolox-l" not in check.detail, check.detail
    assert check.detail.endswith("; yolox-l changed since its import or download (damaged or replaced: `wbcap weights "
                                 "fetch NAME` again)"), check.detail


def test_importing_a_folder_says_it_is_a_folder(tmp_path):
    r = run("weights", "import", "yolox-nano", tmp_path)
    assert r.exit_code == 2 and f"error: {tmp_path}: a folder, not a weights file; pass the file" in r.output, r.output


def test_a_folder_where_a_weights_file_goes_is_named_not_called_missing_or_crashed_on(tmp_path):
    """A folder at <weights>/yolox_nano.onnx: list/verify said "missing, run `wbcap weights fetch`",
    and the import they led to failed with IsADirectoryError (a crash report; a user trial). Verify
    names the folder; import and fetch refuse it in one line, before any work, and leave it."""
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    model = write_tiny_yolox(tmp_path / "nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64,
                             parameters=NANO_PARAMETERS)
    in_the_way = weights_dir() / "yolox_nano.onnx"
    in_the_way.mkdir(parents=True)
    r = run("weights", "verify")
    line = next(x for x in r.output.splitlines() if x.startswith("yolox-nano"))
    assert line.split()[1] == "missing" and line.endswith(
        f"{in_the_way} is a folder, where the file goes: move or delete it, then run `wbcap weights fetch yolox-nano`")
    said = f"error: {in_the_way}: is a folder, where the yolox-nano file goes; move or delete it, then run this again"
    for args in (("import", "yolox-nano", model), ("fetch", "yolox-nano")):
        r = CliRunner().invoke(cli, ["weights", *map(str, args)], env={"WBCAP_WEIGHTS_MIRROR": f"file://{tmp_path}"})
        assert r.exit_code == 2 and r.stderr.strip() == said, (args, r.output)
    assert in_the_way.is_dir() and sorted(p.name for p in weights_dir().iterdir()) == ["yolox_nano.onnx"]
    # `--detector auto` fetching on first use falls back (to HOG) with one warning, as for a read-only folder
    from wbcap.weights import auto_fetch

    (tmp_path / "yolox_nano.onnx").write_bytes(model.read_bytes())
    warned = []
    with pytest.MonkeyPatch.context() as m:
        m.setenv("WBCAP_WEIGHTS_MIRROR", tmp_path.as_uri())
        m.delenv("WBCAP_OFFLINE")  # (the tests' isolation sets it: nothing would be tried)
        m.setattr("wbcap.weights.log.warning", lambda msg, *a: warned.append(msg % a))
        assert auto_fetch("yolox-nano", offline=False, validate=lambda p: "ok") is None
    assert warned == [
        f"yolox-nano: not downloaded: {in_the_way}: is a folder, where the yolox-nano file goes; move or delete it, "
        "then run this again"]
    assert in_the_way.is_dir()


def test_a_damaged_import_record_is_said_and_no_hash_is_taken_from_it(tmp_path):
    """An import record holding "garbage": list showed "sha256: garbage" and doctor [ok], verify
    "mismatch ... != expected garbage" (a user trial). Now the record holds no hash for any of
    them: list shows the file's own sha256 and all three say the record is damaged."""
    from wbcap.doctor import _detector_check
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    model = write_tiny_yolox(tmp_path / "nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=64,
                             parameters=NANO_PARAMETERS)
    assert run("weights", "import", "yolox-nano", model).exit_code == 0
    installed = weights_dir() / "yolox_nano.onnx"
    (weights_dir() / "yolox_nano.onnx.sha256").write_text("garbage\n")
    digest = hashlib.sha256(installed.read_bytes()).hexdigest()
    damaged = ("its import record yolox_nano.onnx.sha256 is damaged (no sha256 in it; `wbcap weights import "
               "yolox-nano FILE` writes it again)")
    nano = "\n".join(_block(run("weights", "list").output, "yolox-nano"))
    assert f"sha256:   {digest} " in nano and "garbage" not in nano and damaged in nano, nano
    r = run("weights", "verify")
    line = next(x for x in r.output.splitlines() if x.startswith("yolox-nano"))
    assert line.split()[1] == "unverified" and digest in line and line.endswith(damaged) and "garbage" not in line, line
    check = _detector_check()
    assert damaged in check.detail, check
    assert run("weights", "import", "yolox-nano", model).exit_code == 0  # (the fix it names)
    r = run("weights", "verify")
    assert next(x for x in r.output.splitlines() if x.startswith("yolox-nano")).split()[1] == "ok"


def test_doctor_says_when_too_few_files_may_be_open(monkeypatch):
    """Under `ulimit -n 8` doctor blamed the renderer and Blender, with fixes to install them (a
    break-it trial): an item says the limit first, and counts as missing; at a usual limit there
    is no such item."""
    import wbcap.limits

    monkeypatch.setattr(wbcap.limits, "open_files_limit", lambda: 8)
    lines = CliRunner().invoke(cli, ["doctor"]).output.splitlines()
    assert lines[1:3] == [
        "[MISS] open files: this process may have 8 open at once, too few for wbcap (the renderer's probe, Blender's "
        "check and the commands' reads fail for want of them, and are reported so below)",
        "       fix: raise the limit (ulimit -n 4096; at least 32)"], lines[:4]
    monkeypatch.setattr(wbcap.limits, "open_files_limit", lambda: 1024)
    assert not [x for x in CliRunner().invoke(cli, ["doctor"]).output.splitlines() if "open files" in x]


def test_doctor_says_first_when_wbcap_home_is_a_file(tmp_path, monkeypatch):
    """WBCAP_HOME naming a file: doctor listed SMPL-X and checkpoints "not found" with fixes to
    copy them into <the file>/body_models/, called the CPU form [ok] while it could never be kept
    (measured again on every run), and said `wbcap demo` still runs (it does not; a user trial).
    Now its first item says the folder is a file, with the fix, and the summary puts it first."""
    home = tmp_path / "afile"
    home.write_text("hi")
    monkeypatch.setenv("WBCAP_HOME", str(home))
    r = CliRunner().invoke(cli, ["doctor"])
    lines = r.output.splitlines()
    assert r.exit_code == 1 and lines[:2] == [
        f"[MISS] user folders: {home} is a file, where wbcap keeps its files",
        f"       fix: set WBCAP_HOME to a writable folder (it is {home}), or unset it"], lines[:3]
    # (not "nothing runs": image and run did, with their files named elsewhere; a break-it trial)
    assert lines[-1].endswith("missing; fix the user folders first: wbcap finds and keeps nothing there (weights, "
                              "models, measurements) and `wbcap demo` does not run without them (other commands run "
                              "with files named or found elsewhere).")
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "new" / "home"))  # (a folder to be made: fine, and not made)
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.output.splitlines()[0] == (f"[ok  ] user folders: data {tmp_path / 'new' / 'home'}, cache "
                                        f"{tmp_path / 'new' / 'home' / 'cache'}")
    assert not (tmp_path / "new").exists() and r.output.splitlines()[-2].endswith("`wbcap demo` still runs without them.")


def test_a_read_only_shared_home_is_a_warning_and_what_is_measured_goes_to_the_users_own_cache(tmp_path, monkeypatch):
    """A lab's WBCAP_HOME, read-only for its users: every command works from it, but doctor called
    it missing (fix: leave it), and the CPU inference form, which could not be kept there, was
    measured again by every run (~45 s; an admin's trial). Now a warning, and the caches go to the
    user's own cache folder."""
    import os

    import platformdirs

    from wbcap.paths import cache_file

    shared = tmp_path / "shared"
    (shared / "cache").mkdir(parents=True)
    monkeypatch.setenv("WBCAP_HOME", str(shared))
    assert cache_file("cpu_strategy.json") == shared / "cache" / "cpu_strategy.json"
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: not (mode & os.W_OK and Path(path).is_relative_to(shared))
                        and real(path, mode, **kw))  # (read-only for this user)
    own = Path(platformdirs.user_cache_dir("wbcap", appauthor=False))
    assert not own.is_relative_to(shared) and cache_file("cpu_strategy.json") == own / "cpu_strategy.json"
    r = CliRunner().invoke(cli, ["doctor"])
    lines = r.output.splitlines()
    assert lines[0] == (f"[warn] user folders: {shared}: cannot write in this folder (read-only or no permission); "
                        f"{shared / 'cache'}: cannot write in this folder (read-only or no permission): read-only here, "
                        f"which a shared install may be (its files are read; what wbcap measures is kept in {own})"), lines
    assert "fix the user folders first" not in r.output
    (shared / "cache").rmdir()  # (a shared home of weights alone: every command still runs, a weights trial)
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.output.splitlines()[0].startswith("[warn] user folders: ") and "read-only here" in r.output, r.output
    assert "fix the user folders first" not in r.output


def test_doctor_lists_a_renderer_setting_every_render_refuses(monkeypatch):
    """WBCAP_RENDERER=bogus ended the whole report (exit 2), WBCAP_RENDER_PROCESS=maybe was [ok]
    while `wbcap image` refuses it (a user trial): each is the renderer item's [MISS], the rest of
    the report as before."""
    for name, value, said in (("WBCAP_RENDERER", "bogus", "unknown renderer; use 'software', 'pyrender' or 'auto'"),
                              ("WBCAP_RENDER_PROCESS", "maybe", "use 0 (render in this process) or 1 (a render process)")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            r = CliRunner().invoke(cli, ["doctor"])
        lines = r.output.splitlines()
        at = next(i for i, line in enumerate(lines) if "] renderer: " in line)
        assert r.exit_code == 1 and lines[at:at + 2] == [
            f"[MISS] renderer: {name}={value}: {said} (every render refuses it)",
            f"       fix: unset {name}, or set it as said"], lines
        assert any(line.startswith("[ok  ] libraries: ") for line in lines)
        assert any(line.startswith("[ok  ] photo formats: AVIF yes (Pillow ") for line in lines), lines


def test_a_checkpoint_changed_since_its_import_is_a_warning_and_a_variable_is_named_as_the_fix(tmp_path, monkeypatch,
                                                                                                 micro_ckpt):
    """doctor said [ok] (hidden by -q) for a checkpoint changed since its import, and for one
    WBCAP_WEIGHTS names that is no checkpoint told to import one, which the variable hides (a weights trial)."""
    import os
    import time

    from wbcap.doctor import checkpoint_check

    assert run("weights", "import", "hand4whole", micro_ckpt).exit_code == 0
    installed = weights_dir() / manifest()["hand4whole"].file
    assert checkpoint_check(manifest()["hand4whole"]).ok
    data = bytearray(installed.read_bytes())
    data[len(data) // 2] ^= 0x01  # (inside a tensor: it still loads, its values changed)
    installed.write_bytes(bytes(data))
    later = time.time() + 5
    os.utime(installed, (later, later))
    check = checkpoint_check(manifest()["hand4whole"])
    assert not check.ok and check.optional and "changed since its import or download" in check.detail, check
    assert check.fix.startswith("`wbcap weights verify`; if it is not a checkpoint you put there yourself, download")
    other = tmp_path / "not_a_checkpoint.pth"
    other.write_bytes(b"\x00" * 100)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(other))
    check = checkpoint_check(manifest()["hand4whole"])
    assert not check.ok and check.fix == (f"point WBCAP_WEIGHTS at the hand4whole checkpoint (it names {other}), or "
                                          "unset it to use the one `wbcap weights import hand4whole FILE` installs")


def test_a_yolox_must_have_its_parameter_count(tmp_path, monkeypatch):
    """A mirror serving another YOLOX size under yolox_m.onnx (same signature, input 640) was
    kept (a user trial), and yolox_nano.onnx imported as yolox-tiny was taken with a note (a
    weights trial): the release's parameter count is checked, for a download and an import
    alike; nothing is kept."""
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    row = [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79
    wrong = write_tiny_yolox(tmp_path / "yolox_m.onnx", {20: row}, size=640)
    from wbcap.detect.yolox import onnx_weights

    count = onnx_weights(wrong)[0]
    assert 0 <= count - 4 * 8400 * 85 < 100  # (the tiny graph's weight and bias, and a few small constants)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "yolox_m.onnx").write_bytes(wrong.read_bytes())
    monkeypatch.setenv("WBCAP_WEIGHTS_MIRROR", mirror.as_uri())
    r = run("weights", "fetch", "yolox-m")
    said = f"a network of {count / 1e6:.2f} M parameters, not yolox-m's 25.3 M (another YOLOX size?); pass the yolox_m.onnx of YOLOX's release"
    assert r.exit_code == 2 and f"{(mirror / 'yolox_m.onnx').as_uri()} (downloaded): {said}); it was not kept" in r.output, r.output
    assert not (weights_dir() / "yolox_m.onnx").exists()
    r = run("weights", "import", "yolox-m", wrong)
    assert r.exit_code == 2 and r.output == f"error: {wrong}: {said}\n", r.output
    assert not (weights_dir() / "yolox_m.onnx").exists()
    r = run("weights", "import", "yolox-nano", wrong)  # (a published hash too: another network is no re-export)
    assert r.exit_code == 2 and r.output == (f"error: {wrong}: a network of {count / 1e6:.2f} M parameters, not "
                                             "yolox-nano's 0.91 M (another YOLOX size?); pass the yolox_nano.onnx of "
                                             "YOLOX's release\n"), r.output
    nano = write_tiny_yolox(tmp_path / "nano.onnx", {20: row}, size=64, parameters=NANO_PARAMETERS)
    r = run("weights", "import", "yolox-nano", nano)  # (a re-export of its size: taken, with a note)
    assert r.exit_code == 0 and "not the official yolox-nano file" in r.output, r.output


def test_the_release_nano_holds_the_readmes_parameter_count(shared_dir):
    from wbcap.detect.yolox import onnx_weights
    from wbcap.weight_formats import PARAMETER_TOLERANCE

    model = shared_dir / "models" / "yolox_nano.onnx"
    if not model.is_file():
        pytest.skip("../shared/models/yolox_nano.onnx absent")
    count = onnx_weights(model)[0]
    assert count == 904_481  # (BatchNorm folded: the README says 0.91 M)
    assert abs(count / 1e6 - manifest()["yolox-nano"].parameters) < PARAMETER_TOLERANCE * 0.91


def test_doctor_without_yolox_names_the_wbcap_weights_folder_among_the_fixes(tmp_path, monkeypatch):
    """A team's $WBCAP_WEIGHTS folder is where a copy of the detector would go (the fix named only
    wbcap's own folder: a weights trial); without the variable, it is not said."""
    from wbcap.doctor import _detector_check

    check = _detector_check()
    assert not check.ok and "put a copy" not in check.fix, check.fix
    monkeypatch.setenv("WBCAP_WEIGHTS", str(tmp_path))
    check = _detector_check()
    assert f"no yolox_nano.onnx in {tmp_path}/ or {weights_dir()}/" in check.detail, check.detail
    assert f", or put a copy of yolox_nano.onnx in {tmp_path}/ ($WBCAP_WEIGHTS)" in check.fix, check.fix


def test_fetch_of_several_names_refuses_one_it_cannot_download_before_any_download(tmp_path, monkeypatch):
    """`weights fetch yolox-nano hand4whole` downloaded YOLOX-nano before finding that the
    licensed checkpoint cannot be downloaded (a weights trial): refused first, nothing fetched;
    of several downloadable names, one that fails does not stop the others."""
    from wbcap.testing.onnx_models import write_tiny_yolox

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_tiny_yolox(mirror / "yolox_m.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=640)
    monkeypatch.setenv("WBCAP_WEIGHTS_MIRROR", mirror.as_uri())
    r = run("weights", "fetch", "yolox-m", "hand4whole")
    assert r.exit_code == 2 and r.output.startswith("error: hand4whole cannot be downloaded by wbcap ("), r.output
    assert len(r.output.splitlines()) == 1, r.output
    assert not weights_dir().exists() or list(weights_dir().iterdir()) == []
    r = run("weights", "fetch", "yolox-s", "yolox-m", "yolox-s")  # (yolox_s.onnx is not in the mirror)
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2 and len(errors) == 2, r.output
    assert errors[0].startswith(f"error: download of {(mirror / 'yolox_s.onnx').as_uri()} ") and "no such file" in errors[0]
    assert errors[1].startswith(f"error: download of {(mirror / 'yolox_m.onnx').as_uri()} ") and "parameters" in errors[1]
    assert list(weights_dir().iterdir()) == []


def test_weights_files_in_odd_states_after_a_weights_trial(tmp_path, monkeypatch):
    """What a weights trial found: an import over a file that cannot be read said nothing of it;
    a dangling link where the file goes crashed; a model keeping its weights in another file was
    imported as its .onnx alone (unusable); constants given as value_floats were not counted;
    WBCAP_WEIGHTS naming wbcap's own folder was listed twice."""
    import onnx
    from onnx import helper

    import wbcap.weights as weights
    from wbcap.detect.yolox import onnx_weights
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    row = [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79
    model = write_tiny_yolox(tmp_path / "a.onnx", {20: row}, size=64, parameters=NANO_PARAMETERS)
    assert run("weights", "import", "yolox-nano", model).exit_code == 0
    real = weights.sha256_file
    dest = weights_dir() / "yolox_nano.onnx"

    def unreadable(path, *args):
        if Path(path) == dest:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args)

    monkeypatch.setattr(weights, "sha256_file", unreadable)
    r = run("weights", "import", "yolox-nano", model)  # (what it holds is not known: not replaced unasked)
    assert r.exit_code == 2 and r.output == (f"error: {dest}: holds a file that cannot be read; pass --replace to put "
                                             "a.onnx in its place (`wbcap weights verify` says what is there)\n"), r.output
    r = run("weights", "import", "yolox-nano", model, "--replace")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].endswith("(replaced a file there that could not be read)"), r.output
    monkeypatch.setattr(weights, "sha256_file", real)
    dest.unlink()
    dest.symlink_to(tmp_path / "gone" / "yolox_nano.onnx")
    r = run("weights", "import", "yolox-nano", model)
    assert r.exit_code == 2 and r.output == (f"error: {dest}: is a link to {tmp_path / 'gone' / 'yolox_nano.onnx'}, which "
                                             "does not exist, where the yolox-nano file goes; remove the link or make its "
                                             "target, then run this again\n"), r.output
    dest.unlink()
    split = onnx.load(str(model))
    onnx.save_model(split, str(tmp_path / "split.onnx"), save_as_external_data=True, location="split.onnx.data",
                    size_threshold=0)
    assert onnx_weights(tmp_path / "split.onnx") == (onnx_weights(model)[0], ["split.onnx.data"])
    r = run("weights", "import", "yolox-nano", tmp_path / "split.onnx")
    assert r.exit_code == 2 and r.output == (f"error: {tmp_path / 'split.onnx'}: keeps its weights in another file "
                                             "(split.onnx.data); save the model as one file (onnx.save(model, path), "
                                             "without save_as_external_data) and import that\n"), r.output
    assert not dest.exists()
    floats = onnx.load(str(model))
    floats.graph.node.insert(0, helper.make_node("Constant", [], ["c"], value_floats=[0.0] * 1000))
    onnx.save(floats, str(tmp_path / "floats.onnx"))
    assert onnx_weights(tmp_path / "floats.onnx")[0] == onnx_weights(model)[0] + 1000
    monkeypatch.setenv("WBCAP_WEIGHTS", str(weights_dir()))
    assert weights.search_dirs() == [weights_dir()]


def test_doctor_says_which_phone_photo_formats_it_reads(monkeypatch):
    """AVIF and HEIC (phones' photos, which OpenCV does not decode) and the libraries that read
    them; without pi-heif, an optional item saying how to get it (``wbcap doctor`` lists it:
    the test above)."""
    import sys

    from wbcap.doctor import Check, photo_formats_check
    from wbcap.versions import installed_version

    pillow, pi_heif = installed_version("pillow"), installed_version("pi-heif")
    assert photo_formats_check() == Check("photo formats", True, f"AVIF yes (Pillow {pillow}), HEIC yes (pi-heif {pi_heif})",
                                          "", optional=True)
    monkeypatch.setitem(sys.modules, "pi_heif", None)  # (installed here, not importable: as a broken install)
    assert photo_formats_check() == Check("photo formats", False, f"AVIF yes (Pillow {pillow}), HEIC no (pi-heif {pi_heif})",
                                          "`pip install pi-heif` for HEIC, or convert such photos to JPEG or PNG",
                                          optional=True)


def test_doctor_says_what_a_cpu_and_a_cuda_build_of_torch_need_for_cuda(monkeypatch):
    """A CUDA build of torch without a GPU is not told to install a CUDA build (a packaging trial)."""
    import torch

    from wbcap.doctor import cuda_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    check = cuda_check()
    assert (check.ok, check.optional) == (False, True)
    assert check.fix == "optional: install a CUDA build of torch 2.13 on a machine with an NVIDIA GPU"
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert cuda_check().fix == ("optional: this build of torch (CUDA 13.0) uses an NVIDIA GPU where one and its "
                                "driver are found (none was)")


def test_doctor_says_whether_c3d_files_can_be_written(monkeypatch):
    """ezc3d (a compiled extension) imports or not: a broken install is said, with the fix."""
    import sys

    from wbcap.doctor import Check, c3d_check
    from wbcap.versions import installed_version

    version = installed_version("ezc3d")
    assert c3d_check() == Check("C3D export", True, f"ezc3d {version}", optional=True)
    monkeypatch.setitem(sys.modules, "ezc3d", None)  # (installed here, not importable: as a broken install)
    check = c3d_check()
    assert not check.ok and check.optional and check.detail.startswith(f"ezc3d {version} does not import (")
    assert check.fix.startswith("`pip install --force-reinstall ezc3d` for --export c3d")


@pytest.mark.parametrize(("available", "limits", "ok", "optional", "fix"), [
    (8e9, [], True, False, ""),
    (8e9, [("ulimit -v", 1_536_000_000)], False, False, "raise the memory limit (ulimit -v) to at least 2.0 GB"),
    (8e9, [("ulimit -v", 2_560_000_000)], False, True,
     "`wbcap run` with its video needs ulimit -v of about 2.9 GB: raise it, or run with --no-render"),
    (8e9, [("ulimit -d", 700_000_000)], False, False, "raise the memory limit (ulimit -d) to at least 1.2 GB"),
    (8e9, [("the container's or cgroup's memory limit", 1_250_000_000)], False, False,
     "raise the memory limit (the container's or cgroup's memory limit) to at least 1.4 GB"),
    (0.5e9, [], False, True, "close other programs: with less memory the commands swap, or the system stops them"),
])
def test_doctor_says_the_memory_and_the_limits_against_what_the_commands_take(monkeypatch, available, limits, ok,
                                                                               optional, fix):
    """A low-memory trial: doctor said nothing of memory, where `ulimit -v 1500000` stopped every
    `wbcap image` and 2500000 `wbcap run` with its video."""
    import wbcap.limits
    from wbcap.doctor import memory_check

    monkeypatch.setattr(wbcap.limits, "available_memory", lambda: int(available))
    monkeypatch.setattr(wbcap.limits, "memory_limits", lambda: limits)
    check = memory_check()
    assert (check.ok, check.optional, check.fix) == (ok, optional, fix)
    assert check.detail.startswith(f"{available / 1e9:.1f} GB available") and check.detail.endswith(
        "; `wbcap run` needs about 1.2 GB (2.9 GB of address space with its video, 2.0 GB without)")
    assert all(f"limited to {size / 1e9:.1f} GB ({name})" in check.detail for name, size in limits)


def test_memory_limits_are_read_from_the_process():
    """The limits as the kernel has them: a child under `ulimit -v` and `ulimit -d` sees both,
    smallest first."""
    import subprocess
    import sys

    code = "from wbcap.limits import memory_limits; print([x for x in memory_limits() if x[0].startswith('ulimit')])"
    out = subprocess.run(["bash", "-c", f'ulimit -v 3000000 && ulimit -d 2000000 && exec "{sys.executable}" -c "{code}"'],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[('ulimit -d', 2048000000), ('ulimit -v', 3072000000)]"


@pytest.mark.parametrize(("files", "expected"), [
    ({"/proc/self/cgroup": "4:memory:/docker/abc\n0::/\n",
      "/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n"}, 1073741824),  # (v1, the container's own group on top)
    ({"/proc/self/cgroup": "4:cpu,memory:/job/7\n", "/sys/fs/cgroup/memory/job/7/memory.limit_in_bytes": "9223372036854771712\n"},
     None),  # (v1 unlimited: 2^63 rounded to pages)
    ({"/proc/self/cgroup": "0::/user.slice/job\n", "/sys/fs/cgroup/user.slice/job/memory.max": "2147483648\n"}, 2147483648),
    ({"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "max\n"}, None),
    ({}, None),
    # (a break-it trial: a limit on the parent group, the job's own unlimited; a group named in Latin-1)
    ({"/proc/self/cgroup": "0::/slice/job\n", "/sys/fs/cgroup/slice/job/memory.max": "max\n",
      "/sys/fs/cgroup/slice/memory.max": "1073741824\n"}, 1073741824),
    ({"/proc/self/cgroup": b"0::/caf\xe9\n".decode("latin-1")}, None),
])
def test_a_containers_memory_limit_is_read_from_cgroup_v1_and_v2(monkeypatch, files, expected):
    """A review: only cgroup v2's memory.max was read, and the project's own machines run v1."""
    import builtins
    import io

    import wbcap.limits

    real = builtins.open

    def fake(path, *args, **kwargs):
        if isinstance(path, str) and (path.startswith("/proc/self/cgroup") or path.startswith("/sys/fs/cgroup")):
            if path not in files:
                raise FileNotFoundError(path)
            data = files[path].encode("latin-1")  # (as the kernel gives its bytes, read as the code asks)
            return io.TextIOWrapper(io.BytesIO(data), encoding=kwargs.get("encoding"), errors=kwargs.get("errors"))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake)
    assert wbcap.limits._cgroup_memory_max() == expected


def test_doctor_says_what_wbcap_record_can_open(monkeypatch):
    """The input devices of PyAV's FFmpeg (the Linux wheel's v4l2 and lavfi) and the cameras
    /dev/video* in number order, or that none was found."""
    import glob
    import sys

    import av

    from wbcap.doctor import recording_check
    from wbcap.io.record import input_devices

    monkeypatch.setattr(glob, "glob", lambda pattern: ["/dev/video2", "/dev/video10", "/dev/video0"])
    check = recording_check()
    assert check.ok and check.optional and check.detail == (
        f"streams (rtsp, rtmp, udp, tcp, http, hls) and FFmpeg's devices {', '.join(input_devices())} (PyAV "
        f"{av.__version__}); "
        "cameras: /dev/video0, /dev/video2, /dev/video10")
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    assert recording_check().detail.endswith("; no camera device found")
    if sys.platform == "linux":
        assert {"v4l2", "lavfi"} <= set(input_devices())
