"""Which CPU inference form each part of the network takes on this machine, by measurement.

The fused network (:mod:`wbcap.model.fused`) can run each of its tuned parts
(:data:`~wbcap.model.fused.TUNED_PARTS`: body, hand and face ResNets, the box network's
deconvolutions) in more than one correct way, and which is fastest depends on the CPU, its
cache sizes, the core count and the torch/oneDNN build:

* form ``fused``: oneDNN primitives with pre-packed weights and ReLU / residual add fused
  (``torch.ops.mkldnn._convolution_pointwise``); ``plain``: the same folded weights through
  ``F.conv2d`` (oneDNN reorders the weights on every call) with the elementwise steps apart;
  ``onnxruntime`` (float32 ResNets, when ``onnxruntime`` and ``onnx`` are installed): the
  ResNet as an onnxruntime session, MLAS's blocked-layout convolutions
  (:class:`~wbcap.model.ort_resnet.OrtResNet`); ``int8`` (the fast mode's ResNets and box
  network: bfloat16 ones, or float32 ones on a CPU without bfloat16 instructions):
  oneDNN's int8 convolutions with calibrated activation ranges
  (:class:`~wbcap.model.int8.Int8ResNet`, :class:`~wbcap.model.int8.Int8DeconvStack`, checked
  when built on the calibration crops; random noise is no picture, so the check below does not
  apply to it); ``graph`` (the ResNets, float32 or bfloat16): the ResNet, BatchNorm folded, traced by
  TorchScript and compiled by oneDNN Graph, one partition per stage (:class:`~wbcap.model.graph_resnet.GraphResNet`);
* chunk sizes: how many images one convolution call takes (1, 2, 4; 8 with 4 or more threads):
  a :class:`~wbcap.model.fused.ChunkPlan` holding the measured seconds per image of each, from
  which the size for any batch is predicted;
* for each 4x4 stride-2 transposed convolution of the box network: oneDNN's deconvolution,
  its sub-pixel form (:class:`~wbcap.model.fused.SubpixelDeconv`), that form's convolution as
  one matrix product (:class:`~wbcap.model.fused.GemmConv`) or the deconvolution as one matrix
  product and a col2im (:class:`~wbcap.model.fused.Col2imDeconv`), timed at one image and at the
  largest chunk size;
* for each 3x3 stride-1 convolution of a float32 ResNet (exact mode): the direct convolution or
  Winograd's F(2x2, 3x3) or F(4x4, 3x3) (:class:`~wbcap.model.winograd.WinogradConv`), timed per
  layer shape at every chunk size.

:func:`choose_cpu_strategy` times these candidates once, on the part's real input shapes, with
the trained weights (a few seconds for the released network on an idle machine), and keeps the
result in ``<user cache>/wbcap/cpu_strategy.json``, keyed by the CPU (model name,
family/model/stepping, the vector ISA flags), the torch and onnxruntime versions, the torch
thread count and, per part, its architecture and dtype. Later runs read it back (a corrupt file is ignored with a
warning and rewritten).

Timings on a machine other processes share are unreliable (measured on the 2-core Xeon: with one
other busy process, a ResNet-50 on both cores ran 6x slower, as every oneDNN call waited for its
descheduled second thread). So a busy machine (:func:`machine_busy`, checked before each part:
torch's threads ran less than :data:`CLEAN_SHARE` of three 30 ms probes) is not measured: its
parts run in the default form and nothing is cached, so that a later run measures. Candidates
are timed in interleaved rounds, keeping the least time of the clean calls. Another form
replaces the default only when faster by more than :data:`FORM_MARGIN` (a layer's choice,
:data:`MARGIN`).

Every candidate computes the same sums in float32 (or bfloat16 in the fast mode's parts) up to
rounding: in float32 each is checked, when measured, against the module-by-module part
(``<= 1e-4`` relative to the output's largest value) and, across chunk sizes, against itself
(``<= 1e-5``: results do not depend on the batch size); a candidate that fails is dropped with a
warning.

``$WBCAP_CPU_STRATEGY`` (or ``strategy=`` of :func:`~wbcap.model.inference.optimize_for_inference`)
overrides the choice for reproducible timings: ``fused`` / ``plain`` (every part in that form,
:data:`~wbcap.model.fused.DEFAULT_CHUNK` images per call, no sub-pixel deconvolutions),
``onnxruntime`` (the float32 ResNets in that form, the other parts in the default form),
``int8`` (the fast mode's ResNets and box network in that form, the other parts in the default form),
``graph`` (the ResNets in that form, the box network in the default form),
``fused:N`` / ``plain:N`` / ``onnxruntime:N`` / ``int8:N`` / ``graph:N`` (N images per call), ``measure`` (measure again and update the cache),
``auto`` (default: the cached choice, measured when missing).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from wbcap.errors import InputError, first_line
from wbcap.model.fused import (
    DEFAULT_CHUNK,
    ChunkPlan,
    FusedConv,
    SingleImageForm,
    TilePlan,
    TunedPart,
    check_tile_plan,
    col2im_applies,
    fold_batchnorm,
    rel_error,
    subpixel_applies,
    tile_for,
)
from wbcap.model.graph_resnet import GraphResNet, graph_applies
from wbcap.model.int8 import INT8_TOLERANCE, CalibrationCache, build_int8, int8_applies
from wbcap.model.ort_resnet import OrtResNet, ort_applies, ort_usable
from wbcap.model.winograd import TILES, WinogradConv
from wbcap.user_cache import LOCK_WAIT_S, format_of, read_json, updating, write_json

log = logging.getLogger(__name__)

ENV_STRATEGY = "WBCAP_CPU_STRATEGY"
#: The most images per convolution call a forced ``<form>:N`` or a cached chunk size takes (oneDNN
#: cannot lay out the weights of a convolution packed for ~1e11 images: such an N failed at the
#: first call, and a cached one at every start-up).
MAX_FORCED_CHUNK = 4096
#: The most images a part takes per crop that a cached entry may say (the hand network's 2).
MAX_PER_CROP = 8
FORMS = ("fused", "plain", "onnxruntime", "int8", "graph")
CACHE_FILE = "cpu_strategy.json"
#: Forms built by their own classes rather than :meth:`TunedPart.build
#: <wbcap.model.fused.TunedPart.build>` (no oneDNN float packings or Winograd layers of their own
#: to keep), and optional: one that fails to build or run while measured is dropped.
OWN_BUILD_FORMS = ("onnxruntime", "int8", "graph")
#: Forms a part's calls of one image may run in beside its own (:attr:`PartChoice.single`), and the
#: forms that may have them: onnxruntime and oneDNN Graph have no choices of their own to keep
#: (Winograd tiles, packings), so a fused or plain ResNet's one-image calls can go through them as
#: measured (on the Zen 3 EPYC the face ResNet-18 took 16.7 ms for one image as a oneDNN Graph
#: against 20.8 fused, while fused was the faster form from two images per call).
SINGLE_FORMS = ("onnxruntime", "graph")
SINGLE_BESIDE = ("fused", "plain")
#: Forms whose build costs more than they save over a few network calls
#: (:meth:`PartChoice.for_few_calls`): an onnxruntime session is made from a graph written for it
#: and copies the weights into its own layout. On the Zen 3 EPYC (2 threads) the exact network's
#: two sessions (the body ResNet-50, and the hand ResNet-50's one-image calls) made its load
#: 1.17 s against 1.01 s with the fused forms instead (medians of 6 paired runs) and held 280 MB
#: more, and saved ~45 ms per one-person photo. A oneDNN Graph form is traced (its weights hashed
#: to find a graph built before), and compiled on its first calls of each size (the body
#: ResNet-50's first call of one image: 0.2 s against 20 ms at full speed on the Zen 5 EPYC).
COSTLY_BUILD_FORMS = ("onnxruntime", "graph")
#: Bumped when what a cached choice means changes (2: forms scored by predicted batch times;
#: 3: Winograd tiles of the float32 ResNets' 3x3 convolutions; 4: sub-pixel deconvolutions as one
#: matrix product, and the deconvolution forms timed at one image and at the largest chunk;
#: 5: the onnxruntime form of the float32 ResNets, and the onnxruntime version in the key;
#: 6: the int8 form of the fast mode's ResNets; 7: another form for calls of one image; 8: the
#: int8 form of the fast mode's box network; 9: the oneDNN Graph form of the ResNets; 10: the
#: deconvolutions as one matrix product and a col2im; 11: the oneDNN Graph form for calls of one
#: image).
CACHE_FORMAT = 11
#: float32 candidates vs the module-by-module part: max |difference| / max |reference|.
EXACT_TOLERANCE = 1e-4
#: float32 candidates across chunk sizes (batch-size invariance), same measure.
INVARIANCE_TOLERANCE = 1e-5
#: bfloat16 candidates vs the float32 module-by-module part (a sanity bound: bfloat16 rounding).
BF16_TOLERANCE = 5e-2
#: Timed rounds per candidate (after one untimed call); the least time of the clean ones is kept.
ROUNDS = 2
#: Rounds beyond ROUNDS allowed to replace calls that were not clean.
EXTRA_ROUNDS = 2
#: A timed call is clean when the process's threads ran (CPU time / (wall time x torch threads))
#: for at least this share of the time: of the most any call of the same candidate got (serial
#: steps keep some candidates below 1 on an idle machine), and, for :func:`machine_busy`'s probe
#: of matrix products on every thread, of the wall time itself.
CLEAN_SHARE = 0.8
#: A sub-pixel deconvolution, a Winograd tile or a form for one-image calls beside the part's
#: own replaces the default only when it is faster by more than this share (a layer's calls are
#: short and noisier, and a one-image form keeps a second copy of the weights), as does a form
#: that costs less to build and run over a few calls: differences within the noise keep it.
MARGIN = 0.1
#: Another form of a whole part replaces the default when its score (:func:`select_form`) is
#: lower by more than this share. Whole-part calls are timed interleaved, the least of the
#: clean rounds kept, and a change of form timed again before it is made; in such paired
#: timings on the Zen 5 EPYC the least and the median times agreed within 1.5 %, while the
#: oneDNN Graph form was 2-13 % faster than the fused one (the same results, bit for bit),
#: which a 10 % margin left unused for all three ResNets.
FORM_MARGIN = 0.03
#: Seconds a busy machine is waited for before the parts go unmeasured: a moment of load passes
#: (on the first ``wbcap image`` on a machine its own render child imports pyrender and probes the
#: GL platforms while the model loads, and the strategy went unmeasured), a long job does not.
BUSY_WAIT_S = 3.0

#: ``(calls, rounds) -> seconds``: times every call ``rounds`` times, interleaved, and returns the
#: least seconds of each (replaceable in tests); raises :class:`MachineBusy` when it cannot.
Timer = Callable[[Mapping[Hashable, Callable[[], Any]], int], dict[Hashable, float]]


class MachineBusy(RuntimeError):
    """Other processes kept the cores busy: a measurement would say little (nothing is cached)."""


def _timed(fn: Callable[[], Any], threads: int) -> tuple[float, float]:
    """(wall seconds, share of it the process's ``threads`` threads ran) of one call of ``fn``."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, (time.process_time() - c0) / max(wall * threads, 1e-9)


def _clean(samples: Sequence[tuple[float, float]]) -> list[float]:
    top = max(share for _, share in samples)
    return [wall for wall, share in samples if share >= CLEAN_SHARE * top]


def time_interleaved(calls: Mapping[Hashable, Callable[[], Any]], rounds: int) -> dict[Hashable, float]:
    """Least wall seconds of each call over ``rounds`` rounds that call every one once in turn
    (a burst of load from another process falls on all candidates alike), keeping only clean
    calls (:data:`CLEAN_SHARE`); up to :data:`EXTRA_ROUNDS` more rounds for the candidates with
    fewer than ``rounds`` clean calls."""
    threads = torch.get_num_threads()
    rounds = max(1, rounds)
    samples: dict[Hashable, list[tuple[float, float]]] = {k: [] for k in calls}
    for r in range(rounds + EXTRA_ROUNDS):
        todo = [k for k in calls if r < rounds or len(_clean(samples[k])) < rounds]
        if not todo:
            break
        for key in todo:
            samples[key].append(_timed(calls[key], threads))
    return {k: min(_clean(v)) for k, v in samples.items()}


def _quiet_within(busy: Callable[[], bool], wait_s: float, step_s: float = 0.25) -> bool:
    """Whether ``busy()`` turns False within ``wait_s`` seconds (asked every ``step_s``)."""
    deadline = time.monotonic() + wait_s
    while busy():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)
    return True


def machine_busy(seconds: float = 0.03, tries: int = 3) -> bool:
    """True when, in each of ``tries`` probes of about ``seconds`` of small matrix products on
    torch's threads, those threads ran for less than :data:`CLEAN_SHARE` of the time (other
    processes hold the cores; one quiet probe is enough to call the machine free)."""
    a = torch.ones(192, 192)
    threads = torch.get_num_threads()
    with torch.inference_mode():
        for _ in range(max(1, tries)):
            c0, t0 = time.process_time(), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                torch.mm(a, a)
            wall = time.perf_counter() - t0
            if (time.process_time() - c0) / max(wall * threads, 1e-9) >= CLEAN_SHARE:
                return False
    return True


# -- what is asked ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategyRequest:
    """A parsed ``$WBCAP_CPU_STRATEGY`` / ``strategy=`` value.

    ``mode``: ``auto`` (cached choice, measured when missing), ``measure`` (measure again) or
    ``forced`` (``form`` with ``chunk`` images per call for every part).
    """

    mode: str
    form: str | None = None
    chunk: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> StrategyRequest:
        """``None`` / ``""`` (or blanks) / ``auto``, ``measure``, a form of :data:`FORMS`, or
        ``<form>:N``.

        Raises InputError (one line, naming the choices) for anything else.
        """
        value = (text or "").strip().lower() or "auto"  # (a blank value is unset, as an empty one)
        if value in ("auto", "measure"):
            return cls(value)
        form, _, chunk = value.partition(":")
        if form in FORMS:
            if not chunk:
                return cls("forced", form, DEFAULT_CHUNK)
            if chunk.isdigit():
                with contextlib.suppress(ValueError):  # (out of range: the line below)
                    return cls("forced", form, _chunk_size(chunk))
        raise InputError(f"CPU strategy {text!r} (${ENV_STRATEGY}): use auto, measure, fused, plain, onnxruntime, int8, "
                         f"graph, or one of those as <form>:N (N images per convolution call, 1 to {MAX_FORCED_CHUNK})")

    @classmethod
    def from_env(cls, explicit: str | None = None) -> StrategyRequest:
        """``explicit`` when given, else ``$WBCAP_CPU_STRATEGY``, parsed."""
        return cls.parse(explicit if explicit is not None else os.environ.get(ENV_STRATEGY))


# -- what was chosen -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartChoice:
    """How one part runs: ``form`` (one of :data:`FORMS`), ``chunks`` (images per call by batch
    size), ``subpixel`` (per transposed convolution: the sub-pixel form), ``gemm`` (per
    transposed convolution: as one matrix product: where ``subpixel`` its sub-pixel convolution,
    :class:`~wbcap.model.fused.GemmConv`, elsewhere the transposed convolution and a col2im,
    :class:`~wbcap.model.fused.Col2imDeconv`), ``winograd`` (per 3x3
    stride-1 convolution of a float32 ResNet, :meth:`TunedPart.winograd_convs
    <wbcap.model.fused.TunedPart.winograd_convs>`: its :data:`~wbcap.model.fused.TilePlan`, the
    Winograd tile by images per call; empty for other parts), ``per_crop`` (the
    part's inputs per person crop), ``measured`` (form -> chunk -> seconds per image, what the
    choice was made from; empty when forced), ``alternates`` (convolution number -> the batch
    sizes its weight is packed for apart, :func:`~wbcap.model.fused.pack_for_batches`; None: find
    them when building, or in a build for a few calls on each size's first call), ``single``
    (another form that runs the calls of one image, measured faster there and equal to
    ``form``'s results to float32 rounding; ``chunks`` then holds its time for one image:
    :class:`~wbcap.model.fused.SingleImageForm`; None: every call in ``form``), ``build_s``
    (form -> seconds to build it for a few calls and run its first call of one crop's images,
    measured with it (:func:`few_call_build_times`): :meth:`for_few_calls` weighs them; empty
    when not measured, e.g. forced or cached before wbcap measured them:
    ``WBCAP_CPU_STRATEGY=measure`` adds them)."""

    form: str
    chunks: ChunkPlan
    subpixel: tuple[bool, ...] = ()
    per_crop: int = 1
    measured: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
    alternates: Mapping[int, tuple[int, ...]] | None = None
    winograd: tuple[TilePlan, ...] = ()
    gemm: tuple[bool, ...] = ()
    single: str | None = None
    build_s: Mapping[str, float] = field(default_factory=dict)

    def describe(self, batch_size: int) -> str:
        """E.g. ``"fused 2"`` or ``"plain 4+4"`` (form, then the calls for ``batch_size`` crops),
        with ``" subpixel 1/3"`` when some deconvolutions run in the sub-pixel form (``" gemm 1/3"``
        when some of those run as one matrix product) and
        ``" winograd 10/13"`` when some 3x3 convolutions run as Winograd convolutions in the calls
        of that batch (:meth:`winograd_used`), and ``" single onnxruntime"`` when calls of one image
        run in another form (:attr:`single`) in that batch."""
        text = f"{self.form} {self.chunks.describe(self.per_crop * max(1, batch_size))}"
        if self.single_used(batch_size):
            text += f" single {self.single}"
        if any(self.subpixel):
            text += f" subpixel {sum(self.subpixel)}/{len(self.subpixel)}"
        sub_gemm = sum(g and s for s, g in zip(self.subpixel, self.gemm))
        if sub_gemm:
            text += f" gemm {sub_gemm}/{len(self.gemm)}"
        col2im = sum(g and not s for s, g in zip(self.subpixel, self.gemm))
        if col2im:
            text += f" col2im {col2im}/{len(self.gemm)}"
        used = self.winograd_used(batch_size)
        if used:
            text += f" winograd {used}/{len(self.winograd)}"
        return text

    def for_few_calls(self, calls: int = 1) -> PartChoice:
        """This choice for a run of a few network calls (``wbcap image`` of a few photos:
        ``calls`` calls of one crop's images), where building a form counts as much as running it:
        a form of :data:`COSTLY_BUILD_FORMS`
        for the calls of one image (:attr:`single`) gives them back to the main form, with its own
        measured time for one image; a main form of them gives way to the best of the other
        forms measured with it (:func:`select_form` among them: fused or plain for exact, int8
        for fast on a CPU without bfloat16). Then, where build times were measured
        (:attr:`build_s`), the form with the least :meth:`few_call_cost` for ``calls`` runs
        (when less than the chosen form's by more than :data:`MARGIN`): on the Zen 3 EPYC (AVX2,
        no VNNI) the fast mode's int8 ResNets and box network took 0.07-0.26 s more each to
        build and call once than their float32 forms, and saved 0.01-0.10 s a crop, so one photo
        runs them in float32 there. A form switched to runs as :meth:`switched_to` says (its
        packings made as calls first need them: :meth:`TunedPart.build
        <wbcap.model.fused.TunedPart.build>` with ``few_calls``). Returns ``self`` when nothing
        changes (or no other form was measured).
        """
        choice = self
        if choice.single in COSTLY_BUILD_FORMS:
            own = choice.measured.get(choice.form, {})
            choice = replace(choice, single=None, chunks=ChunkPlan(
                tuple((c, own.get(c, t)) for c, t in choice.chunks.per_image_s)))
        others = {(f, c): t for f, ts in choice.measured.items() if f in FORMS and f not in COSTLY_BUILD_FORMS
                  for c, t in ts.items()}
        if choice.form in COSTLY_BUILD_FORMS and others:
            choice = choice.switched_to(select_form(others, choice.per_crop)[0])
        costs = {f: cost for f in choice.build_s if f not in COSTLY_BUILD_FORMS
                 and (cost := choice.few_call_cost(f, calls)) is not None}
        if choice.form in costs:
            best = min(costs, key=costs.__getitem__)
            if costs[best] < (1 - MARGIN) * costs[choice.form]:  # (as select_form: not on noise alone)
                choice = choice.switched_to(best)
        return choice

    def measured_plan(self, form: str) -> ChunkPlan:
        """``form``'s measured times (:attr:`measured`) as a chunk plan; KeyError when not measured."""
        return ChunkPlan(tuple(sorted(self.measured[form].items())))

    def switched_to(self, form: str) -> PartChoice:
        """This part run in another measured ``form``: its measured chunk plan, its packings not
        known (found as it is built or called), no Winograd layers (chosen for this choice's form)
        and no one-image form; the deconvolution choices (measured for every float form) kept."""
        return replace(self, form=form, chunks=self.measured_plan(form), alternates=None,
                       winograd=tuple(() for _ in self.winograd), single=None)

    def few_call_cost(self, form: str, calls: int) -> float | None:
        """Predicted seconds to build ``form`` for a few calls and run ``calls`` (>= 1) calls of
        one crop's images (:attr:`per_crop`) in it: its :attr:`build_s` (the build and the first
        call, whose primitives and packings are made then) plus ``calls - 1`` times what its
        measured times predict for one crop (:func:`predicted_per_image`). None when either was
        not measured."""
        build = self.build_s.get(form)
        if build is None or not self.measured.get(form):
            return None
        return build + max(0, int(calls) - 1) * self.per_crop * predicted_per_image(self.measured_plan(form),
                                                                                  self.per_crop)

    def single_used(self, batch_size: int) -> bool:
        """Whether a call of one image, in the :attr:`single` form, runs for ``batch_size`` crops."""
        return self.single is not None and 1 in self.chunks.calls(self.per_crop * max(1, batch_size))

    def winograd_used(self, batch_size: int | None = None) -> int:
        """How many 3x3 convolutions run as Winograd ones in the calls for ``batch_size`` crops
        (None: at any call size)."""
        if batch_size is None:
            return sum(1 for p in self.winograd if any(t for _, t in p))
        calls = set(self.chunks.calls(self.per_crop * max(1, batch_size)))
        return sum(1 for p in self.winograd if any(tile_for(p, c) for c in calls))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the cache's and ``wbcap bench``'s form)."""
        return {
            "form": self.form,
            "per_image_s": {str(c): t for c, t in self.chunks.per_image_s},
            "subpixel": list(self.subpixel),
            "per_crop": self.per_crop,
            "measured": {f: {str(c): t for c, t in ts.items()} for f, ts in self.measured.items()},
            "alternates": None if self.alternates is None else {str(i): list(v) for i, v in self.alternates.items()},
            "winograd": [[list(e) for e in p] for p in self.winograd],
            "gemm": list(self.gemm),
            "single": self.single,
            "build_s": dict(self.build_s),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PartChoice:
        """Inverse of :meth:`to_dict`; KeyError / ValueError / TypeError on a malformed entry."""
        form = d["form"]
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}")
        table = tuple(sorted((_chunk_size(c), float(t)) for c, t in d["per_image_s"].items()))
        alt = d.get("alternates")
        winograd = tuple(check_tile_plan(p) for p in d.get("winograd", ()))
        subpixel = tuple(_flag(v) for v in d.get("subpixel", ()))
        gemm = tuple(_flag(v) for v in d.get("gemm", ()))
        if gemm and len(gemm) != len(subpixel):
            raise ValueError("gemm flags must match the transposed convolutions")
        single = d.get("single")
        if single is not None and (single not in SINGLE_FORMS or form not in SINGLE_BESIDE or not table
                                   or table[0][0] != 1):
            raise ValueError(f"single-image form {single!r} with form {form!r} and call sizes {[c for c, _ in table]}")
        measured = {str(f): {_chunk_size(c): float(t) for c, t in ts.items()} for f, ts in d.get("measured", {}).items()}
        for f, ts in measured.items():  # (a chunk plan is made of them for a few calls: for_few_calls)
            if any(not math.isfinite(t) or t <= 0 for t in ts.values()):
                raise ValueError(f"measured times of {f!r} must be finite and > 0, got {ts}")
        # (images per crop: 1, or 2 for the hand network; an edited 1e8 planned 1e8 images per crop)
        per_crop = d.get("per_crop", 1)
        if not isinstance(per_crop, int) or isinstance(per_crop, bool) or not 1 <= per_crop <= MAX_PER_CROP:
            raise ValueError(f"per_crop must be a whole number from 1 to {MAX_PER_CROP}, got {per_crop!r}")
        return cls(form, ChunkPlan(table), subpixel, per_crop, measured,
                   None if alt is None else {int(i): tuple(int(n) for n in v) for i, v in alt.items()}, winograd, gemm,
                   single, _build_times(d.get("build_s")))


def _chunk_size(key: Any) -> int:
    """A cached chunk size (images per convolution call, a JSON key): 1 to :data:`MAX_FORCED_CHUNK`;
    ValueError otherwise (an edited ``"1000000000000"`` failed oneDNN's packing at every start-up)."""
    size = int(key)
    if not 1 <= size <= MAX_FORCED_CHUNK:
        raise ValueError(f"chunk sizes must be from 1 to {MAX_FORCED_CHUNK} images, got {size}")
    return size


def _build_times(value: Any) -> dict[str, float]:
    """Cached :attr:`PartChoice.build_s`: form -> seconds, of known forms, finite and >= 0; an
    absent or malformed value (a debug line) reads as none: build times only refine a few calls'
    choice, so an edited one must not cost the entry (a new measurement, minutes)."""
    try:
        times = {str(f): float(t) for f, t in (value or {}).items()}
    except (AttributeError, TypeError, ValueError, OverflowError):
        times = None
    if times is None or any(f not in FORMS or not math.isfinite(t) or t < 0 for f, t in times.items()):
        log.debug("ignoring malformed cached build times %r", value)
        return {}
    return times


def _flag(value: Any) -> bool:
    """A cached true/false flag; ValueError for anything but a JSON boolean."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class CpuStrategy:
    """The form of every tuned part on this machine (:class:`PartChoice` by part name).

    ``source``: ``measured`` (just now), ``cache`` (read back), ``forced`` (requested) or mixed
    (``cache+measured`` when some parts were missing from the cache); ``machine``: the cache key
    (:func:`machine_key`: ``cpu``, ``torch``, ``onnxruntime``, ``threads``, ``cores``, ``env``);
    ``selection_s``: seconds spent measuring (0 when read or forced); ``cache_file``: where it is
    kept (None when forced).
    """

    parts: Mapping[str, PartChoice]
    source: str
    machine: Mapping[str, Any]
    selection_s: float = 0.0
    cache_file: str | None = None

    def describe(self, batch_size: int) -> dict[str, str]:
        """Part name -> :meth:`PartChoice.describe` for ``batch_size`` crops."""
        return {name: choice.describe(batch_size) for name, choice in self.parts.items()}

    def summary(self, batch_size: int) -> str:
        """One short line for ``batch_size`` crops, e.g. ``"fused: body 1, hand 2, face 1, box 1 (sub-pixel 1/3)"``;
        parts in another form are named with it."""
        forms = [c.form for c in self.parts.values()]
        main = max(set(forms), key=forms.count)
        short = {"body_backbone": "body", "hand_backbone": "hand", "face_backbone": "face", "box_net": "box"}
        items = []
        for name, c in self.parts.items():
            label = short.get(name, name)
            calls = c.chunks.describe(c.per_crop * max(1, batch_size))
            calls += f" (1 image: {c.single})" if c.single_used(batch_size) else ""
            items.append(f"{label} {calls}" if c.form == main else f"{label} {c.form} {calls}")
        sub = [v for c in self.parts.values() for v in c.subpixel]
        gemm = sum(g and s for c in self.parts.values() for s, g in zip(c.subpixel, c.gemm))
        col2im = sum(g and not s for c in self.parts.values() for s, g in zip(c.subpixel, c.gemm))
        wino = sum(c.winograd_used(batch_size) for c in self.parts.values())
        n_wino = sum(len(c.winograd) for c in self.parts.values())
        notes = ([f"sub-pixel {sum(sub)}/{len(sub)}" + (f", {gemm} as GEMM" if gemm else "")] if any(sub) else []) + (
            [f"col2im {col2im}/{len(sub)}"] if col2im else []) + ([f"Winograd {wino}/{n_wino}"] if wino else [])
        tail = f" ({', '.join(notes)})" if notes else ""
        return f"{main}: " + ", ".join(items) + tail

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for reports."""
        return {"source": self.source, "machine": dict(self.machine), "selection_s": self.selection_s,
                "cache_file": self.cache_file, "parts": {n: c.to_dict() for n, c in self.parts.items()}}


# -- the machine and the cache ---------------------------------------------------------------------

#: (The int8 ones too, VNNI and AMX-INT8: the int8 form's speed and results hang on them, and a
#: VM's host moved to one with AVX512-VNNI had kept its key: docs/performance.md.)
_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_int8",
              "asimd", "sve")


def cpu_model() -> str:
    """The CPU as the cache knows it: model name, family/model/stepping and the vector ISA flags
    oneDNN's choice depends on (from ``/proc/cpuinfo``; ``platform`` elsewhere), e.g.
    ``"Intel(R) Xeon(R) Processor (family 6 model 207 stepping 2; avx2 avx512f avx512_bf16 amx_bf16 avx512_fp16)"``."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            key = key.strip().lower()
            if not sep:
                if fields:
                    break  # the first processor's block is enough
                continue
            fields.setdefault(key, value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    ids = [f"{k} {fields[k2]}" for k, k2 in (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"))
           if fields.get(k2)]
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    isa = [f for f in _ISA_FLAGS if f in flags]
    detail = "; ".join(x for x in (" ".join(ids), " ".join(isa)) if x)
    return f"{name} ({detail})" if detail else name


#: Environment variables that change which kernels oneDNN or ATen run (an ISA cap, a lower
#: float32 precision): a choice measured without them is not one for a process with them (a
#: review: under ``ONEDNN_MAX_CPU_ISA=SSE41`` a 3x3 convolution took 3.8x as long, and the choice
#: measured with AVX-512 was read back). onnxruntime's kernels do not read them.
KERNEL_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_CPU_ISA_HINTS", "DNNL_CPU_ISA_HINTS",
                    "ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE", "ATEN_CPU_CAPABILITY")


def machine_key() -> dict[str, Any]:
    """What a cached choice is valid for: ``cpu`` (:func:`cpu_model`), ``torch`` (version),
    ``onnxruntime`` (its version when the onnxruntime form can be built,
    :func:`~wbcap.model.ort_resnet.ort_usable`, else None), ``threads``
    (``torch.get_num_threads()``), ``cores`` (the cores this process may run on) and ``env``
    (those of :data:`KERNEL_VARIABLES` that are set, name -> value)."""
    from wbcap.model.device import available_cpus

    return {"cpu": cpu_model(), "torch": torch.__version__, "onnxruntime": onnxruntime_version(),
            "threads": torch.get_num_threads(), "cores": available_cpus(), "env": kernel_variables()}


def kernel_variables() -> dict[str, str]:
    """Those of :data:`KERNEL_VARIABLES` that are set (name -> value): part of the CPU strategy
    cache's key (:func:`machine_key`) and of the int8 calibration cache's."""
    return {k: os.environ[k] for k in KERNEL_VARIABLES if os.environ.get(k)}


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version when the onnxruntime form can be built
    (:func:`~wbcap.model.ort_resnet.ort_usable`), else None (read from the package metadata: no import)."""
    from wbcap.versions import installed_version

    if not ort_usable():
        return None
    # (also the onnxruntime-gpu, -openvino and -directml distributions of the same module)
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
        found = installed_version(dist)
        if found is not None:
            return found
    return "unknown"


def _machine_id(machine: Mapping[str, Any]) -> str:
    """The cache's key for ``machine`` (:func:`machine_key`). The cores are named only where fewer
    than the threads (more threads than cores: each waits for the others), and the variables only
    where set, so that a usual machine's key stays what earlier versions wrote."""
    ort = machine.get("onnxruntime")
    threads = machine["threads"]
    cores = machine.get("cores")
    on = f" on {cores} cores" if isinstance(cores, int) and cores < threads else ""
    env = machine.get("env") or {}
    set_vars = "".join(f" | {k}={v}" for k, v in sorted(env.items()))
    return f"{machine['cpu']} | torch {machine['torch']} | onnxruntime {ort or 'none'} | {threads} threads{on}{set_vars}"


def _part_id(part: TunedPart, dtype: torch.dtype, onednn: bool, fast: bool | None) -> str:
    # (a fast ResNet or box network in float32, on a CPU without bfloat16, is not an exact one: it has the int8
    # candidate; a fast part without it computes what exact's does and shares its entry)
    extra = "(fast)" if dtype != torch.bfloat16 and int8_applies(part.module, dtype, fast) else ""
    return f"{part.name}: {part.arch} {str(dtype).removeprefix('torch.')}{extra}{'' if onednn else ' no-onednn'}"


def cache_path() -> Path:
    """``cpu_strategy.json`` in wbcap's user cache folder (:func:`wbcap.paths.cache_file`)."""
    from wbcap.paths import cache_file

    return cache_file(CACHE_FILE)


def _cache_document(path: Path) -> tuple[dict[str, Any], str | None, int | None]:
    """``path`` as the CPU strategy cache: (its machines table, why it cannot be used (one line;
    None when it can, or does not exist), its format where that is a number other than
    :data:`CACHE_FORMAT` (:func:`~wbcap.user_cache.format_of`))."""
    data, problem = read_json(path)
    if problem:
        return {}, problem, None
    if data is None and not path.exists():
        return {}, None, None
    fmt = format_of(data)
    if fmt is not None and fmt != CACHE_FORMAT:
        return {}, f"made by {'a newer' if fmt > CACHE_FORMAT else 'an older'} wbcap: format {fmt}", fmt
    if not isinstance(data, dict) or fmt != CACHE_FORMAT or not isinstance(data.get("machines"), dict):
        return {}, f"not a format-{CACHE_FORMAT} strategy cache", None
    return data["machines"], None, None


def cache_problem(path: Path | None = None) -> str | None:
    """Why the CPU strategy cache ``path`` (default :func:`cache_path`) cannot be used, as one
    line (what ``wbcap doctor`` says): the file's own problem, or, for this machine
    (:func:`machine_key`), an entry that is no table of parts or the first part entry this wbcap
    cannot read (an edited file; another wbcap's entries are expected and not a problem); None
    when it can be used, or does not exist. Reads the file only."""
    machines, problem, _ = _cache_document(path or cache_path())
    if problem:
        return problem
    mid = _machine_id(machine_key())
    if mid not in machines:
        return None
    slot = machines[mid]
    parts = slot.get("parts") if isinstance(slot, dict) else None
    if not isinstance(parts, dict):
        return "this machine's entry holds no table of parts"
    for pid, entry in parts.items():
        parsed = _parse_entry(entry)
        if isinstance(parsed, str):
            return f"its entry for {pid} cannot be read ({parsed})"
    return None


def read_cache(path: Path, warn: bool = True) -> dict[str, Any]:
    """The cache file's machines table (machine id -> {"parts": {part id -> choice dict}});
    empty when the file is missing, and when it cannot be read or parsed (with a warning, unless
    ``warn`` is False: it is then measured again and rewritten; a newer wbcap's file is left as
    it is: :func:`write_cache`)."""
    say = log.warning if warn else log.debug
    machines, problem, fmt = _cache_document(path)
    if fmt is not None and fmt < CACHE_FORMAT:  # (expected after an upgrade: no warning)
        (log.info if warn else log.debug)("the CPU strategy cache %s was %s; measuring again", path, problem)
    elif fmt is not None:  # (a newer wbcap's: see format_of)
        say("ignoring the CPU strategy cache %s (%s); measuring again, and leaving the file as it is", path, problem)
    elif problem:
        say("ignoring the CPU strategy cache %s (%s); measuring again", path, problem)
    return machines


def write_cache(path: Path, machine: Mapping[str, Any], entries: Mapping[str, PartChoice],
                read_warned: bool = False, huge_pages: Mapping[str, Any] | None = None) -> None:
    """Add ``entries`` (part id -> choice) under ``machine`` to the cache file (re-read first and
    written atomically, under :func:`~wbcap.user_cache.updating`'s lock); a failure to write is a
    warning (the choice is measured again next time).
    ``huge_pages``: :func:`measure_huge_pages`'s record for this machine, kept under its key
    ``huge_pages`` (None: the one there is kept).
    ``read_warned``: :func:`read_cache` read this file with its warnings on, so a problem of the
    file it reported (a newer wbcap's, a folder at its path) is not said a second time when the
    write is left out or fails because of it (one warning per damaged cache)."""
    with updating(path, LOCK_WAIT_S) as timed_out:  # (re-read and written under a lock: see updating)
        if timed_out:
            log.warning("another process has held %s.lock for %g s (a stopped one?); writing the CPU strategy cache "
                        "without waiting for it", path, LOCK_WAIT_S)
        _write_cache(path, machine, entries, read_warned, huge_pages)


def _write_cache(path: Path, machine: Mapping[str, Any], entries: Mapping[str, PartChoice], read_warned: bool,
                 huge_pages: Mapping[str, Any] | None) -> None:
    from wbcap.versions import wbcap_version

    machines, problem, fmt = _cache_document(path)  # (a broken file was reported when it was read first)
    said = log.debug if read_warned and problem else log.warning
    if fmt is not None and fmt > CACHE_FORMAT:
        said("the CPU strategy cache %s is a newer wbcap's (format %d): left as it is, so this machine's "
             "choice is measured again next time", path, fmt)
        return
    mid = _machine_id(machine)
    slot = machines.get(mid)
    if not isinstance(slot, dict) or not isinstance(slot.get("parts"), dict):
        slot = {**dict(machine), "parts": {}}
    stamp = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wbcap": wbcap_version()}
    slot["parts"].update({pid: {**c.to_dict(), **stamp} for pid, c in entries.items()})
    if huge_pages is not None:
        slot["huge_pages"] = {**huge_pages, **stamp}
    machines[mid] = slot
    problem = write_json(path, {"format": CACHE_FORMAT, "machines": machines}, indent=1)
    if problem:
        said("could not write the CPU strategy cache %s (%s); it will be measured again next time", path, problem)


def _parse_entry(entry: Any) -> PartChoice | str | None:
    """A part's cache ``entry`` as this wbcap reads it: its :class:`PartChoice`; why it cannot be
    read (one line: an edited or damaged entry); or None when another wbcap wrote it (which may
    build the parts otherwise, e.g. number their convolutions differently: measured again, as
    after an upgrade)."""
    from wbcap.versions import wbcap_version

    if isinstance(entry, dict) and entry.get("wbcap") != wbcap_version():
        return None
    try:
        return PartChoice.from_dict(entry)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:  # (an edited file)
        return first_line(e) or type(e).__name__


def _choice_of_entry(pid: str, entry: Any, quiet: bool = False) -> PartChoice | None:
    """The :class:`PartChoice` a cache ``entry`` for part ``pid`` holds (:func:`_parse_entry`), or
    None when another wbcap wrote it or it is malformed; said at info / warning level unless
    ``quiet`` (then debug)."""
    parsed = _parse_entry(entry)
    if parsed is None:
        (log.debug if quiet else log.info)("the cached CPU strategy for %s was measured by wbcap %s; measuring again",
                                           pid, entry.get("wbcap"))
    elif isinstance(parsed, str):
        (log.debug if quiet else log.warning)("ignoring the cached CPU strategy for %s (%s); measuring again", pid,
                                              parsed)
        return None
    return parsed


def _cached_choice(machines: Mapping[str, Any], machine: Mapping[str, Any], pid: str,
                   quiet: bool = False) -> PartChoice | None:
    slot = machines.get(_machine_id(machine))
    parts = slot.get("parts") if isinstance(slot, dict) else None
    entry = parts.get(pid) if isinstance(parts, dict) else None
    return None if entry is None else _choice_of_entry(pid, entry, quiet)


def cached_choices(path: Path | None = None) -> dict[str, PartChoice]:
    """The choices cached for this machine (:func:`machine_key`) that this wbcap would use, by
    part id (``"<part>: <architecture> <dtype>"``), from ``path`` (default :func:`cache_path`);
    empty when none. Reads the file only: nothing is measured, nothing is logged above debug."""
    slot = read_cache(path or cache_path(), warn=False).get(_machine_id(machine_key()))
    parts = slot.get("parts") if isinstance(slot, dict) else None
    if not isinstance(parts, dict):
        return {}
    found = {pid: _choice_of_entry(pid, entry, quiet=True) for pid, entry in parts.items()}
    return {pid: c for pid, c in found.items() if c is not None}


# -- choosing --------------------------------------------------------------------------------------


#: Batch sizes (crops per network call) a form is scored at by :func:`select_form`, weighing alike.
SCORE_BATCHES = (1, 2, 4, 8, 16, 32)


def predicted_per_image(plan: ChunkPlan, n: int) -> float:
    """Seconds per image the measured ``plan`` predicts for a batch of ``n`` images: its calls
    (:meth:`ChunkPlan.calls`) at their measured seconds per image (a call smaller than every
    measured size at the smallest one's)."""
    table = dict(plan.per_image_s)
    smallest = min(table)
    return sum(c * table.get(c, table[smallest]) for c in plan.calls(n)) / max(1, n)


def select_form(per_image_s: Mapping[tuple[str, int], float], per_crop: int = 1) -> tuple[str, ChunkPlan]:
    """The form to run and its chunk plan, from measured ``(form, chunk) -> seconds per image``.

    Each form's plan holds all its measured sizes; the form is scored by its predicted seconds
    per image (:func:`predicted_per_image`) summed over the batches the part sees for
    :data:`SCORE_BATCHES` crops (``per_crop`` images per crop: 2 for the hand network, which
    takes both hands), so a size the plan never uses (e.g. one image per call for the hands)
    does not count, and small and large batches weigh alike. The first form of :data:`FORMS`
    that was measured is the default; another replaces it only when its score is lower by more
    than :data:`FORM_MARGIN`.
    """
    forms = [f for f in FORMS if any(k[0] == f for k in per_image_s)]
    if not forms:
        raise ValueError("no candidate was measured")
    plans = {f: ChunkPlan(tuple(sorted((c, t) for (f2, c), t in per_image_s.items() if f2 == f))) for f in forms}
    score = {f: sum(predicted_per_image(plans[f], b * per_crop) for b in SCORE_BATCHES) for f in forms}
    best = forms[0]
    for f in forms[1:]:
        if score[f] < (1 - FORM_MARGIN) * score[best]:
            best = f
    return best, plans[best]


def chunk_candidates(threads: int | None = None) -> tuple[int, ...]:
    """Chunk sizes measured: 1, 2, 4, and 8 with 4 or more torch threads."""
    threads = torch.get_num_threads() if threads is None else threads
    return (1, 2, 4, 8) if threads >= 4 else (1, 2, 4)


def _tolerance(dtype: torch.dtype) -> float:
    """How far a candidate computing in ``dtype`` may be from the module-by-module float32 part."""
    return EXACT_TOLERANCE if dtype == torch.float32 else BF16_TOLERANCE


def _layer_groups(seq: nn.Sequential) -> list[nn.Sequential]:
    """``[Conv, (BatchNorm, ReLU)]*`` split into one Sequential per convolution."""
    mods = list(seq)
    groups, i = [], 0
    while i < len(mods):
        j = i + 1
        while j < len(mods) and not isinstance(mods[j], (nn.Conv2d, nn.ConvTranspose2d)):
            j += 1
        groups.append(nn.Sequential(*mods[i:j]))
        i = j
    return groups


#: The forms of a 4x4 stride-2 transposed convolution the strategy times (:func:`_choose_subpixel`):
#: name -> (sub-pixel, as one matrix product).
DECONV_FORMS: Mapping[str, tuple[bool, bool]] = MappingProxyType(
    {"deconv": (False, False), "subpixel": (True, False), "gemm": (True, True), "col2im": (False, True)})


def _choose_subpixel(part: TunedPart, dtype: torch.dtype, onednn: bool, x: torch.Tensor, sizes: Sequence[int],
                     timer: Timer, rounds: int) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
    """Per transposed convolution of ``part``: whether its sub-pixel form, and whether that
    form's convolution as one matrix product (:class:`~wbcap.model.fused.GemmConv`), or without
    the sub-pixel form the transposed convolution as one (:class:`~wbcap.model.fused.Col2imDeconv`;
    float32 only), was faster and as correct. Each layer is timed alone on its real input at one image per call and at
    the largest of ``sizes`` (what one photo and a video's batches run; ``x`` has at least that
    many images), scored by the sum of its seconds per image at the two. Each form in
    :data:`DECONV_FORMS` order replaces the ones before it only when :data:`MARGIN` faster than
    every one of them, chosen or not (a form within the noise of another is not taken). Timer keys: ``("deconv-form", name, images)``, names from
    :data:`DECONV_FORMS`. Returns (sub-pixel flags, matrix-product flags)."""
    from wbcap.model.fused import FusedConvStack

    flags: list[bool] = []
    gemms: list[bool] = []
    counts = sorted({1, int(sizes[-1])})
    tol = _tolerance(dtype)
    h = x[:counts[-1]]
    for group in _layer_groups(part.module):
        conv = group[0]
        ref = group(h)
        if not isinstance(conv, nn.ConvTranspose2d):
            h = ref
            continue
        forms = {name: (sub, mm) for name, (sub, mm) in DECONV_FORMS.items()
                 if (subpixel_applies(conv) if sub else (not mm or (col2im_applies(conv) and dtype == torch.float32)))}
        if len(forms) < 2:
            flags.append(False)
            gemms.append(False)
            h = ref
            continue
        size = [counts[-1], *h.shape[1:]]
        cands = {name: FusedConvStack(group, size, dtype, onednn, subpixel=[sub], gemm=[mm])
                 for name, (sub, mm) in forms.items()}
        ok: dict[str, bool] = {}
        for name, m in cands.items():
            ok[name] = all(rel_error(m(h[:c]), ref[:c]) <= tol for c in counts)
            if not ok[name]:
                log.warning("%s: the %s form of %s is off by more than rounding; not used", part.name, name, conv)
        calls = {("deconv-form", name, c): (lambda m=m, v=h[:c]: m(v)) for name, m in cands.items() if ok[name]
                 for c in counts}
        seconds = timer(calls, rounds) if calls else {}
        score = {name: sum(seconds[("deconv-form", name, c)] / c for c in counts) for name in cands if ok[name]}
        log.debug("%s: %s, seconds per image by form: %s", part.name, conv, score)
        names = list(DECONV_FORMS)
        best = names[0]  # each later form must beat every one before it by MARGIN
        for i, name in enumerate(names[1:], 1):
            if name in score and score[name] < (1 - MARGIN) * min(score.get(n, math.inf) for n in names[:i]):
                best = name
        sub, mm = DECONV_FORMS[best]
        flags.append(sub)
        gemms.append(mm)
        h = ref
    return tuple(flags), tuple(gemms)


#: Per 3x3 convolution of a part: images per call -> Winograd tile (0: direct) -> measured seconds,
#: for the tiles that matched the module-by-module layer (:func:`_winograd_trials`).
WinogradTrial = Mapping[int, Mapping[int, float]]


def _winograd_trials(part: TunedPart, onednn: bool, x: torch.Tensor, sizes: Sequence[int], timer: Timer,
                     rounds: int) -> tuple[list[WinogradTrial], torch.Tensor]:
    """Time, per 3x3 stride-1 convolution of a float32 ResNet ``part`` (:meth:`TunedPart.winograd_convs`),
    the direct convolution (oneDNN's fused one with ``onednn``, else ``F.conv2d``) against each
    Winograd tile (:data:`~wbcap.model.winograd.TILES`) at every chunk size of ``sizes``, on the
    layers' real inputs (``x``: the part's input, ``sizes[-1]`` images). Convolutions of one input
    shape are timed once, on the first of them; a tile is tried only if it matches the
    module-by-module layer (``<=`` :data:`EXACT_TOLERANCE`) for every one of them. Returns the
    trials (one per convolution) and the module-by-module part's output on ``x`` (computed
    anyway, to catch the layers' inputs)."""
    pairs = part.winograd_convs()
    inputs: dict[int, torch.Tensor] = {}

    def keep_input(i: int) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            inputs.setdefault(i, args[0])  # (returns None: a forward hook's return value replaces the output)
        return hook

    hooks = [conv.register_forward_hook(keep_input(i)) for i, (conv, _) in enumerate(pairs)]
    try:
        out = part.module(x)
    finally:
        for h in hooks:
            h.remove()
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (conv, _) in enumerate(pairs):
        groups.setdefault((conv.in_channels, conv.out_channels, *inputs[i].shape[2:]), []).append(i)
    trials: list[WinogradTrial] = [{} for _ in pairs]
    for shape, members in groups.items():
        ok = list(TILES)
        timed: dict[int, nn.Module] = {}  # the first member's Winograd layers, timed below
        for i in members:
            conv, bn = pairs[i]
            ref = torch.relu(bn(conv(inputs[i])))
            weight, bias = fold_batchnorm(conv.weight, conv.bias, bn, False)
            for t in list(ok):
                layer = WinogradConv(weight, bias, True, t)
                if rel_error(layer(inputs[i]), ref) > EXACT_TOLERANCE:
                    log.warning("%s: Winograd F(%d, 3) of %s is off by more than rounding; not used", part.name, t,
                                conv)
                    ok.remove(t)
                elif i == members[0]:
                    timed[t] = layer
        conv, bn = pairs[members[0]]
        h = inputs[members[0]]
        cands: dict[int, nn.Module] = {0: FusedConv(conv, bn, True, torch.float32, list(h.shape), onednn)}
        cands.update({t: timed[t] for t in ok})
        calls = {("winograd", t, c, shape): (lambda m=m, hc=h[:c]: m(hc)) for t, m in cands.items() for c in sizes}
        for call in calls.values():  # first calls pack weights for their batch size
            call()
        seconds = timer(calls, rounds)
        trial = {c: {t: seconds["winograd", t, c, shape] for t in cands} for c in sizes}
        for i in members:
            trials[i] = trial
    return trials, out


def _tile_plan(trial: WinogradTrial, tiles: Sequence[int]) -> TilePlan:
    """The :data:`~wbcap.model.fused.TilePlan` a ``trial`` gives when only ``tiles`` may be used:
    at each measured size the fastest of them, when faster than the direct convolution by more
    than :data:`MARGIN`, else direct."""
    plan: list[tuple[int, int]] = []
    for c in sorted(trial):
        times = trial[c]
        best = min((t for t in tiles if t in times), key=lambda t: times[t], default=0)
        tile = best if best and times[best] < (1 - MARGIN) * times[0] else 0
        if tile != (plan[-1][1] if plan else 0):  # an entry where the tile changes
            plan.append((c, tile))
    return tuple(plan)


def _choose_winograd(part: TunedPart, onednn: bool, trials: Sequence[WinogradTrial], x: torch.Tensor,
                     ref: torch.Tensor, sizes: Sequence[int], tol: float) -> tuple[TilePlan, ...]:
    """The part's tile plans from its ``trials`` (:func:`_winograd_trials`), checked on the whole
    part: built with them, at every chunk size of ``sizes``, it must match ``ref`` (the
    module-by-module part on ``x``, ``sizes[-1]`` images) within ``tol`` and its own result for
    the same images at the largest size within :data:`INVARIANCE_TOLERANCE` (sizes may run other
    tiles). Otherwise plans without F(4x4, 3x3) are tried, chosen again from the trials (rounding
    that is harmless per layer could add up over a deep network), then direct convolutions."""
    for tiles in ((2, 4), (2,)):
        plans = tuple(_tile_plan(t, tiles) for t in trials)
        if not any(t for p in plans for _, t in p):
            break
        module = part.build(torch.float32, onednn, ChunkPlan(tuple((c, 1.0) for c in sizes)), None, None, plans)
        full = module(x)
        outs = {c: module(x[:c]) for c in sizes[:-1]}
        err = max([rel_error(full, ref)] + [rel_error(y, ref[: len(y)]) for y in outs.values()])
        spread = max([rel_error(y, full[: len(y)]) for y in outs.values()], default=0.0)
        if err <= tol and spread <= INVARIANCE_TOLERANCE:
            return plans
        log.warning("%s: with Winograd tiles %s the part is off by %.2g (> %.0e) or differs by %.2g across batch "
                    "sizes (> %.0e); trying fewer", part.name, list(tiles), err, tol, spread, INVARIANCE_TOLERANCE)
    return tuple(() for _ in trials)


# Long (about 60 lines): build, check and time the candidates of one part in one place.
def measure_part(part: TunedPart, dtype: torch.dtype, onednn: bool, chunks: Sequence[int] | None = None,
                 timer: Timer | None = None, rounds: int = ROUNDS, fast: bool | None = None,
                 baseline: PartChoice | None = None,
                 calibrations: CalibrationCache | None = None) -> tuple[PartChoice, nn.Module]:
    """Time ``part``'s candidate forms on its real input shape and return the fastest correct
    one, as a :class:`PartChoice` and the built module (weights packed for the largest chunk).

    Candidates: ``fused`` at every size of ``chunks`` (default :func:`chunk_candidates`),
    ``plain`` at the smallest and largest (only ``plain`` without oneDNN), ``onnxruntime`` at every
    size where it applies (:func:`~wbcap.model.ort_resnet.ort_applies`; Winograd tiles do not
    apply to it), ``graph`` at every size where it applies
    (:func:`~wbcap.model.graph_resnet.graph_applies`; nor to it), ``int8`` at every size for the fast mode's ResNets and box network (``fast``: whether the
    part is one of the fast precision's; None: when ``dtype`` is bfloat16; see
    :func:`~wbcap.model.int8.int8_applies`; built and checked by
    :func:`~wbcap.model.int8.build_int8`); sub-pixel
    deconvolutions and (float32 ResNets) Winograd tiles decided first, layer by layer
    (:func:`_winograd_trials`, then checked on the whole part: :func:`_choose_winograd`). Each is called once untimed (its output then
    checked, see the module docstring), then timed ``rounds`` times, interleaved, by ``timer``;
    when another form than the default wins, both are timed ``rounds`` times more before the
    choice is made.

    ``baseline``: for a fast float32 ResNet (a CPU without bfloat16), exact's choice for the same
    part on this machine, when cached: its float form was measured the fastest of the float ones
    there, so only it (with its sub-pixel, matrix-product and Winograd choices) and the int8 form
    are timed (on the Zen 1 EPYC exact's measurement took 33-49 s, fast's then 18.7 s).
    """
    timer = timer or time_interleaved
    sizes = sorted(set(chunks or chunk_candidates()))
    forms = ("fused", "plain") if onednn else ("plain",)
    if ort_applies(part.module, dtype):
        forms += ("onnxruntime",)
    if onednn and graph_applies(part.module, dtype):
        forms += ("graph",)
    if int8_applies(part.module, dtype, fast):
        forms += ("int8",)
        if baseline is not None and baseline.form in forms and baseline.form != "int8":
            forms = (baseline.form, "int8")
        else:
            baseline = None
    else:
        baseline = None
    g = torch.Generator().manual_seed(0)
    base = torch.rand(sizes[-1], *part.item_shape, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = part.module(base[:1])
        if baseline is not None:
            subpixel, gemm = baseline.subpixel, baseline.gemm
        else:
            subpixel, gemm = (_choose_subpixel(part, dtype, onednn, base, sizes, timer, rounds)
                              if part.transposed_convs() else ((), ()))
        tol = _tolerance(dtype)
        winograd: tuple[TilePlan, ...] = ()
        if baseline is not None:
            winograd = baseline.winograd
        elif part.winograd_convs(dtype):
            trials, full_ref = _winograd_trials(part, onednn, base, sizes, timer, rounds)
            winograd = _choose_winograd(part, onednn, trials, base, full_ref, sizes, tol)
        every = ChunkPlan(tuple((c, 1.0) for c in sizes))  # packed for the largest, apart where needed
        modules = {f: part.build(dtype, f == "fused", every, subpixel or None, None, winograd or None, gemm or None)
                   for f in forms if f not in OWN_BUILD_FORMS}
        if "int8" in forms:
            try:  # (an optional form: whatever goes wrong in calibrating it or in oneDNN's int8
                # primitives only drops it; a failing call is caught below)
                q, q_err = build_int8(part, every, calibrations)
            except Exception as e:
                log.warning("%s: the int8 form could not be built (%s); not used", part.name, first_line(e))
                q = None
            else:
                if q is None:
                    log.warning("%s: the int8 form is off by %.2g (> %.0e) from the module-by-module part on the "
                                "calibration crops; not used", part.name, q_err, INT8_TOLERANCE)
            if q is None:
                forms = tuple(f for f in forms if f != "int8")
            else:
                modules["int8"] = q
        if "onnxruntime" in forms:
            try:  # (an optional form: whatever goes wrong in onnx or onnxruntime only drops it; a
                # failing call is caught below)
                modules["onnxruntime"] = OrtResNet(part.module, every)
            except Exception as e:  # (onnxruntime raises its own exception types)
                log.warning("%s: the onnxruntime form could not be built (%s); not used", part.name, first_line(e))
                forms = tuple(f for f in forms if f != "onnxruntime")
        if "graph" in forms:
            try:  # (an optional form: whatever goes wrong in TorchScript or oneDNN Graph only drops it;
                # a failing call, where it compiles, is caught below)
                modules["graph"] = GraphResNet(part.module, part.item_shape[1:], dtype, every)
            except Exception as e:
                log.warning("%s: the oneDNN Graph form could not be built (%s); not used", part.name, first_line(e))
                forms = tuple(f for f in forms if f != "graph")
        wanted = [(f, c) for f in forms for c in (sizes if f != "plain" or not onednn else sorted({sizes[0], sizes[-1]}))]
        calls: dict[Hashable, Callable[[], Any]] = {}
        first: dict[str, torch.Tensor] = {}
        for f, c in wanted:
            if f not in modules:  # (dropped at a smaller size)
                continue
            x = base[:c]
            try:
                out = modules[f](x)
            except Exception as e:  # (onnxruntime raises its own exception types)
                if f not in OWN_BUILD_FORMS:
                    raise
                log.warning("%s: the %s form failed on %d images (%s); not used", part.name, f, c, first_line(e))
                del modules[f]
                calls = {k: v for k, v in calls.items() if k[0] != f}
                first.pop(f, None)
                continue
            # (the int8 form was checked when built, on the calibration crops: its activation
            # ranges are those of pictures, which uniform noise is not)
            err = rel_error(out[:1], ref) if f != "int8" else 0.0
            if err > tol:
                log.warning("%s: the %s form is off by %.2g (> %.0e) from the module-by-module part; not used",
                            part.name, f, err, tol)
                continue
            if dtype == torch.float32:
                if f in first and rel_error(out[:1], first[f]) > INVARIANCE_TOLERANCE:
                    log.warning("%s: the %s form gives other results in calls of %d images; that size is not used",
                                part.name, f, c)
                    continue
                first.setdefault(f, out[:1])
            calls[f, c] = (lambda m=modules[f], x=x: m(x))
        if not calls and baseline is not None:  # (exact's cached form failed here: every form is measured)
            return measure_part(part, dtype, onednn, chunks, timer, rounds, fast, calibrations=calibrations)
        if not calls:
            raise RuntimeError(f"{part.name}: no inference form matched the module-by-module network")
        seconds = timer(calls, rounds)
        per_image = {k: seconds[k] / k[1] for k in calls}

        def time_again(keys: list[tuple[str, int]]) -> None:
            """Time ``keys`` again and keep the least of all their calls, so that one lucky round
            does not decide a change of form."""
            more = timer({k: calls[k] for k in keys}, rounds)
            per_image.update({k: min(per_image[k], more[k] / k[1]) for k in keys})

        form, plan = select_form(per_image, part.per_crop)
        if form != forms[0]:  # leaving the default form: both again, at the sizes they share
            time_again([k for k in calls if k[0] in (form, forms[0]) and (form, k[1]) in calls
                        and (forms[0], k[1]) in calls])
            # between those two only: a third form timed once must not win on its first rounds
            form, plan = select_form({k: t for k, t in per_image.items() if k[0] in (form, forms[0])}, part.per_crop)
        single, _ = single_image_form(form, plan, per_image, first)
        if single is not None:  # (likewise before another form takes the one-image calls)
            time_again([(form, 1), (single, 1)])
            plan = ChunkPlan(tuple(sorted((c, t) for (f, c), t in per_image.items() if f == form)))
            single, plan = single_image_form(form, plan, per_image, first)
    measured: dict[str, dict[int, float]] = {}
    for (f, c), t in per_image.items():
        measured.setdefault(f, {})[c] = t
    main = modules[form]
    main.chunks = plan  # the measured plan (its sizes were all packed for)
    module = main if single is None else SingleImageForm(main, modules[single], plan)
    if form in OWN_BUILD_FORMS:  # (no oneDNN float packings, no Winograd layers in them)
        alternates, winograd = None, tuple(() for _ in winograd)
    else:
        # Which sizes are packed apart was found against a main packing for the largest candidate; a
        # rebuild packs for the plan's largest size, against which they may differ: then it checks
        # again (None) rather than take the others as laid out alike.
        alternates = dict(main.alternates) if plan.pack == sizes[-1] else None
    choice = PartChoice(form, plan, subpixel, part.per_crop, measured, alternates, winograd, gemm, single)
    return replace(choice, build_s=few_call_build_times(part, dtype, choice, onednn, fast, calibrations)), module


#: How much faster (a share) a part must run with huge pages off for them to be turned off on a
#: machine: on is the default (PyTorch's CPU tuning guide; exact 7.6 points of the fp32 ceiling
#: higher with them on the model-207 Xeon, docs/performance.md).
HUGE_PAGES_MARGIN = 0.03


def cached_huge_pages(machines: Mapping[str, Any], machine: Mapping[str, Any]) -> bool | None:
    """Whether ``machine``'s entry of the cache's ``machines`` table keeps huge pages on
    (:func:`measure_huge_pages`' answer); None where it was not measured, by this wbcap (another
    version's answer is measured again, as its parts are), or the record is damaged."""
    from wbcap.versions import wbcap_version

    slot = machines.get(_machine_id(machine))
    entry = slot.get("huge_pages") if isinstance(slot, dict) else None
    if not isinstance(entry, dict) or entry.get("wbcap") != wbcap_version():
        return None
    on = entry.get("on")
    return on if isinstance(on, bool) else None


def apply_cached_huge_pages(machines: Mapping[str, Any], machine: Mapping[str, Any], path: Path) -> bool | None:
    """Turn huge pages off in this process where ``machine``'s cached answer says so
    (:func:`cached_huge_pages`; an answer "on" changes nothing: a process whose parent turned
    them off keeps that). Returns the answer (None: not measured here)."""
    from wbcap import huge_pages

    on = cached_huge_pages(machines, machine)
    if on is False and huge_pages.set_process_huge_pages(False):
        log.debug("transparent huge pages off for torch's tensors (measured slower on this machine, kept in %s)", path)
    return on


def machine_huge_pages(path: Path | None = None) -> bool | None:
    """:func:`cached_huge_pages` for this machine (:func:`machine_key`) from the strategy cache
    ``path`` (default :func:`cache_path`), read quietly (``wbcap doctor`` says what it holds)."""
    return cached_huge_pages(read_cache(cache_path() if path is None else path, warn=False), machine_key())


def apply_machine_huge_pages(path: Path | None = None, short_job: bool = False) -> bool | None:
    """:func:`apply_cached_huge_pages` for this machine (:func:`machine_key`) from the strategy
    cache ``path`` (default :func:`cache_path`), read quietly: called
    before a CPU pipeline loads its SMPL-X model and network, so that where huge pages were
    measured slower none of its weights get them either (the strategy's own choice comes later,
    after the load; a user trial saw 235 MB of weights on huge pages that the cache had turned
    off). Returns the answer (None: not measured here).

    ``short_job`` (a few photos, a short run, the demo: the jobs that measure no strategy) turns
    them off whatever the cache says (:func:`wbcap.huge_pages.short_job_off`), and returns False;
    a later long job in the same process turns them on again first
    (:func:`wbcap.huge_pages.end_short_job`; where a parent process turned them off they stay
    off). Huge pages pay off in a long job's steady
    state, where the same sizes are allocated call after call; a short job's allocations are all
    new, and where the kernel has to compact memory to find 2 MiB pages (its ``defrag`` mode
    ``madvise``, the default, stalls the allocating thread), that costs more than it saves: on a
    Zen 4 EPYC host, ``wbcap image`` of one person took 2.95 s with them and 2.23 s without
    (medians of six pairs, system CPU 2.2 against 1.2 s; docs/performance.md)."""
    from wbcap import huge_pages

    if short_job:
        if huge_pages.short_job_off():
            log.debug("transparent huge pages off for torch's tensors (a short job: its allocations are all new)")
        return False
    if huge_pages.end_short_job():  # (a long job after a short one in this process: as the machine measured)
        log.debug("transparent huge pages on again for torch's tensors (a long job after a short one)")
    path = cache_path() if path is None else path
    return apply_cached_huge_pages(read_cache(path, warn=False), machine_key(), path)


def measure_huge_pages(part: TunedPart, dtype: torch.dtype, choice: PartChoice, timer: Timer | None = None,
                       rounds: int = ROUNDS) -> dict[str, Any]:
    """Time ``part`` in ``choice``'s form (``fused`` or ``plain``) at its largest chunk, built
    and called with transparent huge pages off and on in this process
    (:func:`wbcap.huge_pages.set_process_huge_pages` before each build, so its weights, and before
    each call, so its activations), interleaved by ``timer``. Huge pages stay on unless off was
    :data:`HUGE_PAGES_MARGIN` faster in two timings in a row (one lucky round does not turn them
    off, as :func:`measure_part` times a change of form again). The process is left with them
    on, as :func:`~wbcap.huge_pages.huge_pages_measurable` found it (the caller applies the
    answer). Returns ``{"on", "seconds_on", "seconds_off", "part"}`` for the cache.

    Raises:
        MachineBusy: from ``timer``, as :func:`measure_part`.
    """
    from wbcap import huge_pages

    timer = timer or time_interleaved
    n = choice.chunks.pack
    x = torch.rand(n, *part.item_shape, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last)
    nets: dict[bool, nn.Module] = {}

    def call(on: bool) -> None:
        huge_pages.set_process_huge_pages(on)
        with torch.inference_mode():
            nets[on](x)

    try:
        for on in (False, True):
            huge_pages.set_process_huge_pages(on)
            nets[on] = part.build(dtype, choice.form == "fused", choice.chunks, choice.subpixel or None,
                                  choice.alternates, choice.winograd or None, choice.gemm or None)
            call(on)  # (untimed: first-call packings)
        calls = {on: (lambda on=on: call(on)) for on in (False, True)}
        seconds = timer(calls, rounds)
        if seconds[False] < (1.0 - HUGE_PAGES_MARGIN) * seconds[True]:  # (off won: timed again before it counts)
            again = timer(calls, rounds)
            seconds = {on: max(seconds[on], again[on]) for on in seconds} if again[False] < (
                1.0 - HUGE_PAGES_MARGIN) * again[True] else again
    finally:
        huge_pages.set_process_huge_pages(True)
    off_faster = seconds[False] < (1.0 - HUGE_PAGES_MARGIN) * seconds[True]
    return {"on": not off_faster, "seconds_on": seconds[True], "seconds_off": seconds[False], "part": part.name}


def few_call_build_times(part: TunedPart, dtype: torch.dtype, choice: PartChoice, onednn: bool = True,
                         fast: bool | None = None, calibrations: CalibrationCache | None = None) -> dict[str, float]:
    """Seconds to build each form ``choice`` measured (but those of :data:`COSTLY_BUILD_FORMS`)
    as a start-up for a few calls builds it (:meth:`PartChoice.for_few_calls`) and run its first
    call, on one crop's images (whose oneDNN primitives, and packings for that size, are made
    then): ``choice.form`` with its own Winograd plan and packings, the others with their
    measured chunk plans and without (:meth:`PartChoice.switched_to`), each as a load builds it
    (:func:`~wbcap.model.inference.build_form`); the int8 form from the calibration cache
    (``calibrations``' file, its weights fingerprinted again and its entry checked on a crop:
    what a load does; calibrated again, and slow, where that cache could not keep its entry, as
    every load there is; the box network's key hashes the body ResNet too, as a load where that
    ResNet does not run int8 does). A form whose build or call fails is left out, with a warning
    (a few calls then run as without build times). One build each, right after the
    measurement: ~0.15 s for a fused ResNet-50, ~0.3 s for an int8 one on the Zen 3 EPYC."""
    from wbcap.model.inference import build_form  # (the inference form builds on this module)

    times: dict[str, float] = {}
    x = torch.rand(choice.per_crop, *part.item_shape, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode(False), torch.no_grad():
        for f in choice.measured:
            if f in COSTLY_BUILD_FORMS or f not in FORMS:
                continue
            spec = replace(choice, single=None) if f == choice.form else choice.switched_to(f)
            t0 = time.perf_counter()
            try:
                module = build_form(part, dtype, onednn, spec, fast,
                                    calibrations.fresh() if calibrations is not None else None, few_calls=True)
                with torch.inference_mode():
                    module(x)
            except Exception as e:  # (only a few calls' choice depends on it: the measurement stands)
                log.warning("%s: timing the %s form's build failed (%s); a few calls run without its build time",
                            part.name, f, first_line(e))
                continue
            times[f] = time.perf_counter() - t0
    return times


def single_image_form(form: str, plan: ChunkPlan, per_image: Mapping[tuple[str, int], float],
                      first: Mapping[str, torch.Tensor]) -> tuple[str | None, ChunkPlan]:
    """Whether calls of one image should run in another form than the chosen ``form`` (one of
    :data:`SINGLE_BESIDE`): the fastest of :data:`SINGLE_FORMS` measured at one image per call (``per_image``: ``(form, images per call)
    -> seconds per image``) when faster than ``form``'s one-image calls by more than
    :data:`MARGIN` and equal to ``form``'s result on the same image within
    :data:`INVARIANCE_TOLERANCE` (``first``: each form's output on it; float32 forms only, so
    results still do not depend on the batch size). Returns ``(that form or None, the plan with
    its time for one image)``: the plan then splits batches with it (e.g. a hand network's two
    crops of one person as two one-image calls)."""
    if (form, 1) not in per_image or form not in first or form not in SINGLE_BESIDE:
        return None, plan
    alts = {f: t for (f, c), t in per_image.items() if c == 1 and f in SINGLE_FORMS and f in first
            and rel_error(first[f], first[form]) <= INVARIANCE_TOLERANCE}
    best = min(alts, key=alts.__getitem__, default=None)
    if best is None or alts[best] >= (1 - MARGIN) * per_image[form, 1]:
        return None, plan
    return best, ChunkPlan(tuple((c, alts[best] if c == 1 else t) for c, t in plan.per_image_s))


#: The forms that apply to some parts only, and which (for messages).
ONLY_FOR = MappingProxyType({
    "onnxruntime": "float32 ResNets only (exact precision, or fast on a CPU without bfloat16; with onnx and "
                   "onnxruntime installed)",
    "int8": "the fast precision's ResNets and box network only (with oneDNN's int8 convolutions)",
    "graph": "ResNets only (float32, or bfloat16 on a CPU with bfloat16 instructions; with TorchScript's oneDNN Graph "
             "fuser in torch)",
})


def form_applies(form: str, module: nn.Module, dtype: torch.dtype, fast: bool | None = None) -> bool:
    """Whether a tuned part's ``module`` computed in ``dtype`` can take ``form``: the
    onnxruntime form float32 ResNets (:func:`~wbcap.model.ort_resnet.ort_applies`), the int8
    form the fast precision's ones (:func:`~wbcap.model.int8.int8_applies`; ``fast`` as
    there), the oneDNN Graph form the ResNets (:func:`~wbcap.model.graph_resnet.graph_applies`),
    the others every part."""
    if form == "onnxruntime":
        return ort_applies(module, dtype)
    if form == "int8":
        return int8_applies(module, dtype, fast)
    if form == "graph":
        return graph_applies(module, dtype)
    return True


def default_choice(part: TunedPart, form: str = "fused", chunk: int = DEFAULT_CHUNK) -> PartChoice:
    """``form`` with at most ``chunk`` images per call, oneDNN deconvolutions: what runs when
    forced, or unmeasured."""
    return PartChoice(form, ChunkPlan.fixed(chunk), tuple(False for _ in part.transposed_convs()), part.per_crop)


# Long (about 55 lines): the cache, the busy machine and the measurement meet here.
def choose_cpu_strategy(
    parts: Mapping[str, TunedPart], dtypes: Mapping[str, torch.dtype], request: str | None = None,
    onednn: bool = True, timer: Timer | None = None, path: Path | None = None,
    busy: Callable[[], bool] | None = None, fast: Collection[str] | None = None,
    calibrations: CalibrationCache | None = None, measure: bool = True,
) -> tuple[CpuStrategy, dict[str, nn.Module]]:
    """The CPU strategy for ``parts`` computed in ``dtypes`` (part name -> dtype).

    ``fast``: the names of the parts that belong to the fast precision (the int8 form is a
    candidate for its ResNets and box network); None: those in bfloat16. (On a CPU without bfloat16 instructions
    the fast precision's parts are float32: its caller names them.)

    ``request``: see :class:`StrategyRequest` (default ``$WBCAP_CPU_STRATEGY``, else ``auto``).
    Parts not in the cache (``path``, default :func:`cache_path`) are measured
    (:func:`measure_part`) and added to it. When other processes keep the cores busy (``busy()``
    before each part, waited on for up to :data:`BUSY_WAIT_S`, or :class:`MachineBusy` from the
    measurement) the parts not measured yet run in the default form (``fused``, :data:`~wbcap.model.fused.DEFAULT_CHUNK` images per call), not
    cached, so that a later run measures them. Returns the strategy and the modules built while
    measuring (part name -> module, to be used as they are; empty for parts read or forced).
    ``timer`` and ``busy`` default to :func:`time_interleaved` and :func:`machine_busy`.
    ``calibrations``: the int8 calibration cache the parts' int8 candidates share (one per
    conversion: the file read once, a broken one reported once).
    ``measure=False`` (a short job: ``wbcap image`` of a few photos, the demo): parts not in the
    cache are not measured but run in the default form, nothing cached, with one debug line
    saying which runs will measure; an explicit ``measure`` request still measures. Measuring costs
    10-30 s with 2 cores and saves a fraction of a second on one photo (on the 2-core Xeon, model
    207: a new machine's first photo, of six people, took 27 s, 23 of them measuring).
    """
    timer = timer or time_interleaved
    busy = busy or machine_busy
    req = StrategyRequest.from_env(request)

    def is_fast(name: str) -> bool | None:  # (None: int8_applies's default, bfloat16 parts)
        return None if fast is None else name in fast

    machine = machine_key()
    default_form = "fused" if onednn else "plain"
    if req.mode == "forced":
        form = req.form if onednn or req.form == "onnxruntime" else "plain"  # (optimize_for_inference has said oneDNN is missing)

        def forced(name: str, part: TunedPart) -> str:
            return form if form_applies(form, part.module, dtypes[name], is_fast(name)) else default_form

        choices = {name: default_choice(p, forced(name, p), req.chunk or DEFAULT_CHUNK) for name, p in parts.items()}
        if form in ONLY_FOR and not any(c.form == form for c in choices.values()):
            given = (request if request is not None else os.environ.get(ENV_STRATEGY, "")).strip()
            precision = "these parts' precision" if not dtypes else ", ".join(
                sorted({str(d).removeprefix("torch.") for d in dtypes.values()}))
            log.warning("%s=%s: the %s form runs %s; every part of this network (%s) runs %s", ENV_STRATEGY, given,
                        form, ONLY_FOR[form], precision, default_form)
        # (the forms are forced; huge pages as measured here, or off for a short job)
        apply_machine_huge_pages(path, short_job=not measure)
        return CpuStrategy(choices, "forced", machine), {}
    path = cache_path() if path is None else path
    # (a short job, which measures nothing, says a stale or damaged cache at debug level only: it
    # would say "measuring again" on every photo of one who never runs a long job, a review)
    loud = measure or req.mode != "auto"
    machines = read_cache(path, warn=loud) if req.mode == "auto" else {}
    from wbcap import huge_pages

    huge_on = apply_cached_huge_pages(machines, machine, path)
    chosen: dict[str, PartChoice] = {}
    built: dict[str, nn.Module] = {}
    new: dict[str, PartChoice] = {}
    unmeasured: list[str] = []
    deferred: list[str] = []  # (not measured: a short job, measure=False)
    measuring = False
    t0 = time.perf_counter()

    def usable(pid: str, name: str, part: TunedPart, fast_part: bool | None, warn: bool = True) -> PartChoice | None:
        warn = warn and loud
        cached = _cached_choice(machines, machine, pid, quiet=not warn)  # (quiet: exact's entry, for fast)
        say = log.warning if warn else log.debug
        for form in (cached.form, cached.single) if cached is not None else ():
            if form is not None and not form_applies(form, part.module, dtypes[name], fast_part):
                say("ignoring the cached CPU strategy for %s (the %s form does not apply to it); measuring again", pid,
                    form)
                return None
        if cached is not None and cached.per_crop != part.per_crop:
            say("ignoring the cached CPU strategy for %s (%d images per crop, where the part takes %d); measuring "
                "again", pid, cached.per_crop, part.per_crop)
            return None
        wanted = (len(part.transposed_convs()), len(part.winograd_convs(dtypes[name])))
        if cached is not None and (len(cached.subpixel), len(cached.winograd)) != wanted:
            say("ignoring the cached CPU strategy for %s (%d sub-pixel flags for %d deconvolutions, %d Winograd plans "
                "for %d 3x3 layers); measuring again", pid, len(cached.subpixel), wanted[0], len(cached.winograd),
                wanted[1])
            return None
        return cached

    for name, part in parts.items():
        pid = _part_id(part, dtypes[name], onednn, is_fast(name))
        cached = usable(pid, name, part, is_fast(name))
        if cached is not None:
            chosen[name] = cached
            continue
        # a fast part that is not exact's (a float32 part with the int8 candidate): exact's
        # cached choice spares measuring the float forms again
        exact_pid = _part_id(part, dtypes[name], onednn, False)
        baseline = usable(exact_pid, name, part, False, warn=False) if exact_pid != pid else None
        if not measure and req.mode == "auto":  # (a short job: exact's measured float form where there is one)
            if baseline is None:
                deferred.append(name)
            chosen[name] = baseline if baseline is not None else default_choice(part, default_form)
            continue
        if not unmeasured and _quiet_within(busy, BUSY_WAIT_S):
            if not measuring:  # (once: a part measured while others took the CPU is not in new; a trial saw it twice)
                measuring = True
                log.info("measuring the CPU inference strategy for this machine (once; kept in %s)", path)
            if baseline is not None:
                log.info("%s: timing the int8 form against the %s form cached for the exact precision", name,
                         baseline.form)
            try:
                chosen[name], built[name] = measure_part(part, dtypes[name], onednn, timer=timer, fast=is_fast(name),
                                                         baseline=baseline, calibrations=calibrations)
            except MachineBusy:
                pass
            else:
                if busy():  # others took the cores during the measurement: used now, not kept
                    log.warning("other processes took the CPU while %s was measured; its choice (%s) is used but not "
                                "cached", name, chosen[name].form)
                else:
                    new[pid] = chosen[name]
                continue
        unmeasured.append(name)
        chosen[name] = default_choice(part, default_form)
    huge_record = None
    # (the heaviest part running in a float form, cached or measured now: where a trial was left
    # out (busy, failed), the next long job tries again)
    floats = [n for n in parts if n not in unmeasured and n not in deferred and chosen[n].form in ("fused", "plain")]
    if floats and huge_on is None and loud and huge_pages.huge_pages_measurable() and _quiet_within(busy, BUSY_WAIT_S):
        name = max(floats, key=lambda n: sum(w.numel() for w in parts[n].module.parameters()))  # (the most weights)
        try:
            huge_record = measure_huge_pages(parts[name], dtypes[name], chosen[name], timer)
        except MachineBusy:
            huge_record = None
        except Exception as e:  # (an optional trial: whatever goes wrong in its two extra builds only drops it)
            log.warning("could not time huge pages on or off for %s (%s); they stay on, and a later run tries again",
                        name, first_line(e))
            huge_record = None
        if huge_record is not None and busy():  # (others took the cores: not kept, a later run tries again)
            log.warning("other processes took the CPU while huge pages were timed on and off; they stay on, and a "
                        "later run times them again")
            huge_record = None
        if huge_record is not None:
            if not huge_record["on"]:
                huge_pages.set_process_huge_pages(False)
            log.info("transparent huge pages %s for torch's tensors here (%s: %.1f ms with, %.1f ms without)",
                     "on" if huge_record["on"] else "off", name, 1e3 * huge_record["seconds_on"],
                     1e3 * huge_record["seconds_off"])
    selection_s = time.perf_counter() - t0 if new or unmeasured else 0.0
    if deferred:  # (debug: said on every photo of one who never runs a long job, it would be noise)
        log.debug("the CPU inference strategy%s is not measured on this machine yet; this short job runs the %s form "
                 "(a longer job measures it, once, 10-30 s: `wbcap run` of more frames, `wbcap image` of more photos, "
                 "`wbcap bench`)",
                 "" if len(deferred) == len(parts) else f" of {', '.join(deferred)}", default_form)
    if new or huge_record is not None:
        write_cache(path, machine, new, read_warned=req.mode == "auto", huge_pages=huge_record)
    if new:
        log.info("CPU inference strategy measured in %.1f s: %s", selection_s, ", ".join(
            f"{n} {c.form}" + (f" (Winograd {c.winograd_used()}/{len(c.winograd)})" if c.winograd_used() else "")
            + (f" (one-image calls {c.single})" if c.single else "") for n, c in chosen.items()))
    if unmeasured:
        log.warning("other processes keep the CPU busy: the inference strategy of %s is not measured now (%s, %d "
                    "images per call); a later run will measure it", ", ".join(unmeasured), default_form,
                    DEFAULT_CHUNK)
    kinds = [k for k, flag in (("cache", len(chosen) > len(new) + len(unmeasured) + len(deferred)), ("measured", bool(new)),
                               ("default", bool(unmeasured or deferred))) if flag]
    return CpuStrategy(chosen, "+".join(kinds), machine, selection_s, str(path)), built
