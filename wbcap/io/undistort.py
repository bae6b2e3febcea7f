"""Frames of a calibrated camera, undistorted as they are read (``wbcap run --calibration``).

A :class:`~wbcap.camera.LensCalibration` (its file read by :mod:`wbcap.io.calibration`) is fitted
to the frames' size once (:meth:`~wbcap.camera.LensCalibration.fit`); each frame is then
remapped by OpenCV (``cv2.remap``, bilinear, the tables computed once) into the calibration's
undistorted camera (:meth:`~wbcap.camera.LensCalibration.undistorted`: square pixels, the frames'
size, every source pixel kept, black where no source pixel lands), which every result of the run
is expressed in.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wbcap.errors import InputError, setting

if TYPE_CHECKING:
    import numpy as np

    from wbcap.camera import ImageCamera, LensCalibration

log = logging.getLogger(__name__)

__all__ = ["Undistorter"]


class Undistorter:
    """Undistorts the frames of one source (a video's or image sequence's).

    Args:
        calibration: the camera's calibration (any picture size of the frames' shape).
        image_size: ``(W, H)`` of the frames as wbcap reads them (upright, square pixels).
        pictures: what the pictures are called in messages (``"frames"``, ``"photos"``).
        quiet: how the calibration was fitted (scaled, taken as cropped, without a size) at debug
            level: said already (a run's later passes).

    Attributes:
        given: ``calibration`` as given.
        pictures: ``pictures``.
        fitted: how it was fitted to ``image_size`` (:meth:`~wbcap.camera.LensCalibration.fit`:
            ``same``, ``scaled``, ``cropped``, ``assumed``).
        calibration: ``calibration`` at ``image_size``.
        lens_scale: the undistorted camera's focal length over the lens's (the smaller of
            ``fx``, ``fy``): how large people are shown against the source's middle.
        camera: the undistorted camera (:meth:`~wbcap.camera.LensCalibration.undistorted`), of
            ``image_size``: the run's camera.
        remaps: whether frames change at all (a calibration without distortion, square pixels and
            no skew only sets the camera; its frames pass as read).

    Raises:
        InputError: a calibration of pictures of another shape, or a lens model OpenCV cannot
            invert over the picture; naming the calibration's file and the fix.
    """

    def __init__(self, calibration: LensCalibration, image_size: tuple[int, int], quiet: bool = False,
                 pictures: str = "frames") -> None:
        where = calibration.file or "the calibration"
        camera_name = f" (camera {calibration.name!r})" if calibration.name else ""
        self.given = calibration
        self.pictures = pictures
        try:
            self.calibration, fitted = calibration.fit(image_size)
            self.fitted = fitted
        except ValueError as exc:
            raise InputError(f"{where}{camera_name}: {exc}; give {setting('calibration')} a calibration of this camera "
                             f"made on upright {pictures} of this shape, as wbcap reads them") from None
        w, h = image_size
        info, warning = (log.debug, log.debug) if quiet else (log.info, log.warning)
        if fitted == "assumed":
            (_, _, cx), (_, _, cy), _ = self.calibration.matrix
            if not (0 <= cx + 0.5 <= w and 0 <= cy + 0.5 <= h):  # (a review: an intri.yml of 4x the frames' size)
                raise InputError(f"{where}{camera_name}: gives no picture size, and its principal point ({cx:g}, "
                                 f"{cy:g}) lies outside the {w}x{h} {pictures}: it was calibrated at another "
                                 "resolution; add its size (`size = [W, H]`, or `W_<name>`/`H_<name>`)")
            off = max(abs(cx + 0.5 - w / 2) / w, abs(cy + 0.5 - h / 2) / h)
            (warning if off > 0.1 else info)(
                "%s%s: gives no picture size; taken as the %s' %dx%d%s", where, camera_name, pictures, w, h,
                f" (its principal point ({cx:g}, {cy:g}) is far from their centre: was it calibrated at another "
                "resolution?)" if off > 0.1 else "")
        try:
            self.camera: ImageCamera = self.calibration.undistorted()
        except ValueError as exc:
            raise InputError(f"{where}{camera_name}: {exc}") from None
        if fitted == "scaled":
            info("%s%s: calibrated on %dx%d pictures, scaled to the %s' %dx%d", where, camera_name,
                 *calibration.image_size, pictures, w, h)
        elif fitted == "cropped":
            warning("%s%s: calibrated on %dx%d pictures, the %s are %dx%d: taken as the same pixels cropped or "
                    "padded at the right or bottom edge (as codecs pad 1080 pixels to 1088), not resized",
                    where, camera_name, *calibration.image_size, pictures, w, h)
        if self.calibration.scale is None and self.calibration.distorts:
            reached = self.calibration.border_reach[1].mean()
            if reached < 1:  # (a fit that turns back before a corner: Gyroflow's HERO10 Max 4:3 profile)
                why = ("its model turns back before them: a fold, as at a corner, or where tangential terms bend "
                       "it" if self.calibration.turns_back else "at its corners, 90 degrees or more off its axis")
                warning("%s%s: %.1f %% of the source's border lies beyond what the lens model reaches (%s); those "
                        "pixels are left out", where, camera_name, 100 * (1 - reached), why)
        self.lens_scale = scale = self.camera.focal[0] / min(self.calibration.matrix[0][0],
                                                             self.calibration.matrix[1][1])
        if scale < 0.5 and calibration.scale is None:  # (a very wide lens: a break-it review's 168-degree fisheye
            warning("%s%s: to keep every pixel of the source, the undistorted %s show the scene at %.2f times the "  # left
                    "lens's own scale (people %.1f times smaller, black where no pixel lands): a very wide lens, which "  # people
                    "a pinhole picture cannot hold well; %s 1 shows people as large as the source's middle does, "  # 85 px)
                    "leaving its far edges out (0.5: halfway)",
                    where, camera_name, pictures, scale, 1 / scale, setting("undistort_scale", api="scale"))
        self.remaps = (self.calibration.distorts or not self.calibration.square_pixels
                       or self.camera != self.calibration.pinhole_camera())
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def small_people(self) -> str:
        """Advice for a picture in which nobody was found, where the undistorted frames show people
        at under half the lens's scale (a very wide lens, every pixel kept, no scale given): a
        larger ``--undistort-scale``; else ""."""
        if self.lens_scale >= 0.5 or self.given.scale is not None:
            return ""
        return (f"the undistorted {self.pictures} show people at {self.lens_scale:.2f} times the lens's scale: "
                f"{setting('undistort_scale', api='scale')} 1 shows them as large as the source's middle does")

    def record(self) -> dict:
        """What ``meta.json`` (``calibration``) and a photo's ``smplx_param.json`` record: the
        calibration as given (:meth:`~wbcap.camera.LensCalibration.to_dict`: OpenCV's values at
        its own size, its file and ``scale``) and ``at_frames``, what was applied to these
        pictures: ``fitted`` (:attr:`fitted`) with the ``image_size`` and ``matrix``."""
        return {**self.given.to_dict(), "at_frames": {
            "fitted": self.fitted, "image_size": list(self.calibration.image_size),
            "matrix": [list(r) for r in self.calibration.matrix]}}

    def box(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A person box ``(x, y, w, h)`` given in the source's pixels (a box file's, ``--bbox``)
        as the undistorted picture's box holding it: the bounds of its outline (33 points a side)
        undistorted (:meth:`~wbcap.camera.LensCalibration.undistort_pixels`); the box itself where
        nothing changes."""
        if not self.remaps:
            return box
        import numpy as np

        x, y, w, h = (float(v) for v in box)
        t = np.linspace(0.0, 1.0, 33)[:, None]
        corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
        outline = np.concatenate([a + t * (b - a) for a, b in zip(corners, np.roll(corners, -1, 0))])
        moved = self.calibration.undistort_pixels(self.camera, outline)
        if not np.isfinite(moved).all(1).any():  # (wholly where the lens model does not reach: left as given)
            return box
        lo, hi = np.nanmin(moved, 0), np.nanmax(moved, 0)
        return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``image`` ``(H, W, 3)`` ``uint8`` (the frames' size) undistorted: a new C-contiguous
        array of the same shape and dtype (``image`` itself where nothing changes)."""
        if not self.remaps:
            return image
        import cv2

        if self._maps is None:
            self._maps = self.calibration.undistort_maps(self.camera)
        return cv2.remap(image, self._maps[0], self._maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
