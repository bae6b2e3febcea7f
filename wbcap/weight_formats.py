"""What a weights file of each manifest architecture must hold, checked by the code that reads it.

:mod:`wbcap.weights` stores, finds and downloads files and sits below the model and detector
code, so it does not know their formats; the callers that import or fetch a file pass the check
from here (``wbcap weights import|fetch``) or the detector's own (``--detector auto``).
"""

from __future__ import annotations

from pathlib import Path

from wbcap.errors import InputError


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


def _yolox(path: Path) -> str:
    from wbcap.detect.yolox import describe_model

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


def validator(architecture: str):
    """:func:`validate_weights_file` bound to ``architecture`` (a :data:`wbcap.weights.Validator`)."""
    if architecture not in _CHECKS:
        raise InputError(f"unsupported weights architecture {architecture!r}; known: {', '.join(_CHECKS)}")
    return lambda path: validate_weights_file(architecture, path)
