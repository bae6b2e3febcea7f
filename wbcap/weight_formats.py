"""What a weights file of each manifest architecture must hold, checked by the code that reads it.

:mod:`wbcap.weights` stores, finds and downloads files and sits below the model and detector
code, so it does not know their formats; the callers that import or fetch a file pass the check
from here (``wbcap weights import|fetch``) or the detector's own (``--detector auto``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wbcap.errors import InputError

if TYPE_CHECKING:
    from wbcap.weights import WeightsEntry


def _hand4whole(path: Path) -> str:
    import torch

    from wbcap.model.checkpoint import check_state_dict, read_checkpoint
    from wbcap.model.hand4whole import Hand4Whole

    ckpt = read_checkpoint(path)
    with torch.device("meta"):
        net = Hand4Whole(ckpt.config)
    check_state_dict(net, ckpt.state_dict, path)
    n = sum(v.numel() for v in ckpt.state_dict.values())
    return f"{len(ckpt.state_dict)} tensors, {n / 1e6:.1f} M values, {ckpt.kind} format"


def _hand4whole_hand(path: Path) -> str:
    # the merge stage reads this file: its check (a whole-body checkpoint is refused there too)
    from wbcap.train.merge import describe_hand_checkpoint

    return describe_hand_checkpoint(path)


#: How far an ONNX export's parameter count may be from the release's, as a fraction of it
#: (BatchNorm folded into the convolutions by the export: the release's yolox_nano.onnx holds
#: 904,481 values against the README's 0.91 M; the next sizes differ by 1.8x or more).
PARAMETER_TOLERANCE = 0.05


def _yolox(path: Path, item: WeightsEntry | None = None) -> str:
    """Check a YOLOX ONNX file: its weights in it (not in a file beside it), the parameter count
    of ``item``'s release where it gives one (a re-export holds as many values in any precision,
    another YOLOX size under its name does not: a mirror serving yolox_s.onnx as yolox_m.onnx
    was kept, a user trial), and its signature (:func:`wbcap.detect.yolox.describe_model`).

    Raises:
        InputError: one line naming the file, what is wrong and the fix.
    """
    from wbcap.detect.yolox import describe_model, onnx_weights

    count, external = onnx_weights(path)  # (parsed once: a yolox-x is 400 MB)
    if external:  # (imported, the .onnx alone was copied, its weights left behind: a weights trial)
        raise InputError(f"{path}: keeps its weights in another file ({', '.join(external)}); save the model as one "
                         "file (onnx.save(model, path), without save_as_external_data) and import that")
    if item is not None and item.parameters and abs(count / 1e6 - item.parameters) > PARAMETER_TOLERANCE * item.parameters:
        raise InputError(f"{path}: a network of {count / 1e6:.2f} M parameters, not {item.name}'s {item.parameters:g} M "
                         f"(another YOLOX size?); pass the {item.file} of YOLOX's release")
    return describe_model(path)


_CHECKS = {"hand4whole": _hand4whole, "hand4whole-hand": _hand4whole_hand, "yolox": _yolox}


def validate_weights_file(architecture: str, path: str | Path) -> str:
    """Check that ``path`` is a valid file of ``architecture`` (a manifest ``architecture``).

    Returns a one-line summary (tensor count, network signature). Raises CheckpointError or
    InputError (one line naming the file) when it is not; InputError for an unknown architecture.
    """
    check = _CHECKS.get(architecture)
    if check is None:
        raise InputError(f"unsupported weights architecture {architecture!r}; known: {', '.join(_CHECKS)}")
    return check(Path(path))


def validator(item: WeightsEntry):
    """:func:`validate_weights_file` for the manifest entry ``item`` (a
    :data:`wbcap.weights.Validator`). Where the manifest gives the release's parameter count (the
    YOLOX sizes), that count is checked too (to :data:`PARAMETER_TOLERANCE`): a re-export of the
    network holds as many values in any precision, another network under its name does not
    (yolox_nano.onnx imported as yolox-tiny was taken with a note: a weights trial)."""
    if item.architecture not in _CHECKS:
        raise InputError(f"unsupported weights architecture {item.architecture!r}; known: {', '.join(_CHECKS)}")
    if item.architecture == "yolox":
        return lambda path: _yolox(Path(path), item)
    return lambda path: validate_weights_file(item.architecture, path)
