// wbcap view: which frame, record or file a time belongs to (pure functions: no DOM, no three.js;
// app.js uses them, tests/js/timeline_eval.mjs runs them in node for tests/test_view.py).
//
// A time t belongs to frame k of the timeline when it lies within frameTolerance(frames, k) of
// frames[k], and a record to t when it is the *nearest* one within that tolerance: render.mp4's
// frame times (1/90000 s ticks) land microseconds off params.jsonl's, and in a variable-frame-rate
// video frames can be much closer than the average interval, so neither the first record within
// half the average interval nor that interval itself is right (wbcap/view/manifest.py's
// frame_tolerance and _match_frames follow the same rule for view.json's frame_index).

/** Largest k with values[k] <= t (+ a microsecond), else 0; values sorted. */
export function floorIndex(values, t) {
  let lo = 0;
  let hi = values.length - 1;
  if (hi < 0 || t < values[0]) return 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (values[mid] <= t + 1e-6) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/** Half the gap (s) from frames[k] to its nearer neighbour (frames sorted); `fallback` for a lone frame. */
export function frameTolerance(frames, k, fallback) {
  const gaps = [];
  if (k > 0) gaps.push(frames[k] - frames[k - 1]);
  if (k + 1 < frames.length) gaps.push(frames[k + 1] - frames[k]);
  const positive = gaps.filter((g) => g > 0);
  return positive.length ? 0.5 * Math.min(...positive) : fallback;
}

/** Index of the item of `items` (sorted by time(item)) nearest to t, if within tol of it, else -1. */
export function nearestIndex(items, t, tol, time = (x) => x) {
  let lo = 0;
  let hi = items.length; // first index with time >= t
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (time(items[mid]) < t) lo = mid + 1; else hi = mid;
  }
  let best = -1;
  for (const i of [lo - 1, lo]) {
    if (i < 0 || i >= items.length) continue;
    if (best < 0 || Math.abs(time(items[i]) - t) < Math.abs(time(items[best]) - t)) best = i;
  }
  return best >= 0 && Math.abs(time(items[best]) - t) <= tol ? best : -1;
}

/**
 * Index of the span ({t0, t1}: sorted, disjoint, as a track's chunks or parts) that holds t or,
 * if none does, the one nearest to t within tol; -1 if none. The record nearest to t is in it.
 */
export function nearestSpan(spans, t, tol) {
  let best = -1;
  let bestGap = Infinity;
  spans.forEach((s, i) => {
    const gap = Math.max(s.t0 - t, t - s.t1, 0);
    if (gap <= tol && gap < bestGap) { best = i; bestGap = gap; }
  });
  return best;
}
