"""``wbcap train merge``: put the hand model's backbone into the whole-body model.

As the paper's recipe (upstream ``tool/merge_hand_to_all.py``): the whole-body checkpoint keeps
every tensor except that its hand backbone is replaced by the hand model's backbone, and the
hand heads (``hand_position_net``, ``hand_rotation_net``) start again from their initial values;
the epoch is reset. Unlike upstream, which looks for one hard-coded prefix
(``module.hand_backbone.``) and silently copies nothing when the hand model names it differently
(the public hand code says ``module.backbone.``), tensors are matched *by module*: the hand
checkpoint's backbone is whichever prefix holds a complete ResNet whose names and shapes equal
the whole-body hand backbone's, and the merge fails loudly when there is none.

What a hand-only checkpoint must hold is checked here, in :func:`read_hand_tensors`, for the merge
and for ``wbcap weights import hand4whole_hand`` (:mod:`wbcap.weight_formats`): a whole-body
checkpoint also holds a complete ResNet under ``backbone.`` (the body's) and is refused by name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from wbcap.errors import CheckpointError, InputError
from wbcap.model.checkpoint import (
    OFFICIAL_PREFIX,
    backbone_depth,
    backbone_widths,
    check_finite,
    check_state_dict,
    load_checkpoint_file,
    read_checkpoint,
    save_checkpoint,
)
from wbcap.model.hand4whole import Hand4Whole
from wbcap.model.init import init_head_weights

log = logging.getLogger(__name__)

HAND_BACKBONE = "hand_roi_net.backbone."
HAND_HEADS = ("hand_position_net", "hand_rotation_net")
#: Modules only the whole-body model has (the hand-only model holds ``backbone``,
#: ``position_net`` and ``rotation_net``): tensors under these mark a whole-body checkpoint.
WHOLE_BODY_MODULES = ("hand_roi_net", "body_rotation_net", "body_position_net", "box_net", "face_roi_net",
                      "face_regressor")
#: Where hand-only checkpoints keep their backbone: the public hand code, upstream's merge script.
HAND_BACKBONE_PREFIXES = ("backbone.", "hand_backbone.")


def find_backbone_prefix(sd: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> str:
    """The prefix under which ``sd`` holds exactly the tensors of ``reference`` (names relative).

    Candidates are the prefixes of stem convolutions (``<prefix>conv1.weight`` outside any
    ``layerN``). Raises CheckpointError listing what was tried when none matches.
    """
    tried = []
    for key in sd:
        if not key.endswith("conv1.weight"):
            continue
        prefix = key[: -len("conv1.weight")]
        if "layer" in prefix:
            continue
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if set(sub) == set(reference) and all(sub[k].shape == reference[k].shape for k in reference):
            return prefix
        tried.append(prefix or "(no prefix)")
    raise CheckpointError(
        "hand checkpoint: no backbone matching the whole-body hand backbone "
        f"(tried prefixes: {', '.join(tried) or 'none with a conv1.weight'}); is it a hand model of the same depth?"
    )


def hand_resnet_depth(sd: dict[str, torch.Tensor]) -> int | None:
    """The depth of the ResNet a hand-only checkpoint's tensors ``sd`` hold under one of
    :data:`HAND_BACKBONE_PREFIXES` (:func:`~wbcap.model.checkpoint.backbone_depth`), or None
    where that is no known ResNet."""
    for prefix in HAND_BACKBONE_PREFIXES:
        try:
            return backbone_depth(sd, prefix)
        except CheckpointError:
            continue
    return None


def check_hand_only(keys: Iterable[str], path: str | Path) -> None:
    """Refuse a whole-body checkpoint given where a hand-only model is expected.

    ``keys``: the checkpoint's tensor names (``module.`` removed). A whole-body checkpoint holds
    a ResNet under ``backbone.`` too (the body's), so without this check it would pass for the
    hand model and its body ResNet be merged as the hand backbone.

    Raises:
        CheckpointError: naming the file, the whole-body modules found and what to pass instead.
    """
    present = {k.split(".", 1)[0] for k in keys}
    found = [m for m in WHOLE_BODY_MODULES if m in present]
    if found:
        more = ", ..." if len(found) > 2 else ""
        raise CheckpointError(
            f"{path}: a whole-body checkpoint (it has {', '.join(found[:2])}{more} tensors), not a hand-only model; "
            "pass the hand stage's snapshot (`wbcap train hand`) or the released hand-only model "
            "(snapshot_12_hand.pth.tar)"
        )


def read_hand_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A hand-only checkpoint's network tensors (``module.`` removed), checked to be one.

    Raises:
        CheckpointError: not a checkpoint, a whole-body checkpoint (:func:`check_hand_only`), or
            no tensor under :data:`HAND_BACKBONE_PREFIXES`.
    """
    sd = read_network_tensors(path)
    check_hand_only(sd, path)
    if not any(k.startswith(HAND_BACKBONE_PREFIXES) for k in sd):
        raise CheckpointError(f"{path}: no hand backbone tensors ('module.backbone.*' or 'module.hand_backbone.*'); "
                              "is it a Hand4Whole hand-only model?")
    return sd


def describe_hand_checkpoint(path: str | Path) -> str:
    """One-line summary of a valid hand-only checkpoint (:func:`read_hand_tensors`): tensor counts."""
    sd = read_hand_tensors(path)
    backbone = sum(k.startswith(HAND_BACKBONE_PREFIXES) for k in sd)
    return f"{len(sd)} tensors ({backbone} hand-backbone)"


def read_network_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's network tensors with any ``module.`` prefix removed (no architecture check)."""
    path, obj = load_checkpoint_file(path)
    sd = obj.get("network", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: no 'network' state_dict of tensors")
    check_finite(sd, path)
    return {k[len(OFFICIAL_PREFIX):] if k.startswith(OFFICIAL_PREFIX) else k: v for k, v in sd.items()}


def merge_hand_into_body(body_ckpt: str | Path, hand_ckpt: str | Path | None, out: str | Path, seed: int = 0,
                         overwrite: bool = False) -> Path:
    """Write the merged whole-body checkpoint (wbcap format, config inside): the body stage's
    network with the hand stage's backbone, the hand heads re-initialised (``seed``). Returns
    ``out``, which must not exist unless ``overwrite`` (a merge given a trained snapshot as
    ``-o`` replaced it without a word: an ML trial).

    ``hand_ckpt`` None: the released hand-only checkpoint, ``hand4whole_hand``, where it is
    installed (:func:`wbcap.weights.find_checkpoint`).

    Raises:
        ModelFileError: no ``hand_ckpt`` given and none installed. CheckpointError: a file that
            is not a body / hand-only checkpoint of matching backbones. InputError: ``out``
            cannot be written, is one of the inputs, or exists without ``overwrite`` (checked
            before the merge).
    """
    from wbcap.atomic import check_writable_file
    from wbcap.errors import setting

    hand_named = setting("hand_ckpt")
    if hand_ckpt is None:  # (a user trial: the imported hand4whole_hand was listed as for merge, and never used)
        from wbcap.weights import find_checkpoint

        hand_ckpt = find_checkpoint(None, name="hand4whole_hand", option="hand_ckpt")
        hand_named = "the installed hand4whole_hand checkpoint"  # (not a flag the user did not give)
    check_writable_file(out, inputs={setting("body_ckpt"): body_ckpt, hand_named: hand_ckpt})
    if not overwrite and Path(out).expanduser().exists():
        raise InputError(f"{out}: exists; give another file name for the merged checkpoint, or "
                         f"{setting('overwrite', 'overwrite=True')} to replace it")
    return _merge(body_ckpt, hand_ckpt, out, seed)


def _merge(body_ckpt: str | Path, hand_ckpt: str | Path, out: str | Path, seed: int) -> Path:
    """:func:`merge_hand_into_body`'s work, its files found and checked."""
    body = read_checkpoint(body_ckpt)
    net = Hand4Whole(body.config)
    check_state_dict(net, body.state_dict, body.path)
    net.load_state_dict(body.state_dict, strict=True)
    reference = {k[len(HAND_BACKBONE):]: v for k, v in body.state_dict.items() if k.startswith(HAND_BACKBONE)}
    hand = read_network_tensors(hand_ckpt)
    check_hand_only(hand, hand_ckpt)
    try:
        prefix = find_backbone_prefix(hand, reference)
    except CheckpointError as exc:
        depth = hand_resnet_depth(hand)
        want = body.config.hand_backbone_depth
        width = next(iter(backbone_widths(hand)), None)
        wide = body.config.backbone_width
        differ = (f" (its ResNet is a ResNet-{depth}, the whole-body model's hand ResNet a ResNet-{want}: train the "
                  f"hand stage with hand_backbone_depth = {want} under [model] in a --config TOML, or merge into a "
                  f"body of ResNet-{depth} hands)"
                  if depth is not None and depth != want else
                  f" (its ResNet is {width} channels wide, the whole-body model's {wide}: train the hand stage with "
                  f"backbone_width = {wide} under [model] in a --config TOML, or merge into a body of width {width})"
                  if width is not None and width != wide else "")
        raise CheckpointError(f"{hand_ckpt}: {exc}{differ}") from None
    net.hand_roi_net.backbone.load_state_dict({k[len(prefix):]: v for k, v in hand.items() if k.startswith(prefix)}, strict=True)
    torch.manual_seed(seed)
    for name in HAND_HEADS:
        init_head_weights(getattr(net, name))
    log.info("merged the hand backbone from prefix %r; re-initialised %s", prefix, ", ".join(HAND_HEADS))
    return save_checkpoint(out, net, epoch=0, through_link=True)  # (-o: the user's name)
