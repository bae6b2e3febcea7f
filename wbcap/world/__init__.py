"""World-grounded motion for a static camera (``wbcap run --world``, ``wbcap export --world``).

Between :mod:`wbcap.smooth` and :mod:`wbcap.export` on a frame's path: the smoothed camera-frame
tracks in, the ground plane, the camera's pose above it, foot contacts and tracks whose feet stay
planted out. Modules: :mod:`~wbcap.world.feet` (the soles of the mesh),
:mod:`~wbcap.world.contact` (speed and height with hysteresis), :mod:`~wbcap.world.ground`
(robust plane fit, the z-up world of a plane), :mod:`~wbcap.world.correct` (the translation
correction, a sparse least-squares problem), :mod:`~wbcap.world.estimate` (the whole stage:
``from wbcap.world.estimate import WorldConfig, ground_tracks``).
"""
