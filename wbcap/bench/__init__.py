"""``wbcap bench``: time every stage of the pipeline on this device, count FLOPs, compare with
the hardware's matmul ceiling.

>>> from wbcap.bench.options import BenchOptions                    # doctest: +SKIP
>>> from wbcap.bench.report import print_report                     # doctest: +SKIP
>>> from wbcap.bench.stages import run_bench                        # doctest: +SKIP
>>> report = run_bench(BenchOptions(config="small", device="cpu"))  # doctest: +SKIP
>>> report["batches"][0]["crops_per_s"]                              # doctest: +SKIP

What is measured (every timing is the median of ``repeats`` runs after ``warmup`` untimed runs;
on CUDA ``torch.cuda.synchronize()`` brackets every timed region; the network runs under
``torch.inference_mode()`` in the Pipeline's form for each precision: ``exact`` and ``fast``
fused (:mod:`wbcap.model.fused`), ``bf16`` / ``fp16`` unfused under autocast):

* ``encode``: :class:`wbcap.io.video_writer.VideoWriter` (H.264) writing ``frames`` frames; without
  ``video`` the written clip (synthetic frames from :func:`wbcap.testing.images.person_image`,
  ``frame_size``) is the input of the next stage.
* ``decode``: PyAV through :func:`wbcap.io.video_reader.open_frames`, ``frames`` frames (open included).
* ``detect``: every available person detector on the same (first) frame, each its own stage:
  ``detect.hog`` (OpenCV HOG, always) and ``detect.yolox-nano`` (``detect.yolox`` for another
  export) when a YOLOX model is available: ``--detector-model FILE`` or the installed default
  (``wbcap weights fetch yolox-nano``; the benchmark never downloads). Each gives people found,
  the size the detector scans (HOG's first pyramid level, YOLOX's letterboxed input), runtime and
  threads as the pipeline runs them (HOG: OpenCV's threads; YOLOX: onnxruntime, 1 thread).
  Without YOLOX, ``detectors["yolox_missing"]`` says so with the fix. ``detect`` itself repeats
  the detector ``--detector auto`` would use among them (YOLOX when measured): its boxes feed
  ``crop`` and the end-to-end estimate. ``--detect-only`` runs this stage alone.
* ``crop``: :meth:`wbcap.pipeline.Pipeline.crop` of every detected box of that frame.
* ``regressor``: network + SMPL-X (``WholeBodyRegressor``) on a device tensor of B crops, for
  every precision and batch size (``batches``, one row each); the ``stages`` entry is the first
  precision's batch size with the most crops/s. Host -> device copy and the per-person numpy
  conversion are not included.
* ``precision_error`` (when ``exact`` and another precision are both measured): on the first
  frame's crop, the largest vertex distance (m) and box-corner distance (crop pixels, 512x384)
  of each other precision from ``exact``, with the weights in use.
* ``smplx``: the SMPL-X layer alone, at the largest batch size.
* ``render``: :func:`wbcap.export.render.render_meshes` of one person over the frame.

FLOPs (``flops``) are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one crop
(network + SMPL-X; 2 FLOPs per multiply-add), with a breakdown by module. The full-size model
costs about 35.75 GFLOPs per crop. ``ceilings`` holds the device's measured dense matmul rate
per dtype (fp32 and bf16 on CPU, plus fp16 when that is a precision asked for; fp32, tf32,
bf16 and fp16 on CUDA), each with the ``kernel`` it was measured with: on CPU the faster of
``matmul`` (``a @ b``, MKL for float32) and ``onednn`` (oneDNN's inner product; MKL runs AVX2
code on AMD CPUs), :class:`~wbcap.bench.ceiling.CeilingProbe`; a row's probes use the same
(``ceiling_kernel``). Every row gets ``ratio`` = achieved FLOP/s / ``ceiling_flops_per_s``,
the ceiling of its precision's main dtype (:data:`~wbcap.bench.ceiling.CEILING_OF`: exact -> fp32, fast and bf16 ->
bf16, fp16 -> fp16; fast -> fp32 on a CPU without bfloat16 instructions, where fast runs float32
and int8: :func:`~wbcap.bench.ceiling.row_ceiling`) as the mean of its measurements right before the row's first timed call
and right after its last; ``ratios`` compares it with every ceiling of the ``ceilings`` table
(cuDNN may run fp32 convolutions in TF32, so see ``ratios["tf32"]`` too). ``ratio_paired`` is
the median over the row's calls of each call's FLOP/s against the mean of the ceilings measured
just before and just after that call (``ceiling_probes_flops_per_s``: one more than the calls;
``ratios_paired``: per call; :func:`~wbcap.bench.ceiling.paired_runs`): on a shared machine whose
speed drifts within seconds (the project's 2-core Xeon by 2x) it is the ratio that compares
measurements taken together. ``ratio_best`` is the fastest call against the highest of the
row's ceiling measurements (each the median of 3 matmuls of ``ceiling_size``): what the machine
does when other processes leave it alone. (Report ``format`` 2; in format 1 a row's ceiling
was measured only before and after it, and ``ratio_best`` used the fastest single matmul.)

On CPU each row names the inference form the network ran in, ``strategy`` (one line, e.g.
``fused: body 1, hand 2, face 1, box 1 (sub-pixel 1/3)``: form, then the images per convolution
call of each part for that batch size) and ``strategy_parts`` (part -> form and calls), and
``strategies`` holds each precision's whole choice (:class:`wbcap.model.strategy.CpuStrategy`:
``source`` ``measured`` / ``cache`` / ``forced`` / ``default``, the seconds per image it was
chosen from, the time spent measuring, the cache file; null on CUDA). The first run on a machine
measures it (a few seconds, counted in ``model.load_s``); ``WBCAP_CPU_STRATEGY=fused`` (or
``plain``, ``onnxruntime``, ``int8``, ``fused:4``, ``measure``) forces a form or a new measurement.

Defaults, chosen so that ``wbcap bench --config small`` finishes in well under 2 minutes on a
2-core CPU: precisions exact,fast; CPU: batch sizes 1,2, 3 repeats, 1 warm-up; CUDA: batch
sizes 1,2,4,8,16, 10 repeats, 3 warm-ups. 16 frames of 320x240 for encode/decode, 2048x2048 matmuls (smaller on
a CPU where a 2048 matmul would take over ~0.4 s, e.g. fp16 without hardware support).

Modules: :mod:`~wbcap.bench.options` (what to measure, defaults, option parsing),
:mod:`~wbcap.bench.timing` (timed calls, the machine and versions), :mod:`~wbcap.bench.ceiling`
(FLOP counts and the matmul FLOP/s ceiling), :mod:`~wbcap.bench.detect` (person detectors),
:mod:`~wbcap.bench.stages` (the model and every stage: :func:`~wbcap.bench.stages.run_bench`),
:mod:`~wbcap.bench.report` (tables).
"""
