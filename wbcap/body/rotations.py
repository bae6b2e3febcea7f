"""Batched rotation conversions (torch).

Conventions used throughout wbcap:

* Rotation matrices are ``(..., 3, 3)`` and act on column vectors (``x' = R @ x``).
* Axis-angle vectors are ``(..., 3)``: unit axis times the angle in radians (right-handed).
* The 6D representation is the one of Hand4Whole / Zhou et al. 2019 *exactly as upstream lays it
  out*: the six numbers are viewed as a row-major ``3 x 2`` matrix whose two **columns**
  ``a1 = x[..., [0, 2, 4]]`` and ``a2 = x[..., [1, 3, 5]]`` are Gram-Schmidt orthonormalised into
  the first two columns of the rotation matrix.

All functions accept any number of leading batch dimensions, keep the input dtype/device and are
differentiable; another trailing shape raises ``ValueError`` naming the argument and its shape. They are safe at the singular points (angle 0 and angle pi): outputs are finite.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = [
    "axis_angle_to_matrix",
    "float32_region",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rot6d",
    "mirror_rotation_x",
    "rot6d_to_axis_angle",
    "rot6d_to_axis_angle_f32",
    "rot6d_to_matrix",
    "rot6d_to_matrix_f32",
]

# Below this squared angle (rad^2) the Rodrigues coefficients use their Taylor series.
_SMALL_ANGLE_SQ = 1e-6


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    Args:
        axis_angle: ``(..., 3)`` float tensor, axis times angle in radians.

    Returns:
        ``(..., 3, 3)`` rotation matrices, same dtype/device as the input.
    """
    if axis_angle.shape[-1] != 3:
        raise ValueError(f"axis_angle must have shape (..., 3), got {tuple(axis_angle.shape)}")
    theta_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)  # (..., 1)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    safe_theta = torch.sqrt(safe_sq)
    # a = sin(t)/t, b = (1 - cos(t))/t^2 with Taylor series near 0.
    a = torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(safe_theta) / safe_theta)
    b = torch.where(small, 0.5 - theta_sq / 24.0, (1.0 - torch.cos(safe_theta)) / safe_sq)

    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    # Cross-product matrix K of the (unnormalised) axis-angle vector.
    k = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(
        *axis_angle.shape[:-1], 3, 3
    )
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices to unit quaternions ``(w, x, y, z)`` with ``w >= 0``.

    Uses the numerically best-conditioned of the four classical formulas for every matrix, so it
    is accurate for all angles, including 0 and pi.

    Args:
        matrix: ``(..., 3, 3)`` float tensor of rotation matrices.

    Returns:
        ``(..., 4)`` unit quaternions (scalar first), same dtype/device.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape (..., 3, 3), got {tuple(matrix.shape)}")
    m = matrix.reshape(*matrix.shape[:-2], 9)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)

    # 4*w^2, 4*x^2, 4*y^2, 4*z^2
    sq = torch.stack(
        (
            1.0 + m00 + m11 + m22,
            1.0 + m00 - m11 - m22,
            1.0 - m00 + m11 - m22,
            1.0 - m00 - m11 + m22,
        ),
        dim=-1,
    )
    # 2|q_i|, floored at 0.1: the selected (largest) one is always >= 1, the floor only keeps the
    # unused candidates (and their gradients) finite.
    two_abs = torch.sqrt(torch.clamp(sq, min=0.01))

    # Row i is 2|q_i| * (+-q) computed from the formulas that divide by q_i.
    candidates = torch.stack(
        (
            torch.stack((sq[..., 0], m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, sq[..., 1], m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, sq[..., 2], m12 + m21), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, sq[..., 3]), dim=-1),
        ),
        dim=-2,
    )  # (..., 4, 4)
    candidates = candidates / (2.0 * two_abs)[..., None]

    best = sq.argmax(dim=-1)  # (...,) the largest |q_i| is >= 1/2
    index = best[..., None, None].expand(*best.shape, 1, 4)
    quat = torch.gather(candidates, -2, index).squeeze(-2)
    quat = F.normalize(quat, dim=-1)
    w = quat[..., :1]
    return quat * torch.where(w < 0, -torch.ones_like(w), torch.ones_like(w))


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices to axis-angle vectors with angle in ``[0, pi]``.

    Robust at every angle: exactly ``0`` for the identity and a valid axis (sign arbitrary, as
    both are correct) for half-turns. Never returns NaN for finite input.

    Args:
        matrix: ``(..., 3, 3)`` float tensor of rotation matrices.

    Returns:
        ``(..., 3)`` axis-angle vectors in radians, same dtype/device.
    """
    quat = matrix_to_quaternion(matrix)
    w = quat[..., :1]  # >= 0
    v = quat[..., 1:]
    n_sq = (v * v).sum(-1, keepdim=True)
    small = n_sq < 1e-12
    n = torch.sqrt(torch.where(small, torch.ones_like(n_sq), n_sq))
    angle = 2.0 * torch.atan2(n, w)  # in [0, pi] because w >= 0
    # angle / |v|; for tiny |v|: 2/w * (1 - |v|^2 / (3 w^2)) with w ~ 1.
    w_safe = torch.clamp(w, min=0.5)
    scale = torch.where(small, 2.0 / w_safe * (1.0 - n_sq / (3.0 * w_safe * w_safe)), angle / n)
    return v * scale


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """Hand4Whole 6D representation to rotation matrices (upstream layout, see module doc).

    ``a1 = x[..., [0, 2, 4]]``, ``a2 = x[..., [1, 3, 5]]``, ``b1 = normalize(a1)``,
    ``b2 = normalize(a2 - (b1 . a2) b1)``, ``b3 = b1 x b2``; the result has columns
    ``(b1, b2, b3)``.

    Args:
        rot6d: ``(..., 6)`` float tensor.

    Returns:
        ``(..., 3, 3)`` rotation matrices, same dtype/device.
    """
    if rot6d.shape[-1] != 6:
        raise ValueError(f"rot6d must have shape (..., 6), got {tuple(rot6d.shape)}")
    x = rot6d.reshape(*rot6d.shape[:-1], 3, 2)
    a1 = x[..., 0]
    a2 = x[..., 1]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    # Explicit dim: torch.cross without it picks the first size-3 dim (breaks for batch 3).
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices to the Hand4Whole 6D layout (inverse of :func:`rot6d_to_matrix`).

    The first two columns are interleaved: ``(R00, R01, R10, R11, R20, R21)``.

    Args:
        matrix: ``(..., 3, 3)`` float tensor of rotation matrices.

    Returns:
        ``(..., 6)`` tensor, same dtype/device.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape (..., 3, 3), got {tuple(matrix.shape)}")
    return matrix[..., :, :2].reshape(*matrix.shape[:-2], 6)


def rot6d_to_axis_angle(rot6d: torch.Tensor) -> torch.Tensor:
    """Hand4Whole 6D representation to axis-angle (angle in ``[0, pi]``, radians).

    Args:
        rot6d: ``(..., 6)`` float tensor (upstream layout).

    Returns:
        ``(..., 3)`` axis-angle vectors, same dtype/device. Unlike upstream, leading batch
        dimensions are kept (upstream flattens to ``(N, 3)``).
    """
    return matrix_to_axis_angle(rot6d_to_matrix(rot6d))


def float32_region(t: torch.Tensor):
    """A context that turns autocast off on ``t``'s device (nothing where autocast does not exist).

    Used around the parts that must stay float32 under whole-network autocast (bf16/fp16
    inference modes, bf16 training): 6D -> rotation matrix / axis-angle, the camera translation,
    SMPL-X.
    """
    if torch.amp.is_autocast_available(t.device.type):
        return torch.autocast(t.device.type, enabled=False)
    return contextlib.nullcontext()


def rot6d_to_matrix_f32(rot6d: torch.Tensor) -> torch.Tensor:
    """:func:`rot6d_to_matrix` in float32 with autocast off: ``(..., 6)`` any float dtype ->
    ``(..., 3, 3)`` float32 (see :func:`rot6d_to_axis_angle_f32` for why)."""
    with float32_region(rot6d):
        return rot6d_to_matrix(rot6d.float())


def mirror_rotation_x(matrix: torch.Tensor) -> torch.Tensor:
    """The rotation seen in a mirror about the ``x = 0`` plane: ``M R M`` with ``M = diag(-1, 1, 1)``.

    Every entry with exactly one index 0 changes sign (exact: no rounding). In axis-angle it is
    ``(a_x, -a_y, -a_z)``. ``(..., 3, 3)`` -> ``(..., 3, 3)``, same dtype/device; built from
    slices, so it creates no constant tensor (nothing is copied to the device).
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape (..., 3, 3), got {tuple(matrix.shape)}")
    rows = torch.cat((matrix[..., :1, :], -matrix[..., 1:, :]), -2)
    return torch.cat((rows[..., :1], -rows[..., 1:]), -1)


def rot6d_to_axis_angle_f32(rot6d: torch.Tensor) -> torch.Tensor:
    """:func:`rot6d_to_axis_angle` in float32 with autocast off:
    ``(..., 6)`` any float dtype -> ``(..., 3)`` float32 radians. Under bf16 autocast the 6D
    outputs of the linear layers are bfloat16; Gram-Schmidt and the quaternion extraction in
    bfloat16 would lose about 2 significant digits of every joint rotation."""
    with float32_region(rot6d):
        return rot6d_to_axis_angle(rot6d.float())
