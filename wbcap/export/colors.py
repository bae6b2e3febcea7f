"""Colours of people in wbcap's renders, in one place (no heavy imports: the viewer reads them too)."""

from __future__ import annotations

#: RGB in [0, 1] of track ``id`` in ``render.mp4`` and ``wbcap view``
#: (``TRACK_COLORS[id % len(TRACK_COLORS)]``).
TRACK_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.65, 0.74, 0.86), (0.90, 0.62, 0.55), (0.60, 0.82, 0.62), (0.86, 0.78, 0.50),
    (0.75, 0.62, 0.85), (0.55, 0.80, 0.82), (0.88, 0.66, 0.78), (0.70, 0.70, 0.70),
)
