"""Random number generator states of a training process: saved into every snapshot, restored on
``resume`` so that a resumed CPU run gives bit-for-bit the weights of an uninterrupted one
(torch CPU, numpy, python ``random`` and the training device's CUDA generator)."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import numpy as np
import torch

__all__ = ["restore_rng", "rng_state", "seed_process", "set_rng_state"]

log = logging.getLogger(__name__)


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states: torch CPU, numpy, python and, when training on CUDA, the CUDA
    generator of ``device`` only (never every visible GPU: that creates a context on each)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.tensor(np.frombuffer(json.dumps(_np_state()).encode(), dtype=np.uint8).copy()),
        "python": torch.tensor(np.frombuffer(json.dumps(random.getstate()).encode(), dtype=np.uint8).copy()),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _np_state() -> list:
    s = np.random.get_state()
    return [s[0], s[1].tolist(), int(s[2]), int(s[3]), float(s[4])]


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_state`'s output. The CUDA state is restored only when training on CUDA,
    into ``device``'s generator; older snapshots hold a list (one per visible GPU): the entry of
    ``device``'s index is used when present, else the CUDA generator keeps its seeding."""
    torch.set_rng_state(state["torch"])
    s = json.loads(bytes(state["numpy"].numpy()).decode())
    np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), s[2], s[3], s[4]))
    p = json.loads(bytes(state["python"].numpy()).decode())
    random.setstate((p[0], tuple(p[1]), p[2]))
    cuda = state.get("cuda")
    if cuda is None or device.type != "cuda":
        return
    if isinstance(cuda, (list, tuple)):
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= len(cuda):
            log.warning("snapshot has no CUDA RNG state for GPU %d (it holds %d); keeping the seeded one", index, len(cuda))
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda, device)


def seed_process(torch_seed: int, other_seed: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy and python's ``random``."""
    torch.manual_seed(torch_seed)
    np.random.seed(other_seed % 2**32)
    random.seed(other_seed)


def restore_rng(saved: Any, d: Any, device: torch.device, seed: int, epoch: int) -> bool:
    """Restore this rank's RNG states from a snapshot's ``rng`` entry; True when restored.

    ``d``: the process's :class:`wbcap.train.trainer.DistInfo` (its ``rank``). ``saved`` is one
    state (a one-process run) or a list with one per rank. A run resumed with
    more processes than wrote the snapshot reseeds the extra ranks deterministically from
    ``(seed, rank, epoch)`` and says so; with fewer, the surplus states are unused.
    """
    states = saved if isinstance(saved, list) else [saved]
    if d.rank < len(states):
        set_rng_state(states[d.rank], device)
        return True
    value = seed + 1000 * d.rank + 1_000_003 * epoch
    log.warning("snapshot holds RNG states of %d process(es); rank %d reseeds from %d", len(states), d.rank, value)
    seed_process(value, value)
    return False
