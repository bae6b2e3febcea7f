"""``wbcap bench``'s tables: a report (:func:`wbcap.bench.stages.run_bench`) printed with rich."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from wbcap.errors import setting


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as indented JSON to ``path`` (its folder made; atomically: a file that
    cannot be finished is not left half written). Returns the path written."""
    from wbcap.atomic import atomic_write_text

    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(report, indent=2) + "\n", through_link=True)  # (--json-out: the user's name)
    return p


def describe_model(desc: dict[str, Any]) -> str:
    """One line: which weights and which body model were used."""
    if desc["weights"] == "checkpoint":
        w = f"checkpoint {desc['checkpoint']}"
    else:
        w = f"random weights, {setting('config_name')} {desc['config_name']}"
    body = "synthetic SMPL-X (real model not found)" if desc["body_model_synthetic"] else f"SMPL-X {desc['body_model']}"
    return f"{desc['depths']}; {w}; {body}"


def _si(value: float, unit: str = "") -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 10 else f"{seconds:.3g} s"


def detector_notes(stage: dict[str, Any]) -> str:
    """One line about a ``detect.*`` stage: people found, frame -> scanned size, runtime, threads."""
    parts = [f"{stage['detector']}: {stage['people']} found"]
    size, scanned = stage.get("size"), stage.get("input_size")
    if size and scanned:
        parts.append(f"{size[0]}x{size[1]} -> input {scanned[0]}x{scanned[1]}")
    elif size:
        parts.append(f"{size[0]}x{size[1]}")
    if "runtime" in stage:
        threads = stage.get("threads")
        parts.append(f"{stage['runtime']}" + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))
    return ", ".join(parts)


def detect_summary(report: dict[str, Any]) -> list[str]:
    """Lines comparing the detectors' cost per frame, and the missing-YOLOX line with its fix."""
    info = report.get("detectors")
    if not info:
        return []
    times = {name: report["stages"][name]["per_item_s"] for name in info["stages"] if name in report["stages"]}
    lines = []
    if len(times) > 1:
        hog = times.get("detect.hog")
        parts = []
        for name, t in times.items():
            text = f"{name[len('detect.'):]} {t * 1e3:.3g} ms/frame"
            if hog and name != "detect.hog" and t > 0 and math.isfinite(hog / t):
                ratio = max(hog, t) / min(hog, t)  # (the slower time over the faster, >= 1)
                text += (" (as fast as hog)" if f"{ratio:.3g}" == "1" else
                         f" ({ratio:.3g}x {'faster' if t < hog else 'slower'} than hog)")
            parts.append(text)
        lines.append("detection per frame: " + " vs ".join(parts))
    if info.get("yolox_missing"):
        lines.append(info["yolox_missing"])
    return lines


#: A part's form in a short strategy, where it is not the row's main form (the oneDNN Graph form's
#: letter is not its initial: ``g`` after a part says some of its deconvolutions run as one product).
FORM_LETTERS = {"plain": "p", "onnxruntime": "o", "fused": "f", "int8": "i", "graph": "G"}


def short_strategy(parts: dict[str, str] | None) -> str:
    """A row's ``strategy_parts`` in a few characters: ``"fused 1/2/1/1s"`` (the form of most
    parts, then each part's calls; ``p`` / ``o`` / ``f`` / ``i`` / ``G`` before a part in another form
    (plain, onnxruntime, fused, int8, oneDNN Graph), ``s`` after
    one with sub-pixel deconvolutions, ``g`` after one where some of those run as one matrix
    product, ``c`` after one with deconvolutions as one matrix product and a col2im, ``w`` after one with Winograd convolutions, ``(o1)`` / ``(G1)`` after one whose calls of one image
    run in another form, by its letter); ``"-"`` without."""
    if not parts:
        return "-"
    forms = [text.split()[0] for text in parts.values()]
    main = max(dict.fromkeys(forms), key=forms.count)
    cells = []
    for text in parts.values():
        form, calls, *rest = text.split()
        single = rest[rest.index("single") + 1] if "single" in rest[:-1] else None
        cells.append(("" if form == main else FORM_LETTERS.get(form, form[0])) + calls + ("s" if "subpixel" in rest else "")
                     + ("g" if "gemm" in rest else "") + ("c" if "col2im" in rest else "")
                     + ("w" if "winograd" in rest else "")
                     + (f"({FORM_LETTERS.get(single, single[0])}1)" if single else ""))
    return f"{main} " + "/".join(cells)


# A table printer: one row per stage in a fixed order; long, but flat.
def print_report(report: dict[str, Any], console) -> None:
    """Rich tables of ``report`` on ``console`` (a ``rich.console.Console``, the caller's:
    ``wbcap bench`` gives one of stdout): stages, batch sizes vs the ceiling, FLOP breakdown
    (those a ``--detect-only`` report lacks are left out)."""
    from rich.table import Table

    dev, ver, model = report["device"], report["versions"], report.get("model")
    settings = report["settings"]
    huge = f", huge pages {dev['huge_pages']}" if dev.get("huge_pages") else ""  # (reports before it: none)
    console.print(f"[bold]device[/]: {dev['name']} ({dev['spec']}, {dev['torch_threads']} torch threads{huge})",
                  highlight=False)
    console.print(
        "[bold]versions[/]: " + ", ".join(f"{k} {v}" for k, v in ver.items() if v), highlight=False)
    # (lines holding paths are not wrapped: a path stays one piece to copy, and the line one to grep)
    if model is not None:
        console.print(f"[bold]model[/]: {describe_model(model)}", highlight=False, soft_wrap=True)
    src = report["input"]
    what = (f"precisions {', '.join(settings['precisions'])}; " if model is not None else "detectors only; ")
    console.print(
        f"[bold]input[/]: {'synthetic clip' if src['synthetic'] else src['video']} {src['width']}x{src['height']}, "
        f"{src['frames']} frame{'s' if src['frames'] != 1 else ''}; {what}median of {settings['repeats']} "
        f"(+{settings['warmup']} warm-up)", highlight=False, soft_wrap=True)

    detectors = report.get("detectors") or {}
    stages = Table(title="Stages", title_justify="left")
    for col in ("stage", "median / call", "items", "per item", "throughput", "notes"):
        stages.add_column(col, justify="left" if col in ("stage", "notes") else "right")
    for name, s in report["stages"].items():
        if name == "detect" and detectors.get("used") in report["stages"]:
            continue  # the same measurement as its detect.<name> row
        notes = []
        if "batch_size" in s:
            notes.append(f"batch {s['batch_size']}")
        if "detector" in s:
            notes.append(detector_notes(s))
            if name == detectors.get("used") and "crop" in report["stages"]:
                notes.append("feeds crop")
        for key in ("backend", "codec"):
            if key in s:
                notes.append(str(s[key]))
        if "size" in s and "detector" not in s:
            notes.append("x".join(str(v) for v in s["size"]))
        stages.add_row(name, _ms(s["median_s"]), str(s["items"]), _ms(s["per_item_s"]),
                       f"{s['throughput']:.4g} {s['throughput_unit']}", ", ".join(notes))
    console.print(stages)
    for line in detect_summary(report):
        console.print(line, highlight=False, markup=False)
    if "estimate" not in report:
        _print_tail(report, console)
        return
    console.print(f"estimated end to end: {report['estimate']['frames_per_s']:.3g} frames/s "
                  f"({report['estimate']['assumes']})", highlight=False)

    batches = Table(title=f"Regressor (network + SMPL-X, {report['flops']['per_crop'] / 1e9:.2f} GFLOP/crop)",
                    title_justify="left")
    cols = ["precision", "batch", "median / batch", "crops/s", "GFLOP/s", "% of ceiling", "paired %", "best %"]
    speedups = any("vs_exact" in b for b in report["batches"])
    if speedups:
        cols.append("x exact")
    strategies = any(b.get("strategy") for b in report["batches"])
    if strategies:
        cols.append("CPU strategy")
    cuda_mem = any("cuda_max_memory_allocated_bytes" in b for b in report["batches"])
    if cuda_mem:
        cols.append("CUDA peak")
    for col in cols:
        batches.add_column(col, justify="right")
    for b in report["batches"]:
        row = [b["precision"], str(b["batch_size"]), _ms(b["median_s"]), f"{b['crops_per_s']:.3g}",
               f"{b['flops_per_s'] / 1e9:.4g}", f"{100 * b['ratio']:.1f} % {b['ceiling_precision']}",
               f"{100 * b['ratio_paired']:.1f} %" if "ratio_paired" in b else "-",
               f"{100 * b['ratio_best']:.1f} %" if "ratio_best" in b else "-"]
        if speedups:
            row.append("-" if "vs_exact" not in b else f"{b['vs_exact']:.2f}x"
                       if "vs_exact_paired" not in b else f"{b['vs_exact']:.2f}/{b['vs_exact_paired']:.2f}x")
        if strategies:
            row.append(short_strategy(b.get("strategy_parts")))
        if cuda_mem:
            row.append(_si(b.get("cuda_max_memory_allocated_bytes", 0), "B"))
        batches.add_row(*row)
    console.print(batches)
    console.print("% of ceiling: the row's median call against the mean of the ceilings measured before its first "
                  "and after its last call; paired %: the median over the calls of each call against the ceilings "
                  "measured just before and after it; best %: the fastest call against the highest of those "
                  "ceilings", highlight=False)
    if speedups:
        console.print("x exact: crops/s against exact's at the same batch size in this run"
                      + ("; a/b: a that, b paired % against exact's paired % (both rows against the same ceiling: "
                         "the machine's drift between them cancelled"
                         + ("; rows against another dtype's ceiling: each paired % times its dtype's highest probe "
                            "in the run" if any("vs_exact_paired_via" in b for b in report["batches"])
                            else "") + ")"
                         if any("vs_exact_paired" in b for b in report["batches"]) else ""), highlight=False)
    if strategies:
        console.print("CPU strategy: form, then images per convolution call of the body / hand / face ResNets and the "
                      "box network (a+b: calls of a and b images; NxC: N calls of C; p / o / f / i / G: that part plain / through "
                      "onnxruntime / fused / int8 / compiled by oneDNN Graph, s: with "
                      "sub-pixel deconvolutions (g: some as one matrix product), c: with deconvolutions as one matrix product "
                      "and a col2im, w: with Winograd 3x3 convolutions, (o1) / (G1): its calls of one image through "
                      "onnxruntime / compiled by oneDNN Graph)", highlight=False)
    for prec, st in (report.get("strategies") or {}).items():
        if st:
            how = {"measured": f"measured now in {st['selection_s']:.1f} s", "cache": "measured earlier",
                   "forced": "forced by WBCAP_CPU_STRATEGY"}.get(st["source"], st["source"])
            console.print(f"{prec} CPU strategy: {how}" + (f" (cache {st['cache_file']})" if st.get("cache_file") else ""),
                          highlight=False, markup=False)
    for prec, e in report.get("precision_error", {}).items():
        console.print(f"{prec} vs exact on {e['input']}: max vertex distance {1000 * e['max_vertex_distance_m']:.3g} mm, "
                      f"max box corner distance {e['max_box_corner_distance_px']:.3g} px", highlight=False)

    ceil = Table(title="Matmul ceiling (measured once, before the regressor rows)", title_justify="left")
    for col in ("dtype", "size", "kernel", "median", "GFLOP/s", "best achieved / this ceiling"):
        ceil.add_column(col, justify="right")
    for p, c in report["ceilings"].items():
        rows = [b for b in report["batches"] if b["ceiling_precision"] == p]
        best = max(rows, key=lambda b: b["flops_per_s"]) if rows else None
        ceil.add_row(p, f"{c['size']}", c.get("kernel", "matmul"), _ms(c["median_s"]),
                     f"{c['flops_per_s'] / 1e9:.4g}",
                     f"{100 * best['ratios'][p]:.1f} % ({best['precision']}, batch {best['batch_size']})" if best else "-")
    console.print(ceil)
    for p, c in report["ceilings"].items():  # (a busy moment before the rows: 107 GFLOP/s against their 175-227, an audit)
        probes = [v for b in report["batches"] if b["ceiling_precision"] == p and b.get("ceiling_size") == c["size"]
                  for v in b.get("ceiling_probes_flops_per_s") or ()]  # (probes of another size: another rate)
        if probes and c["flops_per_s"] < 0.8 * statistics.median(probes):
            console.print(f"{p}: this ceiling was measured while the machine was slower than during the rows (their "
                          f"probes: {min(probes) / 1e9:.4g}-{max(probes) / 1e9:.4g} GFLOP/s, median "
                          f"{statistics.median(probes) / 1e9:.4g}); read the rows' paired %", highlight=False, markup=False)

    flops = report["flops"]
    ft = Table(title="FLOPs per crop", title_justify="left")
    for col in ("module", "GFLOP", "share"):
        ft.add_column(col, justify="left" if col == "module" else "right")
    for k, v in flops["breakdown"].items():
        if k == "other" and abs(v) < 1:
            continue
        ft.add_row(k.replace("_", " "), f"{v / 1e9:.3f}", f"{100 * v / flops['per_crop']:.1f} %")
    ft.add_row("[bold]total[/]", f"{flops['per_crop'] / 1e9:.3f}", "100 %")
    console.print(ft)
    _print_tail(report, console)


def _print_tail(report: dict[str, Any], console) -> None:
    """Memory, elapsed time and notes."""
    mem = report["memory"]
    line = f"peak RSS {_si(mem['peak_rss_bytes'], 'B')}"
    if "cuda_max_memory_allocated_bytes" in mem:
        line += f", CUDA max allocated {_si(mem['cuda_max_memory_allocated_bytes'], 'B')}"
    console.print(line + f"; benchmark took {report['elapsed_s']:.1f} s", highlight=False)
    for note in report.get("notes", []):
        console.print(f"note: {note}", highlight=False)
