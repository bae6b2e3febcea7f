"""Posing a smoothed track: SMPL-X vertices and joints of its rows in the video camera, a
batch of rows per call. The one place a track is posed: rendering and ``--obj``
(:mod:`wbcap.export.track_meshes`), the world stage's soles (:mod:`wbcap.world.feet`) and the
synthetic world scenes (:mod:`wbcap.testing.world_scenes`) all call :func:`pose_track`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wbcap.smooth.track import ROT_KEYS, SmoothedTrack

#: Rows of a track posed per SMPL-X call by :func:`pose_track` (bounds its working memory).
POSE_BATCH = 128


@dataclass(frozen=True)
class PosedRows:
    """SMPL-X posed for rows of a track: float32 metres in the video camera (OpenCV axes).

    Attributes:
        vertices: ``(R, *vertex_ids.shape, 3)`` the vertices asked for, ``(R, V, 3)`` for all.
        joints: ``(R, *joint_ids.shape, 3)`` the output joints asked for, ``(R, 144, 3)`` for all
            (:data:`wbcap.body.joints.SMPLX_OUTPUT_JOINT_NAMES`).
    """

    vertices: np.ndarray
    joints: np.ndarray


def pose_track(body: Any, track: SmoothedTrack, device: Any, rows: np.ndarray | None = None,
               vertex_ids: np.ndarray | None = None, joint_ids: np.ndarray | None = None,
               batch: int | None = POSE_BATCH) -> PosedRows:
    """The posed mesh and joints of ``rows`` of one track.

    Args:
        body: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` the parameters belong to (hand
            poses relative to the mean, as the track holds them), on ``device``.
        track: the track; its own translation places the body, eyes at rest.
        rows: ``(R,)`` row indices (None: every row, in order).
        vertex_ids, joint_ids: integer ids of any shape of the vertices / output joints to keep
            (None: all); only these leave the device, so a long track costs ``R`` times their
            number in memory, not ``R`` whole meshes.
        batch: rows per SMPL-X call (None: all ``rows`` in one call).

    Returns:
        :class:`PosedRows`, float32, metres, video camera (OpenCV axes).
    """
    import torch

    from wbcap.body.joints import SMPLX_OUTPUT_JOINT_NUM

    rows = np.arange(len(track)) if rows is None else np.asarray(rows)
    n = len(rows)
    vids = None if vertex_ids is None else np.asarray(vertex_ids, np.int64)
    jids = None if joint_ids is None else np.asarray(joint_ids, np.int64)
    vshape = (body.num_vertices,) if vids is None else vids.shape
    jshape = (SMPLX_OUTPUT_JOINT_NUM,) if jids is None else jids.shape
    vertices = np.empty((n, *vshape, 3), np.float32)
    joints = np.empty((n, *jshape, 3), np.float32)
    vsel = slice(None) if vids is None else torch.as_tensor(vids.reshape(-1), device=device)
    jsel = slice(None) if jids is None else torch.as_tensor(jids.reshape(-1), device=device)
    step = max(1, n if batch is None else batch)
    with torch.no_grad():
        for lo in range(0, n, step):
            part = rows[lo : lo + step]
            out = body(**{name: torch.as_tensor(track.param(name)[part], dtype=torch.float32, device=device)
                          for name in ("betas", *ROT_KEYS, "expression", "transl")})
            vertices[lo : lo + len(part)] = out.vertices[:, vsel].reshape(len(part), *vshape, 3).cpu().numpy()
            joints[lo : lo + len(part)] = out.joints[:, jsel].reshape(len(part), *jshape, 3).cpu().numpy()
    return PosedRows(vertices=vertices, joints=joints)
