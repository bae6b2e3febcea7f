"""Calibrated cameras (``wbcap run --calibration``): reading calibration files as their tools write
them, the lens model against OpenCV's own projection, undistorted frames, and runs whose results
are in the undistorted camera with OpenPose keypoints in the source's pixels."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_cli_run import run, two_walkers

from wbcap.camera import CameraPose, LensCalibration
from wbcap.errors import InputError
from wbcap.io.calibration import read_calibration
from wbcap.testing.videos import write_video

K = np.array([[260.0, 0.0, 158.5], [0.0, 262.0, 121.2], [0.0, 0.0, 1.0]])
D = np.array([-0.3, 0.1, 0.002, -0.001, -0.02])
FISHEYE_D = np.array([0.05, -0.01, 0.002, -0.0005])


@pytest.fixture()
def base_args(micro_ckpt, body_dir):
    return ["--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu"]


def calibration(fisheye: bool = False, size=(320, 240)) -> LensCalibration:
    return LensCalibration(size, tuple(map(tuple, K)), tuple(FISHEYE_D if fisheye else D), fisheye)


def cv_project(points: np.ndarray, fisheye: bool = False, k: np.ndarray = K) -> np.ndarray:
    """OpenCV's own projection of camera-frame points ``(N, 3)`` through the lens, in wbcap's pixel
    convention (the top-left pixel's corner at 0: OpenCV's + 0.5)."""
    zero = np.zeros((3, 1))
    if fisheye:
        uv, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), zero, zero, k, FISHEYE_D.reshape(4, 1))
    else:
        uv, _ = cv2.projectPoints(points.reshape(-1, 3), zero, zero, k, D)
    return uv.reshape(-1, 2) + 0.5


def scene_points(n: int = 35, seed: int = 0) -> np.ndarray:
    """Points 2-4 m before the camera, over the picture (its corners' rays included)."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-0.55, 0.55, 7), np.linspace(-0.42, 0.42, 5))
    rays = np.stack([x.ravel(), y.ravel(), np.ones(x.size)], 1)[:n]
    return rays * rng.uniform(2, 4, (len(rays), 1))


# --------------------------------------------------------------------------- files


def write_pose2sim_toml(path: Path, cameras: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]]) -> Path:
    """A Calib.toml laid out as Pose2Sim's calibration writes it (a table per camera, `name`,
    `size`, `matrix`, `distortions`, `rotation`, `translation`, `fisheye`, then `[metadata]`)."""
    text = ""
    for name, (k, d, (w, h)) in cameras.items():
        text += (f'[{name}]\nname = "{name}"\nsize = [ {float(w)}, {float(h)}]\n'
                 f"matrix = [ [ {k[0, 0]}, 0.0, {k[0, 2]}], [ 0.0, {k[1, 1]}, {k[1, 2]}], [ 0.0, 0.0, 1.0]]\n"
                 f"distortions = [ {', '.join(str(v) for v in d)}]\n"
                 "rotation = [ 1.2, -0.3, 0.1]\ntranslation = [ 0.5, 1.0, 3.0]\nfisheye = false\n\n")
    path.write_text(text + "[metadata]\nadjusted = false\nerror = 0.0\n")
    return path


def write_opencv(path: Path, k: np.ndarray, d: np.ndarray, size=(320, 240)) -> Path:
    """A calibration written by OpenCV's FileStorage with the keys of its calibration sample
    (YAML or XML by the suffix)."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", size[0])
    fs.write("image_height", size[1])
    fs.write("camera_matrix", k)
    fs.write("distortion_coefficients", d.reshape(-1, 1))
    fs.release()
    return path


ROS_YAML = """image_width: 320
image_height: 240
camera_name: head_camera
camera_matrix:
  rows: 3
  cols: 3
  data: [260.0, 0.0, 158.5, 0.0, 262.0, 121.2, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.3, 0.1, 0.002, -0.001, -0.02]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
"""

KALIBR_YAML = """cam0:
  cam_overlaps: [1]
  camera_model: pinhole
  distortion_coeffs: [0.05, -0.01, 0.002, -0.0005]
  distortion_model: equidistant
  intrinsics: [260.0, 262.0, 158.5, 121.2]
  resolution: [320, 240]
  rostopic: /cam0/image_raw
cam1:
  T_cn_cnm1:
  - [1.0, 0.0, 0.0, -0.11]
  - [0.0, 1.0, 0.0, 0.0]
  - [0.0, 0.0, 1.0, 0.0]
  - [0.0, 0.0, 0.0, 1.0]
  camera_model: pinhole
  distortion_coeffs: [-0.3, 0.1, 0.002, -0.001]
  distortion_model: radtan
  intrinsics: [261.0, 262.0, 160.5, 121.2]
  resolution: [320, 240]
"""


def test_calibration_files_of_each_tool_give_the_same_camera(tmp_path):
    """Pose2Sim's TOML layout, OpenCV's YAML and XML (written by OpenCV itself), ROS's camera_info
    YAML and a JSON give the one calibration; Kalibr's chain its cameras' (its equidistant model as
    OpenCV's fisheye)."""
    files = {
        "toml": write_pose2sim_toml(tmp_path / "Calib.toml", {"cam01": (K, D, (320, 240))}),
        "yml": write_opencv(tmp_path / "camera.yml", K, D),
        "xml": write_opencv(tmp_path / "camera.xml", K, D),
        "ros": tmp_path / "head_camera.yaml",
        "json": tmp_path / "camera.json",
    }
    files["ros"].write_text(ROS_YAML)
    files["json"].write_text(json.dumps({"K": K.tolist(), "dist": D.tolist(), "size": [320, 240]}))
    for kind, path in files.items():
        cal = read_calibration(path)
        assert cal.image_size == (320, 240), kind
        np.testing.assert_array_equal(cal.matrix, K, err_msg=kind)
        np.testing.assert_array_equal(cal.distortion, D, err_msg=kind)
        assert not cal.fisheye and cal.file == str(path), kind
    assert read_calibration(files["toml"]).name == "cam01"
    assert read_calibration(files["ros"]).name == "head_camera"
    (tmp_path / "camchain.yaml").write_text(KALIBR_YAML)
    cam0 = read_calibration(tmp_path / "camchain.yaml", camera="cam0")
    assert cam0.fisheye and cam0.distortion == tuple(FISHEYE_D) and cam0.matrix == tuple(map(tuple, K))
    cam1 = read_calibration(tmp_path / "camchain.yaml", source=tmp_path / "videos" / "CAM1.mp4")  # (its name, case aside)
    assert not cam1.fisheye and cam1.matrix[0] == (261.0, 0.0, 160.5) and cam1.name == "cam1"


def write_file_storage(path: Path, values: dict) -> Path:
    """``values`` written by OpenCV's FileStorage (arrays as its matrices), YAML or XML by suffix:
    how OpenCV's calibration apps write theirs."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for key, value in values.items():
        fs.write(key, value)
    fs.release()
    return path


def test_calibration_layouts_of_more_tools(tmp_path):
    """OpenCV's tutorial app (its fisheye flag `fisheye_model`, and its capitalised keys before 3.0),
    its interactive app (`cameraResolution`, `dist_coeffs`), EasyMocap's intri.yml (`names`,
    `K_<name>`, `dist_<name>`, a size only where `W_`/`H_` are written), a Gyroflow lens profile
    (GoPro's published ones), Caliscope's nested `[cameras.N]` and Kalibr's `distortion_model:
    none` give their cameras."""
    fisheye = read_calibration(write_file_storage(tmp_path / "out_camera_data.yml", {
        "image_width": 320, "image_height": 240, "flags": 0, "fisheye_model": 1, "camera_matrix": K,
        "distortion_coefficients": FISHEYE_D.reshape(4, 1)}))
    assert fisheye.fisheye and fisheye.distortion == tuple(FISHEYE_D)
    old = read_calibration(write_file_storage(tmp_path / "old.yml", {
        "image_Width": 320, "image_Height": 240, "Camera_Matrix": K, "Distortion_Coefficients": D.reshape(5, 1)}))
    assert old.image_size == (320, 240) and old.distortion == tuple(D) and not old.fisheye
    interactive = read_calibration(write_file_storage(tmp_path / "cameraParameters.xml", {
        "cameraResolution": np.array([[320.0], [240.0]]), "cameraMatrix": K, "dist_coeffs": D.reshape(1, 5)}))
    assert interactive.image_size == (320, 240) and interactive.distortion == tuple(D)
    intri = write_file_storage(tmp_path / "intri.yml", {
        "names": ("01", "02"), "K_01": K, "dist_01": D.reshape(1, 5), "K_02": K * [[2], [2], [1]],
        "dist_02": np.zeros((1, 5)), "H_02": 480, "W_02": 640})
    assert read_calibration(intri, source="videos/01.mp4").image_size is None  # (intri.yml's usual: no size)
    assert read_calibration(intri, camera="02").image_size == (640, 480)
    (tmp_path / "hero.json").write_text(json.dumps({
        "name": "GoPro_HERO10 Black_Wide", "camera_brand": "GoPro", "calib_dimension": {"w": 320, "h": 240},
        "orig_dimension": {"w": 320, "h": 240}, "input_horizontal_stretch": 1.0, "input_vertical_stretch": 1.0,
        "fisheye_params": {"RMS_error": 0.6, "camera_matrix": K.tolist(), "distortion_coeffs": FISHEYE_D.tolist(),
                           "radial_distortion_limit": None},
        "distortion_model": None, "digital_lens": None}))
    gopro = read_calibration(tmp_path / "hero.json")
    assert gopro.fisheye and gopro.image_size == (320, 240) and gopro.name == "GoPro_HERO10 Black_Wide"
    (tmp_path / "camera_array.toml").write_text(
        "[cameras.0]\ncam_id = 0\nsize = [320, 240]\nrotation_count = 0\n"
        "matrix = [[260.0, 0.0, 158.5], [0.0, 262.0, 121.2], [0.0, 0.0, 1.0]]\n"
        "distortions = [-0.3, 0.1, 0.002, -0.001, -0.02]\nfisheye = false\n\n"
        "[cameras.1]\ncam_id = 1\nsize = [320, 240]\nrotation_count = 1\n"
        "matrix = [[260.0, 0.0, 158.5], [0.0, 262.0, 121.2], [0.0, 0.0, 1.0]]\n")
    assert read_calibration(tmp_path / "camera_array.toml", camera="0").distortion == tuple(D)
    with pytest.raises(InputError, match="rotation_count 1: calibrated on frames turned by quarter turns"):
        read_calibration(tmp_path / "camera_array.toml", camera="1")
    (tmp_path / "camchain.yaml").write_text(KALIBR_YAML + """cam2:
  camera_model: pinhole
  distortion_coeffs: []
  distortion_model: none
  intrinsics: [260.0, 262.0, 158.5, 121.2]
  resolution: [320, 240]
cam3:
  camera_model: omni
  distortion_coeffs: [-0.1, 0.01, 0.0, 0.0]
  distortion_model: radtan
  intrinsics: [0.8, 260.0, 262.0, 158.5, 121.2]
  resolution: [320, 240]
""")
    assert read_calibration(tmp_path / "camchain.yaml", camera="cam2").distortion == ()
    with pytest.raises(InputError, match="camera model 'omni': wbcap reads OpenCV's pinhole and fisheye models"):
        read_calibration(tmp_path / "camchain.yaml", camera="cam3")
    # Pose2Sim names its tables after the intrinsics' folders: the video's name is one word of them
    calib = write_pose2sim_toml(tmp_path / "Calib_board.toml", {"int_cam01_img": (K, D, (320, 240)),
                                                               "int_cam02_img": (K, -D, (320, 240))})
    assert read_calibration(calib, source="cam02.mp4").name == "int_cam02_img"


def test_kalibrs_chain_gives_each_camera_its_pose_in_cam0s_frame(tmp_path):
    """Kalibr's camchain.yaml: cam0's frame is the world; each next camera's `T_cn_cnm1` takes
    the previous camera's points into its own, so a point of cam0's frame lands in cam2's at
    `T_c2_c1 T_c1_c0 x`, which the pose read gives (`R x + t`); a chain missing a link leaves the
    cameras past it without a pose; a link that is no rigid transform is one line."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(3)
    links = []
    for _ in range(2):
        link = np.eye(4)
        link[:3, :3] = Rotation.from_rotvec(rng.normal(0.0, 0.4, 3)).as_matrix()
        link[:3, 3] = rng.normal(0.0, 0.5, 3)
        links.append(link)

    def camera(n: int, link=None) -> str:
        chain = "" if link is None else "  T_cn_cnm1:\n" + "".join(f"  - {[float(v) for v in row]}\n" for row in link)
        return (f"cam{n}:\n{chain}  camera_model: pinhole\n  distortion_coeffs: [0.0, 0.0, 0.0, 0.0]\n"
                "  distortion_model: radtan\n  intrinsics: [260.0, 262.0, 158.5, 121.2]\n  resolution: [320, 240]\n")

    path = tmp_path / "camchain.yaml"
    path.write_text(camera(2, links[1]) + camera(0) + camera(1, links[0]))  # (any order in the file)
    point = np.array([0.3, -0.2, 4.0])  # (cam0's frame, metres)
    for name, seen in (("cam0", point), ("cam1", links[0][:3, :3] @ point + links[0][:3, 3]),
                       ("cam2", (links[1] @ links[0] @ np.append(point, 1.0))[:3])):
        pose = read_calibration(path, camera=name).pose
        assert pose is not None, name
        np.testing.assert_allclose(np.array(pose.rotation) @ point + np.array(pose.translation), seen, atol=1e-9)
    path.write_text(camera(0) + camera(1) + camera(2, links[1]))  # (no link from cam0 to cam1)
    assert [read_calibration(path, camera=f"cam{n}").pose for n in (1, 2)] == [None, None]
    assert read_calibration(path, camera="cam0").pose is not None
    path.write_text(camera(0))  # (one camera: no chain, no world)
    assert read_calibration(path).pose is None
    sheared = links[0].copy()
    sheared[3] = [0.0, 0.0, 0.1, 1.0]
    path.write_text(camera(0) + camera(1, sheared))
    with pytest.raises(InputError, match=r"cam1's T_cn_cnm1 .*: a 4 x 4 rigid transform \(four rows of four numbers"):
        read_calibration(path, camera="cam1")
    # a link that is no rigid motion is named as such, whichever camera is asked for (a review: cam2 was
    # blamed for cam1's link, with the product of the two); so are rows of other lengths (3, 5, 4, 4 numbers
    # flattened into 16 had passed)
    scaled = links[0].copy()
    scaled[:3, :3] *= 2.0
    path.write_text(camera(0) + camera(1, scaled) + camera(2, links[1]))
    with pytest.raises(InputError, match=r"cam1's T_cn_cnm1 .*: its rotation is not one"):
        read_calibration(path, camera="cam2")
    path.write_text(camera(0) + camera(1, links[0]).replace("  T_cn_cnm1:\n", "  T_cn_cnm1: [[1, 0, 0], [0, 0, 1, 0, 0], "
                                                            "[0, 1, 0, 0], [0, 0, 0, 1]]\n  old_link:\n"))
    with pytest.raises(InputError, match=r"cam1's T_cn_cnm1 .*: a 4 x 4 rigid transform"):
        read_calibration(path, camera="cam1")
    path.write_text(camera(0) + camera(1, links[0]) + camera(1, links[1]).replace("cam1:", "cam01:"))
    with pytest.raises(InputError, match="tables 'cam1' and 'cam01' are both camera 1 of Kalibr's chain; rename one"):
        read_calibration(path, camera="cam1")


def test_frames_of_another_size_fit_the_calibration(caplog):
    """A calibration fitted to the frames: its own size; a resized picture (each axis scaled, also
    a rounded one: 854x480 of 1920x1080); a few pixels cropped or padded at the right or bottom
    (1088 rows stored for 1080: the same pixels, with a warning); no size (taken as the frames',
    with a warning when the principal point is far from their centre)."""
    import logging

    from wbcap.io.undistort import Undistorter

    cal = LensCalibration((1920, 1088), ((1400.0, 0.0, 959.5), (0.0, 1402.0, 539.5), (0.0, 0.0, 1.0)), tuple(D))
    assert cal.fit((1920, 1088)) == (cal, "same")
    scaled, how = cal.fit((960, 544))
    assert how == "scaled" and scaled.matrix[0] == (700.0, 0.0, 479.5) and scaled.matrix[1] == (0.0, 701.0, 269.5)
    hd = LensCalibration((1920, 1080), cal.matrix, tuple(D))
    assert hd.fit((854, 480))[1] == "scaled"
    with caplog.at_level(logging.INFO):
        cropped = Undistorter(cal, (1920, 1080)).calibration
    assert cropped.matrix == cal.matrix and cropped.image_size == (1920, 1080)
    assert "taken as the same pixels cropped or padded at the right or bottom edge" in caplog.text
    with pytest.raises(ValueError, match="another shape"):
        cal.fit((1920, 1060))
    sizeless = LensCalibration(None, ((1400.0, 0.0, 959.5), (0.0, 1400.0, 539.5), (0.0, 0.0, 1.0)), tuple(D),
                               file="intri.yml")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert Undistorter(sizeless, (1920, 1080)).calibration.image_size == (1920, 1080)
        Undistorter(sizeless, (1280, 720))
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "gives no picture size; taken as the frames' 1280x720 (its principal point" in (
        warned[0].getMessage())


@pytest.mark.parametrize("case, text, expected", [
    ("several", None, "holds 2 cameras (cam01, cam02); say which took the pictures with calibration_camera NAME"),
    ("unknown camera", None, "no camera 'cam09' in it (its cameras: cam01, cam02)"),
    ("no camera", '[metadata]\nerror = 0.0\n', "holds no camera calibration"),
    ("bad matrix", 'size = [320, 240]\nmatrix = [[260.0, 0.0, 158.5], [0.0, 262.0, 121.2]]\n', "3 x 3 numbers"),
    ("bad distortion", 'size = [320, 240]\nmatrix = [[260, 0, 158.5], [0, 262, 121.2], [0, 0, 1]]\ndistortions = [0.1, 0.2, 0.3]\n',
     "OpenCV's coefficients, 4 or 5 or 8 or 12 or 14 finite numbers"),
    ("fisheye distortion", 'size = [320, 240]\nmatrix = [[260, 0, 158.5], [0, 262, 121.2], [0, 0, 1]]\n'
     'distortions = [0.1, 0.2, 0.3, 0.0, 0.1]\nfisheye = true\n', "the fisheye model's coefficients, 4 finite numbers"),
    ("zero focal", 'size = [320, 240]\nmatrix = [[0, 0, 158.5], [0, 262, 121.2], [0, 0, 1]]\n', "focal lengths fx, fy"),
    ("not toml", 'matrix = [[\n', "not valid TOML"),
    ("other model", 'size = [320, 240]\nK = [260, 0, 158.5, 0, 262, 121.2, 0, 0, 1]\ndistortion_model = "omni"\n',
     "distortion model 'omni'"),
])
def test_bad_calibration_files_are_refused_naming_the_file(tmp_path, case, text, expected):
    path = tmp_path / "Calib.toml"
    if text is None:
        write_pose2sim_toml(path, {"cam01": (K, D, (320, 240)), "cam02": (K, D, (320, 240))})
    else:
        path.write_text(text)
    with pytest.raises(InputError) as err:
        read_calibration(path, camera="cam09" if case == "unknown camera" else None, source="walk.mp4")
    assert str(err.value).startswith(f"{path}") and expected in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_calibration_files_of_other_kinds_are_refused(tmp_path):
    (tmp_path / "calib.txt").write_text("260 0 158.5\n")  # (a .txt is read as COLMAP's cameras.txt)
    (tmp_path / "bad.yml").write_text("%YAML:1.0\n---\na: [1, 2\n")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    (tmp_path / "calib.dat").write_text("260 0 158.5\n")
    for name, expected in (("calib.dat", "not a calibration file wbcap reads (.toml, .yml"),
                           ("calib.txt", "line 1 is not a camera of COLMAP's cameras.txt of a model wbcap reads"),
                           ("missing.toml", "no such calibration file"),
                           ("bad.yml", "OpenCV cannot read it as YAML"), ("bad.yaml", "not valid YAML")):
        with pytest.raises(InputError) as err:
            read_calibration(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and expected in str(err.value), str(err.value)


# --------------------------------------------------------------------------- the lens model


@pytest.mark.parametrize("fisheye", [False, True])
def test_undistorted_camera_and_distort_pixels_agree_with_opencvs_projection(fisheye):
    """A point seen in the undistorted camera at pixel p is, through the lens, where OpenCV's
    projectPoints puts it (wbcap's pixels are OpenCV's + 0.5); the undistorted camera has square
    pixels and keeps every source pixel (the source border's points fall inside its picture)."""
    cal = calibration(fisheye)
    camera = cal.undistorted()
    points = scene_points()
    np.testing.assert_allclose(cal.distort_pixels(camera, camera.project(points)), cv_project(points, fisheye), atol=1e-6)
    assert camera.focal[0] == camera.focal[1] and camera.image_size == (320, 240)
    # the source's border (its pixels' outer edges), undistorted into the camera: it fills the
    # picture along one side and is centred along the other
    edge_x, edge_y = np.linspace(-0.5, 319.5, 400), np.linspace(-0.5, 239.5, 300)
    border = np.concatenate([np.stack([edge_x, np.full(400, y)], 1) for y in (-0.5, 239.5)]
                            + [np.stack([np.full(300, x), edge_y], 1) for x in (-0.5, 319.5)])
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    if fisheye:
        und = cv2.fisheye.undistortPoints(border.reshape(-1, 1, 2), K, FISHEYE_D.reshape(4, 1), criteria=criteria)
    else:
        und = cv2.undistortPointsIter(border.reshape(-1, 1, 2), K, D, None, None, criteria)
    at = und.reshape(-1, 2) * camera.focal[0] + np.array(camera.princpt)  # (wbcap's pixels: the picture is 0..W)
    lo, hi = at.min(0), at.max(0)
    assert camera.princpt == (160.0, 120.0)  # (the optical axis through the picture's centre)
    assert (lo > -0.01).all() and (hi < [320.01, 240.01]).all()  # every pixel held
    assert min(*lo, 320 - hi[0], 240 - hi[1]) == pytest.approx(0, abs=0.01)  # and the picture filled to one edge


def test_a_calibration_fits_a_resized_picture():
    """A camera calibrated at 640x480 filming at 320x240: the scaled calibration projects every
    point where OpenCV projects it at 640x480, halved (about the corner)."""
    big = LensCalibration((640, 480), tuple(map(tuple, K * [[2], [2], [1]])), tuple(D))
    small, how = big.fit((320, 240))
    assert how == "scaled"
    points = scene_points()
    camera = small.undistorted()
    expected = cv_project(points, k=np.asarray(big.matrix)) / 2
    np.testing.assert_allclose(small.distort_pixels(camera, camera.project(points)), expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"calibrated on 640x480 pictures, for 480x640 ones \(turned\)"):
        big.fit((480, 640))
    with pytest.raises(ValueError, match="another shape"):
        big.fit((640, 360))


def test_without_distortion_the_camera_is_the_calibrations_own():
    cal = LensCalibration((320, 240), ((300.0, 0.0, 159.0), (0.0, 300.0, 119.5), (0.0, 0.0, 1.0)))
    camera = cal.undistorted()
    assert (camera.focal, camera.princpt) == ((300.0, 300.0), (159.5, 120.0))
    from wbcap.io.undistort import Undistorter

    image = np.arange(240 * 320 * 3, dtype=np.uint8).reshape(240, 320, 3)
    assert Undistorter(cal, (320, 240))(image) is image  # (nothing to remap)
    uneven = LensCalibration((320, 240), ((300.0, 0.0, 159.0), (0.0, 310.0, 119.5), (0.0, 0.0, 1.0)))
    # (its farthest column from the axis, 160.5 px at fx 300, fills the half-width 160 about the centre)
    assert uneven.undistorted().focal == pytest.approx((300.0 * 160 / 160.5,) * 2, abs=1e-9) and Undistorter(uneven, (320, 240)).remaps


def blob_picture(points_px: np.ndarray, size=(320, 240)) -> np.ndarray:
    """A grey picture with white discs (radius 3 px) centred at ``points_px`` (wbcap's pixels),
    drawn anti-aliased at 8x and reduced."""
    s = 8
    big = np.full((size[1] * s, size[0] * s), 40, np.uint8)
    for u, v in points_px:
        cv2.circle(big, (round(u * s - 0.5), round(v * s - 0.5)), 3 * s, 255, -1, lineType=cv2.LINE_AA)
    return np.repeat(cv2.resize(big, size, interpolation=cv2.INTER_AREA)[..., None], 3, 2)


def blob_centres(image: np.ndarray, near: np.ndarray) -> np.ndarray:
    """The brightness centroid of the disc nearest each of ``near`` (wbcap's pixels)."""
    grey = image[..., 1].astype(np.float64) - 40
    grey[grey < 0] = 0
    centres = []
    for u, v in near:
        x0, y0 = int(u) - 7, int(v) - 7
        win = grey[max(y0, 0):y0 + 15, max(x0, 0):x0 + 15]
        ys, xs = np.mgrid[max(y0, 0):y0 + 15, max(x0, 0):x0 + 15]
        centres.append([(win * (xs + 0.5)).sum() / win.sum(), (win * (ys + 0.5)).sum() / win.sum()])
    return np.asarray(centres)


@pytest.mark.parametrize("fisheye", [False, True])
def test_frames_are_read_undistorted(tmp_path, fisheye):
    """A video of discs filmed through the lens (drawn where OpenCV projects their points) is read
    with its calibration as the undistorted camera would film them: each disc at that camera's
    projection of its point (within 0.25 px, through the video codec), where without it they
    are pixels away."""
    from wbcap.io.video_reader import open_frames

    cal = calibration(fisheye)
    points = scene_points()[[0, 3, 6, 10, 17, 24, 28, 31, 34]]
    source = cv_project(points, fisheye)
    video = write_video(tmp_path / "lens.mp4", [blob_picture(source)] * 2)
    frames = open_frames(video, calibration=cal)
    camera = frames.undistorter.camera
    assert camera == cal.undistorted()
    image = next(iter(frames)).image
    expected = camera.project(points)
    assert np.abs(blob_centres(image, expected) - expected).max() < 0.25
    assert np.abs(expected - source).max() > 10  # (the lens moves them: a test that can fail)
    plain = next(iter(open_frames(video))).image
    assert np.abs(blob_centres(plain, source) - source).max() < 0.25


# --------------------------------------------------------------------------- runs


def square_calibration_file(path: Path, f: float, cx: float, cy: float, size=(320, 240)) -> Path:
    """OpenCV's values (pixel centres at whole numbers) of a pinhole camera without distortion."""
    return write_opencv(path, np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]]), np.zeros(5), size)


@pytest.mark.slow  # two runs
def test_a_calibration_without_distortion_equals_focal_and_principal_point(tmp_path, base_args):
    """`--calibration` of a lens without distortion is `--focal F --principal-point CX+0.5,CY+0.5`
    (OpenCV's principal point is a pixel centre's): the same params.jsonl to the bit; meta.json
    records the calibration."""
    frames, boxes = two_walkers(5)
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    common = ["--detector", f"boxes:{tmp_path / 'boxes.json'}", "--min-track", "2", "--no-render", "--export", "none",
              *base_args]
    cal = square_calibration_file(tmp_path / "camera.yml", 350.0, 170.25, 110.5)
    r = run("run", video, "-o", tmp_path / "cal", "--calibration", cal, *common)
    assert r.exit_code == 0, r.output
    r = run("run", video, "-o", tmp_path / "given", "--focal", 350, "--principal-point", "170.75,111", *common)
    assert r.exit_code == 0, r.output
    lines = [(tmp_path / name / "params.jsonl").read_text() for name in ("cal", "given")]
    assert lines[0] == lines[1] and len(lines[0].splitlines()) == 10
    meta = json.loads((tmp_path / "cal" / "meta.json").read_text())
    assert meta["camera"] == {"focal": [350.0, 350.0], "princpt": [170.75, 111.0], "image_size": [320, 240]}
    assert meta["calibration"]["matrix"] == [[350.0, 0.0, 170.25], [0.0, 350.0, 110.5], [0.0, 0.0, 1.0]]
    assert meta["calibration"]["file"] == str(cal) and "calibration" not in json.loads(
        (tmp_path / "given" / "meta.json").read_text())


def smplx_joints_in_camera(body_dir: Path, npz_path: Path, ids: list[int]) -> np.ndarray:
    """Plain smplx fed a track's AMASS npz: its joints ``ids`` ``(T, J, 3)`` in the camera's
    OpenCV frame (the npz is z-up: x, y, z = x_cv, z_cv, -y_cv)."""
    import smplx
    import torch

    npz = np.load(npz_path)
    p = torch.as_tensor(npz["poses"], dtype=torch.float32)
    n = p.shape[0]
    model = smplx.create(str(body_dir), "smplx", gender="neutral", use_pca=False, flat_hand_mean=True,
                         num_betas=npz["betas"].shape[-1], num_expression_coeffs=npz["expression"].shape[-1],
                         batch_size=n)
    with torch.no_grad():
        out = model(global_orient=p[:, :3], body_pose=p[:, 3:66], jaw_pose=p[:, 66:69], leye_pose=p[:, 69:72],
                    reye_pose=p[:, 72:75], left_hand_pose=p[:, 75:120], right_hand_pose=p[:, 120:165],
                    betas=torch.as_tensor(np.broadcast_to(npz["betas"][:npz["betas"].shape[-1]], (n, npz["betas"].shape[-1])).copy(), dtype=torch.float32),
                    expression=torch.as_tensor(npz["expression"], dtype=torch.float32),
                    transl=torch.as_tensor(npz["trans"], dtype=torch.float32))
    zup = out.joints[:, ids].double().numpy()
    return np.stack([zup[..., 0], -zup[..., 2], zup[..., 1]], -1)


@pytest.mark.slow  # a run with keypoints
def test_a_run_through_a_lens_writes_openpose_keypoints_in_the_sources_pixels(tmp_path, base_args, body_dir):
    """A distorted video with its calibration: meta.json's camera is the undistorted one, and each
    OpenPose keypoint is where OpenCV's projection through the lens puts plain smplx's joint of the
    track's npz (the pelvis and knees, to 0.05 px), which is pixels from where a pinhole would."""
    frames, boxes = two_walkers(4)
    video = write_video(tmp_path / "cam01.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    cal_file = write_pose2sim_toml(tmp_path / "Calib.toml", {"cam01": (K, D, (320, 240)), "cam02": (K, -D, (320, 240))})
    r = run("run", video, "-o", tmp_path / "o", "--calibration", cal_file, "--detector",
            f"boxes:{tmp_path / 'boxes.json'}", "--min-track", "2", "--no-render", "--export", "npz", "--openpose",
            *base_args)
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    camera = calibration().undistorted()  # (the camera named as the video: cam01)
    assert meta["camera"]["focal"] == list(camera.focal) and meta["camera"]["princpt"] == list(camera.princpt)
    assert meta["calibration"]["name"] == "cam01" and meta["calibration"]["distortion"] == list(D)
    assert meta["calibration"]["at_frames"] == {"fitted": "same", "image_size": [320, 240], "matrix": K.tolist()}
    from smplx.joint_names import JOINT_NAMES

    ids = [JOINT_NAMES.index(n) for n in ("pelvis", "right_knee", "left_knee")]
    body25 = [8, 10, 13]  # (mid hip, right knee, left knee)
    moved = 0.0
    for track in meta["tracks"]:
        joints = smplx_joints_in_camera(body_dir, tmp_path / "o" / f"track_{track}.npz", ids)
        for row, frame in enumerate(range(4)):
            doc = json.loads((tmp_path / "o" / "openpose" / f"cam01_{frame:012d}_keypoints.json").read_text())
            person = next(p for p in doc["people"] if p["person_id"] == [track])
            xyc = np.asarray(person["pose_keypoints_2d"]).reshape(25, 3)[body25]
            expected = cv_project(joints[row]) - 0.5  # (OpenPose's pixels are OpenCV's: no shift between them)
            assert (xyc[:, 2] == 1).all()
            np.testing.assert_allclose(xyc[:, :2], expected, atol=0.05)
            pinhole = joints[row][:, :2] / joints[row][:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]  # (OpenCV's pixels, as expected)
            moved = max(moved, float(np.abs(pinhole - expected).max()))
    assert moved > 1.0  # (the lens moves them: without the distortion the test fails)


def test_calibration_refusals(tmp_path, base_args):
    frames, boxes = two_walkers(2)
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    common = ["--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render", *base_args]
    cal = square_calibration_file(tmp_path / "camera.yml", 350.0, 170.0, 110.0)
    portrait = square_calibration_file(tmp_path / "portrait.yml", 350.0, 110.0, 170.0, size=(240, 320))
    for extra, expected in (
            (["--calibration", cal, "--focal", "300"], "--calibration sets the camera's focal length and principal "
                                                       "point: drop --focal ("),
            (["--calibration-camera", "cam01"], "--calibration-camera goes with --calibration FILE: give the file too"),
            (["--undistort-scale", "0.5"], "--undistort-scale goes with --calibration FILE: give the file too"),
            (["--calibration", portrait], f"{portrait}: calibrated on 240x320 pictures, for 320x240 ones (turned); give "
                                          "--calibration a calibration of this camera made on upright frames of this "
                                          "shape, as wbcap reads them"),
            (["--calibration", tmp_path / "none.toml"], "none.toml: no such calibration file"),
            (["--calibration", write_opencv(tmp_path / "fold.yml", K, np.array([-3.0, 0, 0, 0, 0]))],
             "fold.yml: distortion [-3.0, 0.0, 0.0, 0.0, 0.0]: the lens model cannot be inverted over the whole "
             "picture (at its edge it turns back, folding the picture over); check the coefficients, or give "
             "--undistort-scale (0.5 keeps the picture's middle)")):
        r = run("run", video, "-o", tmp_path / "o", *common, *extra)
        assert r.exit_code != 0 and expected in r.output, r.output
        assert "Traceback" not in r.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize("fisheye", [False, True])
def test_undistort_pixels_inverts_distort_pixels_and_boxes_hold_their_outline(fisheye):
    """The source's pixels -> the undistorted picture -> back through the lens is the identity (to
    1e-6 px); a box given in the source's pixels becomes the undistorted box of its outline, which
    holds where the undistorted camera sees every point inside it."""
    from wbcap.io.undistort import Undistorter

    cal = calibration(fisheye)
    undistorter = Undistorter(cal, (320, 240))
    camera = undistorter.camera
    source = np.stack(np.meshgrid(np.linspace(0, 320, 9), np.linspace(0, 240, 7)), -1).reshape(-1, 2)
    np.testing.assert_allclose(cal.distort_pixels(camera, cal.undistort_pixels(camera, source)), source, atol=1e-6)
    box = (20.0, 30.0, 100.0, 180.0)  # (the source's left half: where the lens bends lines most)
    x, y, w, h = undistorter.box(box)
    inside = np.stack(np.meshgrid(np.linspace(20, 120, 21), np.linspace(30, 210, 31)), -1).reshape(-1, 2)
    moved = cal.undistort_pixels(camera, inside)
    assert (moved[:, 0] >= x - 0.01).all() and (moved[:, 0] <= x + w + 0.01).all()
    assert (moved[:, 1] >= y - 0.01).all() and (moved[:, 1] <= y + h + 0.01).all()
    assert max(abs(x - 20), abs(y - 30)) > 2  # (moved by the lens)


@pytest.mark.slow  # two runs
def test_a_calibrated_image_sequence_runs_as_its_undistorted_frames(tmp_path, base_args):
    """Images through a lens with `--calibration` and a box file in their own pixels give, to the
    bit, the run of the same images undistorted beforehand (PNG: lossless) with the boxes moved
    into them and `--focal`/`--principal-point` of the undistorted camera: pass 1 reads undistorted
    frames, the user's boxes are moved, the camera is the calibration's."""
    from wbcap.io.undistort import Undistorter

    frames, boxes = two_walkers(4)
    undistorter = Undistorter(calibration(), (320, 240))
    camera = undistorter.camera
    for name in ("lens", "flat"):
        (tmp_path / name).mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / "lens" / f"{i:03d}.png"), frame[:, :, ::-1])
        cv2.imwrite(str(tmp_path / "flat" / f"{i:03d}.png"), undistorter(frame)[:, :, ::-1])
    (tmp_path / "lens.json").write_text(json.dumps(boxes))
    (tmp_path / "flat.json").write_text(json.dumps({k: [list(undistorter.box(b)) for b in v] for k, v in boxes.items()}))
    cal = write_opencv(tmp_path / "camera.yml", K, D)
    common = ["--min-track", "2", "--no-render", "--export", "none", *base_args]
    r = run("run", tmp_path / "lens", "-o", tmp_path / "o_lens", "--detector", f"boxes:{tmp_path / 'lens.json'}",
            "--calibration", cal, *common)
    assert r.exit_code == 0, r.output
    r = run("run", tmp_path / "flat", "-o", tmp_path / "o_flat", "--detector", f"boxes:{tmp_path / 'flat.json'}",
            "--focal", repr(camera.focal[0]), "--principal-point", f"{camera.princpt[0]!r},{camera.princpt[1]!r}", *common)
    assert r.exit_code == 0, r.output
    lines = [(tmp_path / f"o_{name}" / "params.jsonl").read_text() for name in ("lens", "flat")]
    assert lines[0] == lines[1] and len(lines[0].splitlines()) == 8
    assert json.loads(lines[0].splitlines()[0])["box"] != boxes["0"][0]  # (the box was moved into the frame)


@pytest.mark.slow  # two photos
def test_a_calibrated_photo_is_its_undistorted_picture_with_keypoints_in_its_own_pixels(tmp_path, micro_ckpt, body_dir):
    """`wbcap image --calibration` of a photo through a lens, its `--bbox` in the photo's pixels,
    gives the network's result of the photo undistorted beforehand with the box moved (the same
    smplx_param.json but for the file's name and digest); its OpenPose keypoints are those of the
    undistorted photo put back through the lens; its export's camera is the undistorted one."""
    from wbcap.io.undistort import Undistorter
    from wbcap.testing.images import person_image

    undistorter = Undistorter(calibration(), (320, 240))
    photo = person_image(320, 240, seed=4)
    cv2.imwrite(str(tmp_path / "lens.png"), photo[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "flat.png"), undistorter(photo)[:, :, ::-1])
    box = (100.0, 20.0, 110.0, 200.0)
    moved = ",".join(repr(v) for v in undistorter.box(box))
    cal = write_opencv(tmp_path / "camera.yml", K, D)
    common = ["--no-render", "--openpose", "--export", "npz", "--checkpoint", micro_ckpt, "--body-models", body_dir,
              "--device", "cpu"]
    r = run("image", tmp_path / "lens.png", "-o", tmp_path / "out", "--bbox", ",".join(map(str, box)),
            "--calibration", cal, *common)
    assert r.exit_code == 0, r.output
    r = run("image", tmp_path / "flat.png", "-o", tmp_path / "out", "--bbox", moved, *common)
    assert r.exit_code == 0, r.output
    lens, flat = (tmp_path / "out" / name / "person_0" for name in ("lens", "flat"))
    params = [json.loads((d / "smplx_param.json").read_text()) for d in (lens, flat)]
    differ = {k for k in {*params[0], *params[1]} if params[0].get(k) != params[1].get(k)}
    assert differ == {"image", "image_sha256", "calibration"} and len(params[0]) > 5, differ
    assert params[0]["calibration"]["matrix"] == K.tolist() and params[0]["calibration"]["image_size"] == [320, 240]
    assert params[0]["calibration"]["at_frames"] == {"fitted": "same", "image_size": [320, 240], "matrix": K.tolist()}
    points = [np.asarray(json.loads((d / "output_keypoints.json").read_text())["people"][0]["pose_keypoints_2d"])
              .reshape(25, 3) for d in (lens, flat)]
    seen = points[1][:, 2] == 1  # (the files' pixels are OpenPose's, distort_pixels takes wbcap's: 0.5 more)
    expected = calibration().distort_pixels(undistorter.camera, points[1][seen, :2] + 0.5) - 0.5
    np.testing.assert_allclose(points[0][seen, :2], expected, atol=2e-3)  # (3 decimals in the files)
    assert np.abs(points[0][seen, :2] - points[1][seen, :2]).max() > 1
    npz = np.load(lens / "output.npz")
    np.testing.assert_allclose(npz["camera_focal"], undistorter.camera.focal)
    np.testing.assert_allclose(npz["camera_princpt"], undistorter.camera.princpt)


def test_a_fisheye_without_coefficients_is_still_a_fisheye():
    """The equidistant model with zero coefficients (r = f theta) is no pinhole (f tan theta): its
    frames are remapped, and the lens model agrees with OpenCV's fisheye projection."""
    from wbcap.io.undistort import Undistorter

    square = ((260.0, 0.0, 158.5), (0.0, 260.0, 121.2), (0.0, 0.0, 1.0))  # (a pinhole's without the fisheye)
    cal = LensCalibration((320, 240), square, (0.0, 0.0, 0.0, 0.0), fisheye=True)
    undistorter = Undistorter(cal, (320, 240))
    assert undistorter.remaps and undistorter.camera.focal[0] < 0.95 * K[0, 0]
    points = scene_points()
    zero = np.zeros((3, 1))
    expected, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), zero, zero, np.array(square), np.zeros((4, 1)))
    np.testing.assert_allclose(cal.distort_pixels(undistorter.camera, undistorter.camera.project(points)),
                               expected.reshape(-1, 2) + 0.5, atol=1e-6)


@pytest.mark.parametrize("distortion, fisheye", [
    ((-3.0, 0.0, 0.0, 0.0, 0.0), False),  # (turns back inside the picture)
    ((-0.5, 0.0, 0.001, 0.0, 0.0), False),  # (likewise, with a tangential term: OpenCV's iteration)
    ((-5.0, 3.0, 0.0, 0.0), True),
])
def test_lens_models_that_fold_the_picture_over_are_refused(distortion, fisheye):
    """Coefficients whose radial mapping turns back before the picture's corners (a break-it
    review's: swirled or black frames, a fisheye's camera of focal 0.0006 px that its own run
    folder then refused) are refused in one line. (Steep but growing ones, k1 = 1e6, are a
    lens like any other since the radial models are inverted by bisection.)"""
    from wbcap.io.undistort import Undistorter

    cal = LensCalibration((320, 240), tuple(map(tuple, K)), distortion, fisheye, file="bad.yml")
    with pytest.raises(InputError, match=r"^bad.yml: distortion .*: the lens model cannot be inverted over the whole "
                                         r"picture \(at its edge it turns back, folding the picture over"):
        Undistorter(cal, (320, 240))


def test_a_gopro_profile_and_a_very_wide_fisheye(caplog):
    """A GoPro HERO10's published Max Wide profile (Gyroflow's numbers) is accepted, with a warning
    of how small the undistorted picture shows people; `--undistort-scale 0.5` gives half the lens's
    scale about its own principal point."""
    import logging

    from wbcap.io.undistort import Undistorter

    gopro = LensCalibration((2704, 1520), ((1107.1310644327898, 0.0, 1349.7602007804464),
                                           (0.0, 1068.727740034222, 761.8227721778671), (0.0, 0.0, 1.0)),
                            (0.1742878308302871, -0.17203370960599276, 0.13222436241741736, -0.039533715437669), True)
    with caplog.at_level(logging.INFO):
        camera = Undistorter(gopro, (2704, 1520)).camera
    assert 0.2 < camera.focal[0] / 1068.7 < 0.5 and "times smaller" in caplog.text
    assert "scale 1 shows people as large as the source's middle does" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):  # (--undistort-scale 0.5: half the lens's scale, centred alike, no warning)
        half = Undistorter(dataclasses.replace(gopro, scale=0.5), (2704, 1520)).camera
    assert half.focal == (0.5 * 1068.727740034222,) * 2 and "times smaller" not in caplog.text
    assert half.princpt == (1352.0, 760.0)  # (the axis through the picture's centre)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        Undistorter(calibration(), (320, 240))  # (the tests' barrel lens: 0.78 of its scale, no warning)
    assert "times smaller" not in caplog.text


@pytest.mark.parametrize("name, text, expected", [
    ("twins.json", json.dumps({"a": {"name": "cam01", "K": K.tolist(), "size": [320, 240]},
                               "b": {"name": "cam01", "K": K.tolist(), "size": [320, 240]}}),
     "tables 'a' and 'b' both name a camera 'cam01'; rename one"),
    ("yes.json", json.dumps({"K": K.tolist(), "size": [320, 240], "fisheye": "yes"}), "fisheye 'yes': true or false"),
    ("skew.json", json.dumps({"K": [[260, 5, 158.5], [0, 262, 121.2], [0, 0, 1]], "size": [320, 240]}),
     "a skew ([0][1] 5) OpenCV's lens models do not have"),
    ("deep.json", '{"K": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply to be a calibration"),
    ("laughs.yaml", "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
     "size: [320, 240]\nK: {data: *h}\n", "camera matrix: more than 64 numbers"),
    ("latin1.yaml", "camera_name: c\u00e1mara\n".encode("latin-1"), "not UTF-8 text; save it as UTF-8"),
])
def test_odd_calibration_files_are_refused_in_one_line(tmp_path, name, text, expected):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(InputError) as err:
        read_calibration(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value), str(err.value)


def test_where_a_lens_model_turns_back():
    """The radius where the radial mapping stops growing, whatever is asked of it (a review: it
    depended on the farthest point given): r (1 - 0.3 r^2) peaks at 1 / sqrt(0.9); the fisheye's
    theta (1 - 0.5 theta^2) at theta = sqrt(2/3), r = tan of it; the tests' barrel lens where
    1 - 0.9 r^2 + 0.5 r^4 - 0.14 r^6 (its derivative) first falls to 0; a fisheye that keeps
    growing to 90 degrees has none."""
    def lens(d, fisheye=False):
        return LensCalibration((320, 240), tuple(map(tuple, K)), d, fisheye)

    assert lens((-0.3, 0.0, 0.0, 0.0, 0.0)).fold_radius == pytest.approx(1 / np.sqrt(0.9), abs=5e-4)
    assert lens((-0.5, 0.0, 0.0, 0.0), True).fold_radius == pytest.approx(np.tan(np.sqrt(2 / 3)), abs=5e-4)
    roots = np.roots([-0.14, 0.0, 0.5, 0.0, -0.9, 0.0, 1.0])
    turn = min(r.real for r in roots if abs(r.imag) < 1e-12 and r.real > 0)
    assert lens(tuple(D)).fold_radius == pytest.approx(turn, abs=5e-4) and turn > 1.4  # (past the picture's corners)
    assert lens(tuple(FISHEYE_D), True).fold_radius is None and lens((), True).fold_radius is None


HERO10_MAX_4BY3 = LensCalibration(  # (Gyroflow's published profile: its lens turns back at 83.8 degrees, the corner at 80.7)
    (2704, 2028), ((1120.41, 0.0, 1368.88), (0.0, 1119.56, 989.0), (0.0, 0.0, 1.0)),
    (0.14691, -0.13579, 0.10058, -0.03035), True)
WIDE_FISHEYE = LensCalibration((768, 576), ((300.0, 0.0, 383.5), (0.0, 300.0, 287.5), (0.0, 0.0, 1.0)),
                               (0.05, -0.01, 0.002, -0.0005), True)  # (171 degrees corner to corner)


@pytest.mark.parametrize("cal", [HERO10_MAX_4BY3, WIDE_FISHEYE], ids=["hero10-max", "171-degrees"])
def test_very_wide_fisheyes_keep_every_pixel_without_ghosts(cal):
    """Fisheyes whose corners lie 80-85 degrees off the axis (OpenCV's own fisheye undistortion
    stops at 90 degrees and diverged near the HERO10's turn: both were refused, a review) are
    undistorted: every source border pixel lands in the picture and goes back through OpenCV's
    projection onto itself; where the lens model turns back, in the margins, the frames are
    black, not the picture again."""
    from wbcap.io.undistort import Undistorter

    undistorter = Undistorter(cal, cal.image_size, quiet=True)
    camera = undistorter.camera
    w, h = cal.image_size
    border = np.concatenate([np.stack([np.linspace(0, w, 200), np.full(200, y)], 1) for y in (0, h)]
                            + [np.stack([np.full(200, x), np.linspace(0, h, 200)], 1) for x in (0, w)])
    at = cal.undistort_pixels(camera, border)
    reached = np.isfinite(at).all(1)
    if cal is HERO10_MAX_4BY3:  # (its fit turns back before the bottom-left corner: that corner is left out, and
        # the points just short of the turn, stretched without bound, with it)
        near = np.hypot(border[:, 0], border[:, 1] - h)
        assert 0.97 < reached.mean() < 1 and not reached[np.argmin(near)]
        reached &= near > 40
    else:
        assert reached.all()
    border, at = border[reached], at[reached]
    assert (at >= -0.5).all() and (at[:, 0] <= w + 0.5).all() and (at[:, 1] <= h + 0.5).all()
    rays = np.concatenate([(at - np.asarray(camera.princpt)) / camera.focal[0], np.ones((len(at), 1))], 1)
    zero = np.zeros((3, 1))
    back, _ = cv2.fisheye.projectPoints(rays.reshape(-1, 1, 3), zero, zero, np.asarray(cal.matrix),
                                        np.asarray(cal.distortion).reshape(4, 1))
    np.testing.assert_allclose(back.reshape(-1, 2) + 0.5, border, atol=0.05)
    # a white source: white inside its undistorted border; with a small scale (the picture reaching
    # past the lens's turn, 83.8 degrees off the axis) black where the model turns back, not the
    # picture again
    for scale in (None, 0.05):
        undistorter = Undistorter(dataclasses.replace(cal, scale=scale), cal.image_size, quiet=True)
        white = undistorter(np.full((h, w, 3), 255, np.uint8))[..., 0]
        f, (cx, cy) = undistorter.camera.focal[0], undistorter.camera.princpt
        radius = np.hypot((np.arange(w)[None, :] + 0.5 - cx) / f, (np.arange(h)[:, None] + 0.5 - cy) / f)
        fold = cal.fold_radius
        if scale is not None and cal is HERO10_MAX_4BY3:
            assert fold is not None and (radius >= fold).sum() > 1000  # (the case the tables' mask is for)
        if fold is not None:
            assert (white[radius >= fold] == 0).all()
        inner = np.hypot(*(cal.undistort_pixels(undistorter.camera, border) - [cx, cy]).T)
        assert (white[radius < 0.9 * np.nanmin(inner) / f] == 255).all()


def test_a_fisheye_seeing_past_90_degrees_is_refused_and_a_scale_keeps_its_middle():
    """A fisheye whose corners lie over 90 degrees off its axis cannot be held by a pinhole picture:
    refused, pointing to the scale; with a scale its middle is undistorted."""
    from wbcap.io.undistort import Undistorter

    cal = LensCalibration((768, 576), ((150.0, 0.0, 383.5), (0.0, 150.0, 287.5), (0.0, 0.0, 1.0)), (), True)
    with pytest.raises(InputError, match=r"or sees 90 degrees or more off its axis\); check the coefficients, or give "
                                         r"a scale \(0.5 keeps the picture's middle\)"):
        Undistorter(cal, (768, 576))
    middle = Undistorter(dataclasses.replace(cal, scale=0.5), (768, 576))
    assert middle.camera.focal == (75.0, 75.0) and middle.remaps


def test_a_scale_or_uneven_pixels_resample_a_lens_without_distortion():
    """Without distortion, frames are left as read only when the undistorted camera is the
    calibration's own: a scale (a review: the camera was halved, the frames not) or fx != fy
    resample them."""
    from wbcap.io.undistort import Undistorter

    plain = LensCalibration((320, 240), ((400.0, 0.0, 159.5), (0.0, 400.0, 119.5), (0.0, 0.0, 1.0)))
    image = person_image_for_tests()
    assert not Undistorter(plain, (320, 240)).remaps
    for cal in (dataclasses.replace(plain, scale=0.5),
                LensCalibration((320, 240), ((400.0, 0.0, 159.5), (0.0, 420.0, 119.5), (0.0, 0.0, 1.0)))):
        undistorter = Undistorter(cal, (320, 240))
        assert undistorter.remaps and not np.array_equal(undistorter(image), image)
    half = Undistorter(dataclasses.replace(plain, scale=0.5), (320, 240))
    assert half.camera.focal == (200.0, 200.0) and half.camera.princpt == (160.0, 120.0)
    # the picture's middle quarter, halved, is what the half-scale frame shows there
    shrunk = cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.abs(half(image)[60:180, 80:240].astype(int) - shrunk).mean() < 12


def person_image_for_tests() -> np.ndarray:
    from wbcap.testing.images import person_image

    return person_image(320, 240, seed=2)


def test_more_refusals_of_a_review(tmp_path):
    """A size-less calibration whose principal point lies outside the frames (made at another
    resolution) is refused; `--calibration-camera` on a file of one unnamed camera says to leave
    it out."""
    from wbcap.io.undistort import Undistorter

    sizeless = LensCalibration(None, ((1400.0, 0.0, 959.5), (0.0, 1400.0, 539.5), (0.0, 0.0, 1.0)), tuple(D),
                               file="intri.yml")
    with pytest.raises(InputError, match=r"intri.yml: gives no picture size, and its principal point \(959.5, 539.5\) "
                                         r"lies outside the 640x360 frames: it was calibrated at another resolution"):
        Undistorter(sizeless, (640, 360))
    path = write_opencv(tmp_path / "camera.yml", K, D)
    with pytest.raises(InputError, match="holds one camera, without a name; leave out calibration_camera"):
        read_calibration(path, camera="cam1")


@pytest.mark.slow  # a run and a refused resume
def test_a_resume_with_another_scale_or_undistortion_is_refused(tmp_path, base_args):
    frames, boxes = two_walkers(2)
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    cal = write_opencv(tmp_path / "camera.yml", K, D)
    common = ["-o", tmp_path / "o", "--calibration", cal, "--detector", f"boxes:{tmp_path / 'boxes.json'}",
              "--min-track", "1", "--no-render", "--export", "none", *base_args]
    r = run("run", video, *common)
    assert r.exit_code == 0, r.output
    r = run("run", video, *common, "--resume", "--undistort-scale", "0.9")
    assert r.exit_code != 0 and "different settings (--undistort-scale: not set in the run, 0.9 now)" in r.output, r.output
    # a run whose frames were undistorted otherwise (another version's camera: a review) is not continued
    record = json.loads((tmp_path / "o" / ".wbcap" / "run.json").read_text())
    assert record["calibration"]["undistortion"] == 1
    del record["calibration"]["undistortion"]
    (tmp_path / "o" / ".wbcap" / "run.json").write_text(json.dumps(record))
    r = run("run", video, *common, "--resume")
    assert r.exit_code != 0 and f"{tmp_path / 'o'}: its frames were undistorted by an earlier wbcap (another " \
        "undistorted camera), so the run cannot go on with this one's; use --overwrite to start it over" in r.output, \
        r.output


def test_a_fisheye_is_undistorted_on_the_rising_side_of_its_turn():
    """theta_d = theta (1 - 0.5 theta^2) rises to 0.544 at theta = 0.816 and falls after: a pixel
    at theta_d 0.3 is the ray at the smaller root (0.3157, where OpenCV's projection agrees); one
    at theta_d 0.6 is no ray's (NaN)."""
    cal = LensCalibration((320, 240), tuple(map(tuple, K)), (-0.5, 0.0, 0.0, 0.0), True)
    pixels = np.array([[K[0, 2] + K[0, 0] * 0.3, K[1, 2]], [K[0, 2] + K[0, 0] * 0.6, K[1, 2]]])
    points = cal._normalised(pixels)
    theta = np.arctan(points[0, 0])
    assert theta == pytest.approx(0.31574, abs=1e-4) and theta * (1 - 0.5 * theta**2) == pytest.approx(0.3, abs=1e-12)
    np.testing.assert_allclose(cal._project(np.array([[points[0, 0], 0.0, 1.0]])), pixels[:1], atol=1e-9)
    assert np.isnan(points[1]).all()


def test_colmaps_cameras_txt(tmp_path):
    """COLMAP's cameras.txt: each model's parameters as OpenCV's, the principal point made OpenCV's
    (COLMAP measures it from the top-left pixel's corner: the undistorted camera of a pinhole is
    COLMAP's own numbers)."""
    (tmp_path / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        "# Number of cameras: 4\n"
        "1 SIMPLE_PINHOLE 320 240 300 160.25 120.5\n"
        "2 OPENCV 320 240 260 262 159 121.7 -0.3 0.1 0.002 -0.001\n"
        "3 OPENCV_FISHEYE 320 240 260 262 159 121.7 0.05 -0.01 0.002 -0.0005\n"
        "4 SIMPLE_RADIAL 320 240 300 160 120 -0.05\n")
    pinhole = read_calibration(tmp_path / "cameras.txt", camera="1")
    assert pinhole.undistorted().princpt == (160.25, 120.5) and pinhole.undistorted().focal == (300.0, 300.0)
    opencv = read_calibration(tmp_path / "cameras.txt", camera="2")
    assert opencv.matrix == ((260.0, 0.0, 158.5), (0.0, 262.0, 121.2), (0.0, 0.0, 1.0)) and not opencv.fisheye
    assert opencv.distortion == (-0.3, 0.1, 0.002, -0.001)
    fisheye = read_calibration(tmp_path / "cameras.txt", camera="3")
    assert fisheye.fisheye and fisheye.distortion == tuple(FISHEYE_D) and fisheye.image_size == (320, 240)
    assert read_calibration(tmp_path / "cameras.txt", camera="4").distortion == (-0.05, 0.0, 0.0, 0.0)
    for text, expected in (("1 FOV 320 240 300 300 160 120 0.9\n", "line 1 is a camera of model FOV, which wbcap does "
                            "not read (SIMPLE_PINHOLE, "),
                           ("1 ZOOM 320 240 300 300 160 120 0.9\n", "line 1 is not a camera of COLMAP's cameras.txt"),
                           ("1 PINHOLE 320.5 240 300 300 160 120\n", "line 1: COLMAP's PINHOLE takes WIDTH HEIGHT (whole "),
                           ("# Number of cameras: 0\n", "no camera in it")):
        (tmp_path / "odd.txt").write_text(text)
        with pytest.raises(InputError, match=re.escape(expected)):
            read_calibration(tmp_path / "odd.txt")


def _colmap_reconstruction(folder: Path) -> dict[str, np.ndarray]:
    """A reconstruction written by COLMAP itself (pycolmap: its text and binary files in
    ``folder/txt`` and ``folder/bin``): three cameras of three models, an image each
    (``cam01/frame_0001.jpg``, ``cam02.png``, ``side cam.jpg``, 2D points on the first), and a
    fourth image of the first camera; returns each image's ``cam_from_world`` matrix (3 x 4)."""
    import pycolmap

    r = pycolmap.Reconstruction()
    for camera_id, model, params in ((1, "OPENCV", [260, 262, 159, 121.7, -0.3, 0.1, 0.002, -0.001]),
                                     (2, "SIMPLE_RADIAL", [300, 160, 120, -0.05]),
                                     (3, "OPENCV_FISHEYE", [260, 262, 159, 121.7, 0.05, -0.01, 0.002, -0.0005])):
        r.add_camera_with_trivial_rig(pycolmap.Camera(model=model, width=320, height=240, params=params,
                                                      camera_id=camera_id))
    rng = np.random.default_rng(3)
    poses = {}
    for image_id, (name, camera_id) in enumerate((("cam01/frame_0001.jpg", 1), ("cam02.png", 2), ("side cam.jpg", 3),
                                                   ("cam01/frame_0100.jpg", 1)), 1):
        q = rng.normal(size=4)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(q / np.linalg.norm(q)), rng.normal(size=3) * 3)
        keypoints = rng.uniform(0, 240, (5, 2)) if image_id == 1 else np.zeros((0, 2))
        r.add_image_with_trivial_frame(pycolmap.Image(name=name, keypoints=keypoints, camera_id=camera_id,
                                                      image_id=image_id), pose)
        poses[name] = np.asarray(r.image(image_id).cam_from_world().matrix())
    for kind in ("txt", "bin"):
        (folder / kind).mkdir(parents=True)
        (r.write_text if kind == "txt" else r.write_binary)(str(folder / kind))
    return poses


def test_a_colmap_reconstruction_gives_each_registered_images_camera_and_pose(tmp_path):
    """COLMAP's reconstruction as COLMAP writes it (pycolmap), text and binary: with its images,
    a camera per registered image, by its name (a video named as a word of it finds it), with its
    camera's intrinsics made OpenCV's and its pose (``cam_from_world``: OpenCV's ``x_c = R x_w +
    t``) in a world without a scale; the folder or ``images.*`` given alike (``cameras.*`` alone:
    its cameras by id, intrinsics only, as before images were read). Damaged or partial files are
    one line naming them."""
    poses = _colmap_reconstruction(tmp_path)
    for kind in ("txt", "bin"):
        folder = tmp_path / kind
        for given in (folder, folder / f"images.{kind}"):
            first = read_calibration(given, source=tmp_path / "cam02.mp4")
            assert first.name == "cam02.png" and first.image_size == (320, 240)
            assert first.matrix == ((300.0, 0.0, 159.5), (0.0, 300.0, 119.5), (0.0, 0.0, 1.0))
            assert first.distortion == (-0.05, 0.0, 0.0, 0.0) and not first.fisheye
            assert first.pose is not None and first.pose.metric is False
            np.testing.assert_allclose(first.pose.rotation, poses["cam02.png"][:, :3], atol=1e-12)
            np.testing.assert_allclose(first.pose.translation, poses["cam02.png"][:, 3], atol=1e-12)
        alone = read_calibration(folder / f"cameras.{kind}", source=tmp_path / "cam02.mp4", camera="2")
        assert alone.pose is None and alone.name == "2" and alone.matrix == first.matrix
        side = read_calibration(folder, source="/videos/side.mp4")  # (a word of "side cam.jpg")
        assert side.fisheye and side.distortion == tuple(FISHEYE_D) and side.name == "side cam.jpg"
        assert side.matrix == tuple(map(tuple, K))
        np.testing.assert_allclose(side.pose.rotation, poses["side cam.jpg"][:, :3], atol=1e-12)
        # two images of cam01's camera: which is asked, by name or by COLMAP's image id
        with pytest.raises(InputError, match=r"holds 4 cameras \(cam01/frame_0001.jpg, cam02.png, side cam.jpg, "
                                             r"cam01/frame_0100.jpg\); say which"):
            read_calibration(folder, source="cam01.mp4")
        for camera in ("cam01/frame_0100.jpg", "image 4"):
            chosen = read_calibration(folder, camera=camera)
            np.testing.assert_allclose(chosen.pose.translation, poses["cam01/frame_0100.jpg"][:, 3], atol=1e-12)
        assert chosen.to_dict()["metric"] is False and "metric" not in dataclasses.replace(
            chosen.pose, metric=True).to_dict()
        back = CameraPose.from_record(chosen.to_dict())  # (meta.json's record read back)
        assert back.metric is False and back.translation == chosen.pose.translation
        np.testing.assert_allclose(back.rotation, chosen.pose.rotation, atol=1e-15)
        with pytest.raises(ValueError, match="metric 0: true or false"):
            CameraPose.from_record({**chosen.to_dict(), "metric": 0})
    # a cameras file alone (no images beside it): its cameras by id, without poses
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "cameras.bin").write_bytes((tmp_path / "bin" / "cameras.bin").read_bytes())
    assert read_calibration(alone / "cameras.bin", camera="3").pose is None
    # damage: one line each, naming the file
    data = (tmp_path / "bin" / "images.bin").read_bytes()
    text = (tmp_path / "txt" / "images.txt").read_text()
    for name, content, expected in (
            ("images.bin", data[:-7], "images.bin: ends inside a record (not COLMAP's images.bin, or cut short)"),
            ("images.bin", data + b"\0", "images.bin: 1 bytes after its last record"),
            ("images.txt", text.replace(" 2 cam02.png", " 9 cam02.png"),
             "images.txt: image 'cam02.png' is of camera 9, which "),
            ("images.txt", text.replace("cam02.png", "cam02.png extra").replace(" 2 cam02", " x cam02"),
             "is not an image of COLMAP's images.txt"),
            ("images.txt", re.sub(r"^2 [0-9.e-]+", "2 0.5", text, flags=re.M), "is not a rotation's (unit length)"),
            ("images.txt", "# Number of images: 0\n", "images.txt: no registered image in it")):
        broken = tmp_path / f"broken_{name}"
        broken.mkdir(exist_ok=True)
        for other in ("cameras.txt", "cameras.bin"):
            (broken / other).write_bytes((tmp_path / other.split(".")[1] / other).read_bytes())
        (broken / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(InputError, match=re.escape(expected)):
            read_calibration(broken / name, camera="cam02.png")
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "images.txt").write_text(text)
    with pytest.raises(InputError, match=re.escape("images without its cameras.txt beside them")):
        read_calibration(lone / "images.txt")
    with pytest.raises(InputError, match=re.escape("lone: a folder without COLMAP's cameras.txt or cameras.bin in it")):
        read_calibration(lone)
    fov = tmp_path / "fov"
    fov.mkdir()
    cameras = bytearray((tmp_path / "bin" / "cameras.bin").read_bytes())
    cameras[12:16] = (7).to_bytes(4, "little")  # (the first camera's model id: FOV, 5 parameters)
    (fov / "cameras.bin").write_bytes(bytes(cameras))
    with pytest.raises(InputError, match=re.escape("is a camera of model FOV, which wbcap does not read")):
        read_calibration(fov / "cameras.bin")


def test_a_colmap_image_is_found_by_the_videos_or_photos_name_and_odd_files_are_one_line(tmp_path):
    """The image named as the video or photo: its file's stem (``cam_01.jpg``, ``left camera.jpg``,
    ``IMG_0001.JPG`` for the photo itself), or a folder of its name (``cam-02/frame_0001.jpg``);
    an images.txt without its points' lines (empty) still gives every image; text that is not
    UTF-8, a folder without images, and ``sparse/`` instead of ``sparse/0`` are one line each (the
    last naming the folder to give)."""
    model = tmp_path / "sparse" / "0"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text("1 PINHOLE 320 240 400 400 160 120\n")
    names = ["cam_01.jpg", "left camera.jpg", "IMG_0001.JPG", "cam-02/frame_0001.jpg", "cam-02x/frame_0001.jpg"]
    (model / "images.txt").write_text("".join(f"{i} 1 0 0 0 {i} 0 0 1 {name}\n" for i, name in enumerate(names, 1)))
    for source, expected in (("/v/cam_01.mp4", "cam_01.jpg"), ("left camera.mp4", "left camera.jpg"),
                             ("/photos/IMG_0001.JPG", "IMG_0001.JPG"), ("cam-02.mp4", "cam-02/frame_0001.jpg")):
        chosen = read_calibration(model, source=source)
        assert chosen.name == expected and chosen.pose.translation[0] == names.index(expected) + 1
    # --calibration-camera as a video's stem names it too; a name that names none lists them with the id form
    assert read_calibration(model, camera="cam_01", source="other.mp4").name == "cam_01.jpg"
    with pytest.raises(InputError, match=re.escape("no camera '1' in it")):  # (not image 1 by a word of its key)
        read_calibration(model, camera="1")
    with pytest.raises(InputError, match=re.escape("no camera 'side' in it (its cameras: cam_01.jpg, left camera.jpg, "
                                                   "IMG_0001.JPG, cam-02/frame_0001.jpg, cam-02x/frame_0001.jpg, or "
                                                   "COLMAP's image id: image 1, ...)")):
        read_calibration(model, camera="side")
    (model / "cameras.txt").write_bytes(b"# cam\xe9ra\n1 PINHOLE 320 240 400 400 160 120\n")
    with pytest.raises(InputError, match=re.escape("cameras.txt: not UTF-8 text; save it as UTF-8")):
        read_calibration(model, camera="cam_01.jpg")
    (model / "images.txt").unlink()
    with pytest.raises(InputError, match=re.escape("0: COLMAP's cameras.txt without images.txt beside them")):
        read_calibration(model)
    with pytest.raises(InputError, match=re.escape(f"a folder without COLMAP's cameras.txt or cameras.bin in it; give "
                                                   f"the reconstruction's own folder: {model}")):
        read_calibration(tmp_path / "sparse")


def test_keypoints_through_the_lens_past_the_picture_and_past_its_turn():
    """OpenPose keypoints put back through the lens: one outside the picture keeps its place (as
    without a calibration: c is 0 there), one where a fisheye's model turns back is not found."""
    from wbcap.export.openpose import _through_lens

    cal = calibration()
    camera = cal.undistorted()
    points = np.array([[-20.0, 120.0], [160.0, 120.0], [340.0, 10.0]])  # (left of the picture, its middle, right)
    moved, front = _through_lens(cal, camera, points, np.ones(3, bool))
    assert front.all()
    np.testing.assert_allclose(moved, cv_project(np.concatenate([(points - camera.princpt) / camera.focal,
                                                                np.ones((3, 1))], 1)), atol=1e-9)
    folding = LensCalibration((320, 240), tuple(map(tuple, K)), (-0.5, 0.0, 0.0, 0.0), True, scale=0.5)  # (turns
    # at 46.8 degrees)
    camera = folding.undistorted()
    far = np.array([[camera.princpt[0] + 2.0 * camera.focal[0], camera.princpt[1]],  # (63 degrees off the axis)
                    [camera.princpt[0] + 0.5 * camera.focal[0], camera.princpt[1]]])
    _, front = _through_lens(folding, camera, far, np.ones(2, bool))
    assert front.tolist() == [False, True]


def test_a_lens_that_shrinks_people_says_so_when_nobody_is_found(tmp_path, base_args):
    """A very wide lens's undistorted picture (people at a quarter of the lens's scale): where
    nobody is found, the advice names --undistort-scale, in a photo's line too (a review: only the
    video's said it); not with a scale given, nor for an ordinary lens."""
    from wbcap.io.undistort import Undistorter

    hint = Undistorter(HERO10_MAX_4BY3, (2704, 2028), quiet=True).small_people()
    assert hint.startswith("the undistorted frames show people at 0.2") and "scale 1 shows them as large" in hint
    assert Undistorter(dataclasses.replace(HERO10_MAX_4BY3, scale=0.2), (2704, 2028)).small_people() == ""
    assert Undistorter(calibration(), (320, 240)).small_people() == ""
    cv2.imwrite(str(tmp_path / "empty.png"), np.full((2028 // 4, 2704 // 4, 3), 90, np.uint8))
    (tmp_path / "hero.json").write_text(json.dumps({"K": np.asarray(HERO10_MAX_4BY3.matrix).tolist(),
                                                    "size": [2704, 2028], "D": list(HERO10_MAX_4BY3.distortion),
                                                    "fisheye": True}))
    r = run("image", tmp_path / "empty.png", "-o", tmp_path / "o", "--calibration", tmp_path / "hero.json",
            "--detector", "hog", "--no-render", *base_args)
    assert r.exit_code != 0 and "no person found by the hog detector; the undistorted photos show people at 0.2" in (
        r.output) and "--undistort-scale 1 shows them as large as the source's middle does; or pass --bbox" in r.output, \
        r.output


@pytest.mark.parametrize("distortion", [(-0.2, 0.05, 0.0, 0.0), (1e6, 0.0, 0.0, 0.0, 0.0), (5.0, -80.0, 0.0, 0.0, 900.0)])
def test_steep_radial_lenses_are_inverted(distortion):
    """Radial pinhole models OpenCV's iteration failed to invert (a review: COLMAP's RADIAL k1 -0.2
    k2 0.05 at f 120 on 384x288 was refused as folding; k1 1e6) are undistorted: every border
    pixel goes back through OpenCV's projection onto itself."""
    cal = LensCalibration((384, 288), ((120.0, 0.0, 191.5), (0.0, 120.0, 143.5), (0.0, 0.0, 1.0)), distortion)
    camera = cal.undistorted()
    border = cal._border_pixels() + 0.5
    at = cal.undistort_pixels(camera, border)
    assert np.isfinite(at).all()
    np.testing.assert_allclose(cal.distort_pixels(camera, at), border, atol=0.05)


@pytest.mark.parametrize("focal", [160.0, 130.0])
def test_a_wide_lens_with_tangential_terms_is_inverted_as_its_radial_terms_alone_are(focal):
    """OpenCV's standard model of a wide lens, k1 -0.3 k2 0.1 with small tangential terms (p1
    0.002, p2 -0.001), at f 160 and 130 on 384x288: OpenCV's fixed-point iteration diverged at the
    edges and the lens was refused as turning back, where the same lens without p1, p2 was
    undistorted. Newton's method on the whole model takes it: every border pixel goes back
    through OpenCV's projection onto itself (1e-6 px), interior points too, and its undistorted
    camera is within 2 % of the radial lens's."""
    k = ((focal, 0.0, 191.5), (0.0, focal, 143.5), (0.0, 0.0, 1.0))
    cal = LensCalibration((384, 288), k, (-0.3, 0.1, 0.002, -0.001))
    camera = cal.undistorted()
    assert cal.border_reach[1].all()
    assert camera.focal[0] == pytest.approx(LensCalibration((384, 288), k, (-0.3, 0.1, 0.0, 0.0)).undistorted().focal[0],
                                            rel=0.02)
    inside = np.random.default_rng(5).uniform((0.0, 0.0), (384.0, 288.0), (500, 2))
    for pixels in (cal._border_pixels() + 0.5, inside):
        at = cal.undistort_pixels(camera, pixels)
        assert np.isfinite(at).all()
        np.testing.assert_allclose(cal.distort_pixels(camera, at), pixels, atol=1e-6)


def test_points_far_outside_a_rational_lenss_reach_are_nan_not_a_crash():
    """A 14-coefficient lens (rational, thin prism, tilt terms; a review's random draw) whose
    model's Jacobian is singular somewhere far outside the picture: points around the picture
    that OpenCV's iteration does not bring back go to Newton's method, which gave
    ``LinAlgError``; they are NaN (or found) now, and every point inside is found."""
    cal = LensCalibration((384, 288), ((160.0, 0.0, 191.5), (0.0, 160.0, 143.5), (0.0, 0.0, 1.0)),
                          (-0.3067, 0.2415, -0.0005, -0.0011, -0.0168, 0.1083, -0.0261, 0.0137, -0.0028, -0.0016,
                           -0.0027, -0.0028, -0.0037, -0.0051))
    camera = cal.undistorted()
    around = np.stack(np.meshgrid(np.linspace(-400, 800, 61), np.linspace(-300, 600, 46)), -1).reshape(-1, 2)
    at = cal.undistort_pixels(camera, around)
    found = np.isfinite(at).all(1)
    np.testing.assert_allclose(cal.distort_pixels(camera, at[found]), around[found], atol=1e-5)
    inside = (around >= 0).all(1) & (around <= (384, 288)).all(1)
    assert found[inside].all() and not found.all()


def test_a_lens_near_its_fold_keeps_the_border_opencv_inverts_and_loses_the_corners_it_cannot():
    """k1 -0.411 with tangential terms at f 400 on 384x288 (a review's draw): its model turns back
    near the picture's corners. Border pixels OpenCV's iteration brings back within 0.05 px, where
    Newton's method does not converge (the Jacobian nearly singular), are kept as before (the
    undistorted camera's focal unchanged, 272.54 px); three corners no ray reaches are NaN, where
    OpenCV's iteration returned its unconverged start (a point 30 px off once through the lens)."""
    cal = LensCalibration((384, 288), ((400.0, 0.0, 191.5), (0.0, 400.0, 143.5), (0.0, 0.0, 1.0)),
                          (-0.411, 0.028, 0.002, 0.003, -0.049))
    camera = cal.undistorted()
    assert camera.focal[0] == pytest.approx(272.536, abs=1e-3)
    border, reached = cal.border_reach
    at_edge = np.flatnonzero(np.all(cal._border_pixels() == (-0.5, 8.5), 1))
    assert len(at_edge) == 1 and reached[at_edge].all()
    corners = np.array([[0.0, 288.0], [384.0, 0.0], [0.0, 0.0], [384.0, 288.0]])
    at = cal.undistort_pixels(camera, corners)
    assert np.isnan(at[:3]).all() and np.isfinite(at[3]).all()
    np.testing.assert_allclose(cal.distort_pixels(camera, at[3:]), corners[3:], atol=1e-6)


def test_where_a_tangential_model_turns_back():
    """The fold of a model with tangential terms, per direction about the axis: for radial terms
    alone it is the radial turn in every direction (k1 -0.3: 1 / sqrt(0.9)); swapping p1 and p2
    mirrors the model across the diagonal x = y (OpenCV's tangential terms: ``2 p1 x y + p2 (r^2 +
    2 x^2)`` and ``p1 (r^2 + 2 y^2) + 2 p2 x y``), and with it the fold, direction phi going to
    90 degrees - phi; a model whose Jacobian stays positive has none."""
    k = ((160.0, 0.0, 191.5), (0.0, 160.0, 143.5), (0.0, 0.0, 1.0))
    radial = LensCalibration((384, 288), k, (-0.3, 0.0, 0.0, 0.0, 0.0))
    np.testing.assert_allclose(radial._fold_radii, 1 / np.sqrt(0.9), rtol=1e-9)
    one, other = (LensCalibration((384, 288), k, d)._fold_radii for d in ((-0.25, 0.05, 0.05, -0.03),
                                                                           (-0.25, 0.05, -0.03, 0.05)))
    n = len(one)
    turning = np.isfinite(one)
    assert 0.05 < turning.mean() < 0.95 and np.nanmin(np.where(turning, one, np.nan)) < 1.3  # (in some directions)
    np.testing.assert_allclose(other[(n // 4 - np.arange(n)) % n], one, rtol=1e-9)
    wide = LensCalibration((384, 288), k, (-0.3, 0.1, 0.002, -0.001))
    assert not wide.turns_back and np.isinf(wide._fold_radii).all()
    assert not wide.beyond_fold(np.array([[0.5, 0.5], [30.0, -40.0]])).any()


def _determinant_by_differences(cal: LensCalibration, points: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """The determinant of the whole pinhole model's Jacobian at normalised ``points`` ``(N, 2)``, by
    central differences of ``cv2.projectPoints`` (independent of the model's own Jacobian)."""
    def forward(p):
        rays = np.concatenate([p, np.ones((len(p), 1))], 1)
        return cv2.projectPoints(rays, np.zeros(3), np.zeros(3), np.eye(3), np.asarray(cal.distortion))[0].reshape(-1, 2)

    dx = (forward(points + [step, 0]) - forward(points - [step, 0])) / (2 * step)
    dy = (forward(points + [0, step]) - forward(points - [0, step])) / (2 * step)
    return dx[:, 0] * dy[:, 1] - dx[:, 1] * dy[:, 0]


def test_the_models_jacobian_is_opencvs_for_every_model_with_prism_and_tilt_terms():
    """The whole pinhole model's Jacobian (the fold's determinant and Newton's steps) equals central
    differences of ``cv2.projectPoints`` for 4 to 14 coefficients, thin prism and tilt terms too
    (whose Jacobian is not symmetric: a transposed one passed every other test, a review)."""
    k = ((160.0, 0.0, 191.5), (0.0, 160.0, 143.5), (0.0, 0.0, 1.0))
    full = (-0.31, 0.24, -0.004, 0.006, -0.017, 0.11, -0.026, 0.014, 0.03, -0.02, -0.025, 0.04, 0.2, -0.15)
    points = np.random.default_rng(4).uniform(-1.2, 1.2, (300, 2))
    for n in (4, 5, 8, 12, 14):
        cal = LensCalibration((384, 288), k, full[:n])
        at, jacobian = cal._through_jacobian(points)
        step = 1e-6
        for axis in (0, 1):
            e = np.eye(2)[axis] * step
            np.testing.assert_allclose(jacobian[:, :, axis], (cal._through(points + e) - cal._through(points - e)) / (2 * step),
                                       atol=1e-6)
        np.testing.assert_allclose(at, cal._through(points), atol=1e-15)
        if n >= 12:
            assert np.abs(jacobian[:, 0, 1] - jacobian[:, 1, 0]).max() > 1e-3


def test_a_rational_models_thin_ring_where_it_folds_over_is_found():
    """A rational fit (OpenCV's calibrateCamera, 8 coefficients, of a review's synthetic views)
    whose radial factor's pole and zero nearly meet: the model folds over in a ring from 0.76686 to
    0.76778 (the determinant by differences), a few pixels wide, which 256 samples per direction
    stepped over (the picture there shown mirrored); sampled densely about the radial factor's roots
    it is found in every direction, and the picture kept short of it."""
    k = ((3820.0001, 0.0, 1939.0836), (0.0, 3819.9664, 1419.8263), (0.0, 0.0, 1.0))
    d = (-1.17499, -0.89266, -1.6141e-05, -1.36109e-05, 0.00614576, -0.853126, -1.35621, -0.135017)
    cal = LensCalibration((4000, 3000), k, d)
    ring = np.stack([np.linspace(0.7670, 0.7677, 8), np.zeros(8)], 1)
    assert (_determinant_by_differences(cal, ring) <= 0).all()
    assert (_determinant_by_differences(cal, np.array([[0.7668, 0.0], [0.0, 0.7668]])) > 0).all()
    assert 0.76684 < cal._fold_radii.min() <= cal._fold_radii.max() < 0.76688
    assert cal.beyond_fold(ring).all() and not cal.beyond_fold(np.array([[0.7668, 0.0], [0.0, -0.7668]])).any()
    border, reached = cal.border_reach
    assert 0.97 < reached.mean() < 0.99 and (np.hypot(*border[reached].T) < 0.76686).all()
    radial = LensCalibration((4000, 3000), k, d[:2] + (0.0, 0.0) + d[4:])  # (its radial terms alone: the same ring)
    assert radial.undistorted().focal[0] == pytest.approx(cal.undistorted().focal[0], rel=1e-3)


def test_newton_finds_a_pixels_own_ray_where_opencvs_point_lies_past_the_fold():
    """Pixels outside the picture of a 12-coefficient lens (a review's draw): OpenCV's iteration
    lands past the fold, Newton's method from there converges to another ray past it and the
    radial inverse does not reach; pulled back short of the fold, damped and kept there, Newton
    finds the pixel's own ray (projecting onto it, the determinant positive all the way from the
    axis). A 14-coefficient lens's border, 13 pixels of which undamped steps missed, is all reached,
    and pixels below it whose Newton steps crossed the fold (to no ray) are found."""
    d = (0.3929, -0.1354, 0.0214, 0.0204, -0.0285, 0.0, 0.0, 0.0, -0.058, -0.0184, 0.0297, -0.0033)
    cal = LensCalibration((320, 240), ((170.8, 0.0, 159.5), (0.0, 170.8, 119.5), (0.0, 0.0, 1.0)), d)
    pixel = np.array([[-80.5, 200.5]])  # (OpenCV's convention)
    opencv = cv2.undistortPointsIter(pixel.reshape(-1, 1, 2), np.asarray(cal.matrix), np.asarray(d), None, None,
                                     (3, 100, 1e-12)).reshape(-1, 2)
    assert cal.beyond_fold(opencv).all()
    ray = cal._normalised(pixel)
    np.testing.assert_allclose(ray, [[-1.11777764, 0.34777999]], atol=1e-7)
    np.testing.assert_allclose(cal._through(ray), (pixel - (159.5, 119.5)) / 170.8, atol=1e-12)
    way = ray * np.linspace(0.0025, 1.0, 400)[:, None]
    assert (_determinant_by_differences(cal, way) > 0).all()
    d = (-0.4161, -0.0982, -0.0098, 0.0902, 0.0017, 0.4017, -0.3867, -0.3045, 0.0357, -0.056, -0.0629, 0.045, -0.278,
         0.0445)
    cal = LensCalibration((320, 240), ((385.0, 0.0, 159.5), (0.0, 385.0, 119.5), (0.0, 0.0, 1.0)), d)
    border, reached = cal.border_reach
    assert reached.all()
    np.testing.assert_allclose(cal._through(border), (cal._border_pixels() - (159.5, 119.5)) / 385.0, atol=1e-10)
    below = np.array([[-0.5, 266.5], [7.5, 275.5], [11.5, 278.5]])
    rays = cal._normalised(below)
    np.testing.assert_allclose(cal._through(rays), (below - (159.5, 119.5)) / 385.0, atol=1e-10)
    ways = (rays[:, None, :] * np.linspace(0.0025, 1.0, 400)[None, :, None]).reshape(-1, 2)
    assert (_determinant_by_differences(cal, ways) > 0).all()


def test_a_tangential_model_that_folds_shows_no_picture_mirrored(caplog):
    """k1 -0.25 k2 0.05 with strong tangential terms (p1 0.05, p2 -0.05) folds over in the
    picture's top right (a review: at f 160 on 384x288 3.5 % of the undistorted picture showed the
    source mirrored, the border there undistorted onto rays past the fold). At f 400 the lens is
    taken: a white source's undistorted picture is white only where the ray, and every ray on the
    way to it from the axis, keeps the picture's orientation (the determinant of the model's
    Jacobian above 0, by differences), black past the fold (with a scale of 0.3, which shows it);
    the border pixels past it are left out with a warning, every other one going back through
    OpenCV's projection onto itself, and a keypoint past the fold is not found. Pixels around the
    picture are undistorted onto rays short of the fold, or NaN: over 500 of them OpenCV's
    iteration took to rays past it. At f 160 over a quarter of the border lies past the fold:
    refused in one line."""
    import logging

    from wbcap.export.openpose import _through_lens
    from wbcap.io.undistort import Undistorter

    distortion = (-0.25, 0.05, 0.05, -0.05)
    with pytest.raises(InputError, match=r"^tan.yml: distortion .*: the lens model cannot be inverted over the whole "
                                         r"picture \(at its edge it turns back, folding the picture over\)"):
        Undistorter(LensCalibration((384, 288), ((160.0, 0.0, 191.5), (0.0, 160.0, 143.5), (0.0, 0.0, 1.0)),
                                    distortion, file="tan.yml"), (384, 288))
    cal = LensCalibration((384, 288), ((400.0, 0.0, 191.5), (0.0, 400.0, 143.5), (0.0, 0.0, 1.0)), distortion)
    with caplog.at_level(logging.WARNING):
        undistorter = Undistorter(cal, (384, 288))
    assert re.search(r"0\.8 % of the source's border lies beyond what the lens model reaches \(its model turns back "
                     r"before them: a fold, as at a corner, or where tangential terms bend it\)", caplog.text)
    assert undistorter.camera.focal[0] == pytest.approx(224.29, abs=0.01)  # (127 with the mirrored border)
    for scale in (None, 0.3):  # (0.3: a picture reaching past the fold)
        undistorter = Undistorter(dataclasses.replace(cal, scale=scale), (384, 288), quiet=True)
        camera = undistorter.camera
        white = undistorter(np.full((288, 384, 3), 255, np.uint8))[..., 0]
        f, (cx, cy) = camera.focal[0], camera.princpt
        rows, cols = np.mgrid[0:288, 0:384]
        rays = np.stack([(cols + 0.5 - cx) / f, (rows + 0.5 - cy) / f], -1).reshape(-1, 2)
        lit = white.reshape(-1) > 0
        assert lit.mean() > 0.1  # (off-centre: strong tangential terms move the picture aside)
        # every lit pixel's ray, and 40 rays on the way to it from the axis (a sample of 4000 pixels)
        sample = np.random.default_rng(2).choice(np.flatnonzero(lit), 4000, replace=False)
        way = (rays[sample][:, None, :] * np.linspace(0.025, 1.0, 40)[None, :, None]).reshape(-1, 2)
        assert (_determinant_by_differences(cal, way) > 0).all()
        # dark short of the fold only where the ray lands outside the source
        dark = np.flatnonzero(~lit & ~cal.beyond_fold(rays))
        source = cal.distort_pixels(camera, camera.princpt + f * rays[dark])
        assert ((source < 0.1) | (source > np.array([384, 288]) - 0.1)).any(1).all()
        folded = np.flatnonzero(_determinant_by_differences(cal, rays) <= 0)
        assert (len(folded) > 1000 if scale else len(folded) == 0) and not lit[folded].any()
    points = np.concatenate([camera.princpt + f * rays[folded[:1]], [camera.princpt]])  # (a keypoint past the fold)
    assert _through_lens(cal, camera, points, np.ones(2, bool))[1].tolist() == [False, True]
    border, reached = cal.border_reach
    assert 0.99 < reached.mean() < 1
    np.testing.assert_allclose(cal._through(border[reached]),
                               (cal._border_pixels()[reached] - (191.5, 143.5)) / 400.0, atol=1e-9)
    # pixels around the picture: each found on a ray short of the fold, going back onto itself; where
    # OpenCV's iteration converged onto a ray past the fold (the pixel's only one), NaN
    around = np.stack(np.meshgrid(np.linspace(-200, 600, 81), np.linspace(-200, 500, 71)), -1).reshape(-1, 2)
    at = cal.undistort_pixels(camera, around)
    found = np.isfinite(at).all(1)
    rays = (at[found] - camera.princpt) / f
    np.testing.assert_allclose(cal.distort_pixels(camera, at[found]), around[found], atol=1e-6)
    ways = (rays[:, None, :] * np.linspace(0.025, 1.0, 40)[None, :, None]).reshape(-1, 2)
    assert (_determinant_by_differences(cal, ways) > 0).all()
    k = np.asarray(cal.matrix)
    opencv = cv2.undistortPointsIter(around[~found].reshape(-1, 1, 2) - 0.5, k, np.asarray(distortion), None, None,
                                     (3, 100, 1e-12)).reshape(-1, 2)
    converged = np.abs(cal._through(opencv) - (around[~found] - 0.5 - k[:2, 2]) / 400.0).max(1) < 1e-10
    ways = (opencv[converged][:, None, :] * np.linspace(0.025, 1.0, 40)[None, :, None]).reshape(-1, 2)
    assert converged.sum() > 500 and (_determinant_by_differences(cal, ways) <= 0).reshape(-1, 40).any(1).all()


def test_a_fisheye_past_90_degrees_is_refused_rather_than_shown_as_a_speck():
    """A fisheye whose corners lie just past 90 degrees (f 300 on 768x576, no coefficients: a
    review's run got a focal length of 1.2 px, people 244 times smaller, with warnings only) is
    refused, naming the scale; with one it is undistorted."""
    from wbcap.io.undistort import Undistorter

    cal = LensCalibration((768, 576), ((300.0, 0.0, 383.5), (0.0, 300.0, 287.5), (0.0, 0.0, 1.0)), (), True,
                          file="fish0.json")
    with pytest.raises(InputError, match=r"^fish0.json: keeping every source pixel would show the scene at 0.00\d+ "
                                         r"times the lens's scale \(its edge seeing nearly 90 degrees off its axis\); "
                                         r"give a scale \(1 keeps the lens's scale in the picture's middle\)$"):
        Undistorter(cal, (768, 576))
    assert Undistorter(dataclasses.replace(cal, scale=1.0), (768, 576)).camera.focal == (300.0, 300.0)


# --------------------------------------------------------------------------- the camera's pose


def test_the_camera_pose_is_read_where_the_file_gives_it(tmp_path):
    """Extrinsics as each tool writes them, OpenCV's world-to-camera x_c = R x_w + t: Pose2Sim's
    and Anipose's rotation vector (the same matrix as cv2.Rodrigues's), Caliscope's 3 x 3 matrix,
    EasyMocap's extri.yml beside intri.yml (Rot_<name>, else R_<name>); a ROS camera_info's R
    (its rectification, no translation) is no pose; a matrix that is not a rotation is refused in
    one line naming the file; the pose is in meta.json's record and not in a resume's fingerprint."""
    from wbcap.video_app import _calibration_record

    cal = read_calibration(write_pose2sim_toml(tmp_path / "Calib.toml", {"cam01": (K, D, (320, 240))}))
    rvec, tvec = np.array([1.2, -0.3, 0.1]), np.array([0.5, 1.0, 3.0])
    expected = cv2.Rodrigues(rvec)[0]
    np.testing.assert_allclose(cal.pose.rotation, expected, atol=1e-12)
    assert cal.pose.translation == (0.5, 1.0, 3.0)
    np.testing.assert_allclose(cal.pose.centre, -expected.T @ tvec, atol=1e-12)
    world = np.array([[0.3, -0.2, 1.1], [2.0, 1.0, 0.0]])  # the pose maps a world point as OpenCV's projection does
    uv, _ = cv2.projectPoints(world, rvec, tvec, K, None)
    cam = world @ np.asarray(cal.pose.rotation).T + tvec
    np.testing.assert_allclose(cam[:, :2] / cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2], uv.reshape(-1, 2), atol=1e-9)
    record = cal.to_dict()
    assert record["rotation"] == [list(r) for r in cal.pose.rotation] and record["translation"] == [0.5, 1.0, 3.0]
    assert "rotation" not in _calibration_record(cal) and "translation" not in _calibration_record(cal)
    assert _calibration_record(cal) == _calibration_record(dataclasses.replace(cal, pose=None))

    turned = expected @ cv2.Rodrigues(np.array([0.0, 0.0, 0.4]))[0]
    rows = ", ".join("[" + ", ".join(f"{v:.6f}" for v in row) + "]" for row in turned)  # (rounded, as files are)
    (tmp_path / "config.toml").write_text(
        "[cameras.0]\ncam_id = 0\nsize = [320, 240]\nrotation_count = 0\n"
        "matrix = [[260.0, 0.0, 158.5], [0.0, 262.0, 121.2], [0.0, 0.0, 1.0]]\n"
        f"distortions = [-0.3, 0.1, 0.002, -0.001, -0.02]\nrotation = [{rows}]\ntranslation = [0.1, 0.2, 2.5]\n")
    caliscope = read_calibration(tmp_path / "config.toml")
    np.testing.assert_allclose(caliscope.pose.rotation, turned, atol=2e-6)
    r = np.asarray(caliscope.pose.rotation)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-14)  # (made exact)

    intri = write_file_storage(tmp_path / "intri.yml", {"names": ("01", "02"), "K_01": K, "dist_01": D.reshape(1, 5),
                                                         "K_02": K, "dist_02": D.reshape(1, 5)})
    assert read_calibration(intri, camera="01").pose is None  # (no extri.yml yet)
    write_file_storage(tmp_path / "extri.yml", {"names": ("01", "02"), "R_01": rvec.reshape(3, 1),
                                                "Rot_01": expected, "T_01": tvec.reshape(3, 1),
                                                "R_02": np.array([[0.0], [0.0], [0.5]]), "T_02": np.ones((3, 1))})
    easy = read_calibration(intri, camera="01")
    np.testing.assert_allclose(easy.pose.rotation, expected, atol=1e-12)
    assert easy.pose.translation == (0.5, 1.0, 3.0) and easy.matrix == tuple(map(tuple, K))
    np.testing.assert_allclose(read_calibration(intri, camera="02").pose.rotation,
                               cv2.Rodrigues(np.array([0.0, 0.0, 0.5]))[0], atol=1e-12)

    (tmp_path / "camera_info.yaml").write_text(
        "image_width: 320\nimage_height: 240\ncamera_name: narrow\n"
        "camera_matrix: {rows: 3, cols: 3, data: [260.0, 0.0, 158.5, 0.0, 262.0, 121.2, 0.0, 0.0, 1.0]}\n"
        "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, data: [-0.3, 0.1, 0.002, -0.001, -0.02]}\n"
        "R: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}\n")
    assert read_calibration(tmp_path / "camera_info.yaml").pose is None

    (tmp_path / "bad.toml").write_text((tmp_path / "Calib.toml").read_text().replace(
        "rotation = [ 1.2, -0.3, 0.1]", "rotation = [[2, 0, 0], [0, 1, 0], [0, 0, 1]]"))
    with pytest.raises(InputError, match=r"bad.toml: rotation \[\[2.0, 0.0, 0.0\].*not a rotation matrix.*check the "
                                         "calibration"):
        read_calibration(tmp_path / "bad.toml")
    (tmp_path / "bad.toml").write_text((tmp_path / "Calib.toml").read_text().replace(
        "translation = [ 0.5, 1.0, 3.0]", "translation = [ 0.5, 1.0]"))
    with pytest.raises(InputError, match=r"bad.toml: translation .*3 finite numbers"):
        read_calibration(tmp_path / "bad.toml")
    # values no camera has, in one line each (a review: numpy's arrays over lines, a traceback)
    for rotation, translation, words in (
            ("[[nan, 0, 0], [0, 1, 0], [0, 0, 1]]", "[0.5, 1.0, 3.0]", "rotation [[nan, 0.0, 0.0], [0.0, 1.0, 0.0], "
                                                                       "[0.0, 0.0, 1.0]]: 3 x 3 finite numbers"),
            ("[1e300, 0, 0]", "[0.5, 1.0, 3.0]", "rotation [1e+300, 0.0, 0.0]: a rotation vector of finite radians"),
            ("[1.2, -0.3, 0.1]", "[1e308, 0, 0]", "translation [1e+308, 0.0, 0.0]: beyond 1e+07 of its units"),
            ("[1.2, -0.3, 0.1]", "[1" + "0" * 400 + ", 0, 0]", "translation: a number too large to be one")):
        (tmp_path / "bad.json").write_text(f'{{"K": [[260, 0, 158.5], [0, 262, 121.2], [0, 0, 1]], "size": [320, 240], '
                                          f'"rotation": {rotation}, "translation": {translation}}}'.replace("nan", "NaN"))
        with pytest.raises(InputError) as err:
            read_calibration(tmp_path / "bad.json")
        assert "\n" not in str(err.value) and words in str(err.value) and str(err.value).startswith(
            str(tmp_path / "bad.json")), str(err.value)
    from wbcap.camera import CameraPose

    for record in ({"rotation": ["1.2", "0", "0"], "translation": [0, 0, 1]},
                   {"rotation": [True, False, True], "translation": [0, 0, 1]}):
        with pytest.raises(ValueError, match="rotation .*: numbers"):
            CameraPose.from_record(record)
    assert CameraPose.from_record({"rotation": [0.0, 0.0, 0.0]}) is None  # (no translation: no pose)
