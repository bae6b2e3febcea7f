"""Read a TRC file with OpenSim's own reader and print what it read as JSON (run by
tests/test_export_trc.py in the OpenSim client's Python, tests/opensim/.venv: OpenSim 4.6 needs
numpy 2, which Blender 5.0.1 in the test environment does not take).

Usage: python read_trc.py FILE.trc
Prints {"labels": [...], "times": [...], "values": [[[x, y, z], ...], ...], "meta": {key: text}}.
"""

import json
import sys

import opensim


def main(path: str) -> None:
    table = opensim.TimeSeriesTableVec3(path)  # (OpenSim's TRCFileAdapter)
    rows = []
    for r in range(table.getNumRows()):
        row = table.getRowAtIndex(r)
        rows.append([[row[c][k] for k in range(3)] for c in range(table.getNumColumns())])
    meta = {key: table.getTableMetaDataAsString(key) for key in table.getTableMetaDataKeys()}
    json.dump({"labels": list(table.getColumnLabels()), "times": list(table.getIndependentColumn()),
               "values": rows, "meta": meta}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
