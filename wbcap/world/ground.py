"""The ground plane in the camera frame, fitted robustly to the points where feet touch it.

A plane is ``n . x + d = 0`` for points ``x`` of the OpenCV camera frame (metres) with ``n`` the
unit *up* direction (gravity is ``-n``): ``n . x + d`` is the height of ``x`` above the ground, and
``d``, the height of the camera centre ``x = 0``, is the camera's height.

Fitting (:func:`fit_ground`): RANSAC (Fischler & Bolles, CACM 1981) over planes through three
sampled points, scored by the number of points within a threshold; then least squares on the
inliers (the plane through their centroid, normal the right singular vector of the smallest
singular value: total least squares), repeated a few times with a tighter threshold.

Points along a line (one person walking straight) or in a small patch (one person standing)
hardly fix the tilt about the line (left and right foot are a stride width apart, and a
millimetre of difference between them is a fraction of a degree): the final normal also asks the
people's hips to be level on average (:func:`_with_level_hips`), which settles exactly that tilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GroundFit", "GroundPlane", "fit_ground", "world_from_ground"]


@dataclass(frozen=True)
class GroundPlane:
    """The ground: ``normal . x + offset = 0`` in the camera frame.

    Attributes:
        normal: ``(3,)`` unit up direction, camera frame (OpenCV axes).
        offset: metres; the camera's height above the ground.
    """

    normal: np.ndarray
    offset: float

    def height(self, points: np.ndarray) -> np.ndarray:
        """Height above the ground of camera-frame points ``(..., 3)`` metres -> ``(...)`` metres."""
        return np.asarray(points, np.float64) @ self.normal + self.offset


@dataclass(frozen=True)
class GroundFit:
    """A fitted plane and how well it fits.

    Attributes:
        plane: the plane.
        inliers: ``(M,)`` bool, the points within ``threshold`` of it.
        inlier_ratio: the fraction of inliers.
        rms: root mean square distance of the inliers, metres.
    """

    plane: GroundPlane
    inliers: np.ndarray
    inlier_ratio: float
    rms: float


def _plane_through(points: np.ndarray, up: np.ndarray) -> GroundPlane:
    """Total least squares plane of ``(M, 3)`` points, its normal turned towards ``up``."""
    centre = points.mean(0)
    normal = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
    if normal @ up < 0:
        normal = -normal
    return GroundPlane(normal=normal, offset=float(-normal @ centre))


def fit_ground(points: np.ndarray, up: np.ndarray, threshold: float, refine_threshold: float,
               iterations: int, rng: np.random.Generator, max_angle_deg: float = 60.0,
               level_axes: np.ndarray | None = None, sigma_height: float = 0.003,
               sigma_level_deg: float = 2.0) -> GroundFit | None:
    """Fit the ground to ``points`` robustly.

    Args:
        points: ``(M, 3)`` camera-frame points that should lie on the ground (the lowest sole
            vertices of planted feet), metres.
        up: ``(3,)`` unit up direction the people suggest (camera frame): the normal is turned
            towards it, and hypotheses more than ``max_angle_deg`` from it are ignored (walls).
        threshold: RANSAC inlier distance, metres; refine_threshold: the inlier distance of the
            least-squares refinement.
        iterations: RANSAC hypotheses (three points each; at most 4096 points are scored).
        rng: the random generator (seeded by the caller: the same input gives the same plane).
        level_axes: ``(H, 3)`` unit vectors that should be level (the people's hip axes,
            right hip to left), or None; then the final normal also weighs them (below).
        sigma_height: metres, the systematic height error of one contact point (mesh, pose);
            sigma_level_deg: degrees, how far from level the hip axes are on average.
    Returns:
        The fit (inliers within ``refine_threshold``), or None with fewer than 3 points or no
        hypothesis within ``max_angle_deg`` of ``up``.
    """
    pts = np.asarray(points, np.float64)
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    if pts.shape[0] < 3:
        return None
    scored = pts if pts.shape[0] <= 4096 else pts[rng.choice(pts.shape[0], 4096, replace=False)]
    tri = pts[rng.integers(0, pts.shape[0], (iterations, 3))]  # (I, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1)
    normals = normals / np.maximum(length, 1e-12)[:, None]
    normals *= np.where(normals @ up < 0, -1.0, 1.0)[:, None]
    ok = (length > 1e-9) & (normals @ up >= np.cos(np.radians(max_angle_deg)))
    if not ok.any():
        return None
    normals, tri = normals[ok], tri[ok]
    offsets = -np.einsum("ic,ic->i", normals, tri[:, 0])
    counts = (np.abs(scored @ normals.T + offsets) < threshold).sum(0)  # (I,)
    best = int(np.argmax(counts))
    plane = GroundPlane(normal=normals[best], offset=float(offsets[best]))
    inliers = np.abs(plane.height(pts)) < threshold
    for _ in range(3):
        if inliers.sum() < 3:
            break
        plane = _plane_through(pts[inliers], up)
        inliers = np.abs(plane.height(pts)) < refine_threshold
    if level_axes is not None and len(level_axes) and inliers.sum() >= 3:
        plane = _with_level_hips(pts[inliers], plane, np.asarray(level_axes, np.float64), sigma_height, sigma_level_deg, up)
        inliers = np.abs(plane.height(pts)) < refine_threshold
    dist = plane.height(pts[inliers])
    rms = float(np.sqrt(np.mean(dist**2))) if dist.size else float("inf")
    return GroundFit(plane=plane, inliers=inliers, inlier_ratio=float(inliers.mean()), rms=rms)


def _with_level_hips(points: np.ndarray, plane: GroundPlane, axes: np.ndarray, sigma_height: float,
                     sigma_level_deg: float, up: np.ndarray) -> GroundPlane:
    """The normal minimising ``sum_i (n . (p_i - c))^2 / (M sigma_height^2) + mean_h (n . a_h)^2 /
    sigma_level^2`` over unit ``n`` (the smallest eigenvector of the summed second moments): the
    points' spread fixes the tilt along the directions they cover, the level hip axes ``a_h``
    the rest; the plane goes through the points' centroid ``c``. Both terms are means, so neither
    side wins by its count (the points' errors are systematic, not independent)."""
    centre = points.mean(0)
    spread = np.cov((points - centre).T, bias=True) / sigma_height**2
    level = axes.T @ axes / len(axes) / np.radians(sigma_level_deg) ** 2
    normal = np.linalg.eigh(spread + level)[1][:, 0]
    if normal @ plane.normal < 0:
        normal = -normal
    if normal @ up < 0:
        normal = -normal
    return GroundPlane(normal=normal, offset=float(-normal @ centre))


def world_from_ground(plane: GroundPlane) -> tuple[np.ndarray, np.ndarray]:
    """The z-up world of a ground plane: ``x_w = R x_c + p`` for camera-frame points ``x_c``.

    World axes (right-handed, metres, AMASS's convention): ``z`` = the plane's normal (up; the
    ground is ``z = 0``), ``x`` = the camera's ``x`` axis (right) laid on the ground, ``y = z x x``
    (the camera's forward direction laid on the ground). The origin is the point of the ground
    below the camera, so the camera sits at ``p = (0, 0, height)``. For a level camera ``R`` is
    :data:`wbcap.camera.ZUP_FROM_OPENCV`.

    Returns:
        ``(R (3, 3), p (3,))``: ``world_from_camera`` rotation and the camera's position.
    """
    z = np.asarray(plane.normal, np.float64)
    x = np.array([1.0, 0.0, 0.0]) - z[0] * z  # the camera's x on the ground
    if np.linalg.norm(x) < 1e-6:  # the camera's x axis is vertical (camera rolled 90 degrees)
        x = np.array([0.0, 0.0, 1.0]) - z[2] * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z]), np.array([0.0, 0.0, float(plane.offset)])
