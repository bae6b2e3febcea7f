"""Per-image output folder of ``wbcap image``.

``OUT/<image stem>/person_<k>/`` holds ``output.obj`` (mesh in the person's camera, which
projects onto the original image with the JSON's focal/princpt), ``smplx_param.json``,
``render_original_img.jpg`` (every person overlaid on the full image) and
``render_cropped_img.jpg`` (this person on its 512x384 crop). The folder is built under a
temporary name and renamed into place only when complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from wbcap.export.atomic import atomic_write_bytes, staged_dir
from wbcap.export.obj import write_obj
from wbcap.export.params_json import write_params_json

def params_record(person, image_name: str, image_size: tuple[int, int], gender: str) -> dict:
    """The JSON-ready dict of one person (README: 'Output files'); the writer adds ``format``."""
    rec: dict = {"model": "smplx", "gender": gender, "rotation": "axis-angle", "flat_hand_mean": False}
    for k, v in person.params.items():
        rec[k] = [float(x) for x in np.asarray(v).reshape(-1)]
    rec["leye_pose"] = [0.0, 0.0, 0.0]
    rec["reye_pose"] = [0.0, 0.0, 0.0]
    rec["camera"] = {
        "focal": [float(person.focal[0]), float(person.focal[1])],
        "princpt": [float(person.princpt[0]), float(person.princpt[1])],
        "image_size": [int(image_size[0]), int(image_size[1])],
        "axes": "opencv (x right, y down, z forward), metres",
    }
    rec["image"] = image_name
    rec["person"] = person.index
    rec["score"] = float(person.score)
    rec["bbox"] = [float(v) for v in person.box]
    rec["crop_bbox"] = [float(v) for v in person.crop_box]
    rec["lhand_bbox"] = [float(v) for v in person.lhand_box]
    rec["rhand_bbox"] = [float(v) for v in person.rhand_box]
    rec["face_bbox"] = [float(v) for v in person.face_box]
    return rec


def to_common_camera(people: Sequence) -> tuple[list[np.ndarray], tuple[float, float], tuple[float, float]]:
    """Express every person's mesh in one pinhole camera so they can be rendered together.

    Person k's camera (f_k, c_k) differs per box. With the common focal f (the largest box's)
    and principal point c, the map x' = x + z (c_kx - c_x) / f_k, y' = y + z (c_ky - c_y) / f_k,
    z' = z f / f_k sends every vertex to a point that projects to the same pixel (exact), with
    depth scaled consistently so occlusion between people is approximately right.
    Returns (meshes, focal, princpt).
    """
    ref = max(people, key=lambda p: p.crop_box[2] * p.crop_box[3])
    f = float(ref.focal[0])
    c = (float(ref.princpt[0]), float(ref.princpt[1]))
    meshes = []
    for p in people:
        v = p.vertices.astype(np.float64)
        fk = float(p.focal[0])
        z = v[:, 2]
        out = np.empty_like(v)
        out[:, 0] = v[:, 0] + z * (p.princpt[0] - c[0]) / fk
        out[:, 1] = v[:, 1] + z * (p.princpt[1] - c[1]) / fk
        out[:, 2] = z * f / fk
        meshes.append(out.astype(np.float32))
    return meshes, (f, f), c


def encode_jpeg(image_rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def write_image_outputs(
    out_root: Path,
    image_path: Path,
    image: np.ndarray,
    people: Sequence,
    faces: np.ndarray,
    *,
    gender: str = "neutral",
    render: bool = True,
) -> Path:
    """Write ``out_root/<stem>/person_<k>/...`` for one image; returns the image's folder."""
    from wbcap.export.render import render_meshes

    final = Path(out_root) / image_path.stem
    h, w = image.shape[:2]
    with staged_dir(final) as tmp:
        overlay = None
        if render:
            meshes, focal, princpt = to_common_camera(people)
            overlay = encode_jpeg(render_meshes(image, meshes, faces, focal, princpt))
        for person in people:
            d = Path(tmp) / f"person_{person.index}"
            d.mkdir(parents=True)
            write_obj(d / "output.obj", person.vertices, faces)
            write_params_json(d / "smplx_param.json", params_record(person, image_path.name, (w, h), gender))
            if render:
                atomic_write_bytes(d / "render_original_img.jpg", overlay)
                crop_render = render_meshes(person.crop, [person.vertices], faces, person.crop_focal, person.crop_princpt)
                atomic_write_bytes(d / "render_cropped_img.jpg", encode_jpeg(crop_render))
    return final
