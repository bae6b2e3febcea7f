"""Losses of the hand-only stage (``wbcap train hand``) on FreiHAND's hand sample schema.

Terms, each an L1 mean as upstream's hand model (Hand4Whole's Pose2Pose branch, ``main/model.py``
``forward`` with ``cfg.parts == 'hand'``), in its order:

* ``joint_img``: the 2.5D heatmap coordinates of the 21 joints against the targets' (depth only for
  3D samples, truncated joints masked; upstream's ``mano_joint_img``);
* ``mano_pose``: the 48 axis-angle values (root + 15 finger joints, from the 6D outputs);
* ``mano_shape``: the 10 shape coefficients;

and, through the MANO layer (:class:`~wbcap.body.mano_layer.MANOLayer`, the stage setting
``mano_losses``, on by default as upstream):

* ``mano_joint_img``: the 2.5D heatmap coordinates against the target MANO fit's joints
  (``mano_joint_trunc``; made by the COCO-WholeBody hands' and InterHand2.6M's loaders with the
  layer: :func:`~wbcap.train.data.coco_hands.mano_fit_joint_img`; FreiHAND's ``joint_img`` is its
  fit's already);

and from the regressed parameters' 21 joints:

* ``joint_proj``: projected into the 256x256 input by the regressed camera (upstream's
  ``get_camera_trans`` with the hand's ``camera_3d_size`` 0.4 m: :data:`HAND_CAMERA_3D_SIZE`),
  in heatmap cells, against the targets' ``joint_img`` x, y (``joint_trunc``);
* ``joint_cam``: wrist-relative, against the dataset's 3D joints (``joint_valid`` of 3D samples);
  these two only where the joints are the dataset's own annotation (``dataset_joints``; not
  FreiHAND's, which are its MANO fit's: upstream's FreiHAND loader zeroes them and supervises the
  fit through ``mano_joint_img`` and ``mano_joint_cam``);
* ``mano_joint_cam``: wrist-relative, against the joints of the target MANO parameters
  (``mano_param_valid``). Upstream computes those in its loaders, with the left-hand MANO for a
  left hand then mirrored, and from the fit's shape before it zeroes a shape with a coefficient
  beyond 3; here the right-hand layer poses the batch's target parameters (mirrored, and with such a
  shape already zeroed: those few fits' target joints are of the mean shape), which is the same
  hand up to MANO's left/right asymmetry.

Without MANO (``mano_losses = false``) the last four are left out and the camera head, which
only ``joint_proj`` reaches, is frozen (:data:`HAND_UNSUPERVISED_MODULES`).
"""

from __future__ import annotations

import torch

from wbcap.body.mano_layer import MANOLayer
from wbcap.body.rotations import rot6d_to_axis_angle_f32
from wbcap.camera import perspective_projection, virtual_camera_translation
from wbcap.config import ModelConfig
from wbcap.model.hand_model import HandOutput
from wbcap.train.losses import coord_loss, param_loss

HAND_LOSS_NAMES = ("joint_img", "mano_pose", "mano_shape")
#: The terms the MANO layer adds (:func:`hand_losses` with ``mano``), after :data:`HAND_LOSS_NAMES`.
HAND_MANO_LOSS_NAMES = ("mano_joint_img", "joint_proj", "joint_cam", "mano_joint_cam")

#: Metres the hand input's virtual camera is sized for (upstream Pose2Pose ``main/config.py``,
#: ``parts == 'hand'``: ``camera_3d_size = 0.4``): the regressed depth is at most
#: ``sqrt(fx * fy) * 0.4 / 256`` = 7.8 m with the recipe's focal 5000 px.
HAND_CAMERA_3D_SIZE = 0.4

#: Hand-model parameters no term reaches without MANO: the camera head (``HandOutput.cam``) is
#: supervised upstream only through ``joint_proj``. A stage with ``mano_losses = false`` freezes
#: them (``requires_grad=False``; they keep their initial values in the checkpoints), so
#: multi-process training has no unused parameters (DistributedDataParallel with
#: ``find_unused_parameters=False`` fails on the second step otherwise).
HAND_UNSUPERVISED_MODULES = ("rotation_net.cam_out",)


def hand_pose_axis_angle(out: HandOutput) -> torch.Tensor:
    """(B, 48) float32 axis-angle MANO pose (root, then 15 finger joints) from the 6D outputs
    (converted in float32 with autocast off, as the whole-body model does)."""
    b = out.root_6d.shape[0]
    six = torch.cat((out.root_6d.reshape(b, 1, 6), out.pose_6d.reshape(b, 15, 6)), 1)
    return rot6d_to_axis_angle_f32(six).reshape(b, 48)


def hand_joint_projection(joints: torch.Tensor, cam: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """``(B, 21, 3)`` MANO joints (metres, the camera's axes) and the ``(B, 3)`` camera output ->
    ``(B, 21, 2)`` x, y in hand heatmap cells (``output_hand_hm_shape``) of the
    ``input_hand_shape`` crop, by the virtual camera of that crop (``focal``, principal point at
    its centre; upstream ``get_coord``)."""
    h, w = config.input_hand_shape
    cam_trans = virtual_camera_translation(cam.float(), config.focal, HAND_CAMERA_3D_SIZE, (h, w))
    proj = perspective_projection(joints + cam_trans[:, None], config.focal, (w / 2, h / 2))
    # (Python scales, not a new tensor: no host -> device copy a step)
    return torch.stack((proj[..., 0] * (config.output_hand_hm_shape[2] / w), proj[..., 1] * (config.output_hand_hm_shape[1] / h)), -1)


def hand_losses(out: HandOutput, targets: dict, meta_info: dict, mano: MANOLayer | None = None,
                config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
    """Scalar losses (means) by name, see the module docstring: :data:`HAND_LOSS_NAMES`, then with
    ``mano`` (and the stage's model ``config``, for the camera) :data:`HAND_MANO_LOSS_NAMES`.

    Raises:
        ValueError: ``mano`` without ``config``.
    """
    pose = hand_pose_axis_angle(out).float()
    pose_valid = meta_info["mano_pose_valid"] * meta_info["mano_param_valid"][:, None]
    shape_valid = (meta_info["mano_shape_valid"] * meta_info["mano_param_valid"])[:, None]
    losses = {
        "joint_img": coord_loss(out.joint_img.float(), targets["joint_img"], meta_info["joint_trunc"], meta_info["is_3D"]).mean(),
        "mano_pose": param_loss(pose, targets["mano_pose"], pose_valid).mean(),
        "mano_shape": param_loss(out.shape.float(), targets["mano_shape"], shape_valid).mean(),
    }
    if mano is None:
        return losses
    if config is None:
        raise ValueError("hand_losses with mano needs the stage's model config (the hand camera)")
    losses["mano_joint_img"] = coord_loss(out.joint_img.float(), targets["mano_joint_img"],
                                          meta_info["mano_joint_trunc"]).mean()
    joints = mano(pose[:, :3], pose[:, 3:], out.shape.float()).joints
    with torch.no_grad():
        target_joints = mano(targets["mano_pose"][:, :3], targets["mano_pose"][:, 3:], targets["mano_shape"]).joints
    own = meta_info["dataset_joints"][:, None, None]
    joint_valid = meta_info["joint_valid"] * meta_info["is_3D"][:, None, None] * own
    losses["joint_proj"] = coord_loss(hand_joint_projection(joints, out.cam, config), targets["joint_img"][..., :2],
                                      meta_info["joint_trunc"] * own).mean()
    joint_cam = joints - joints[:, :1]
    losses["joint_cam"] = coord_loss(joint_cam, targets["joint_cam"], joint_valid).mean()
    losses["mano_joint_cam"] = coord_loss(joint_cam, target_joints - target_joints[:, :1],
                                          meta_info["mano_param_valid"][:, None, None]).mean()
    return losses
