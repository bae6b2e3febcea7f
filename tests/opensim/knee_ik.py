"""Inverse kinematics in OpenSim on a wbcap TRC file, with a model built here: a trunk on a free
joint (markers RHip, LHip, Neck, RShoulder, LShoulder), a right thigh on a ball joint at RHip
(marker RKnee) and a right shank on a pin joint at RKnee about OpenSim's z axis (markers RAnkle,
RHeel, RBigToe), each marker where the file's first frame has it. Run by tests/test_export_trc.py
in the OpenSim client's Python (tests/opensim/.venv), for a motion whose first frame has the knee
straight with its axis along the file's Z: the knee's coordinate is then its flexion.

Usage: python knee_ik.py FILE.trc OUT_FOLDER
Writes OUT_FOLDER/result.json: {"times": [...], "knee": [...], "in_degrees": "yes" or "no",
"max_marker_error": metres} (OpenSim's own log goes to the standard streams).
"""

import json
import sys
from pathlib import Path

import opensim

TRUNK = ("RHip", "LHip", "Neck", "RShoulder", "LShoulder")
SHANK = ("RAnkle", "RHeel", "RBigToe")


def main(path: str, out: str) -> None:
    table = opensim.TimeSeriesTableVec3(path)
    first = table.getRowAtIndex(0)
    at = {name: [first[i][k] for k in range(3)] for i, name in enumerate(table.getColumnLabels())}

    def vec(a, origin=(0.0, 0.0, 0.0)):
        return opensim.Vec3(*(float(a[k] - origin[k]) for k in range(3)))

    model = opensim.Model()
    bodies = {}
    for name in ("trunk", "thigh_r", "shank_r"):
        bodies[name] = opensim.Body(name, 1.0, opensim.Vec3(0), opensim.Inertia(0.01, 0.01, 0.01))
        model.addBody(bodies[name])
    zero = opensim.Vec3(0)
    model.addJoint(opensim.FreeJoint("free", model.getGround(), zero, zero, bodies["trunk"], zero, zero))
    model.addJoint(opensim.BallJoint("hip_r", bodies["trunk"], vec(at["RHip"]), zero, bodies["thigh_r"], zero, zero))
    model.addJoint(opensim.PinJoint("knee_r", bodies["thigh_r"], vec(at["RKnee"], at["RHip"]), zero,
                                    bodies["shank_r"], zero, zero))
    placed = [(n, "trunk", (0.0, 0.0, 0.0)) for n in TRUNK] + [("RKnee", "thigh_r", at["RHip"])] + [
        (n, "shank_r", at["RKnee"]) for n in SHANK]
    for name, body, origin in placed:
        model.addMarker(opensim.Marker(name, bodies[body], vec(at[name], origin)))
    model.finalizeConnections()
    model.initSystem()

    tool = opensim.InverseKinematicsTool()
    tool.setModel(model)
    tool.setMarkerDataFileName(path)
    times = list(table.getIndependentColumn())
    tool.setStartTime(times[0])
    tool.setEndTime(times[-1])
    motion = Path(out) / "ik.mot"
    tool.setOutputMotionFileName(str(motion))
    tool.setResultsDir(out)
    for name, _, _ in placed:
        task = opensim.IKMarkerTask()
        task.setName(name)
        task.setWeight(1.0)
        task.setApply(True)
        tool.getIKTaskSet().cloneAndAppend(task)
    tool.run()
    result = opensim.TimeSeriesTable(str(motion))
    errors = opensim.TimeSeriesTable(str(Path(out) / "_ik_marker_errors.sto"))
    with open(Path(out) / "result.json", "w") as fh:
        json.dump({"times": list(result.getIndependentColumn()),
                   "knee": list(result.getDependentColumn("knee_r_coord_0").to_numpy()),
                   "in_degrees": result.getTableMetaDataAsString("inDegrees"),
                   "max_marker_error": float(max(errors.getDependentColumn("marker_error_max").to_numpy()))}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
