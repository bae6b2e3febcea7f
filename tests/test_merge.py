"""`wbcap train merge`: hand backbone copied by module, hand heads re-initialised, loud failure."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from click.testing import CliRunner

from wbcap.errors import CheckpointError, InputError
from wbcap.model.checkpoint import read_checkpoint
from wbcap.model.hand_model import HandModel
from wbcap.testing.checkpoints import make_state_dict
from wbcap.train.merge import merge_hand_into_body


def _hand_ckpt(path, prefix: str, depth: int = 18, seed: int = 7, width: int = 64):
    with torch.device("meta"):
        hand = HandModel(depth, width=width)
    sd = make_state_dict([(k, tuple(v.shape), v.dtype) for k, v in hand.state_dict().items()], seed=seed)
    sd = OrderedDict((k.replace("backbone.", prefix, 1) if k.startswith("backbone.") else k, v) for k, v in sd.items())
    torch.save({"network": OrderedDict(("module." + k, v) for k, v in sd.items()), "epoch": 12}, path)
    return sd


@pytest.fixture()
def body(small_ckpt, small_net):
    """The small whole-body checkpoint and its state dict (merging only reads the file). Its heads
    are upright: hand pose head weights 0, biases the identity, so re-initialised heads differ."""
    return small_ckpt, small_net.state_dict()


@pytest.mark.parametrize("prefix", [pytest.param("backbone.", marks=pytest.mark.slow), "hand_backbone."])
def test_merge_copies_hand_backbone_and_keeps_the_rest(tmp_path, small_config, body, prefix):
    body_path, body_sd = body
    hand_sd = _hand_ckpt(tmp_path / "hand.pth", prefix)
    out = merge_hand_into_body(body_path, tmp_path / "hand.pth", tmp_path / "merged.pth")
    merged = read_checkpoint(out)
    assert merged.epoch == 0 and merged.config == small_config
    n_backbone = 0
    for k, v in merged.state_dict.items():
        if k.startswith("hand_roi_net.backbone."):
            assert torch.equal(v, hand_sd[prefix + k[len("hand_roi_net.backbone."):]]), k
            n_backbone += 1
        elif k.startswith(("hand_position_net.", "hand_rotation_net.")):
            if k.endswith("weight") and v.dim() > 1:  # re-initialised: small normal, not the body's values
                assert not torch.equal(v, body_sd[k]) and v.std() < 0.02, k
            if k.endswith("bias"):
                assert torch.count_nonzero(v) == 0, k
        else:
            assert torch.equal(v, body_sd[k]), k
    assert n_backbone == sum(1 for k in body_sd if k.startswith("hand_roi_net.backbone."))


def test_merge_starts_the_hand_heads_batchnorm_statistics_afresh(tmp_path, small_net):
    """Upstream's merge drops the hand heads' keys, buffers included (tool/merge_hand_to_all.py), so
    their BatchNorm statistics start at 0 / 1 / 0; wbcap's kept the body stage's (a training trial)."""
    import copy

    from wbcap.model.checkpoint import save_checkpoint

    net = copy.deepcopy(small_net)
    stats = [m for name in ("hand_position_net", "hand_rotation_net")
             for m in getattr(net, name).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert stats
    for m in stats:  # (a trained body stage's)
        m.running_mean.fill_(0.5), m.running_var.fill_(2.0), m.num_batches_tracked.fill_(6)
    body_path = save_checkpoint(tmp_path / "body.pth", net)
    _hand_ckpt(tmp_path / "hand.pth", "hand_backbone.")
    merged = read_checkpoint(merge_hand_into_body(body_path, tmp_path / "hand.pth", tmp_path / "merged.pth")).state_dict
    seen = 0
    fresh = {"running_mean": 0.0, "running_var": 1.0, "num_batches_tracked": 0}
    for k, v in merged.items():
        if k.startswith(("hand_position_net.", "hand_rotation_net.")) and k.rsplit(".", 1)[1] in fresh:
            assert torch.all(v == fresh[k.rsplit(".", 1)[1]]), k
            seen += 1
    assert seen == 3 * len(stats)


@pytest.mark.slow  # an error path of merge; fast loop kept under 2 minutes
def test_merge_fails_loudly_on_unexpected_hand_names(tmp_path, body):
    body_path, _ = body
    torch.save({"network": {"module.encoder.stem.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "weird.pth")
    with pytest.raises(CheckpointError) as info:
        merge_hand_into_body(body_path, tmp_path / "weird.pth", tmp_path / "merged.pth")
    assert "weird.pth" in str(info.value) and "no backbone" in str(info.value)
    assert not (tmp_path / "merged.pth").exists()
    _hand_ckpt(tmp_path / "hand50.pth", "backbone.", depth=50)  # wrong depth for a ResNet-18 body
    with pytest.raises(CheckpointError) as info:
        merge_hand_into_body(body_path, tmp_path / "hand50.pth", tmp_path / "merged.pth")
    assert str(info.value).endswith(  # (the depths named: an ML trial)
        "is it a hand model of the same depth? (its ResNet is a ResNet-50, the whole-body model's hand ResNet a "
        "ResNet-18: train the hand stage with hand_backbone_depth = 18 under [model] in a --config TOML, or merge into a "
        "body of ResNet-50 hands)")
    _hand_ckpt(tmp_path / "narrow.pth", "backbone.", width=16)  # a hand stage of backbone_width 16
    with pytest.raises(CheckpointError) as info:
        merge_hand_into_body(body_path, tmp_path / "narrow.pth", tmp_path / "merged.pth")
    assert str(info.value).endswith("is it a hand model of the same depth? (its ResNet is 16 channels wide, the "
                                    "whole-body model's 64: train the hand stage with backbone_width = 64 under "
                                    "[model] in a --config TOML, or merge into a body of width 16)")
    assert not (tmp_path / "merged.pth").exists()


def test_merge_does_not_replace_a_file_unless_told(tmp_path, body):
    """A merge given a trained snapshot as -o replaced it without a word (an ML trial)."""
    from wbcap.cli import cli

    body_path, _ = body
    _hand_ckpt(tmp_path / "hand.pth", "backbone.")
    out = tmp_path / "snapshot_9.pth.tar"
    out.write_bytes(b"days of training")
    with pytest.raises(InputError, match=r"snapshot_9.pth.tar: exists; give another file name for the merged "
                                         r"checkpoint, or overwrite=True to replace it$"):
        merge_hand_into_body(body_path, tmp_path / "hand.pth", out)
    r = CliRunner().invoke(cli, ["train", "merge", "--body", str(body_path), "--hand", str(tmp_path / "hand.pth"),
                                 "-o", str(out)])
    assert r.exit_code == 2 and r.stderr == (f"error: {out}: exists; give another file name for the merged checkpoint, "
                                             "or --overwrite to replace it\n"), r.output
    assert out.read_bytes() == b"days of training"
    r = CliRunner().invoke(cli, ["train", "merge", "--body", str(body_path), "--hand", str(tmp_path / "hand.pth"),
                                 "-o", str(out), "--overwrite"])
    assert r.exit_code == 0 and r.stdout == f"merged -> {out}\n", r.output
    assert set(read_checkpoint(out).state_dict) == set(read_checkpoint(body_path).state_dict)


def test_hand_model_names_equal_reference(shared_dir):
    ref = json.loads((shared_dir / "reference" / "hand4whole_hand_checkpoint_keys.json").read_text())
    ours = [["module." + k, list(v.shape), str(v.dtype)] for k, v in HandModel(50).state_dict().items()]
    assert ours == ref["keys"]


@pytest.fixture()
def official_layout_small(tmp_path, small_net):
    """The small whole-body network saved as the released file is ('module.' keys, no config)."""
    path = tmp_path / "snapshot_6.pth.tar"
    torch.save({"network": OrderedDict(("module." + k, v) for k, v in small_net.state_dict().items()), "epoch": 6}, path)
    return path


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_merge_refuses_a_whole_body_checkpoint_as_the_hand_model(tmp_path, body, official_layout_small):
    """A whole-body checkpoint holds a ResNet under 'backbone.' (the body's): it passed for the hand
    model and its body ResNet was merged as the hand backbone. Now one line names the file and why."""
    from click.testing import CliRunner

    from wbcap.cli import cli

    body_path, _ = body
    for hand in (official_layout_small, body_path):  # the released layout and wbcap's own
        with pytest.raises(CheckpointError) as info:
            merge_hand_into_body(body_path, hand, tmp_path / "merged.pth")
        msg = str(info.value)
        assert msg.startswith(f"{hand}: a whole-body checkpoint (it has hand_roi_net, body_rotation_net, ..."), msg
        assert "wbcap train hand" in msg and "\n" not in msg
        assert not (tmp_path / "merged.pth").exists()
    r = CliRunner().invoke(cli, ["train", "merge", "--body", str(body_path), "--hand", str(official_layout_small),
                                 "-o", str(tmp_path / "m.pth.tar")])
    assert r.exit_code == 2 and r.output.startswith("error: ") and r.output.count("\n") == 1, r.output
    assert "whole-body checkpoint" in r.output and not (tmp_path / "m.pth.tar").exists()


def test_a_hand_only_model_where_a_whole_body_checkpoint_goes_says_merge_it(tmp_path, body, body_dir):
    """The reverse mistake (a hand snapshot as merge's --body, eval's --checkpoint or an --init):
    the line says what the file is and how to make a whole-body checkpoint of it."""
    from click.testing import CliRunner

    from wbcap.cli import cli

    body_path, _ = body
    hand = tmp_path / "snapshot_1.pth.tar"
    _hand_ckpt(hand, "backbone.")
    said = (f"error: {hand}: a hand-only model (its tensors are backbone, position_net and rotation_net: `wbcap "
            f"train hand`'s), not a whole-body checkpoint; `wbcap train merge --body BODY --hand snapshot_1.pth.tar "
            f"-o OUT` makes a whole-body one of it and a body model's\n")
    r = CliRunner().invoke(cli, ["train", "merge", "--body", str(hand), "--hand", str(hand), "-o", str(tmp_path / "m")])
    assert (r.exit_code, r.output) == (2, said) and not (tmp_path / "m").exists()
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "x.jpg"), np.full((64, 48, 3), 90, np.uint8))
    r = CliRunner().invoke(cli, ["image", str(tmp_path / "x.jpg"), "--checkpoint", str(hand), "--full-image",
                                 "--body-models", str(body_dir), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and said in r.output, r.output


def test_merge_takes_the_installed_hand_model_by_default(tmp_path, monkeypatch, small_ckpt):
    """A user trial: `wbcap weights list` shows the imported hand4whole_hand as needed for
    `wbcap train merge`, which then required --hand FILE (and refused the name). Without --hand it
    is the installed one; none installed: one line naming where it looked and the fix."""
    from click.testing import CliRunner

    import wbcap.train.merge
    from wbcap.cli import cli
    from wbcap.weights import entry

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    merged = []
    monkeypatch.setattr(wbcap.train.merge, "_merge",
                        lambda body, hand, out, seed: merged.append((body, hand)) or out)
    args = ["train", "merge", "--body", str(small_ckpt), "-o", str(tmp_path / "merged.pth")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and not merged, r.output
    assert r.stderr.startswith("error: no hand4whole_hand checkpoint (looked in ") and r.stderr.endswith(
        "(or pass --hand FILE, or set WBCAP_WEIGHTS to its folder)\n") and len(r.stderr.splitlines()) == 1, r.stderr
    installed = tmp_path / "home" / "weights" / entry("hand4whole_hand").file
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"hand")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and merged == [(str(small_ckpt), installed)], r.output
    r = CliRunner().invoke(cli, [*args[:-1], str(installed)])  # -o over it: named as what it is, not as --hand
    assert r.exit_code == 2 and r.stderr == (f"error: {installed}: is also the installed hand4whole_hand checkpoint "
                                             f"({installed}) and would be overwritten; give another file name for "
                                             "this output\n"), r.stderr
