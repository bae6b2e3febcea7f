"""`wbcap bench`: every stage timed, FLOPs equal FlopCounterMode's, ratios consistent, table and JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from wbcap.bench.ceiling import (
    CEILING_OF,
    FLOP_GROUPS,
    ceiling_precisions,
    count_flops,
    matmul_ceiling,
    paired_runs,
    row_ceiling,
)
from wbcap.bench.options import STAGES, BenchOptions, parse_batch_sizes, parse_precisions
from wbcap.bench.stages import run_bench
from wbcap.cli.bench import bench
from wbcap.config import ModelConfig
from wbcap.errors import InputError
from wbcap.model.fused import bf16_supported
from wbcap.model.regressor import WholeBodyRegressor
from wbcap.testing.checkpoints import random_network

SMALL = dict(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18)
# GFLOPs per crop of the full-size model (network + SMPL-X), by module group.
FULL_GFLOPS = {"hand_backbone": 21.35, "body_backbone": 8.01, "box_net": 2.90, "face_backbone": 2.66,
               "heads": 0.77, "smplx": 0.05}
FULL_TOTAL = 35.75e9
# The matmul ceiling at 256 (the smallest size the report allows) instead of 2048: the tests check
# how the report is built, not the machine's rate (about 3 s less per run).
MATMUL = ("--matmul-size", "256")


def invoke(*args: str):
    result = CliRunner().invoke(bench, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def flop_count(regressor: torch.nn.Module) -> int:
    """FlopCounterMode total for one 512x384 crop, counted here independently of wbcap.bench
    (RoIAlign outside the counter: resampling, not model arithmetic)."""
    from torch.utils._python_dispatch import _disable_current_modes

    def uncounted(fn):
        def run(*args, **kwargs):
            with _disable_current_modes():
                return fn(*args, **kwargs)

        return run

    x = torch.rand(1, 3, 512, 384, generator=torch.Generator().manual_seed(1))
    counter = FlopCounterMode(display=False)
    saved = [(m, m.roi_align) for m in (regressor.net.hand_roi_net, regressor.net.face_roi_net)]
    for m, fn in saved:
        m.roi_align = uncounted(fn)
    try:
        with counter, torch.inference_mode():
            regressor(x)
    finally:
        for m, fn in saved:
            m.roi_align = fn
    return counter.get_total_flops()


def check_report(rep: dict, batch_sizes: list[int], precisions: tuple[str, ...] = ("exact", "fast")) -> None:
    for name in STAGES:
        s = rep["stages"][name]
        assert s["median_s"] > 0 and s["per_item_s"] > 0 and s["throughput"] > 0, name
        assert all(r > 0 for r in s["runs_s"]) and s["items"] >= 1, name
        assert math.isclose(s["throughput"], s["items"] / s["median_s"], rel_tol=1e-9)
    assert rep["stages"]["decode"]["items"] == rep["input"]["frames"]
    assert rep["stages"]["regressor"]["throughput_unit"] == "crops/s"

    ceilings = rep["ceilings"]
    assert {"fp32", "bf16"} | {CEILING_OF[p] for p in precisions} <= set(ceilings)
    assert all(c["flops_per_s"] > 0 and c["size"] >= 256 for c in ceilings.values())
    per_crop = rep["flops"]["per_crop"]
    assert [(b["precision"], b["batch_size"]) for b in rep["batches"]] == [(p, n) for p in precisions for n in batch_sizes]
    for b in rep["batches"]:
        assert b["crops_per_s"] > 0
        assert math.isclose(b["crops_per_s"], b["batch_size"] / b["median_s"], rel_tol=1e-9)
        assert math.isclose(b["flops_per_s"], b["crops_per_s"] * per_crop, rel_tol=1e-9)
        no_bf16 = b["precision"] == "fast" and not bf16_supported()  # (fast runs float32 and int8 there)
        assert b["ceiling_precision"] == ("fp32" if no_bf16 else CEILING_OF[b["precision"]])
        # a row's probes use the GEMM library its ceiling in the table was measured with
        assert b["ceiling_kernel"] == ceilings[b["ceiling_precision"]]["kernel"]
        assert b["ceiling_flops_per_s"] == pytest.approx(sum(b["ceiling_before_after_flops_per_s"]) / 2)
        assert min(b["ceiling_before_after_flops_per_s"]) > 0
        assert math.isclose(b["ratio"], b["flops_per_s"] / b["ceiling_flops_per_s"], rel_tol=1e-9)
        probes = b["ceiling_probes_flops_per_s"]
        assert len(probes) == len(b["runs_s"]) + 1 == len(b["ratios_paired"]) + 1
        assert b["ceiling_before_after_flops_per_s"] == [probes[0], probes[-1]]
        for i, (run, r) in enumerate(zip(b["runs_s"], b["ratios_paired"])):
            pair = (probes[i] + probes[i + 1]) / 2
            assert math.isclose(r, b["batch_size"] * per_crop / run / pair, rel_tol=1e-9)
        assert b["ratio_paired"] == pytest.approx(float(np.median(b["ratios_paired"])))
        assert b["ratio_best"] == pytest.approx(b["batch_size"] * per_crop / b["min_s"] / max(probes))
        assert b["ceiling_size"] >= 256
        for p, c in ceilings.items():
            assert math.isclose(b["ratios"][p], b["flops_per_s"] / c["flops_per_s"], rel_tol=1e-9)
    exact_rows = {b["batch_size"]: b for b in rep["batches"] if b["precision"] == "exact"}
    for b in rep["batches"]:  # the other precisions' speed-up over exact, batch size by batch size
        if b["precision"] == "exact" or not exact_rows:
            assert "vs_exact" not in b and "vs_exact_paired" not in b
            continue
        ref = exact_rows[b["batch_size"]]
        assert b["vs_exact"] == pytest.approx(b["crops_per_s"] / ref["crops_per_s"])
        if b["ceiling_precision"] == ref["ceiling_precision"]:  # (same probe: drift cancelled)
            assert b["vs_exact_paired"] == pytest.approx(b["ratio_paired"] / ref["ratio_paired"])
        else:  # (two dtypes' probes: each row's paired ratio times its dtype's highest probe in the run)
            def highest(dtype):
                return max(v for r in rep["batches"] if r["ceiling_precision"] == dtype
                           for v in r["ceiling_probes_flops_per_s"])

            assert b["vs_exact_paired"] == pytest.approx(b["ratio_paired"] * highest(b["ceiling_precision"])
                                                         / (ref["ratio_paired"] * highest(ref["ceiling_precision"])))
            assert b["vs_exact_paired_via"] == f"highest probes {b['ceiling_precision']}/{ref['ceiling_precision']}"
    first = [b for b in rep["batches"] if b["precision"] == precisions[0]]
    assert rep["stages"]["regressor"]["throughput"] == max(b["crops_per_s"] for b in first)
    assert sum(rep["flops"]["breakdown"].values()) == pytest.approx(per_crop)
    assert rep["estimate"]["frames_per_s"] > 0
    assert rep["memory"]["peak_rss_bytes"] > 0
    assert rep["device"]["type"] == "cpu" and rep["device"]["name"]
    for pkg in ("torch", "wbcap", "numpy", "av", "opencv"):
        assert rep["versions"][pkg], pkg
    assert rep["settings"]["precision"] == precisions[0] and rep["settings"]["precisions"] == list(precisions)
    others = [p for p in precisions if p != "exact"]
    if "exact" in precisions and others:
        assert set(rep["precision_error"]) == set(others)
        for err in rep["precision_error"].values():
            # the fast mode's bfloat16 ResNets move the outputs a little, not a lot (0 for a checkpoint
            # whose heads are constant, like the demo's "upright" one)
            assert 0 <= err["max_vertex_distance_m"] < 0.05
            assert 0 <= err["max_box_corner_distance_px"] < 5
    else:
        assert "precision_error" not in rep


@pytest.mark.slow  # the whole benchmark, two precisions (count_flops: test_full_config_flops_per_crop)
def test_small_json_matches_flop_counter(body_layer):
    result = invoke("--config", "small", "--device", "cpu", "--json", "--batch-sizes", "1,2", "--repeats", "1",
                    "--warmup", "0", "--frames", "4", *MATMUL)
    rep = json.loads(result.stdout)
    check_report(rep, [1, 2])
    assert rep["settings"]["repeats"] == 1
    assert {c["size"] for c in rep["ceilings"].values()} == {256}
    model = rep["model"]
    assert model["weights"] == "random" and model["config_name"] == "small" and model["checkpoint"] is None
    assert model["body_model_synthetic"] is True  # the isolated user folder has no SMPL-X file
    assert (model["config"]["backbone_depth"], model["config"]["hand_backbone_depth"]) == (18, 18)
    assert rep["input"]["synthetic"] is True and (rep["input"]["width"], rep["input"]["height"]) == (320, 240)

    # the same network (small config, synthetic SMPL-X of the same size), counted here
    regressor = WholeBodyRegressor(random_network(ModelConfig(**SMALL), seed=0, upright=True), body_layer).eval()
    assert rep["flops"]["per_crop"] == flop_count(regressor)
    assert rep["flops"]["per_crop"] == pytest.approx(18.24e9, rel=0.01)
    assert rep["flops"]["breakdown"]["smplx"] > 0 and rep["flops"]["breakdown"]["other"] == 0
    # random weights with live heads: the bfloat16 ResNets do change the mesh; without bfloat16
    # instructions fast runs float32 (the int8 form is not forced here): exact's mesh
    if bf16_supported():
        assert rep["precision_error"]["fast"]["max_vertex_distance_m"] > 0
    else:
        assert rep["precision_error"]["fast"]["max_vertex_distance_m"] == 0


@pytest.mark.slow  # full-suite check of the FLOP counts
def test_small_config_flops_equal_flop_counter(small_net, body_layer):
    """count_flops on the small network: the fast loop's check (the full-size one is slow)."""
    regressor = WholeBodyRegressor(small_net, body_layer).eval()
    flops = count_flops(regressor)
    assert flops["per_crop"] == flop_count(regressor)  # counted here independently
    assert flops["per_crop"] == pytest.approx(18.24e9, rel=0.01)
    assert set(flops["breakdown"]) == set(FLOP_GROUPS) and flops["breakdown"]["other"] == 0
    assert sum(flops["breakdown"].values()) == pytest.approx(flops["per_crop"])
    assert flops["breakdown"]["hand_backbone"] > flops["breakdown"]["body_backbone"] > flops["breakdown"]["smplx"] > 0
    assert flops["network_per_crop"] == pytest.approx(flops["per_crop"] - flops["breakdown"]["smplx"])


def test_the_report_names_the_resnets_and_a_narrow_width():
    from conftest import MICRO_CKPT

    from wbcap.bench.stages import resnets_line

    assert resnets_line(ModelConfig()) == "body R50, hand R50, face R18"
    assert resnets_line(ModelConfig(**MICRO_CKPT)) == "body R18, hand R18, face R18, width 16"


def test_matmul_ceiling_and_the_dtypes_measured(monkeypatch):
    """The ceiling on its own (the whole benchmark's runs are slow tests)."""
    cpu = torch.device("cpu")
    assert ceiling_precisions(cpu) == ("fp32", "bf16")
    # the rows' ceiling: their precision's dtype; fast's fp32 where the CPU has no bfloat16
    import wbcap.model.fused as fused

    for has_bf16, fast_ceiling in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(fused, "bf16_supported", lambda has_bf16=has_bf16: has_bf16)
        assert row_ceiling("fast", cpu, ("fp32", "bf16")) == fast_ceiling
        assert row_ceiling("exact", cpu, ("fp32", "bf16")) == "fp32"
        assert row_ceiling("fast", torch.device("cuda"), ("fp32", "bf16")) == "bf16"
        assert row_ceiling("fp16", cpu, ("fp32", "bf16")) == "fp32"  # (not measured)
    assert ceiling_precisions(cpu, ("exact", "fast", "fp16")) == ("fp32", "bf16", "fp16")
    assert ceiling_precisions(torch.device("cuda"), ("exact",)) == ("fp32", "tf32", "bf16", "fp16")
    c = matmul_ceiling(cpu, "fp32", size=256, repeats=2, warmup=0)
    assert (c["size"], c["repeats"], c["dtype"]) == (256, 2, "torch.float32")
    assert c["kernel"] in ("matmul", "onednn")
    assert c["median_s"] > 0 and c["flops_per_s"] == pytest.approx(2 * 256**3 / c["median_s"])


def test_the_cpu_ceiling_is_the_faster_gemm_library(monkeypatch):
    """MKL's float32 ``a @ b`` runs AVX2 code on AMD CPUs (half of a Zen 5's AVX-512 rate): the
    probe times oneDNN's packed inner product too, interleaved, and keeps the faster, for float32
    and bfloat16 only; both compute the same product, the oneDNN one through oneDNN."""
    import wbcap.bench.ceiling as ceiling_mod
    import wbcap.model.fused as fused
    import wbcap.model.strategy as strategy

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    onednn = ceiling_mod.gemm_call("onednn", a, b)
    with torch.inference_mode(), torch.profiler.profile() as prof:
        torch.testing.assert_close(onednn(), a @ b.T, rtol=1e-5, atol=1e-4)
    assert "mkldnn::_linear_pointwise" in {e.key for e in prof.key_averages()}
    with torch.inference_mode():
        torch.testing.assert_close(ceiling_mod.gemm_call("matmul", a, b)(), a @ b)

    seconds = {"matmul": 2.0, "onednn": 1.0}
    timed = []

    def fake_interleaved(calls, rounds):
        timed.append(sorted(calls))
        return dict(seconds)

    monkeypatch.setattr(strategy, "time_interleaved", fake_interleaved)
    monkeypatch.setattr(fused, "bf16_supported", lambda: True)
    assert ceiling_mod.fastest_cpu_kernel(a, b) == "onednn"
    assert timed == [["matmul", "onednn"]]
    seconds["matmul"] = 0.5
    assert ceiling_mod.fastest_cpu_kernel(a, b) == "matmul"
    seconds["matmul"] = 2.0
    assert ceiling_mod.fastest_cpu_kernel(a.half(), b.half()) == "matmul"  # no oneDNN fp16 product asked for
    monkeypatch.setattr(fused, "bf16_supported", lambda: False)  # PackedLinear would run F.linear
    assert ceiling_mod.fastest_cpu_kernel(a.bfloat16(), b.bfloat16()) == "matmul"
    monkeypatch.setattr(fused, "bf16_supported", lambda: True)
    real_gemm = ceiling_mod.gemm_call

    def no_onednn(kernel, a, b):
        if kernel == "onednn":
            raise RuntimeError("could not create a primitive descriptor")
        return real_gemm(kernel, a, b)

    monkeypatch.setattr(ceiling_mod, "gemm_call", no_onednn)
    assert ceiling_mod.fastest_cpu_kernel(a, b) == "matmul"
    monkeypatch.setattr(ceiling_mod, "gemm_call", real_gemm)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert ceiling_mod.fastest_cpu_kernel(a, b) == "matmul"
    assert len(timed) == 2  # the cases without a oneDNN product timed nothing


def test_the_ceiling_probe_times_its_chosen_kernel(monkeypatch):
    """The probe's timed calls run the kernel chosen at set-up, which the ceiling reports; a probe
    given a kernel (a row's, from the run's ceiling table) uses it without choosing again."""
    import wbcap.bench.ceiling as ceiling_mod

    used = []
    monkeypatch.setattr(ceiling_mod, "fastest_cpu_kernel", lambda a, b: "onednn")
    real = ceiling_mod.gemm_call

    def recording(kernel, a, b):
        call = real(kernel, a, b)

        def run():
            used.append(kernel)
            return call()

        return run

    monkeypatch.setattr(ceiling_mod, "gemm_call", recording)
    c = matmul_ceiling(torch.device("cpu"), "fp32", size=256, repeats=2, warmup=0)
    assert c["kernel"] == "onednn" and used == ["onednn"] * 2

    def not_again(a, b):
        raise AssertionError("chose again")

    monkeypatch.setattr(ceiling_mod, "fastest_cpu_kernel", not_again)
    used.clear()
    probe = ceiling_mod.CeilingProbe(torch.device("cpu"), "fp32", 256, kernel="matmul")
    probe(1, warmup=0)
    assert probe.kernel == "matmul" and used == ["matmul"]
    with pytest.raises(ValueError, match="kernel 'mkl'"):
        ceiling_mod.CeilingProbe(torch.device("cpu"), "fp32", 256, kernel="mkl")


def test_one_slow_timing_does_not_shrink_the_ceiling_matmul(monkeypatch):
    """The size is chosen from the fastest of several small matmuls: one stalled timing (another
    process on the core) kept the 2048 matmul; a dtype slow throughout (fp16 without hardware
    support) still gets a smaller one."""
    import wbcap.bench.ceiling as ceiling_mod

    small = 2 * 256**3
    monkeypatch.setattr(ceiling_mod, "time_call", lambda fn, repeats, warmup, sync=None: [3.0] + [small / 300e9] * (repeats - 1))
    assert ceiling_mod.CeilingProbe(torch.device("cpu"), "fp32", 2048, kernel="matmul").size == 2048
    monkeypatch.setattr(ceiling_mod, "time_call", lambda fn, repeats, warmup, sync=None: [small / 1e8] * repeats)
    assert ceiling_mod.CeilingProbe(torch.device("cpu"), "fp16", 2048).size == 256
    # float32 is not taken below 2048 (every CPU has it in hardware; a busy machine shrank it to 512: an
    # API user's trial), a larger size still is, towards 2048
    assert ceiling_mod.CeilingProbe(torch.device("cpu"), "fp32", 2048, kernel="matmul").size == 2048
    assert ceiling_mod.CeilingProbe(torch.device("cpu"), "fp32", 8192, kernel="matmul").size == 2048
    # so is bfloat16 where oneDNN runs it in hardware (a busy moment shrank it to 512 on a Zen 4: 1800 % rows)
    import wbcap.model.fused as fused

    for native, size in ((True, 2048), (False, 256)):
        monkeypatch.setattr(fused, "bf16_supported", lambda native=native: native)
        assert ceiling_mod.CeilingProbe(torch.device("cpu"), "bf16", 2048, kernel="matmul").size == size


def test_a_probe_times_its_matmuls_after_untimed_ones(monkeypatch):
    """Right after other work the first two matmuls map fresh memory for their results (page
    faults, ~10 % slower): a probe's timed matmuls come after two untimed ones, so the ceiling is
    the steady one the network is compared with."""
    import wbcap.bench.ceiling as ceiling_mod

    probe = ceiling_mod.CeilingProbe(torch.device("cpu"), "fp32", 256)
    calls = []
    monkeypatch.setattr(ceiling_mod, "gemm_call", lambda kernel, a, b: "gemm")

    def fake_time_call(fn, repeats, warmup, sync=None):
        calls.append((repeats, warmup))
        # a faulting first two (slow) and steady ones after them
        seconds = [2.0, 2.0] + [1.0] * repeats
        return seconds[warmup:warmup + repeats]

    monkeypatch.setattr(ceiling_mod, "time_call", fake_time_call)
    assert ceiling_mod.WARMUP_AFTER_OTHER_WORK == 2
    assert probe(3) == pytest.approx(probe.flops / 1.0)
    assert calls == [(3, 2)]


def test_paired_runs_pair_each_call_with_the_ceilings_around_it(monkeypatch):
    """A fake clock: the call and the matmuls take known times, the machine halves its speed
    after the second timed call; each call's ratio uses the two probes around it only."""
    clock = {"t": 0.0, "speed": 1.0, "calls": 0}

    class Probe:
        def __call__(self, repeats=3):
            return 1000.0 * clock["speed"]  # FLOP/s now

    def call():
        clock["calls"] += 1
        clock["t"] += 0.5 / clock["speed"]  # 50 FLOPs at 100 FLOP/s when fast
        if clock["calls"] == 3:  # a warm-up and two timed calls, then slow
            clock["speed"] = 0.5

    import wbcap.bench.timing as timing_mod

    monkeypatch.setattr(timing_mod.time, "perf_counter", lambda: clock["t"])
    out = paired_runs(call, 50.0, Probe(), repeats=4, warmup=1)
    monkeypatch.undo()
    assert out["runs_s"] == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert out["ceilings_flops_per_s"] == pytest.approx([1000, 1000, 500, 500, 500])
    # 100 FLOP/s against 1000 while fast, 50 against 500 when slow: 10 % throughout, except the
    # call during which the speed changed (its probes 1000 and 500)
    assert out["ratios"] == pytest.approx([0.1, 100 / 750, 0.1, 0.1])


@pytest.mark.slow  # full-size network
def test_full_config_flops_per_crop(body_layer):
    regressor = WholeBodyRegressor(random_network(ModelConfig(), seed=0), body_layer).eval()
    flops = count_flops(regressor)
    assert flops["per_crop"] == flop_count(regressor)  # counted here independently
    assert flops["per_crop"] == pytest.approx(FULL_TOTAL, rel=0.05)
    for group, gflops in FULL_GFLOPS.items():
        assert flops["breakdown"][group] / 1e9 == pytest.approx(gflops, rel=0.05, abs=0.01), group
    assert set(flops["breakdown"]) == set(FLOP_GROUPS)
    assert flops["network_per_crop"] == pytest.approx(flops["per_crop"] - flops["breakdown"]["smplx"])


@pytest.mark.slow  # the whole benchmark, two precisions
def test_table_without_json_and_json_out(tmp_path, micro_ckpt):
    out = tmp_path / "bench.json"
    result = invoke("--checkpoint", micro_ckpt, "--device", "cpu", "--batch-sizes", "1", "--repeats", "1",
                    "--warmup", "0", "--frames", "4", "--json-out", out, *MATMUL)
    text = result.stdout
    assert not text.lstrip().startswith("{")
    fast_ceiling = "% bf16" if bf16_supported() else "rows against the fp32 ceiling, not bf16"
    for word in ("Stages", *STAGES, "crops/s", "frames/s", "GFLOP/s", "% fp32", fast_ceiling, "Matmul ceiling",
                 "fast vs exact", "max vertex distance", "x exact", "crops/s against exact's",
                 "hand backbone", "peak RSS", "synthetic SMPL-X"):
        assert word in text, word
    rep = json.loads(out.read_text())
    check_report(rep, [1])
    assert rep["input"]["frames"] == 4
    assert rep["model"]["weights"] == "checkpoint" and rep["model"]["checkpoint"] == str(micro_ckpt)
    # the model line whole, however long the checkpoint's path (the table is 120 columns wide)
    model_line = next(line for line in text.splitlines() if line.startswith("model: "))
    assert str(micro_ckpt) in model_line and model_line.endswith("synthetic SMPL-X (real model not found)")
    # a header ceiling measured in a busy moment (107 GFLOP/s against the rows' 175-227: an audit) is said to be
    import io

    from rich.console import Console

    from wbcap.bench.report import print_report

    probes = [v for b in rep["batches"] if b["ceiling_precision"] == "fp32" for v in b["ceiling_probes_flops_per_s"]]
    rep["ceilings"]["fp32"]["flops_per_s"] = 0.5 * min(probes)
    printed = io.StringIO()
    print_report(rep, Console(file=printed, width=120))
    assert (f"fp32: this ceiling was measured while the machine was slower than during the rows (their probes: "
            f"{min(probes) / 1e9:.4g}-{max(probes) / 1e9:.4g} GFLOP/s") in printed.getvalue(), printed.getvalue()


def test_a_row_far_above_its_ceiling_says_the_ceiling_was_mismeasured():
    """`--matmul-size 64 --warmup 0` reported "30727 %" of the ceiling without a word: an exact
    (bf16, fp16) row over IMPLAUSIBLE_RATIO of its own dtype's ceiling gets a note; fast's rows,
    which may run int8 convolutions at twice the fp32 rate (1.6-1.9x on the Zen 3 EPYC), do not."""
    from wbcap.bench.stages import IMPLAUSIBLE_RATIO, implausible_ratio_note

    row = {"precision": "exact", "batch_size": 2, "ceiling_precision": "fp32", "ceiling_size": 256,
           "ratio_paired": 307.27}
    assert implausible_ratio_note(row) == (
        "exact, batch size 2: 30727% of the fp32 ceiling, more than the device can do: its 256x256 matmul measured "
        "overheads, not the device's rate; measure it with matmul_size 2048 (the default) or more")
    assert implausible_ratio_note({**row, "ratio_paired": 1.06}) is None  # (Winograd layers)
    assert implausible_ratio_note({**row, "ratio_paired": IMPLAUSIBLE_RATIO}) is None
    for other in ({"precision": "fast"}, {"precision": "fast", "ceiling_precision": "bf16"},
                  {"precision": "bf16", "ceiling_precision": "fp32"}):
        assert implausible_ratio_note({**row, **other, "ratio_paired": 1.9}) is None, other
    assert implausible_ratio_note({**row, "precision": "bf16", "ceiling_precision": "bf16"}) is not None


@pytest.mark.slow  # real video end to end
def test_video_bf16(shared_dir):
    video = shared_dir / "media" / "vtest.avi"
    if not video.is_file():
        pytest.skip("vtest.avi is absent")
    # (bf16 autocast where the CPU has bfloat16; without, it is emulated, 11 s a crop on the Zen 1
    # EPYC, and the fast precision stands in)
    precision = "bf16" if bf16_supported() else "fast"
    result = invoke("--config", "small", "--device", "cpu", "--json", "--batch-sizes", "1", "--repeats", "1",
                    "--warmup", "0", "--frames", "6", "--video", video, "--precision", precision, *MATMUL)
    rep = json.loads(result.stdout)
    check_report(rep, [1], precisions=(precision,))
    assert rep["input"] == {"video": str(video), "synthetic": False, "width": 768, "height": 576, "frames": 6}
    assert rep["stages"]["detect"]["size"] == [768, 576]


def test_bad_options():
    assert parse_batch_sizes("4, 1,2,2") == (1, 2, 4)
    for bad in ("", "0", "a,b", "1,-2", "1025", "99999999999999999999"):  # (the large: OverflowError, MemoryError)
        with pytest.raises(ValueError):
            parse_batch_sizes(bad)
    assert parse_batch_sizes("1024") == (1024,)
    with pytest.raises(InputError, match="exclude"):
        run_bench(BenchOptions(config="small", checkpoint="x.pth", device="cpu"))
    result = CliRunner().invoke(bench, ["--config", "small", "--batch-sizes", "0"])
    assert result.exit_code == 2 and "batch sizes" in result.output
    for size in ("big", "8x8", "100000x100000", "17000x16", "4097x16"):  # (the large ones: MemoryError / libx264)
        result = CliRunner().invoke(bench, ["--config", "small", "--frame-size", size])
        assert result.exit_code == 2 and "use WIDTHxHEIGHT, e.g. 320x240 (16 to 4096 each)" in result.output, size
    assert parse_precisions("fast, exact,fp32,fast") == ("fast", "exact")
    for bad in ("", ",", "int8", "exact,fp64"):
        with pytest.raises(ValueError):
            parse_precisions(bad)
    result = CliRunner().invoke(bench, ["--config", "small", "--precision", "int8"])
    assert result.exit_code == 2 and "exact, fast, bf16, fp16" in result.output


def test_json_out_is_never_an_input(tmp_path):
    """--json-out naming the checkpoint, the video or the detector model (by any path) is refused
    in one line before anything is timed, and the file is left as it was."""
    ckpt = tmp_path / "ck.pth.tar"
    ckpt.write_bytes(b"weights")
    link = tmp_path / "other-name.pth.tar"
    link.symlink_to(ckpt)
    from wbcap.cli import cli

    for flag in ("--checkpoint", "--video", "--detector-model"):
        for mode in ([], ["--detect-only"]):  # (--detect-only overwrote the checkpoint: a user trial)
            result = CliRunner().invoke(cli, ["bench", flag, str(ckpt), "--json-out", str(link), "--device", "cpu",
                                              *mode])
            assert result.exit_code == 2, (flag, mode, result.output)
            assert f"is also the input {flag}" in result.output and "Traceback" not in result.output, (flag, mode)
            assert ckpt.read_bytes() == b"weights"
    # the SMPL-X model of --body-models, and the checkpoint $WBCAP_WEIGHTS names, with --detect-only too
    model = tmp_path / "bm" / "smplx" / "SMPLX_NEUTRAL.npz"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"model")
    for args, env, kept in ((["--body-models", str(tmp_path / "bm"), "--json-out", str(model)], {}, model),
                            (["--json-out", str(link)], {"WBCAP_WEIGHTS": str(ckpt)}, ckpt)):
        result = CliRunner().invoke(cli, ["bench", "--detect-only", "--device", "cpu", *args], env=env)
        assert result.exit_code == 2 and "would be overwritten" in result.output, (args, result.output)
        assert kept.read_bytes() in (b"model", b"weights")
    # a file no flag named is not said to be a flag's (a user trial: "also the input --detector-model")
    assert "is also the checkpoint wbcap image uses (" in result.output and "--checkpoint" not in result.output
    result = CliRunner().invoke(cli, ["bench", "--config", "small", "--json-out", ""])
    assert result.exit_code == 2 and "'--json-out': an empty path; name a file or folder" in result.output


def test_the_report_is_printed_before_json_out_is_written(tmp_path, monkeypatch):
    """A --json-out that fails when written (the disk filled during the timing) costs no
    measurement: the report is on stdout first, then one line names the file, exit 2."""
    import errno

    import wbcap.atomic as atomic
    import wbcap.bench.stages as stages
    from wbcap.cli import cli

    monkeypatch.setattr(stages, "run_bench", lambda opts, progress=None: {"timed": "minutes of it"})

    def full(path, text, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(atomic, "atomic_write_text", full)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["bench", "--config", "small", "--json", "--json-out", str(out)])
    assert result.exit_code == 2 and '"timed": "minutes of it"' in result.stdout, result.output
    assert "No space left on device" in result.output and "--json-out" in result.output and not out.exists()


def test_registered_in_cli_group():
    import click

    from wbcap.cli import SUBCOMMANDS, cli

    assert "bench" in SUBCOMMANDS, "`bench` is not registered in wbcap.cli"
    module, attr, _ = SUBCOMMANDS["bench"]
    assert (module, attr) == ("wbcap.cli.bench", "bench")
    assert cli.get_command(click.Context(cli), "bench") is bench
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "bench" in result.output.split("Commands")[-1]


def test_short_strategy_names_forms_and_the_rewritten_layers():
    from wbcap.bench.report import short_strategy

    parts = {"body_backbone": "fused 4 winograd 13/13", "hand_backbone": "fused 4+4", "face_backbone": "plain 1",
             "box_net": "fused 2 subpixel 1/3"}
    assert short_strategy(parts) == "fused 4w/4+4/p1/2s"
    assert short_strategy({**parts, "box_net": "fused 2 subpixel 2/3 gemm 1/3"}) == "fused 4w/4+4/p1/2sg"
    assert short_strategy(None) == "-"
    one = {**parts, "hand_backbone": "fused 2+1+1 winograd 7/13 single onnxruntime"}  # (one-image calls: onnxruntime)
    assert short_strategy(one) == "fused 4w/2+1+1w(o1)/p1/2s"
    graph = {**parts, "face_backbone": "fused 1 single graph"}  # (one-image calls: oneDNN Graph; g is gemm)
    assert short_strategy(graph) == "fused 4w/4+4/1(G1)/2s"


def test_speedups_over_exact_paired_against_one_ceiling_or_the_headers_two():
    from wbcap.bench.stages import add_speedups_over_exact

    def row(prec, bs, crops, paired, ceiling="fp32", size=2048):
        return {"precision": prec, "batch_size": bs, "crops_per_s": crops, "ratio_paired": paired,
                "ceiling_precision": ceiling, "ceiling_size": size}

    rows = [row("exact", 1, 2.0, 0.9), row("exact", 8, 3.0, 1.0),
            row("fast", 1, 4.0, 1.7), row("fast", 8, 5.0, 1.8), row("fast", 4, 5.0, 1.8),  # (no exact row at 4)
            row("bf16", 1, 6.0, 0.4, "bf16"), row("fp16", 8, 6.0, 0.5, "fp32", 512)]
    add_speedups_over_exact(rows)
    by = {(r["precision"], r["batch_size"]): r for r in rows}
    assert "vs_exact" not in by["exact", 1] and "vs_exact_paired" not in by["exact", 8]
    assert by["fast", 1]["vs_exact"] == pytest.approx(2.0) and by["fast", 1]["vs_exact_paired"] == pytest.approx(1.7 / 0.9)
    assert by["fast", 8]["vs_exact"] == pytest.approx(5 / 3) and by["fast", 8]["vs_exact_paired"] == pytest.approx(1.8)
    assert "vs_exact" not in by["fast", 4]
    assert by["bf16", 1]["vs_exact"] == pytest.approx(3.0) and "vs_exact_paired" not in by["bf16", 1]
    assert by["fp16", 8]["vs_exact"] == pytest.approx(2.0) and "vs_exact_paired" not in by["fp16", 8]  # other size
    # rows against another dtype's ceiling: each paired ratio times its dtype's highest probe in the run, the
    # machine's idle rate (the unpaired speed-up swung from 0.54 to 13.9 on a busy Zen 4: a performance audit;
    # the header's one-off fp32 ceiling was measured at half the rows' rate); not at another size
    rows = [row("exact", 1, 2.0, 0.9), row("fast", 1, 9.0, 1.2, "bf16"), row("exact", 8, 3.0, 1.0),
            row("fast", 8, 9.0, 1.2, "bf16", 512)]
    for r, probes in zip(rows, ([110e9, 200e9], [450e9, 300e9], [190e9], [40e9])):
        r["ceiling_probes_flops_per_s"] = probes
    add_speedups_over_exact(rows)
    assert rows[1]["vs_exact"] == pytest.approx(4.5)
    assert rows[1]["vs_exact_paired"] == pytest.approx(1.2 * 450 / (0.9 * 200))
    assert rows[1]["vs_exact_paired_via"] == "highest probes bf16/fp32"
    assert "vs_exact_paired" not in rows[3]


def test_a_named_model_file_and_checkpoint_both_missing_are_said_in_one_line(tmp_path):
    """The previous notes: `wbcap bench --body-models /x/SMPLX_NEUTRAL.npz --checkpoint /y` named
    the model file only; with the checkpoint given (not stood in for), the line names both."""
    model, ckpt = tmp_path / "x" / "SMPLX_NEUTRAL.npz", tmp_path / "y.pth.tar"
    from wbcap.cli import cli

    r = CliRunner().invoke(cli, ["bench", "--batch-sizes", "1", "--repeats", "1", "--body-models", str(model),
                                 "--checkpoint", str(ckpt)])
    assert r.exit_code == 2, r.output
    line = " ".join(r.output.split())
    assert f"{model}: no such file (named by --body-models)" in line, r.output
    assert f"; and for the network's checkpoint: checkpoint not found: {ckpt}" in line, r.output
