"""Shared machinery of the training/evaluation datasets: sample schema, augmentation, targets.

Whole-body sample schema
------------------------
Every whole-body dataset (:class:`~wbcap.train.data.human36m.Human36M`,
:class:`~wbcap.train.data.cocowb.COCOWholeBody`, the synthetic set) returns from
``__getitem__(idx)`` the triple ``(inputs, targets, meta_info)`` of upstream Hand4Whole, each a
dict of ``numpy.float32`` arrays or ``numpy.float32`` scalars (so ``default_collate`` gives float32
tensors). ``J = 137`` joints in :data:`wbcap.body.joints.JOINT_NAMES` order; "hm cells" are body
heatmap cells of the 512x384 input crop: ``x in [0, 6)``, ``y in [0, 8)``, ``z in [0, 8)``
(``x_hm = x_px / 384 * 6``, ``y_hm = y_px / 512 * 8``).

inputs
    ``img`` (3, 512, 384): the augmented crop, RGB in [0, 1].
targets
    ``joint_img`` (J, 3): dataset-annotated joints; x, y in hm cells; z the part-relative depth
    ``(z_rel / (S / 2) + 1) / 2 * 8`` with ``S = 2 m`` for the body (relative to the pelvis) and
    ``S = 0.3 m`` for hands (relative to their wrist) and face (relative to the neck).
    ``smplx_joint_img`` (J, 3): the same from the SMPL-X pseudo-GT fit.
    ``joint_cam`` (J, 3): dataset 3D joints in metres, camera axes (after the rotation
    augmentation), body pelvis-relative, hands wrist-relative, face neck-relative; zeros for 2D
    datasets. ``smplx_joint_cam`` (J, 3): the same from the SMPL-X fit.
    ``smplx_pose`` (159,): axis-angle of the 53 original joints (root, 21 body, 15 left hand,
    15 right hand, jaw; :data:`~wbcap.body.joints.ORIG_JOINT_NAMES`), hand poses relative to the
    model's hand mean (``flat_hand_mean=False``), root rotated by the camera and the augmentation.
    ``smplx_shape`` (10,) (zeroed if any ``|beta| > 3``), ``smplx_expr`` (10,).
    ``lhand_bbox_center``, ``rhand_bbox_center``, ``face_bbox_center`` (2,) and
    ``lhand_bbox_size``, ``rhand_bbox_size``, ``face_bbox_size`` (2,): axis-aligned part boxes in hm
    cells (x, y) / (w, h).
meta_info
    ``joint_valid``, ``joint_trunc``, ``smplx_joint_valid``, ``smplx_joint_trunc`` (J, 1): 1 where
    the joint is annotated / annotated and inside the 6x8x8 heatmap volume.
    ``smplx_pose_valid`` (159,); ``smplx_shape_valid``, ``smplx_expr_valid``, ``is_3D``,
    ``lhand_bbox_valid``, ``rhand_bbox_valid``, ``face_bbox_valid``: float32 scalars (0 or 1).

Under a horizontal flip every left/right pair of :data:`~wbcap.body.joints.FLIP_PAIRS` swaps
(joints, validities, truncations, boxes), x becomes ``W - 1 - x`` in the image (``6 - x_hm`` in the
crop), 3D x is negated, and the 53 rotations swap by
:data:`~wbcap.body.joints.ORIG_FLIP_PAIRS` with every axis-angle mirrored to ``(x, -y, -z)``.

Hand samples (FreiHAND) have their own, smaller schema documented in
:mod:`wbcap.train.data.freihand`; evaluation sets (3DPW, EHF) theirs in their modules.

Randomness: a dataset draws the augmentation of item ``idx`` from
``numpy.random.default_rng((seed, epoch, idx))``; the same seed, epoch and index give the same
sample in any process or worker order (no global ``random`` / ``np.random`` state).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wbcap.body import joints as J
from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.config import ModelConfig
from wbcap.crop.bbox import crop_image, process_bbox
from wbcap.errors import JSON_ERRORS, InputError

__all__ = [
    "BODY_3D_SIZE",
    "DEFAULT_AUGMENT",
    "FACE_3D_SIZE",
    "HAND_3D_SIZE",
    "INPUT_IMG_SHAPE",
    "OUTPUT_HM_SHAPE",
    "AugmentConfig",
    "Augmentation",
    "AugmentedDataset",
    "DatasetLayoutError",
    "annotated_images",
    "body_layer_copy",
    "cam2pixel",
    "cpu_body_layer",
    "crop_and_augment",
    "depth_to_hm",
    "dummy_boxes",
    "flip_smplx_pose",
    "in_volume",
    "load_json",
    "loader_batches",
    "parsing",
    "process_db_coord",
    "process_part_bbox",
    "read_image",
    "rot_aug_matrix",
    "rotate_root_pose",
    "sample_augmentation",
    "to_heatmap",
    "transform_joint_to_other_db",
    "whole_body_sample",
    "xywh_to_xyxy_or_none",
]

_MODEL = ModelConfig()
INPUT_IMG_SHAPE: tuple[int, int] = tuple(_MODEL.input_img_shape)  # type: ignore[assignment]
"""(height, width) of the body crop: (512, 384)."""
OUTPUT_HM_SHAPE: tuple[int, int, int] = tuple(_MODEL.output_hm_shape)  # type: ignore[assignment]
"""(depth, height, width) of the body heatmap volume: (8, 8, 6)."""
BODY_3D_SIZE = 2.0
"""Depth range (m) of the body heatmap volume (upstream ``cfg.body_3d_size``)."""
HAND_3D_SIZE = 0.3
"""Depth range (m) of a hand (upstream ``cfg.hand_3d_size``)."""
FACE_3D_SIZE = 0.3
"""Depth range (m) of the face (upstream ``cfg.face_3d_size``)."""

F32 = np.float32

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# errors and file access
# ----------------------------------------------------------------------------------------------
#: Where upstream Hand4Whole's README links its parsed annotation files (its "Data" section).
HAND4WHOLE_DATA = "https://github.com/mks0601/Hand4Whole_RELEASE#data"


class DatasetLayoutError(InputError):
    """A dataset file is missing or unreadable; the message names it and the expected layout."""

    @classmethod
    def missing(cls, path: str | Path, layout: str) -> DatasetLayoutError:
        return cls(f"{path} missing; expected layout: {layout}")

    @classmethod
    def missing_parsed(cls, path: str | Path, layout: str, link: str, dataset: str,
                       release: Path | None = None, move: str = "") -> DatasetLayoutError:
        """A parsed annotation file of upstream Hand4Whole's (``EHF.json``, ``3DPW_test.json``,
        ``Human36M_subject9_data.json``) is missing: they are not in the datasets' own releases,
        and an ML researcher's trial built the release's layout and was told only the path. The
        message says where the file comes from (``link``: the words of the link in upstream's
        README, :data:`HAND4WHOLE_DATA`), and, where ``release`` (a file or folder of
        ``dataset``'s own release) was found there, that it holds no such file and ``move``
        (what to do with its files)."""
        seen = f"; {release} holds {dataset}'s own release, which has no such file{move}" if release is not None else ""
        return cls(f"{path} missing: it is one of upstream Hand4Whole's parsed annotation files, which {dataset}'s own "
                   f"release does not have: download it from \"{link}\" in {HAND4WHOLE_DATA}{seen}; expected layout: "
                   f"{layout}")


@contextlib.contextmanager
def parsing(paths: str | Path | Sequence[str | Path], layout: str) -> Iterator[None]:
    """Within the block, annotation files ``paths`` (already loaded) are read: a field they lack
    (``KeyError``) or one of another kind (``TypeError``, ``ValueError``, ``IndexError``) becomes a
    :class:`DatasetLayoutError` naming the file(s) and the field, instead of a crash.

    Raises:
        DatasetLayoutError: one line: the file (or "one of" the files), the field, the fix.
    """
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    where = str(files[0]) if len(files) == 1 else f"one of {', '.join(str(f) for f in files)}"
    try:
        yield
    except KeyError as exc:
        key = exc.args[0] if exc.args else None
        what = (f"no {key!r} field, which the dataset's annotation files have"
                if isinstance(key, str) and not key.isdigit() else
                f"an entry refers to {key!r}, which is not there (an image id, index or frame another entry names)")
        raise DatasetLayoutError(f"{where}: {what}; use the original files (re-download them); expected layout: "
                                 f"{layout}") from None
    except (TypeError, ValueError, IndexError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetLayoutError(f"{where}: a field of another kind than the dataset's ({type(exc).__name__}: {msg}); "
                                 f"use the original files (re-download them); expected layout: {layout}") from None


#: torch's warning, at each DataLoader and each iteration, that ``num_workers`` exceeds the CPUs:
#: said once, in one line, by :func:`warn_if_more_workers_than_cpus` instead.
_TORCH_WORKER_COUNT_WARNING = r"This DataLoader will create \d+ worker processes"


def warn_if_more_workers_than_cpus(num_workers: int, name: str) -> None:
    """Log one warning line when ``num_workers`` DataLoader worker processes exceed the CPUs this
    process may use (:func:`wbcap.model.device.available_cpus`); ``name``: how the line names
    the setting (``--workers``). torch's own multi-line warning for it is silenced by
    :func:`data_loader` and :func:`loader_batches`."""
    from wbcap.model.device import available_cpus

    cpus = available_cpus()
    if num_workers > cpus:
        log.warning("%s %d: more worker processes than the %d CPUs this process may use, which can slow "
                    "loading down or stall it; %d or fewer is enough", name, num_workers, cpus, cpus)


@contextlib.contextmanager
def _without_torchs_worker_count_warning() -> Iterator[None]:
    """Within the block, torch's worker-count warning is not shown (warning filters restored after)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCH_WORKER_COUNT_WARNING, category=UserWarning)
        yield


def data_loader(dataset: Any, **kwargs: Any) -> torch.utils.data.DataLoader:
    """``torch.utils.data.DataLoader(dataset, **kwargs)`` without torch's worker-count warning
    (:func:`warn_if_more_workers_than_cpus` says it once)."""
    with _without_torchs_worker_count_warning():
        return torch.utils.data.DataLoader(dataset, **kwargs)


@contextlib.contextmanager
def loader_batches(loader: Iterable[Any]) -> Iterator[Iterator[Any]]:
    """``with loader_batches(loader) as batches: for batch in batches: ...``: the loop over a
    ``torch.utils.data.DataLoader``, which with worker processes

    - raises a wbcap error a worker raised (a damaged dataset file) as the same class with its own
      one-line message, as without workers. It reaches this process with torch's text around its
      message ("Caught DatasetLayoutError in DataLoader worker process 0", the worker's traceback);
    - ends the workers when the block ends, also when it ends early (``break``, an error). Left to
      the iterator's garbage collection after an error (the error's traceback holds it), torch's
      shutdown waited 5 s for each worker (measured on torch 2.13: its queues were finalized first,
      so no worker heard it must stop), wherever the collection came.
    """
    from wbcap.errors import WbcapError

    with _without_torchs_worker_count_warning():  # (see warn_if_more_workers_than_cpus)
        batches = iter(loader)
    try:
        yield batches
    except WbcapError as exc:
        text = str(exc)
        if text.startswith("Caught ") and "\nOriginal Traceback" in text:
            _, said, message = text.rstrip().splitlines()[-1].partition(f"{type(exc).__name__}: ")
            if said:
                raise type(exc)(message) from None
        raise
    finally:
        # (torch has no public call for it: the one its iterator makes when it is exhausted or deleted)
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def annotated_images(db: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """``(annotation, its image record)`` for each of a COCO-layout file's ``annotations``, in
    order, joined on ``image_id`` (the layout every loader's annotation file has). Read it within
    :func:`parsing`: a missing field or a dangling ``image_id`` raises ``KeyError`` there."""
    images = {img["id"]: img for img in db["images"]}
    for ann in db["annotations"]:
        yield ann, images[ann["image_id"]]


def load_json(path: str | Path, layout: str) -> Any:
    """Parse a dataset JSON file, raising :class:`DatasetLayoutError` when absent or broken."""
    p = Path(path)
    if not p.is_file():
        raise DatasetLayoutError.missing(p, layout)
    try:
        with p.open("rb") as f:
            return json.load(f)
    except (OSError, *JSON_ERRORS) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetLayoutError(f"{p}: not readable JSON ({msg}); re-download it; expected layout: {layout}") from None


def read_image(path: str | Path, layout: str = "") -> np.ndarray:
    """A dataset image as ``(H, W, 3)`` uint8 RGB, pixels as stored (EXIF orientation ignored:
    annotations refer to the stored pixel grid, as upstream's ``cv2.imread(IMREAD_COLOR |
    IMREAD_IGNORE_ORIENTATION)``; an embedded ICC profile not applied, as OpenCV applies none), read by :func:`wbcap.io.images.load_image` with the checks
    ``wbcap image`` has, except that a truncated or corrupt file that still decodes is used as
    decoded with a warning naming it (``cv2.imread`` decoded it partly grey with one libjpeg line
    on stderr and ``wbcap eval`` scored it without a word; refused, one such image in a training
    set would end a run of days, and upstream trained and evaluated on what OpenCV decodes).

    Raises:
        DatasetLayoutError: the file is missing or not an image wbcap can decode (one line
            naming it).
    """
    from wbcap.io.images import load_image

    p = Path(path)
    if not p.is_file():
        raise DatasetLayoutError.missing(p, layout or "see the dataset's documentation")
    try:
        return load_image(p, orientation=False, damaged="warn", srgb=False)
    except InputError as exc:
        raise DatasetLayoutError(f"{exc} (one of the dataset's images)") from None


def checked_array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """An annotation's numbers as a float32 array of ``shape``, all finite. Raises ``ValueError``
    saying ``what`` is wrong (read within :func:`parsing`: one line naming the file) for another
    count of numbers or a NaN, an infinity or a ``null``; such values crashed later, in a
    broadcast, a reshape or the evaluation's SVD."""
    arr = np.asarray(value, dtype=np.float32)
    n = int(np.prod(shape))
    if arr.size != n:
        raise ValueError(f"{what} has {arr.size} numbers, not {n}" + (f" ({' x '.join(map(str, shape))})"
                                                                     if len(shape) > 1 else ""))
    arr = arr.reshape(shape)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds a NaN, an infinity or a null")
    return arr


# ----------------------------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation ranges (the paper's / upstream ``get_aug_config`` values).

    ``scale``: the crop box is scaled by ``1 + clip(N(0,1), -1, 1) * scale``; ``rot``: with
    probability ``rot_prob`` the crop rotates by ``clip(N(0,1), -2, 2) * rot`` degrees; ``color``:
    each RGB channel is multiplied by ``U(1 - color, 1 + color)``; ``flip_prob``: probability of a
    horizontal flip.
    """

    scale: float = 0.25
    rot: float = 30.0
    rot_prob: float = 0.6
    color: float = 0.2
    flip_prob: float = 0.5


DEFAULT_AUGMENT = AugmentConfig()
"""The paper's augmentation (the datasets' default)."""


@dataclass(frozen=True)
class Augmentation:
    """One drawn augmentation; the default is the identity (test time)."""

    scale: float = 1.0
    rot: float = 0.0  # degrees, counter-clockwise in the image
    color_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    flip: bool = False


def sample_augmentation(rng: np.random.Generator, config: AugmentConfig | None, train: bool) -> Augmentation:
    """Draw one augmentation from ``rng`` (deterministic given its state).

    The same five draws happen in the same order whatever the config (two normals, a uniform for
    the rotation gate, three colour uniforms, a uniform for the flip), so a config change never
    shifts the stream. Returns the identity when ``train`` is False or ``config`` is None.
    """
    if not train or config is None:
        return Augmentation()
    z_scale = float(rng.standard_normal())
    z_rot = float(rng.standard_normal())
    u_rot = float(rng.random())
    u_color = rng.random(3)
    u_flip = float(rng.random())
    scale = float(np.clip(z_scale, -1.0, 1.0)) * config.scale + 1.0
    rot = float(np.clip(z_rot, -2.0, 2.0)) * config.rot if u_rot < config.rot_prob else 0.0
    color = tuple(float(v) for v in (1.0 - config.color) + 2.0 * config.color * u_color)
    return Augmentation(scale=scale, rot=rot + 0.0, color_scale=color, flip=u_flip < config.flip_prob)  # type: ignore[arg-type]


def crop_and_augment(
    img: np.ndarray, bbox: np.ndarray, aug: Augmentation, out_shape: tuple[int, int] = INPUT_IMG_SHAPE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upstream ``augmentation``: crop (scale/rotate/flip), colour-scale, to ``(3, h, w)`` float32 in [0, 1].

    The warp runs on the float32 image (as upstream's ``load_img``). Returns the patch,
    ``img2bb_trans`` and ``bb2img_trans`` (2x3; with a flip they refer to the mirrored image).
    """
    patch, trans, inv_trans = crop_image(img.astype(np.float32), bbox, out_shape, aug.scale, aug.rot, aug.flip)
    patch = np.clip(patch * np.asarray(aug.color_scale, dtype=np.float32)[None, None, :], 0, 255)
    chw = np.ascontiguousarray((patch / 255.0).transpose(2, 0, 1), dtype=np.float32)
    return chw, trans, inv_trans


def rot_aug_matrix(rot_deg: float) -> np.ndarray:
    """Upstream's 3D rotation for an in-plane crop rotation of ``rot_deg`` degrees (about camera z)."""
    a = np.deg2rad(-rot_deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], dtype=np.float32)


def rotate_root_pose(root_pose: np.ndarray, rot_mat: np.ndarray) -> np.ndarray:
    """Left-multiply the rotation of an axis-angle ``(3,)`` by ``rot_mat`` (3x3); returns ``(3,)``."""
    r, _ = cv2.Rodrigues(np.asarray(root_pose, dtype=np.float64).reshape(3, 1))
    out, _ = cv2.Rodrigues(np.asarray(rot_mat, dtype=np.float64) @ r)
    return out.reshape(3).astype(np.float32)


def flip_smplx_pose(pose: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror a ``(53, 3)`` original-joint pose: swap :data:`ORIG_FLIP_PAIRS`, axis-angle -> (x, -y, -z).

    ``valid`` ``(53,)`` (optional) is swapped alike. Returns new arrays.
    """
    pose = np.array(pose, dtype=np.float32).reshape(J.ORIG_JOINT_NUM, 3)
    valid = None if valid is None else np.array(valid, dtype=np.float32)
    for a, b in J.ORIG_FLIP_PAIRS:
        pose[[a, b]] = pose[[b, a]]
        if valid is not None:
            valid[[a, b]] = valid[[b, a]]
    pose[:, 1:3] *= -1
    return pose, valid


# ----------------------------------------------------------------------------------------------
# coordinates
# ----------------------------------------------------------------------------------------------
def cam2pixel(cam: np.ndarray, focal: Sequence[float], princpt: Sequence[float]) -> np.ndarray:
    """Pinhole projection of ``(N, 3)`` camera points -> ``(N, 3)`` ``[x_px, y_px, z_cam]``."""
    cam = np.asarray(cam, dtype=np.float32)
    x = cam[:, 0] / cam[:, 2] * focal[0] + princpt[0]
    y = cam[:, 1] / cam[:, 2] * focal[1] + princpt[1]
    return np.stack((x, y, cam[:, 2]), 1).astype(np.float32)


def depth_to_hm(z_rel: np.ndarray, size_3d: float, depth_cells: int = OUTPUT_HM_SHAPE[0]) -> np.ndarray:
    """Relative depth (m) -> heatmap depth cells: ``(z / (size / 2) + 1) / 2 * cells``."""
    return (np.asarray(z_rel) / (size_3d / 2) + 1) / 2.0 * depth_cells


def transform_joint_to_other_db(src: np.ndarray, src_names: Sequence[str], dst_names: Sequence[str]) -> np.ndarray:
    """Re-order joints by name into ``dst_names``; joints absent from ``src_names`` are zero."""
    src = np.asarray(src)
    out = np.zeros((len(dst_names),) + src.shape[1:], dtype=np.float32)
    index = {n: i for i, n in enumerate(dst_names)}
    for i, name in enumerate(src_names):
        j = index.get(name)
        if j is not None:
            out[j] = src[i]
    return out


def to_heatmap(
    xy_px: np.ndarray, trans: np.ndarray, input_shape: tuple[int, int], hm_shape: tuple[int, int, int]
) -> np.ndarray:
    """``(N, 2)`` original-image pixels -> heatmap cells through the crop affine ``trans``."""
    out = np.asarray(xy_px, dtype=np.float32) @ trans[:, :2].T + trans[:, 2]
    out[:, 0] = out[:, 0] / input_shape[1] * hm_shape[2]
    out[:, 1] = out[:, 1] / input_shape[0] * hm_shape[1]
    return out


def in_volume(joint_img: np.ndarray, hm_shape: tuple[int, int, int]) -> np.ndarray:
    """``(N, 1)`` float32: 1 where ``(x, y, z)`` heatmap coordinates lie inside the volume."""
    x, y, z = joint_img[:, 0], joint_img[:, 1], joint_img[:, 2]
    inside = (x >= 0) & (x < hm_shape[2]) & (y >= 0) & (y < hm_shape[1]) & (z >= 0) & (z < hm_shape[0])
    return inside.reshape(-1, 1).astype(np.float32)


def process_db_coord(
    joint_img: np.ndarray,
    joint_cam: np.ndarray,
    joint_valid: np.ndarray,
    aug: Augmentation,
    img_shape: tuple[int, int],
    flip_pairs: Sequence[tuple[int, int]],
    img2bb_trans: np.ndarray,
    src_names: Sequence[str],
    dst_names: Sequence[str] = J.JOINT_NAMES,
    input_shape: tuple[int, int] = INPUT_IMG_SHAPE,
    hm_shape: tuple[int, int, int] = OUTPUT_HM_SHAPE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upstream ``process_db_coord``: augment a dataset's own joints and map them to ``dst_names``.

    Args:
        joint_img: ``(N, 3)`` ``[x_px, y_px, z_hm]`` in original-image pixels (z already in depth
            cells, or 0 for 2D data).
        joint_cam: ``(N, 3)`` relative 3D joints (m) or zeros.
        joint_valid: ``(N, 1)`` or ``(N,)``.
        aug: the drawn augmentation (flip, rot used here; the crop is in ``img2bb_trans``).
        img_shape: original ``(height, width)``.
        flip_pairs: the dataset's own left/right index pairs.
        img2bb_trans: image -> crop affine (of the mirrored image when flipped).
        src_names, dst_names: joint names of the dataset / target set.

    Returns:
        ``joint_img`` (M, 3) hm cells, ``joint_cam`` (M, 3), ``joint_valid`` (M, 1),
        ``joint_trunc`` (M, 1) float32, ``M = len(dst_names)``.
    """
    joint_img = np.array(joint_img, dtype=np.float32)
    joint_cam = np.array(joint_cam, dtype=np.float32)
    joint_valid = np.array(joint_valid, dtype=np.float32).reshape(-1, 1)
    if aug.flip:
        joint_cam[:, 0] = -joint_cam[:, 0]
        joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
        for a, b in flip_pairs:
            for arr in (joint_img, joint_cam, joint_valid):
                arr[[a, b]] = arr[[b, a]]
    joint_cam = joint_cam @ rot_aug_matrix(aug.rot).T
    joint_img[:, :2] = to_heatmap(joint_img[:, :2], img2bb_trans, input_shape, hm_shape)
    joint_trunc = joint_valid * in_volume(joint_img, hm_shape)
    return (
        transform_joint_to_other_db(joint_img, src_names, dst_names),
        transform_joint_to_other_db(joint_cam, src_names, dst_names),
        transform_joint_to_other_db(joint_valid, src_names, dst_names),
        transform_joint_to_other_db(joint_trunc, src_names, dst_names),
    )


def process_part_bbox(
    bbox_xyxy: np.ndarray | None,
    aug: Augmentation,
    img_shape: tuple[int, int],
    img2bb_trans: np.ndarray,
    input_shape: tuple[int, int] = INPUT_IMG_SHAPE,
    hm_shape: tuple[int, int, int] = OUTPUT_HM_SHAPE,
) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Upstream ``process_hand_face_bbox``: a part box (image xyxy) -> crop box in hm cells.

    The four corners go through the flip and the crop affine; the result is their axis-aligned
    bounding box. x is scaled by ``hm_w / input_w`` (upstream EHF uses the height ratio for x, a
    bug not reproduced). Left/right swapping under a flip is the caller's job.

    Returns:
        ``center`` (2,), ``size`` (2,) float32 hm cells and ``valid`` float32 scalar; a missing box
        gives upstream's dummy ``[0, 0, 1, 1]`` (centre 0.5, size 1) and valid 0.
    """
    if bbox_xyxy is None:
        return np.full(2, 0.5, np.float32), np.ones(2, np.float32), F32(0.0)
    b = np.array(bbox_xyxy, dtype=np.float32).reshape(2, 2)
    if aug.flip:
        b[:, 0] = img_shape[1] - b[:, 0] - 1
        b[[0, 1], 0] = b[[1, 0], 0]
    x1, y1, x2, y2 = b.reshape(4)
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float32)
    corners = to_heatmap(corners, img2bb_trans, input_shape, hm_shape)
    lo, hi = corners.min(0), corners.max(0)
    return ((lo + hi) / 2).astype(np.float32), (hi - lo).astype(np.float32), F32(1.0)


def xywh_to_xyxy_or_none(box: Sequence[float] | None, valid: bool = True) -> np.ndarray | None:
    """``[x, y, w, h]`` -> float32 ``[x1, y1, x2, y2]``, None when not valid / absent."""
    if box is None or not valid:
        return None
    b = np.asarray(box, dtype=np.float32).reshape(4).copy()
    b[2:] += b[:2]
    return b


# ----------------------------------------------------------------------------------------------
# base dataset
# ----------------------------------------------------------------------------------------------
def body_layer_copy(layer: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """A copy of ``layer`` (e.g. an :class:`SMPLXLayer`) with every parameter and buffer on ``device``.

    The caller's module is left where it is; tensors are copied straight to ``device`` (no
    intermediate copy on the source device). Used so that the training model and the datasets
    never share one body layer: ``Module.to`` moves a module in place, and a dataset whose layer
    was moved to CUDA fails in forked DataLoader workers ("Cannot re-initialize CUDA in forked
    subprocess") or, with ``num_workers=0``, runs one small GPU SMPL-X call per sample.
    """
    memo: dict[int, Any] = {}
    for t in itertools.chain(layer.parameters(), layer.buffers()):
        if id(t) in memo:
            continue
        moved = t.detach().to(device, copy=True)
        memo[id(t)] = torch.nn.Parameter(moved, t.requires_grad) if isinstance(t, torch.nn.Parameter) else moved
    return copy.deepcopy(layer, memo)


def cpu_body_layer(layer: SMPLXLayer) -> SMPLXLayer:
    """``layer`` itself when all its tensors are on the CPU, else a CPU copy (see :func:`body_layer_copy`).

    Datasets build their targets on the CPU (DataLoader workers are forked and cannot use CUDA).
    """
    if all(t.device.type == "cpu" for t in itertools.chain(layer.parameters(), layer.buffers())):
        return layer
    return body_layer_copy(layer, "cpu")


class AugmentedDataset(torch.utils.data.Dataset):
    """Base of every dataset here: per-item deterministic augmentation, one ``__getitem__``.

    Subclasses fill ``self.records`` and implement :meth:`get` (the sample for a given
    augmentation). ``augment=None`` disables augmentation; it is applied only when ``train``.
    ``model``: the network geometry samples are made for (``input_img_shape`` crops and
    ``output_hm_shape`` joint targets; the hand set's ``input_hand_shape`` and
    ``output_hand_hm_shape``); None: the released network's (512x384, 8x8x6).
    """

    train: bool = False

    def __init__(self, augment: AugmentConfig | None, seed: int, model: ModelConfig | None = None) -> None:
        self.augment = augment
        self.model = model if model is not None else ModelConfig()
        self.seed = int(seed)
        self.epoch = 0
        self.records: list[dict[str, Any]] = []
        self.dropped_boxes = 0  # annotations person_box dropped

    def person_box(self, xywh: Sequence[float], img: Mapping[str, Any]) -> np.ndarray | None:
        """An annotation's person box ``[x, y, w, h]`` (image pixels) in the image record ``img``
        (``width``, ``height``) as the crop box :func:`~wbcap.crop.bbox.process_bbox` makes of
        it at inference: widened to the model's crop aspect (``body_aspect_ratio``); None for
        a box it drops (empty, not finite, or outside the image), counted in ``dropped_boxes``
        for :meth:`say_dropped`."""
        box = process_bbox(np.asarray(xywh, np.float64), img["width"], img["height"],
                           aspect_ratio=self.model.body_aspect_ratio)
        self.dropped_boxes += box is None
        return box

    def say_dropped(self, annotations: str | Path) -> None:
        """Say how many of ``annotations``' samples :meth:`person_box` dropped: a warning for an
        evaluation split (its metrics are over fewer samples than the protocol's: EHF's 100
        frames, say, without a word), a debug line for training (COCO's tiny boxes are routine)."""
        if self.dropped_boxes:
            kept = len(self.records)
            (log.debug if self.train else log.warning)(
                "%s: %d of its annotations ha%s no usable person box (empty, not finite, or outside its image) and "
                "%s left out; %d sample(s) kept", annotations, self.dropped_boxes, "s" if self.dropped_boxes == 1 else "ve",
                "is" if self.dropped_boxes == 1 else "are", kept)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def augmentation_for(self, idx: int) -> Augmentation:
        """The augmentation item ``idx`` gets in the current epoch."""
        rng = np.random.default_rng((self.seed, self.epoch, int(idx)))
        return sample_augmentation(rng, self.augment, self.train)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {type(self).__name__} of length {len(self)}")
        return self.get(idx, self.augmentation_for(idx))

    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The sample of record ``idx`` under the explicit augmentation ``aug``."""
        raise NotImplementedError


def whole_body_sample(
    img: np.ndarray,
    joint: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    smplx: Mapping[str, Any],
    smplx_shape_valid: bool,
    is_3d: bool,
    boxes: Mapping[str, tuple[np.ndarray, np.ndarray, np.float32]],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Assemble the schema's three dicts (float32 everywhere) from processed pieces.

    ``joint`` is ``process_db_coord``'s output; ``smplx`` a ``process_smplx_output`` dict whose
    ``joint_valid`` is (137,) and ``pose_valid`` (53,); ``boxes`` maps ``lhand``/``rhand``/``face``
    to ``(center, size, valid)``.
    """
    joint_img, joint_cam, joint_valid, joint_trunc = joint
    smplx_joint_valid = np.asarray(smplx["joint_valid"], np.float32).reshape(-1, 1)
    smplx_joint_trunc = smplx_joint_valid * np.asarray(smplx["joint_trunc"], np.float32).reshape(-1, 1)
    pose_valid = np.repeat(np.asarray(smplx["pose_valid"], np.float32), 3)
    inputs = {"img": img.astype(np.float32)}
    targets = {
        "joint_img": joint_img.astype(np.float32),
        "smplx_joint_img": np.asarray(smplx["joint_img"], np.float32),
        "joint_cam": joint_cam.astype(np.float32),
        "smplx_joint_cam": np.asarray(smplx["joint_cam"], np.float32),
        "smplx_pose": np.asarray(smplx["pose"], np.float32),
        "smplx_shape": np.asarray(smplx["shape"], np.float32),
        "smplx_expr": np.asarray(smplx["expr"], np.float32),
    }
    meta = {
        "joint_valid": joint_valid.astype(np.float32),
        "joint_trunc": joint_trunc.astype(np.float32),
        "smplx_joint_valid": smplx_joint_valid,
        "smplx_joint_trunc": smplx_joint_trunc,
        "smplx_pose_valid": pose_valid,
        "smplx_shape_valid": F32(bool(smplx_shape_valid)),
        "smplx_expr_valid": F32(bool(smplx["expr_valid"])),
        "is_3D": F32(bool(is_3d)),
    }
    for part in ("lhand", "rhand", "face"):
        center, size, valid = boxes[part]
        targets[f"{part}_bbox_center"] = np.asarray(center, np.float32)
        targets[f"{part}_bbox_size"] = np.asarray(size, np.float32)
        meta[f"{part}_bbox_valid"] = F32(valid)
    return inputs, targets, meta


def dummy_boxes() -> dict[str, tuple[np.ndarray, np.ndarray, np.float32]]:
    """Zero, invalid hand/face boxes (datasets without part boxes, as upstream Human36M)."""
    z = np.zeros(2, np.float32)
    return {part: (z.copy(), z.copy(), F32(0.0)) for part in ("lhand", "rhand", "face")}
