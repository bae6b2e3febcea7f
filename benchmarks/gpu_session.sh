#!/bin/bash
# Every GPU check of issue 14 in one go (at most about 9 minutes: its timeouts sum to 520 s), for a machine lent
# for a few minutes: the CUDA tests, benchmarks/gpu_check.py (both precisions, graphed, with and
# without cuDNN's fused convolution + ReLU, a profile, the video run) and again with
# cudnn.benchmark, then benchmarks/video_host.py without and with crop threads. Results go to
# $OUT (default: a new temporary folder), a summary to stdout.
#
#   bash benchmarks/gpu_session.sh
#
# Where wbcap's dependencies cannot be installed there, put their wheels (for that machine's
# Python) in .whl/ at the repository's root: they are installed into /tmp/site first. wbcap runs
# from the checkout (PYTHONPATH), with whatever torch the machine has.
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$(mktemp -d)}
export OUT
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 WBCAP_HOME=${WBCAP_HOME:-/tmp/wbcap_gpu_home}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
echo "cores: $(nproc)"
python3 -c "import torch,numpy;print('torch',torch.__version__,'cudnn',torch.backends.cudnn.version(),'numpy',numpy.__version__)"
python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "no CUDA device here: nothing to check"; exit 1; }
S=$(date +%s)
timeout 100 python3 -m pytest -q -p no:cacheprovider -p no:xdist -rs tests/test_cudnn_fusion.py tests/test_cuda_graph.py \
    tests/test_crop_roi_align.py > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? $(( $(date +%s) - S )) s"; tail -15 "$OUT/pytest.log"
S=$(date +%s)
timeout 250 python3 benchmarks/gpu_check.py --batch-sizes 1,32,128 --compare-cudnn-fusion --profile 128 --video-frames 300 \
    --deadline 190 --json "$OUT/gpu_check.json" > "$OUT/gpu_check.out" 2>&1
echo "gpu_check rc=$? $(( $(date +%s) - S )) s"
S=$(date +%s)
timeout 90 python3 benchmarks/gpu_check.py --batch-sizes 32,128,256 --precisions fast --cudnn-benchmark --compare-cudnn-fusion \
    --no-video --deadline 60 --json "$OUT/gpu_check_cudnn_benchmark.json" > "$OUT/gpu_check_cudnn_benchmark.out" 2>&1
echo "gpu_check --cudnn-benchmark rc=$? $(( $(date +%s) - S )) s"
for cw in 0 auto; do
    timeout 40 python3 benchmarks/video_host.py --overlap on --crop-workers $cw --repeats 2 \
        --json "$OUT/video_host_$cw.json" > /dev/null 2> "$OUT/video_host_$cw.err"
    echo "video_host --crop-workers $cw rc=$?"
done
python3 - <<'PY'
import json
import os

out = os.environ["OUT"]
for name in ("gpu_check.json", "gpu_check_cudnn_benchmark.json"):
    try:
        d = json.load(open(f"{out}/{name}"))
    except (OSError, ValueError) as exc:
        print(name, exc)
        continue
    print(name, "errors:", d.get("errors"), "skipped:", d.get("skipped"), "ceilings:", d.get("ceilings"),
          "host syncs:", d.get("host_syncs"))
    keys = ("eager_crops_per_s", "graph_crops_per_s", "graph_fused_crops_per_s", "cudnn_fusion_speedup", "cudnn_fused_convs",
            "graph_fused_graphed")
    for r in d.get("rows", []):
        print(" ", r["precision"], r["batch_size"], {k: round(r[k], 3) if isinstance(r[k], float) else r[k] for k in keys if k in r},
              "graph/ceiling:", {k: round(v, 4) for k, v in r.get("graph_ratio", {}).items()},
              "fused/ceiling:", {k: round(v, 4) for k, v in r.get("graph_fused_ratio", {}).items()},
              "fused vs unfused:", r.get("fused_vs_unfused"), "graph vs eager:", r.get("graph_vs_eager"))
    if d.get("profile"):
        for prec, p in d["profile"].items():
            print("  profile", prec, p["batch_size"], "kernel ms", round(p["kernel_ms"], 2), p["groups_ms"])
    v = d.get("video")
    if v:
        print("  video: decode alone", round(v["decode_alone_fps"], 1), "frames/s;",
              {k: (round(v[k]["fps"], 1), round(v[k]["decode_bound"], 3)) for k in ("eager", "graphed") if k in v})
for cw in ("0", "auto"):
    try:
        d = json.load(open(f"{out}/video_host_{cw}.json"))
        print("video_host crop workers", d["crop_workers"], "decode alone", round(d["decode_alone_fps"], 1),
              "run", [round(f, 1) for f in d["run_fps"]], d["timings_s"])
    except (OSError, ValueError, KeyError) as exc:
        print("video_host", cw, exc)
PY
