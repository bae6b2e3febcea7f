"""Which colour each track gets in render.mp4 and the viewer (wbcap.export.colors.track_color_indices)."""

from __future__ import annotations

import numpy as np
import pytest

from wbcap.export.colors import TRACK_COLORS, track_color_indices


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def test_the_first_tracks_of_a_clip_take_the_colours_in_order():
    spans = {t: (2 * t, 100) for t in range(8)}
    assert track_color_indices(spans) == {t: t for t in range(8)}


def test_a_newcomer_takes_the_colour_nobody_on_screen_has():
    """The trial's case: ids 3 and 11 on screen together had one colour (id % 8). Tracks 0-7 from
    frame 0; 0, 1 and 2 leave at frames 10, 20, 30; tracks 8 and 9 come at 40 and 50 while 3-7 stay,
    10 comes and goes (60-65), and 11 comes at 70: each takes a colour nobody on screen has."""
    spans = {0: (0, 10), 1: (0, 20), 2: (0, 30), **{t: (0, 200) for t in range(3, 8)},
             8: (40, 200), 9: (50, 200), 10: (60, 65), 11: (70, 200)}
    colours = track_color_indices(spans)
    # 8: of the free colours 0, 1, 2 the one left longest ago (track 0's, at frame 10); 9: track 1's;
    # 10: track 2's; 11: the one colour nobody on screen has, 10's
    assert [colours[t] for t in range(12)] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 2]
    assert 11 % 8 == 3  # what id % 8 gave: track 3's colour


def test_a_newcomer_does_not_take_the_colour_of_the_person_who_just_left():
    spans = {0: (0, 10), 1: (0, 30), 2: (31, 40)}  # 2 comes just after 1 left
    assert track_color_indices(spans) == {0: 0, 1: 1, 2: 2}  # never used before left-long-ago
    spans = {t: (0, 10 * (t + 1)) for t in range(8)} | {8: (100, 120)}  # all eight used; 0 left first
    assert track_color_indices(spans)[8] == 0


def test_people_on_screen_together_differ_whenever_there_are_colours_enough():
    """Random crowds whose largest number of people at one time is at most 8: no two overlapping
    tracks share a colour (a greedy colouring in order of start is optimal on intervals)."""
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(1, 60))
        first = rng.integers(0, 500, n)
        spans = {int(t): (int(a), int(a + rng.integers(0, 120))) for t, a in zip(rng.permutation(1000)[:n], first)}
        most = max(sum(_overlap((f, f), s) for s in spans.values()) for f in range(0, 700))
        colours = track_color_indices(spans)
        assert set(colours) == set(spans) and all(0 <= c < len(TRACK_COLORS) for c in colours.values())
        if most <= len(TRACK_COLORS):
            checked += 1
            clash = [(a, b) for a in spans for b in spans
                     if a < b and colours[a] == colours[b] and _overlap(spans[a], spans[b])]
            assert not clash, (most, clash[:3])
            used = len(set(colours.values()))
            assert used <= len(TRACK_COLORS)
    assert checked > 100  # (the draws include crowds over 8 too, and enough within it)


def test_the_colours_depend_only_on_the_order_of_the_frames():
    """render.mp4 chooses from frame indices, the viewer from params.jsonl's frames; any increasing
    map of the frame numbers (e.g. to times) gives the same colours."""
    rng = np.random.default_rng(1)
    spans = {t: (int(a), int(a + rng.integers(0, 40))) for t, a in enumerate(rng.integers(0, 200, 40))}
    colours = track_color_indices(spans)
    assert track_color_indices({t: (3 * a + 7, 3 * b + 7) for t, (a, b) in spans.items()}) == colours
    assert track_color_indices(dict(reversed(list(spans.items())))) == colours  # (not the order given)


def test_crowds_beyond_the_colours_share_the_least_used_ones():
    spans = {t: (0, 50 + t) for t in range(10)}  # ten people at once, eight colours
    colours = track_color_indices(spans)
    assert [colours[t] for t in range(8)] == list(range(8))
    # 8: every colour held once; the one whose track leaves first (track 0 at 50) -> 0; 9: colour 0
    # now held twice, the others once: of those the first to leave (track 1) -> 1
    assert (colours[8], colours[9]) == (0, 1)
    assert track_color_indices({t: (0, 5) for t in range(3)}, n_colors=1) == {0: 0, 1: 0, 2: 0}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_colors must be >= 1, got 0"):
        track_color_indices({0: (0, 1)}, n_colors=0)
    with pytest.raises(ValueError, match="track 4: its last frame 2 is before its first 3"):
        track_color_indices({4: (3, 2)})
    assert track_color_indices({}) == {}


def test_the_colours_are_far_apart():
    """The pale palette's closest pairs were ~7 apart (CIE76) as drawn; these are at least 30 apart."""
    import itertools

    import cv2

    lab = cv2.cvtColor(np.asarray(TRACK_COLORS, np.float32).reshape(1, -1, 3), cv2.COLOR_RGB2LAB)[0]
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(lab, 2)) > 30
    assert len(set(TRACK_COLORS)) == len(TRACK_COLORS) == 8
