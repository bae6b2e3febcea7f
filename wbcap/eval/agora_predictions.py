"""AGORA's prediction files: one pickle per person in the format of AGORA's own evaluation code.

AGORA (Patel et al., CVPR 2021) scores submissions with its evaluation code
(pixelite1201/agora_evaluation, ``docs/prediction_format.md`` and ``check_pred_format.py``): for
every predicted person of an image ``<name>.png``, a file ``<name>_personId_<k>.pkl`` holding a
dict of numpy arrays. wbcap writes the "parameters" form, as Hand4Whole's ``data/AGORA/AGORA.py``
does for its test-server submissions (:func:`agora_prediction`):

* ``params``: SMPL-X parameters, axis-angle (the evaluator's default ``pose2rot``), float32:
  ``global_orient`` (1, 3), ``body_pose`` (1, 63), ``left_hand_pose`` / ``right_hand_pose``
  (1, 45) relative to the hand mean (the evaluator's ``smplx.create(..., use_pca=False)`` adds it,
  ``flat_hand_mean=False``, as the network was trained), ``jaw_pose`` (1, 3), ``leye_pose`` /
  ``reye_pose`` zeros (1, 3), ``expression`` (1, 10), ``betas`` (1, 10) (the neutral adult model:
  no ``gender``, ``kid_flag`` or ``num_betas`` keys), ``transl`` (1, 3) metres (Hand4Whole's
  ``cam_trans``; the evaluator's errors are taken after aligning the roots). The rotations are in
  the OpenCV axes of the image's camera (x right, y down, z forward), the frame of AGORA's ground
  truth, as the network's crop camera has the image camera's axes.
* ``joints`` (N, 2) float32: the person's SMPL-X joints (smplx's output order, N = 144 with the
  face contour; the evaluator matches predictions to people on the first 24 and takes their
  extent as a box) projected into the image and given in pixels of AGORA's 3840x2160 renders
  (the 1280x720 images' pixels times 3; a 3840x2160 person crop's through its affine). Written
  (N, 2), not Hand4Whole's (1, N, 2), which ``check_pred_format.py`` refuses.

``<name>`` is the 3840x2160 image's name (the 1280x720 file's without ``_1280x720``); ``k`` the
annotation's ``person_id`` (the validation split: the ground-truth people's boxes, as upstream's
evaluation of that split; the test split: a detector's boxes, ``k`` a box's place in its image's list). The evaluator wants the files in a ``predictions/`` folder of a zip. Pickles are
written with protocol 4 (its sample files' protocol; the evaluator reads them with
``encoding='latin1'``).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wbcap.body.params import SMPLXParams
from wbcap.body.pose_layout import POSE_JOINTS
from wbcap.camera import crop_to_image_camera_np

__all__ = ["AgoraPredictionWriter", "agora_prediction", "prediction_file_name"]

_LOW_SUFFIX = "_1280x720"
_ROTATIONS = {name: 3 * POSE_JOINTS[name] for name in ("global_orient", "body_pose", "left_hand_pose",
                                                        "right_hand_pose", "jaw_pose")}


def prediction_file_name(image_path: str | Path, person_id: int | str) -> str:
    """``<3840x2160 image name without .png>_personId_<person_id>.pkl`` for an image read (a
    1280x720 file's ``_1280x720`` dropped; a person crop's ``_person_id_<i>`` dropped)."""
    stem = Path(image_path).stem
    stem = stem.split("_person_id_")[0]
    if stem.endswith(_LOW_SUFFIX):
        stem = stem[: -len(_LOW_SUFFIX)]
    return f"{stem}_personId_{person_id}.pkl"


def agora_prediction(params: SMPLXParams, joints_4k: np.ndarray) -> dict[str, Any]:
    """One person's prediction dict (see the module docstring).

    Args:
        params: one person's SMPL-X parameters (a batch of one, either rotation format).
        joints_4k: ``(N, 2)`` (N >= 24) its SMPL-X joints in 3840x2160 pixels.

    Raises:
        ValueError: not one person, or joints of another shape.
    """
    if params.batch_size != 1:
        raise ValueError(f"one person's parameters expected, got a batch of {params.batch_size}")
    joints = np.asarray(joints_4k, np.float32)
    if joints.ndim != 2 or joints.shape[1] != 2 or joints.shape[0] < 24:
        raise ValueError(f"joints must be (N >= 24, 2) pixels, got {joints.shape}")
    p = params.to_axis_angle().detach().cpu()

    def arr(t: torch.Tensor, width: int) -> np.ndarray:
        return t.float().reshape(1, width).numpy().copy()

    out = {name: arr(p[name], width) for name, width in _ROTATIONS.items()}
    out.update(leye_pose=np.zeros((1, 3), np.float32), reye_pose=np.zeros((1, 3), np.float32),
               expression=arr(p.expression, 10), betas=arr(p.betas, 10), transl=arr(p.transl, 3))
    return {"params": out, "joints": joints}


class AgoraPredictionWriter:
    """Writes the prediction files of an evaluation of AGORA's validation split (``wbcap eval
    --dataset AGORA --predictions DIR``): called with each batch's dataset indices and the
    regressor's output on their crops.

    Args:
        folder: where the files go (made if missing).
        regressor: the :class:`~wbcap.model.regressor.WholeBodyRegressor` evaluated.
        dataset: the :class:`~wbcap.train.data.agora.AGORA` split evaluated (its records: image,
            crop box and ``person_id``; for 3840x2160 crops, each crop's affine).
    """

    def __init__(self, folder: str | Path, regressor, dataset) -> None:
        self.folder = Path(folder).expanduser()
        self.regressor = regressor
        self.dataset = dataset
        self.written: list[Path] = []

    @staticmethod
    def _to_4k(rec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(scale (2,), offset (2,)): pixels of the image read -> 3840x2160 pixels, the inverse of
        the record's axis-aligned ``affine`` (3840x2160 -> the image read)."""
        affine = np.asarray(rec["affine"], np.float64)
        scale = np.array([affine[0, 0], affine[1, 1]])
        return 1.0 / scale, -affine[:, 2] / scale

    def __call__(self, indices: Sequence[int], out) -> None:
        """Write the files of the samples ``indices`` from the regressor's ``out``
        (:class:`~wbcap.model.regressor.RegressorOutput` of their crops)."""
        from wbcap.atomic import atomic_write_bytes

        self.folder.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            _, joints = self.regressor.body_forward(out.params)  # (B, 144, 3): smplx's order, the crop camera
        joints = joints.detach().double().cpu().numpy()
        (fx, fy), (cx, cy) = self.regressor.crop_camera()
        crop_hw = tuple(self.regressor.config.input_img_shape)
        params = out.params.smplx.detach().cpu()
        for j, idx in enumerate(indices):
            rec = self.dataset.sample_record(idx)
            box = np.asarray(rec["bbox"], np.float64)
            focal, princpt = crop_to_image_camera_np((fx, fy), (cx, cy), box, crop_hw)
            z = joints[j, :, 2:3] + 1e-4
            px = joints[j, :, :2] / z * np.asarray(focal).reshape(1, 2) + np.asarray(princpt).reshape(1, 2)
            scale, offset = self._to_4k(rec)
            d = agora_prediction(params.index([j]), px * scale + offset)
            path = self.folder / prediction_file_name(rec["img_path"], rec["person_id"])
            atomic_write_bytes(path, pickle.dumps(d, protocol=4))
            self.written.append(path)
