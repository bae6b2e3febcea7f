"""Colours of people in wbcap's renders, in one place (no heavy imports: the viewer reads them too)."""

from __future__ import annotations

from collections.abc import Mapping

#: RGB in [0, 1] of the tracks in ``render.mp4`` and ``wbcap view``; which track has which one:
#: :func:`track_color_indices`. Tableau 10's first eight (blue, orange, red, teal, green, yellow,
#: purple, pink): at least 30 apart in CIELAB (CIE76) against 18 for the pale set used before,
#: whose closest pairs (light blue and grey, purple and pink) were about 7 apart as drawn (a trial).
TRACK_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.306, 0.475, 0.655), (0.949, 0.557, 0.169), (0.882, 0.341, 0.349), (0.463, 0.718, 0.698),
    (0.349, 0.631, 0.310), (0.929, 0.788, 0.282), (0.690, 0.478, 0.631), (1.000, 0.616, 0.655),
)


#: The colour rule of ``render.mp4`` that ``meta.json``'s ``colors`` names: 2, this module's
#: (:data:`TRACK_COLORS` by :func:`track_color_indices`); 1 (runs whose ``meta.json`` has no
#: ``colors``, made before it): :data:`TRACK_COLORS_1` by ``id % 8``. The viewer follows the run's.
COLOR_SCHEME = 2
#: The colours of scheme 1 (``TRACK_COLORS_1[id % 8]``), kept so that the viewer of an older run
#: shows its ``render.mp4``'s colours.
TRACK_COLORS_1: tuple[tuple[float, float, float], ...] = (
    (0.65, 0.74, 0.86), (0.90, 0.62, 0.55), (0.60, 0.82, 0.62), (0.86, 0.78, 0.50),
    (0.75, 0.62, 0.85), (0.55, 0.80, 0.82), (0.88, 0.66, 0.78), (0.70, 0.70, 0.70),
)


def track_color_indices(spans: Mapping[int, tuple[int, int]], n_colors: int = len(TRACK_COLORS)) -> dict[int, int]:
    """Each track's colour (an index into :data:`TRACK_COLORS`), chosen so that people on screen
    at the same time differ in colour whenever there are at most ``n_colors`` of them.

    ``id % 8`` gave track 3 and track 11 the same colour side by side (a user trial on a crowd:
    689 tracks). Here the tracks take their colours in order of their first frame (then id), each
    one a colour that no track overlapping it in time has; among those, the one left longest ago
    (never used first, then the lowest index), so that a newcomer does not take the colour of the
    person who just left, and the first ``n_colors`` tracks of a clip get ``0, 1, 2, ...``. Greedy
    colouring in order of start is optimal on intervals: it needs no more colours than the most
    tracks at one time. With more people than colours at once, a track takes the colour that the
    fewest of the tracks overlapping it have (then the one left longest ago, the lowest index).

    The choice only compares frame numbers, so any increasing map of them (``params.jsonl``'s
    times) gives the same colours: ``render.mp4``
    (:mod:`wbcap.export.video_render`) and the viewer (:mod:`wbcap.view.manifest`) compute it each
    from the same tracks and agree.

    Args:
        spans: ``{track id: (first frame, last frame)}``, inclusive source frame indices.
        n_colors: how many colours there are (>= 1).

    Returns:
        ``{track id: colour index}`` for every track of ``spans``.

    Raises:
        ValueError: ``n_colors`` < 1, or a span whose last frame is before its first.
    """
    if n_colors < 1:
        raise ValueError(f"n_colors must be >= 1, got {n_colors}")
    bad = next((tid for tid, (a, b) in spans.items() if b < a), None)
    if bad is not None:
        raise ValueError(f"track {bad}: its last frame {spans[bad][1]} is before its first {spans[bad][0]}")
    chosen: dict[int, int] = {}
    left: list[float] = [float("-inf")] * n_colors  # the last frame of each colour's latest track so far
    live: list[tuple[int, int]] = []  # (last frame, colour) of the tracks chosen so far that may still overlap
    for tid, (first, last) in sorted(spans.items(), key=lambda kv: (kv[1][0], kv[0])):
        live = [(end, c) for end, c in live if end >= first]  # (the others end before this one starts)
        users = [0] * n_colors
        for _, c in live:
            users[c] += 1
        color = min(range(n_colors), key=lambda c: (users[c], left[c], c))
        chosen[tid] = color
        left[color] = max(left[color], last)
        live.append((last, color))
    return chosen
