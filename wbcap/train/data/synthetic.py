"""A synthetic whole-body training set: random SMPL-X bodies rendered over simple backgrounds.

Every sample is generated from known SMPL-X parameters, so all targets are exact and the whole
training loop can run without licensed data. Samples follow upstream Hand4Whole's schema
(``(inputs, targets, meta_info)``, see :class:`SyntheticWholeBody`) and collate with
``torch.utils.data.default_collate`` (every value is a float32 tensor).

Camera: the network's virtual crop camera -- focal ``config.focal`` and principal point
``config.princpt`` in body-input pixels (256x192), scaled to the rendered image (512x384 by
default); OpenCV axes (x right, y down, z forward). Projection is the network's
(``u = f * X / (Z + 1e-4) + c``, as :class:`~wbcap.model.regressor.WholeBodyRegressor`), so the
network's own output for the true parameters has zero projection loss.

Target conventions (upstream ``process_human_model_output`` and ``process_hand_face_bbox``):

* ``joint_img`` (137, 3): x, y in body heatmap cells (``output_hm_shape``); z is the
  part-relative depth (:func:`wbcap.train.losses.part_relative_joints`) discretised as
  ``(dz / (size / 2) + 1) / 2 * D`` with ``size`` = :data:`BODY_3D_SIZE` for body joints,
  :data:`HAND_3D_SIZE` for hands and :data:`FACE_3D_SIZE` for the face;
* ``joint_trunc``: 1 where x, y, z all lie inside the heatmap volume;
* hand / face boxes: extent of the part's projected joints, grown by :data:`BOX_EXTEND` about
  its centre (upstream's AGORA conversion), centre and size in body heatmap cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from wbcap.body import joints as J
from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.config import ModelConfig
from wbcap.export.render import render_meshes
from wbcap.train.data.common import BODY_3D_SIZE, FACE_3D_SIZE, HAND_3D_SIZE, cpu_body_layer
from wbcap.train.losses import part_relative_joints

__all__ = [
    "BODY_3D_SIZE",
    "BOX_EXTEND",
    "FACE_3D_SIZE",
    "HAND_3D_SIZE",
    "SyntheticSample",
    "SyntheticWholeBody",
    "part_boxes",
    "project_joint_targets",
]

#: Hand / face boxes: joint extent grown by this factor about its centre (upstream get_bbox).
BOX_EXTEND = 1.2
_PROJ_EPS = 1e-4  # the network's projection adds this to depth

# Colour groups of the 55 SMPL-X joints (a vertex takes the group of its dominant joint).
_GROUPS: dict[str, tuple[int, ...]] = {
    "hips": (0, 3),
    "chest": (6, 9),
    "head": (12, 15, 22, 23, 24),
    "l_thigh": (1,),
    "r_thigh": (2,),
    "l_shin": (4,),
    "r_shin": (5,),
    "l_foot": (7, 10),
    "r_foot": (8, 11),
    "l_upper_arm": (13, 16),
    "r_upper_arm": (14, 17),
    "l_forearm": (18,),
    "r_forearm": (19,),
    "l_hand": (20, *range(25, 40)),
    "r_hand": (21, *range(40, 55)),
}
_GROUP_COLOURS: dict[str, tuple[float, float, float]] = {
    "hips": (0.55, 0.55, 0.80),
    "chest": (0.75, 0.75, 0.95),
    "head": (0.95, 0.80, 0.65),
    "l_thigh": (0.90, 0.35, 0.35),
    "r_thigh": (0.35, 0.55, 0.95),
    "l_shin": (0.95, 0.60, 0.30),
    "r_shin": (0.30, 0.80, 0.90),
    "l_foot": (0.70, 0.25, 0.15),
    "r_foot": (0.15, 0.35, 0.70),
    "l_upper_arm": (0.95, 0.90, 0.30),
    "r_upper_arm": (0.45, 0.90, 0.45),
    "l_forearm": (0.95, 0.55, 0.80),
    "r_forearm": (0.60, 0.45, 0.95),
    "l_hand": (1.00, 0.95, 0.70),
    "r_hand": (0.70, 1.00, 0.85),
}

# SMPL-X joint indices used to pose the body.
_L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW = 16, 17, 18, 19


def _depth_sizes() -> torch.Tensor:
    sizes = torch.full((J.JOINT_NUM,), BODY_3D_SIZE)
    sizes[J.JOINT_PART["hand"].start : J.JOINT_PART["hand"].stop] = HAND_3D_SIZE
    sizes[J.JOINT_PART["face"].start : J.JOINT_PART["face"].stop] = FACE_3D_SIZE
    return sizes


_DEPTH_SIZE = _depth_sizes()


def project_joint_targets(
    joints_cam: torch.Tensor, config: ModelConfig, joint_valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Camera joints -> ``(joint_img, joint_cam, joint_trunc)`` targets, batched.

    Args:
        joints_cam: ``(B, 137, 3)`` metres in the crop camera (SMPL-X joints + translation).
        config: geometry (virtual focal / principal point, heatmap shapes).
        joint_valid: optional ``(B, 137, 1)``; truncation is multiplied by it.

    Returns:
        ``joint_img (B, 137, 3)`` in body heatmap cells (z: discretised part-relative depth),
        ``joint_cam (B, 137, 3)`` part-relative metres, ``joint_trunc (B, 137, 1)`` float.
    """
    c = config
    z = joints_cam[..., 2] + _PROJ_EPS
    u = joints_cam[..., 0] / z * c.focal[0] + c.princpt[0]
    v = joints_cam[..., 1] / z * c.focal[1] + c.princpt[1]
    x = u / c.input_body_shape[1] * c.output_hm_shape[2]
    y = v / c.input_body_shape[0] * c.output_hm_shape[1]
    joint_cam = part_relative_joints(joints_cam)
    size = _DEPTH_SIZE.to(dtype=joints_cam.dtype, device=joints_cam.device)
    d = (joint_cam[..., 2] / (size / 2) + 1) / 2.0 * c.output_hm_shape[0]
    joint_img = torch.stack((x, y, d), -1)
    trunc = (
        (x >= 0) & (x < c.output_hm_shape[2]) & (y >= 0) & (y < c.output_hm_shape[1])
        & (d >= 0) & (d < c.output_hm_shape[0])
    )[..., None].to(joints_cam.dtype)  # fmt: skip
    if joint_valid is not None:
        trunc = trunc * joint_valid.to(trunc.dtype)
    return joint_img, joint_cam, trunc


def part_boxes(joint_img: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hand and face boxes from the projected joints (body heatmap cells), batched.

    Args:
        joint_img: ``(B, 137, >=2)`` in body heatmap cells.

    Returns:
        ``{"lhand_bbox_center", "lhand_bbox_size", "rhand_...", "face_..."}``, each ``(B, 2)``:
        the part's joint extent grown by :data:`BOX_EXTEND` about its centre.
    """
    out: dict[str, torch.Tensor] = {}
    for part in ("lhand", "rhand", "face"):
        r = J.JOINT_PART[part]
        xy = joint_img[:, r.start : r.stop, :2]
        lo, hi = xy.amin(1), xy.amax(1)
        out[f"{part}_bbox_center"] = (lo + hi) / 2.0
        out[f"{part}_bbox_size"] = (hi - lo) * BOX_EXTEND
    return out


@dataclass(frozen=True)
class SyntheticSample:
    """Everything generated for one index (``SyntheticWholeBody.generate``).

    ``image``/``background``: ``(H, W, 3)`` uint8 RGB; ``params``: the SMPL-X keyword arguments
    (1-row float32 tensors) and ``transl`` (crop camera, metres); ``vertices`` ``(V, 3)`` in the
    crop camera; ``inputs``/``targets``/``meta_info``: the training sample.
    """

    image: np.ndarray
    background: np.ndarray
    params: dict[str, torch.Tensor]
    vertices: np.ndarray
    inputs: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    meta_info: dict[str, torch.Tensor]

    @property
    def silhouette(self) -> np.ndarray:
        """``(H, W)`` bool: pixels where the rendered body differs from the background."""
        return (self.image != self.background).any(axis=2)


class SyntheticWholeBody(Dataset):
    """Random SMPL-X bodies facing the crop camera, rendered, with exact Hand4Whole targets.

    Args:
        body_layer: the SMPL-X layer (any model file; tests use the synthetic one). Kept as is
            when on the CPU, else copied to the CPU once; its dtype is kept.
        length: number of samples.
        seed: samples are a pure function of ``(seed, index)``.
        config: network geometry (heatmap shapes, virtual camera).
        image_size: ``(H, W)`` of the rendered image; the camera is scaled from the body-input
            size to it. None (default): ``config.input_img_shape`` (the released network's:
            512x384), the size the network and the other training sets use.

    A sample is ``(inputs, targets, meta_info)`` of float32 tensors:
    inputs ``img (3, H, W)`` RGB in [0, 1]; targets ``joint_img``/``smplx_joint_img``
    ``(137, 3)``, ``joint_cam``/``smplx_joint_cam`` ``(137, 3)``, ``smplx_pose (159)``,
    ``smplx_shape (10)``, ``smplx_expr (10)``, ``{lhand,rhand,face}_bbox_{center,size} (2)``;
    meta_info ``joint_valid``/``joint_trunc``/``smplx_joint_valid``/``smplx_joint_trunc``
    ``(137, 1)``, ``smplx_pose_valid (159)``, scalars ``smplx_shape_valid``,
    ``smplx_expr_valid``, ``is_3D``, ``{lhand,rhand,face}_bbox_valid`` (all validity 1).
    """

    def __init__(
        self,
        body_layer: SMPLXLayer,
        length: int,
        seed: int = 0,
        config: ModelConfig = ModelConfig(),
        image_size: tuple[int, int] | None = None,
    ) -> None:
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        # Samples are made on the CPU (DataLoader workers cannot use CUDA after a fork): a layer
        # on another device is copied to the CPU once.
        body_layer = cpu_body_layer(body_layer)
        self.body = body_layer
        self.length = int(length)
        self.seed = int(seed)
        self.config = config
        if image_size is None:
            image_size = config.input_img_shape
        self.image_size = (int(image_size[0]), int(image_size[1]))
        c = config
        sx = self.image_size[1] / c.input_body_shape[1]
        sy = self.image_size[0] / c.input_body_shape[0]
        self.focal = (c.focal[0] * sx, c.focal[1] * sy)
        self.princpt = (c.princpt[0] * sx, c.princpt[1] * sy)
        self._faces, self._colours = self._part_meshes(body_layer)
        self._num_betas = body_layer.num_betas
        self._num_expr = body_layer.num_expression

    @staticmethod
    def _part_meshes(layer: SMPLXLayer) -> tuple[list[np.ndarray], list[tuple[float, float, float]]]:
        """Faces split by colour group (dominant skinning joint of each face), computed once."""
        weights = layer.lbs_weights.detach().cpu().numpy()  # (V, 55)
        faces = np.asarray(layer.faces, dtype=np.int64)
        face_joint = weights[faces].sum(1).argmax(1)  # (F,)
        joint_group = np.zeros(weights.shape[1], dtype=np.int64)
        names = list(_GROUPS)
        for g, name in enumerate(names):
            joint_group[list(j for j in _GROUPS[name] if j < len(joint_group))] = g
        face_group = joint_group[face_joint]
        out_faces, out_colours = [], []
        for g, name in enumerate(names):
            sel = faces[face_group == g]
            if len(sel):
                out_faces.append(np.ascontiguousarray(sel))
                out_colours.append(_GROUP_COLOURS[name])
        return out_faces, out_colours

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[dict, dict, dict]:
        """Sample ``index`` (:meth:`generate`) as the real training sets give theirs: float32 numpy
        arrays and ``np.float32`` scalars, so that one batch can hold both (``--datasets
        Human36M,synthetic`` failed in ``default_collate``, which takes a batch's type from its
        first sample: a tensor beside an array)."""
        s = self.generate(index)
        return tuple({k: _as_numpy(v) for k, v in part.items()} for part in (s.inputs, s.targets, s.meta_info))

    # ------------------------------------------------------------------------------------------
    def _random_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Plausible, in-frame parameters: an A-pose with small random joint rotations."""
        body = rng.normal(0.0, 0.12, (21, 3))
        body[[0, 1, 3, 4]] *= 0.5  # hips, knees: keep the legs roughly straight
        # Lower the arms from the T-pose (rotation about the body's forward axis), bend elbows.
        body[_L_SHOULDER - 1] += (0.0, rng.uniform(-0.3, 0.3), -rng.uniform(0.8, 1.3))
        body[_R_SHOULDER - 1] += (0.0, rng.uniform(-0.3, 0.3), rng.uniform(0.8, 1.3))
        body[_L_ELBOW - 1] += (0.0, -rng.uniform(0.0, 0.8), 0.0)
        body[_R_ELBOW - 1] += (0.0, rng.uniform(0.0, 0.8), 0.0)
        # Root: a half-turn about x (the y-up body stands upright in the y-down camera, facing
        # it), a little yaw about the camera's vertical axis, roll, and a pitch of one sign (seen
        # slightly from below). Every half-turn (angle exactly pi) has two axis-angle vectors and
        # the pose loss is L1 on axis-angle (as upstream): keeping the angle below pi on one side
        # (x component about +2.9..+3.1) makes the root targets a continuous function of the image.
        yaw, pitch, roll = rng.uniform(-0.5, 0.5), rng.uniform(0.05, 0.2), rng.uniform(-0.1, 0.1)
        rot = _rot_y(yaw) @ _rot_x(np.pi - pitch) @ _rot_z(roll)
        root = cv2.Rodrigues(rot)[0].reshape(3)
        jaw = np.array([rng.uniform(0.0, 0.3), rng.normal(0.0, 0.03), rng.normal(0.0, 0.03)])
        return {
            "betas": np.clip(rng.normal(0.0, 0.8, self._num_betas), -2.0, 2.0),
            "expression": rng.normal(0.0, 0.5, self._num_expr),
            "global_orient": root,
            "body_pose": body.reshape(63),
            "left_hand_pose": rng.normal(0.0, 0.15, 45),
            "right_hand_pose": rng.normal(0.0, 0.15, 45),
            "jaw_pose": jaw,
        }

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """Vertical two-colour gradient with a few random rectangles."""
        h, w = self.image_size
        top, bottom = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
        ramp = np.linspace(0.0, 1.0, h)[:, None]
        column = top[None, :] * (1 - ramp) + bottom[None, :] * ramp  # (H, 3)
        img = np.ascontiguousarray(np.broadcast_to(column[:, None, :], (h, w, 3))).astype(np.uint8)
        for _ in range(int(rng.integers(2, 6))):
            x0, x1 = np.sort(rng.integers(0, w, 2))
            y0, y1 = np.sort(rng.integers(0, h, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), colour, thickness=-1)
        return img

    def _translation(self, verts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Camera translation: mesh centred (a little jitter), 40-50 m away, always in frame."""
        c = self.config
        lo, hi = verts.min(0), verts.max(0)
        centre = (lo + hi) / 2.0
        extent = hi - lo
        # Depth at which the mesh fills at most 90 % of the body input in both directions.
        fit = max(
            extent[1] * c.focal[1] / (0.9 * c.input_body_shape[0]),
            extent[0] * c.focal[0] / (0.9 * c.input_body_shape[1]),
        )
        depth = max(rng.uniform(40.0, 50.0), fit)
        # Jitter the centre by up to 5 % of the input, in metres at that depth.
        jx = rng.uniform(-0.05, 0.05) * c.input_body_shape[1] * depth / c.focal[0]
        jy = rng.uniform(-0.05, 0.05) * c.input_body_shape[0] * depth / c.focal[1]
        return np.array([jx - centre[0], jy - centre[1], depth - centre[2]])

    def generate(self, index: int) -> SyntheticSample:
        """The sample at ``index`` with its image, background, parameters and vertices."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = np.random.default_rng(np.random.SeedSequence((self.seed, int(index))))
        raw = self._random_params(rng)
        background = self._background(rng)
        buf = self.body.v_template
        params = {k: torch.as_tensor(v, dtype=buf.dtype, device=buf.device)[None] for k, v in raw.items()}
        with torch.no_grad():
            out = self.body(**params)
        verts = out.vertices[0].double().cpu().numpy()
        transl = self._translation(verts, rng)
        params["transl"] = torch.as_tensor(transl, dtype=buf.dtype, device=buf.device)[None]
        t = params["transl"][:, None, :]
        joints = (out.joints[:, list(J.JOINT_IDX)] + t).float().cpu()  # (1, 137, 3)
        verts_cam = verts + transl
        image = render_meshes(
            background,
            [verts_cam] * len(self._faces),
            self._faces,
            self.focal,
            self.princpt,
            colors=self._colours,
            backend="software",
        )

        joint_img, joint_cam, trunc = project_joint_targets(joints, self.config)
        boxes = part_boxes(joint_img)
        f32 = {k: v.detach().float().cpu() for k, v in params.items()}
        pose = torch.cat(
            (f32["global_orient"], f32["body_pose"], f32["left_hand_pose"], f32["right_hand_pose"], f32["jaw_pose"]),
            1,
        )[0]
        one = torch.tensor(1.0)
        ones_j = torch.ones(J.JOINT_NUM, 1)
        targets = {
            "joint_img": joint_img[0],
            "smplx_joint_img": joint_img[0].clone(),
            "joint_cam": joint_cam[0],
            "smplx_joint_cam": joint_cam[0].clone(),
            "smplx_pose": pose,
            "smplx_shape": f32["betas"][0],
            "smplx_expr": f32["expression"][0],
            **{k: v[0] for k, v in boxes.items()},
        }
        meta_info = {
            "joint_valid": ones_j,
            "joint_trunc": trunc[0],
            "smplx_joint_valid": ones_j.clone(),
            "smplx_joint_trunc": trunc[0].clone(),
            "smplx_pose_valid": torch.ones(pose.shape[0]),
            "smplx_shape_valid": one.clone(),
            "smplx_expr_valid": one.clone(),
            "is_3D": one.clone(),
            "lhand_bbox_valid": one.clone(),
            "rhand_bbox_valid": one.clone(),
            "face_bbox_valid": one.clone(),
        }
        img = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0).contiguous()
        return SyntheticSample(
            image=image,
            background=background,
            params=f32,
            vertices=verts_cam.astype(np.float32),
            inputs={"img": img},
            targets=targets,
            meta_info=meta_info,
        )


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _as_numpy(value: Any) -> Any:
    """A sample value as the real loaders hold it: a tensor as a numpy array (a 0-d one as an
    ``np.float32``-style numpy scalar); anything else unchanged."""
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().numpy()
        return array[()] if array.ndim == 0 else array
    return value
