"""Per-image output folders of ``wbcap image``.

``OUT/<name>/person_<k>/`` holds ``output.obj`` (mesh in the person's camera, which projects
onto the original image with the JSON's focal/princpt), ``smplx_param.json``,
``render_original_img.jpg`` (every person overlaid on the full image) and
``render_cropped_img.jpg`` (this person on its 512x384 crop). Each image's folder is built
under a temporary name and renamed into place only when complete.

Folder names (:func:`output_names`), chosen so that no two inputs of one run share a folder:

1. every input's file stem (``photos/a.jpg`` -> ``a``) when the stems are all different
   (compared ignoring case, for case-insensitive file systems) - the usual case;
2. otherwise every input's path relative to the inputs' common folder, without the extension
   (``cam1/0001.jpg``, ``cam2/0001.jpg`` -> ``cam1/0001``, ``cam2/0001``: nested folders);
3. files whose names differ only in the extension keep it (``a.jpg``, ``a.png`` ->
   ``a.jpg``, ``a.png``);
4. any name still shared (ignoring case), or one name that is a folder of another
   (``cam1.jpg`` next to ``cam1/0001.jpg``), is refused before any work with an
   :class:`~wbcap.errors.InputError` naming both inputs.

An existing ``OUT/<name>/`` from an earlier run is replaced as a whole (no stale
``person_<k>`` of an earlier, larger result survives). A folder there that is *not* a wbcap
image result (anything other than ``person_<k>/`` folders holding the four files above) is never
deleted: :func:`check_output_folder` refuses it.

``smplx_param.json`` (layout ``wbcap.params/2``; pixels are those of the upright original
image after EXIF rotation, x right, y down, origin at the top-left corner of the top-left
pixel; 3D values are in the person's camera frame, OpenCV axes x right, y down, z forward,
metres; rotations are axis-angle vectors in radians)::

    format           str     "wbcap.params/2"
    model            str     "smplx"
    gender           str     SMPL-X model used: "neutral" | "male" | "female"
    rotation         str     "axis-angle"
    flat_hand_mean   bool    false: hand poses are relative to the model file's hand mean
    root_pose        (3,)    global orientation of the body (pelvis) in the camera frame
    body_pose        (63,)   21 body joints x 3, SMPL-X order (joints 1-21), parent-relative
    lhand_pose       (45,)   15 left-hand joints x 3, parent-relative, added to the hand mean
    rhand_pose       (45,)   15 right-hand joints x 3, same
    jaw_pose         (3,)    jaw, parent-relative
    shape            (10,)   shape coefficients (betas), unitless
    expr             (10,)   expression coefficients, unitless
    cam_trans        (3,)    metres: the mesh is smplx(poses, shape, expr, transl=0) + cam_trans
    leye_pose        (3,)    always 0 (not estimated)
    reye_pose        (3,)    always 0 (not estimated)
    camera.focal     (2,)    fx, fy in pixels
    camera.princpt   (2,)    cx, cy in pixels
    camera.image_size (2,)   width, height in pixels
    camera.axes      str     "opencv (x right, y down, z forward), metres"
    image            str     the input's file name
    image_sha256     str     the SHA-256 of the input's file (hex): which picture it is, whatever its name
    person           int     k of person_<k>
    people           int     how many person_<k> folders the photo's result holds
    score            float   detector score (1.0 for given boxes; HOG: SVM margin)
    bbox_xywh        (4,)    person box given or detected: x, y (top-left corner), width, height
    crop_bbox_xywh   (4,)    the box cropped for the network: bbox_xywh sanitised as upstream does
                             (x1 = max(0, x), x2 = min(W - 1, x1 + w - 1): moved onto the
                             left or top edge, not cut there), made 3:4 (w:h) and
                             enlarged 1.25x about its centre; x, y, width, height (may extend
                             past the image)
    lhand_bbox_xyxy  (4,)    left-hand box predicted by the network: x1, y1, x2, y2 corners
    rhand_bbox_xyxy  (4,)    right-hand box, x1, y1, x2, y2
    face_bbox_xyxy   (4,)    face box, x1, y1, x2, y2
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wbcap.atomic import NAME_MAX, TEMP_NAME_EXTRA, atomic_write_bytes, staged_dir
from wbcap.errors import JSON_ERRORS, InputError, setting
from wbcap.export.obj import write_obj
from wbcap.export.openpose import person_keypoints, write_keypoints_json
from wbcap.export.params_json import write_params_json
from wbcap.io.image_results import KEYPOINTS_FILE, PERSON_DIR, is_image_result
from wbcap.io.param_names import to_file_record

log = logging.getLogger(__name__)


def params_record(person, image_name: str, image_size: tuple[int, int], gender: str,
                  image_sha256: str | None = None, people: int | None = None, calibration: Any = None) -> dict:
    """The JSON-ready dict of one person (fields in the module docstring); the writer adds ``format``.

    ``person`` is a :class:`wbcap.pipeline.Person` (its SMPL-X parameters under their file names:
    :mod:`wbcap.io.param_names`; its boxes are ``(x, y, w, h)``, the part boxes are written
    as corners); ``image_size`` is (width, height); ``image_sha256``: the hex SHA-256 of the
    picture's file (None: not written); ``people``: how many people the photo's result holds
    (None: not written); ``calibration``: the record of the photo's undistortion
    (:meth:`wbcap.io.undistort.Undistorter.record`: the calibration as given and what was applied
    to this photo, as ``meta.json``'s of a run), written as ``calibration`` (every pixel of the
    record, boxes and camera, is then of the undistorted photo), or None.
    """
    rec: dict = {"model": "smplx", "gender": gender, "rotation": "axis-angle", "flat_hand_mean": False}
    rec.update(to_file_record(person.params))  # root_pose ... cam_trans, leye_pose, reye_pose
    rec["camera"] = {
        "focal": [float(person.focal[0]), float(person.focal[1])],
        "princpt": [float(person.princpt[0]), float(person.princpt[1])],
        "image_size": [int(image_size[0]), int(image_size[1])],
        "axes": "opencv (x right, y down, z forward), metres",
    }
    rec["image"] = image_name
    if image_sha256 is not None:
        rec["image_sha256"] = image_sha256
    rec["person"] = person.index
    if people is not None:
        rec["people"] = int(people)
    rec["score"] = float(person.score)
    rec["bbox_xywh"] = [float(v) for v in person.box]
    rec["crop_bbox_xywh"] = [float(v) for v in person.crop_box]
    rec["lhand_bbox_xyxy"] = _xyxy(person.lhand_box)
    rec["rhand_bbox_xyxy"] = _xyxy(person.rhand_box)
    rec["face_bbox_xyxy"] = _xyxy(person.face_box)
    if calibration is not None:
        rec["calibration"] = calibration
    return rec


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file at ``path`` (``smplx_param.json``'s ``image_sha256``: which
    picture a result is of, whatever its name)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def earlier_record(final: Path) -> dict | None:
    """The first readable ``person_<k>/smplx_param.json`` of an earlier result in ``final`` (a
    wbcap image result's folder), as read; None where there is none."""
    import json

    if not final.is_dir() or final.is_symlink():
        return None
    for person in sorted(final.glob("person_*/smplx_param.json")):
        try:
            record = json.loads(person.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, *JSON_ERRORS):
            continue
        if isinstance(record, dict):
            return record
    return None


def result_files(render: bool, openpose: bool, export: Any = None) -> tuple[str, ...]:
    """The files :func:`write_image_outputs` writes in each ``person_<k>/`` with these settings
    (``export``: an :class:`~wbcap.export.animation.AnimationExport`, or None)."""
    names = ["output.obj", "smplx_param.json"]
    if render:
        names += ["render_original_img.jpg", "render_cropped_img.jpg"]
    if openpose:
        names.append(KEYPOINTS_FILE)
    from wbcap.io.run_folder import track_file_name

    names += [track_file_name("output", f) for f in (export.formats if export is not None else ())]
    return tuple(names)


def done_before(final: Path, image_path: Path, files: Sequence[str] = ("output.obj",)) -> int | None:
    """The number of people of the earlier result in ``final`` where it is whole, of the picture at
    ``image_path`` and holds ``files`` (:func:`result_files` of this command's settings: a result
    made without ``--openpose`` is not done for a command asking for it) (``wbcap image
    --skip-done``): ``person_0`` to ``person_<n-1>``, each with ``files`` and a ``smplx_param.json``
    of that picture's ``image_sha256``. None otherwise (no result, one of another picture, one made
    before results recorded the picture's SHA-256, or one with a person's folder or file deleted
    since: a break-it review)."""
    import json

    earlier = earlier_record(final)
    if earlier is None or "image_sha256" not in earlier:
        return None
    digest = file_sha256(image_path)
    people = sorted(int(m.group(1)) for p in final.iterdir() if (m := PERSON_DIR.fullmatch(p.name)) and p.is_dir())
    if not people or people != list(range(len(people))) or earlier.get("people", len(people)) != len(people):
        return None  # (a person's folder deleted since, the last one too: a new user's trial)
    for k in people:
        folder = final / f"person_{k}"
        try:
            record = json.loads((folder / "smplx_param.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, *JSON_ERRORS):
            return None
        if not isinstance(record, dict) or record.get("image_sha256") != digest or not all(
                (folder / name).is_file() for name in files):
            return None
    return len(people)


def _say_other_picture_replaced(final: Path, image_path: Path, digest: str, size: tuple[int, int]) -> None:
    """Warn where ``final`` holds the result of another picture (another ``image_sha256``, or for
    a result without one another name or size), which this one's replaces: one command per
    camera folder into one OUT lost every earlier camera's ``img.jpg`` without a word (a batch
    trial). A rerun of the same picture replaces its result silently, as before."""
    earlier = earlier_record(final)
    if earlier is None:
        return
    if "image_sha256" in earlier:
        other = earlier["image_sha256"] != digest
    else:
        camera = earlier.get("camera")
        other = earlier.get("image") != image_path.name or (
            isinstance(camera, dict) and camera.get("image_size") != [int(size[0]), int(size[1])])
    if other:
        log.warning("%s: held the result of another picture (%s), which this one's (%s) replaces; to keep both, give "
                    "each command its own %s folder, or name both pictures in one command (their folders are then "
                    "named by their paths)", final, earlier.get("image", "?"), image_path,
                    setting("out", api="output"))


def _xyxy(xywh) -> list[float]:
    """A Person box ``(x, y, w, h)`` as the corners ``[x1, y1, x2, y2]`` the JSON writes (in
    float64: a box the pipeline made from float32 corners gives those corners back exactly)."""
    x, y, w, h = (float(v) for v in xywh)
    return [x, y, x + w, y + h]


def _folder_stem(path: Path) -> str:
    """A picture's folder name: its stem, or its whole name where the stem is ``.`` or ``..``
    (``..jpg``'s result went into OUT itself, ``...jpg``'s replaced OUT's parent: a batch trial)."""
    return path.name if path.stem in ("", ".", "..") else path.stem


def output_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """One output folder name per input (``/``-separated, relative to OUT), no two alike.

    The rule is in the module docstring: stems when they are unique, else paths relative to the
    inputs' common folder without the extension, keeping the extension where only it differs.

    Raises:
        InputError: two inputs would still share a folder (or one's folder would hold the
            other's); the message names both.
    """
    paths = [Path(p) for p in paths]
    stems = [_folder_stem(p) for p in paths]
    for path, stem in zip(paths, stems):  # (each output folder is written first under a temporary name)
        if len(os.fsencode(stem)) + TEMP_NAME_EXTRA > NAME_MAX:
            raise InputError(f"{path}: its name is {len(os.fsencode(stem))} bytes before its extension; its output "
                             f"folder, named after it, is written first under a temporary name {TEMP_NAME_EXTRA} bytes "
                             f"longer, past the {NAME_MAX} a name may have: rename the picture (at most "
                             f"{NAME_MAX - TEMP_NAME_EXTRA} bytes before its extension)")
    if len({s.casefold() for s in stems}) == len(stems):
        return stems
    absolute = [Path(os.path.abspath(p)) for p in paths]
    try:
        root = Path(os.path.commonpath([str(a.parent) for a in absolute]))
        rel = [a.relative_to(root) for a in absolute]
    except ValueError:  # no common folder (different drives on Windows)
        rel = [Path(*a.parts[1:]) for a in absolute]
    names = [r.with_name(_folder_stem(r)).as_posix() for r in rel]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        groups[name.casefold()].append(i)
    for members in groups.values():
        if len(members) > 1:  # same folder and stem, different extensions: keep the extension
            for i in members:
                names[i] = rel[i].as_posix()
    owner: dict[str, int] = {}
    for i, name in enumerate(names):
        key = name.casefold()
        if key in owner:
            j = owner[key]
            # (names that differ in case only are two folders on Linux, one on macOS and Windows)
            where = "" if names[i] == names[j] else " on a disk that does not tell upper from lower case (macOS, Windows)"
            raise InputError(
                f"{paths[j]} and {paths[i]} would both be written to the output folder {names[j]}/{where}; "
                f"rename one of them or process them in separate runs with different {setting('out', api='output')} folders"
            )
        owner[key] = i
    for i, name in enumerate(names):
        parts = name.casefold().split("/")
        for depth in range(1, len(parts)):
            j = owner.get("/".join(parts[:depth]))
            if j is not None:
                raise InputError(
                    f"{paths[j]} would be written to the output folder {names[j]}/, which would also "
                    f"hold the result of {paths[i]} ({name}/); rename one of them or process them in "
                    f"separate runs with different {setting('out', api='output')} folders"
                )
    return names


def check_output_folder(final: Path, out_root: Path | None = None) -> None:
    """Refuse to replace ``final`` unless it is absent or an earlier wbcap image result.

    With ``out_root``, the folders between it and ``final`` must not be image results either
    (a nested name would otherwise be written inside an earlier image's folder).

    Raises:
        InputError: naming the folder and the fix.
    """
    final = Path(final)
    if final.is_symlink():  # (a link to a folder was called "not a folder": a break-it trial)
        raise InputError(f"{final}: is a symbolic link, which a new result would replace (not what it leads to); "
                         f"move it away or choose another {setting('out', api='output')} folder")
    if final.exists() and not final.is_dir():
        raise InputError(f"{final}: exists and is not a folder; "
                         f"move it away or choose another {setting('out', api='output')} folder")
    if final.is_dir() and not is_image_result(final):
        raise InputError(
            f"{final}: exists and holds files that are not a wbcap image result; "
            f"move them away or choose another {setting('out', api='output')} folder"
        )
    if out_root is not None:
        parent = final.parent
        root = Path(out_root)
        while parent != root and root in parent.parents:
            if parent.is_dir() and any(PERSON_DIR.fullmatch(e.name) for e in parent.iterdir()):
                raise InputError(
                    f"{parent}: holds an earlier result of an image named {parent.name}, and this run "
                    f"writes {final.relative_to(root)}/ inside it; choose another {setting('out', api='output')} folder"
                )
            parent = parent.parent


def to_common_camera(people: Sequence) -> tuple[list[np.ndarray], tuple[float, float], tuple[float, float]]:
    """Express every person's mesh in one pinhole camera so they can be rendered together.

    Person k's camera (f_k, c_k) differs per box. The common camera is the largest box's
    (focal f, principal point c); every vertex is moved by :func:`wbcap.camera.to_shared_camera`
    (in float64), so it projects to the same pixel (exact) with depth scaled by f / f_k, so
    occlusion between people is approximately right.
    Returns (meshes: (10475, 3) float32 metres each, OpenCV axes; focal; princpt), pixels.
    """
    from wbcap.camera import to_shared_camera_np

    ref = max(people, key=lambda p: p.crop_box[2] * p.crop_box[3])
    f = float(ref.focal[0])
    c = (float(ref.princpt[0]), float(ref.princpt[1]))
    vertices = np.stack([p.vertices for p in people]).astype(np.float64)
    focal_k = np.array([float(p.focal[0]) for p in people])
    princpt_k = np.array([(float(p.princpt[0]), float(p.princpt[1])) for p in people])
    meshes = to_shared_camera_np(vertices, focal_k, princpt_k, f, c).astype(np.float32)
    return list(meshes), (f, f), c


def encode_jpeg(image_rgb: np.ndarray, quality: int = 95) -> bytes:
    """The JPEG file bytes of ``image_rgb``, an ``(H, W, 3)`` uint8 RGB image (OpenCV's encoder,
    ``quality`` 0-100).

    Raises:
        RuntimeError: OpenCV could not encode it.
    """
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
    name: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    export: Any = None,
    body: Any = None,
    renderer: Callable[..., np.ndarray] | None = None,
    openpose: bool = False,
    lens: Any = None,
) -> Path:
    """Write ``out_root/<name>/person_<k>/...`` for one image; returns the image's folder.

    Args:
        renderer: draws the renders, with :func:`wbcap.export.render.render_meshes`'s arguments
            and result (default: that function; ``wbcap image`` passes a
            :class:`~wbcap.export.render_process.RenderProcess`'s method).
        export: an :class:`~wbcap.export.animation.AnimationExport`: also write
            ``person_<k>/output.<format>`` (:func:`person_animation`), with ``body`` the
            :class:`~wbcap.body.smplx_layer.SMPLXLayer` of the people; None: none.
        name: the folder name (from :func:`output_names`; default: the image's stem).
        openpose: also write ``person_<k>/output_keypoints.json``, the person's 2D keypoints
            in OpenPose's JSON (:mod:`wbcap.export.openpose`, ``person_id`` ``[k]``).
        on_stage: called with ``"rendering"`` (when ``render``) then ``"writing"``.
        lens: the :class:`~wbcap.io.undistort.Undistorter` ``image`` was undistorted with
            (``wbcap image --calibration``), or None: the ``export`` files are then in its
            undistorted camera, and the OpenPose keypoints put back into the photo's own pixels
            (:meth:`~wbcap.camera.LensCalibration.distort_pixels`; one where the lens model turns
            back as not found: 0, 0, 0).

    Raises:
        InputError: ``out_root/<name>`` exists and is not an earlier wbcap image result.
    """
    if renderer is None:
        from wbcap.export.render import render_meshes as renderer

    stage = on_stage or (lambda _name: None)
    final = Path(out_root) / (name or _folder_stem(image_path))
    check_output_folder(final, out_root)
    digest = file_sha256(image_path)
    _say_other_picture_replaced(final, image_path, digest, (image.shape[1], image.shape[0]))
    h, w = image.shape[:2]
    overlay, crop_renders = None, []
    if render:
        stage("rendering")
        meshes, focal, princpt = to_common_camera(people)
        overlay = encode_jpeg(renderer(image, meshes, faces, focal, princpt))
        for person in people:
            crop = renderer(person.crop, [person.vertices], faces, person.crop_focal, person.crop_princpt)
            crop_renders.append(encode_jpeg(crop))
    stage("writing")
    with staged_dir(final) as tmp:
        for i, person in enumerate(people):
            d = Path(tmp) / f"person_{person.index}"
            d.mkdir(parents=True)
            write_obj(d / "output.obj", person.vertices, faces)
            write_params_json(d / "smplx_param.json", params_record(person, image_path.name, (w, h), gender, digest,
                                                                             len(people), None if lens is None
                                                                             else lens.record()))
            if render:
                atomic_write_bytes(d / "render_original_img.jpg", overlay)
                atomic_write_bytes(d / "render_cropped_img.jpg", crop_renders[i])
            if openpose:
                write_keypoints_json(d / KEYPOINTS_FILE, [person_keypoints(person, (w, h), lens)])
            if export is not None and export.formats:
                person_animation(d, person, body, export, (w, h), gender, label=f"{final.name}_person_{person.index}",
                                 camera=None if lens is None else lens.camera)
    return final


def person_animation(folder: Path, person: Any, body: Any, export: Any, image_size: tuple[int, int],
                     gender: str = "neutral", label: str | None = None, camera: Any = None) -> list[Path]:
    """``folder/output.<format>`` for one person of a photo: a one-row clip (no animation; the
    pose is the skeleton's own) in the photo's camera (:meth:`wbcap.camera.ImageCamera.default`:
    focal ``sqrt(W^2 + H^2)``, principal point at the centre, as ``wbcap run`` takes a video's),
    turned y up (GLB, BVH) or z up (npz), with that camera in the GLB.

    The person moves there rigidly as a video's do (:func:`wbcap.camera.shared_camera_translation`:
    the pelvis keeps its pixel and apparent size), so every person of the photo stands where the
    photo shows them in one scene, and viewing through the GLB's camera overlays the photo (a
    glTF camera has no off-centre principal point: in the person's own box camera, ``output.obj``'s,
    Blender drew them off their place, and all of a photo's people stood at one spot; an
    animator's trial). ``output.obj`` and ``smplx_param.json`` keep the person's own camera
    (upstream Hand4Whole's).

    ``person``: a :class:`wbcap.pipeline.Person`; ``export``: an
    :class:`~wbcap.export.animation.AnimationExport`; ``image_size``: ``(W, H)`` pixels;
    ``label``: the name inside the files (``<image>_person_<k>``: Blender names the objects of
    several people's files apart by it), None: ``output``; ``camera``: the photo's
    :class:`~wbcap.camera.ImageCamera` (a calibration's undistorted one), None: the default one.
    """
    import torch

    from wbcap.camera import ImageCamera, shared_camera_translation_np
    from wbcap.export.amass import amass_arrays
    from wbcap.export.animation import write_animations

    p = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in person.params.to_axis_angle().items()}
    with torch.no_grad():
        dev = body.v_template.device
        rest = body.rest_root(torch.as_tensor(p["betas"], device=dev, dtype=body.v_template.dtype)).cpu().numpy()[0]
    camera = camera or ImageCamera.default((int(image_size[0]), int(image_size[1])))
    transl = shared_camera_translation_np(p["transl"].reshape(1, 3), rest, np.array([float(person.focal[0])]),
                                          np.array([[float(person.princpt[0]), float(person.princpt[1])]]),
                                          camera.focal[0], camera.princpt)
    arrays = amass_arrays(
        global_orient=p["global_orient"], body_pose=p["body_pose"], jaw_pose=p["jaw_pose"],
        left_hand_pose=p["left_hand_pose"], right_hand_pose=p["right_hand_pose"], transl=transl,
        betas=p["betas"][0], expression=p["expression"], hands_mean=body.hands_mean(), rest_root=rest,
        fps=30.0, times=np.zeros(1), frame_indices=np.zeros(1, np.int64), valid=np.ones(1, bool), gender=gender,
        leye_pose=p["leye_pose"], reye_pose=p["reye_pose"], camera=camera,
    )
    return write_animations(folder, "output", arrays, body, export, camera, label=label)
