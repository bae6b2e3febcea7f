"""Several calibrated cameras' runs fused into one motion per person (``wbcap fuse``).

After :mod:`wbcap.world` on a frame's path: each camera's ``wbcap run --world --calibration``
wrote its tracks in the calibration's world (a lab's frame); :mod:`wbcap.fuse.views` finds which
tracks of different cameras are the same person (:func:`~wbcap.fuse.views.associate`) and
combines them (:func:`~wbcap.fuse.views.fuse_person`): the pelvis by the precision of each
camera's estimate (sharp across its ray, loose along it: a triangulation of the monocular
estimates), the rotations and shape averaged; :mod:`wbcap.fuse.level` levels a calibration's
frame that is not z up by the fused people's feet. :mod:`wbcap.fuse_app` reads the run folders
and writes the fused track files.
"""
