"""Evaluation on EHF, 3DPW, Human3.6M and AGORA (validation) with Hand4Whole's protocols (``wbcap eval``).

Modules: :mod:`~wbcap.eval.metrics` (batched Procrustes, MPJPE / MPVPE and their PA variants),
:mod:`~wbcap.eval.protocols` (per-part alignment, J14 / hand / H36M joints),
:mod:`~wbcap.eval.extra_files` (finding the regressors and vertex-id files),
:mod:`~wbcap.eval.smpl` (SMPL for 3DPW's ground truth), :mod:`~wbcap.eval.evaluate` (the loop:
``from wbcap.eval.evaluate import evaluate, write_results``), :mod:`~wbcap.eval.world_metrics`
(world-frame motion: foot sliding, ground penetration, W-MPJPE100, WA-MPJPE100, RTE, jitter).
"""
