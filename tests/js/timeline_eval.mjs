// Run functions of the viewer page's timeline.js (wbcap/view/static) in node for tests/test_view.py.
//   node timeline_eval.mjs '[["nearestIndex", [items, t, tol]], ...]'
// Prints the JSON list of results. nearestIndex's items are times, or records {time} when a
// fourth argument "time" is given (the page's params lookup: rows by r.time).
import { floorIndex, frameTolerance, nearestIndex, nearestSpan } from '../../wbcap/view/static/timeline.js';

const fns = {
  floorIndex,
  frameTolerance,
  nearestSpan,
  nearestIndex: (items, t, tol, key) => nearestIndex(items, t, tol, key === 'time' ? (r) => r.time : undefined),
};
const calls = JSON.parse(process.argv[2]);
process.stdout.write(JSON.stringify(calls.map(([name, args]) => fns[name](...args))) + '\n');
