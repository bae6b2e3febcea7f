"""The soles of SMPL-X's feet: which vertices touch the ground, and where they are in each frame.

Each foot's sole is split into two *regions*, the heel and the toe (ball and toes), because a
walking foot rolls: the heel touches first, then the whole sole, then only the toe. A region is
a few vertices of the sole (:class:`SoleRegions`, chosen once from the model's rest mesh); per
frame it gives an *anchor* (the mean of its vertices: a point that moves rigidly with the foot,
what must stay still while the region is planted) and its *lowest vertex* along the up direction
(what must touch the ground).

Region order everywhere (the ``R`` axis of the arrays): :data:`REGION_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wbcap.body.joints import SMPLX_ANKLES, SMPLX_FEET, SMPLX_HIPS, SMPLX_NECK
from wbcap.smooth.posing import POSE_BATCH, pose_track
from wbcap.smooth.track import SmoothedTrack

__all__ = ["FOOT_JOINTS", "REGION_FOOT", "REGION_NAMES", "FeetTrack", "SoleRegions", "feet_track", "foot_vertices"]

#: SMPL-X joints whose skinning weights mark a foot's vertices: (L_Ankle, L_Foot), (R_Ankle, R_Foot).
FOOT_JOINTS: tuple[tuple[int, int], ...] = tuple(zip(SMPLX_ANKLES, SMPLX_FEET))
#: The sole regions, in the order of every ``R`` axis.
REGION_NAMES: tuple[str, ...] = ("left_heel", "left_toe", "right_heel", "right_toe")
#: Foot of each region: 0 left, 1 right.
REGION_FOOT = np.array([0, 0, 1, 1])


def foot_vertices(body: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ids of the (left, right) foot of ``body`` (an :class:`~wbcap.body.smplx_layer.SMPLXLayer`):
    ``(K_left,)``, ``(K_right,)`` int64, the vertices skinned mostly (weight >= 0.5) to the foot's
    ankle and foot joints (:data:`FOOT_JOINTS`); empty for a model without feet."""
    weights = body.lbs_weights.detach().cpu().double().numpy()  # (V, 55)
    left, right = (np.flatnonzero(weights[:, list(joints)].sum(1) >= 0.5) for joints in FOOT_JOINTS)
    return left, right


@dataclass(frozen=True)
class SoleRegions:
    """Vertex ids of the four sole regions of an SMPL-X mesh.

    Attributes:
        vertices: ``(4, K)`` int64 vertex ids, one row per region of :data:`REGION_NAMES`.
    """

    vertices: np.ndarray

    @classmethod
    def from_body(cls, body: Any, band: float = 0.015, part: float = 0.35, max_points: int = 24) -> SoleRegions:
        """The regions of ``body`` (an :class:`~wbcap.body.smplx_layer.SMPLXLayer`), from its rest mesh.

        A foot's vertices are :func:`foot_vertices`; its sole, those within ``band`` metres of the
        foot's lowest rest vertex (the rest mesh is y up, feet flat); the heel region, the rearmost
        ``part`` of the sole's length (model ``z``, the body faces +z), the toe region the frontmost
        ``part``; of each region the ``max_points`` lowest rest vertices (so the lowest one is
        among them).

        Raises:
            ValueError: a model without such vertices (not SMPL-X).
        """
        rest = body.v_template.detach().cpu().double().numpy()  # (V, 3), y up, facing +z
        rows = []
        for joints, foot in zip(FOOT_JOINTS, foot_vertices(body)):
            if foot.size == 0:
                raise ValueError(f"no vertex is skinned to the foot joints {joints}: not an SMPL-X model")
            sole = foot[rest[foot, 1] <= rest[foot, 1].min() + band]
            z = rest[sole, 2]
            lo, hi = z.min(), z.max()
            for ids in (sole[z <= lo + part * (hi - lo)], sole[z >= hi - part * (hi - lo)]):
                lowest_first = ids[np.argsort(rest[ids, 1], kind="stable")]
                rows.append(np.sort(lowest_first[:max_points]))
        k = min(r.size for r in rows)
        rows = [r[np.argsort(rest[r, 1], kind="stable")[:k]] for r in rows]  # equal sizes: the lowest k
        return cls(vertices=np.stack(rows).astype(np.int64))


@dataclass(frozen=True)
class FeetTrack:
    """One track's pelvis, neck and sole regions per frame, in the camera frame (OpenCV axes,
    metres, float64).

    Attributes:
        time: ``(N,)`` seconds.
        pelvis: ``(N, 3)`` the posed pelvis (``rest_root(betas) + transl``: SMPL-X rotates about it).
        soles: ``(N, R=4, K, 3)`` the sole-region vertices (:data:`REGION_NAMES`).
        neck: ``(N, 3)`` the neck joint (the trunk's direction is the body's own up).
        hip_axis: ``(N, 3)`` unit vector from the right hip joint to the left one (level when the
            hips are).
    """

    time: np.ndarray
    pelvis: np.ndarray
    soles: np.ndarray
    neck: np.ndarray
    hip_axis: np.ndarray

    @property
    def anchors(self) -> np.ndarray:
        """``(N, R, 3)`` mean of each region's vertices (moves rigidly with the foot)."""
        return self.soles.mean(2)

    def lowest(self, up: np.ndarray) -> np.ndarray:
        """``(N, R, 3)`` each region's lowest vertex along the unit ``up`` ``(3,)`` (camera frame)."""
        k = np.argmin(self.soles @ np.asarray(up, np.float64), axis=2)  # (N, R)
        return np.take_along_axis(self.soles, k[..., None, None], axis=2)[:, :, 0]

    def moved(self, correction: np.ndarray) -> FeetTrack:
        """The same track with every frame translated by ``correction`` ``(N, 3)`` metres."""
        c = np.asarray(correction, np.float64)
        return FeetTrack(time=self.time, pelvis=self.pelvis + c, soles=self.soles + c[:, None, None], neck=self.neck + c,
                         hip_axis=self.hip_axis)


def feet_track(track: SmoothedTrack, body: Any, device: Any, regions: SoleRegions, batch: int = POSE_BATCH
               ) -> FeetTrack:
    """The pelvis, neck, hip axis and sole regions of a :class:`~wbcap.smooth.track.SmoothedTrack` per frame.

    ``body``: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` the parameters belong to (hand poses
    relative to the mean, as the track holds them), on ``device``; the track is posed ``batch``
    frames at a time (:func:`wbcap.smooth.posing.pose_track`) and only the regions'
    vertices and the neck and hip joints are kept.
    """
    import torch

    posed = pose_track(body, track, device, vertex_ids=regions.vertices,
                       joint_ids=np.array([SMPLX_NECK, *SMPLX_HIPS]), batch=batch)
    with torch.no_grad():
        betas = torch.as_tensor(np.asarray(track.betas, np.float32)[None], device=device)
        rest = body.rest_root(betas).double().cpu().numpy()[0]
    pelvis = rest[None] + np.asarray(track.transl, np.float64)
    neck, left_hip, right_hip = (posed.joints[:, k] for k in range(3))
    hips = (left_hip - right_hip).astype(np.float64)  # float32 difference, as the model's output
    hips /= np.linalg.norm(hips, axis=1, keepdims=True)
    return FeetTrack(time=np.asarray(track.time, np.float64), pelvis=pelvis, soles=posed.vertices.astype(np.float64),
                     neck=neck.astype(np.float64), hip_axis=hips)
