"""wbcap.export: atomic writes, staged output folders, OBJ and params JSON, mesh rendering."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import trimesh
from clients import skip_or_fail

from wbcap.atomic import atomic_path, atomic_write_bytes, atomic_write_text, staged_dir
from wbcap.errors import InputError
from wbcap.export import _gl
from wbcap.export.obj import write_obj
from wbcap.export.params_json import FORMAT, read_params_json, write_params_json
from wbcap.export.render import render_backend, render_meshes


class Boom(RuntimeError):
    pass


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_bytes_and_text(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"\x00\x01abc")
    assert target.read_bytes() == b"\x00\x01abc"
    atomic_write_text(target, "héllo\n")  # replaces the existing file
    assert target.read_bytes() == "héllo\n".encode()
    assert os.listdir(tmp_path) == ["out.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_atomic_path_failure_leaves_no_temp_and_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "mesh.obj"
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".obj" and not tmp.exists()
            tmp.write_text("v 0 0 0\n")  # half-written
            raise Boom
    assert os.listdir(tmp_path) == []

    target.write_text("old")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise Boom
    assert target.read_text() == "old"  # previous content intact
    assert os.listdir(tmp_path) == ["mesh.obj"]


def test_atomic_write_failure_mid_write(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_staged_dir_success_replaces_and_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "results"
    with staged_dir(out) as stage:
        assert stage.is_dir() and stage.parent == tmp_path and stage != out
        assert not out.exists()  # nothing visible while building
        (stage / "a.txt").write_text("1")
    assert sorted(os.listdir(tmp_path)) == ["results"]
    assert (out / "a.txt").read_text() == "1"

    with staged_dir(out) as stage:  # replaces the existing folder
        (stage / "b.txt").write_text("2")
    assert os.listdir(out) == ["b.txt"]
    assert sorted(os.listdir(tmp_path)) == ["results"]

    with pytest.raises(Boom):
        with staged_dir(out) as stage:
            (stage / "c.txt").write_text("3")
            raise Boom
    assert os.listdir(out) == ["b.txt"]  # previous result untouched
    assert sorted(os.listdir(tmp_path)) == ["results"]  # no staging folder left

    fresh = tmp_path / "new" / "deep"
    with pytest.raises(Boom):
        with staged_dir(fresh) as stage:
            (stage / "x").write_text("x")
            raise Boom
    assert not fresh.exists() and os.listdir(tmp_path / "new") == []


def test_staged_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(InputError, match="taken: exists and is not a folder"):
        with staged_dir(tmp_path / "taken"):
            pass


@pytest.mark.slow  # fresh processes or pipelines built (the fast loop stays under 2 minutes)
def test_staging_folders_a_killed_writer_left_are_removed_and_a_living_ones_kept(tmp_path: Path) -> None:
    """`wbcap image` killed (SIGKILL) while writing left `.p1.staging-*` folders that every later
    run into the folder kept (a break-it trial): the next staged_dir of that folder removes the
    staging and moved-aside folders no living process holds; one being built by a process still
    running is kept, and both results are complete; a user's folder of a like name, without
    wbcap's marker, is kept with what it holds (a break-it trial's `.messi5.old-deadbeef`)."""
    import signal
    import subprocess
    import sys
    import textwrap

    from wbcap.atomic import STAGING_MARKER

    code = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from wbcap.atomic import staged_dir
        with staged_dir(Path(sys.argv[1])) as stage:
            (stage / "who.txt").write_text(sys.argv[2])
            print(stage.name, flush=True)
            go = Path(sys.argv[3])  # (it waits for this file: the test's go)
            for _ in range(6000):
                if go.exists():
                    break
                time.sleep(0.01)
    """)
    photo = tmp_path / "p1"
    never = tmp_path / "never"
    killed = subprocess.Popen([sys.executable, "-c", code, str(photo), "killed", str(never)], stdout=subprocess.PIPE,
                              text=True)
    left = killed.stdout.readline().strip()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (tmp_path / ".p1.old-0123abcd").mkdir()  # (killed between moving the result aside and deleting it)
    (tmp_path / ".p1.old-0123abcd" / STAGING_MARKER).touch()
    mine = [tmp_path / ".p1.staging-notours", tmp_path / ".p2.staging-0123abcd", tmp_path / ".p1.staging-0123abcd.x",
            tmp_path / ".p1.old-deadbeef"]  # (not p1's staging folders, or without the marker: a user's own, kept)
    for folder in mine:
        (folder / "keep").mkdir(parents=True)
        (folder / "keep" / "x.txt").write_text("precious")
    assert (tmp_path / left / "who.txt").read_text() == "killed"
    go = tmp_path.parent / f"{tmp_path.name}.go"  # (beside the folder: not one of its names)
    living = subprocess.Popen([sys.executable, "-c", code, str(photo), "living", str(go)], stdout=subprocess.PIPE,
                              text=True)
    building = living.stdout.readline().strip()
    try:
        with staged_dir(photo) as stage:
            (stage / "who.txt").write_text("here")
        names = set(os.listdir(tmp_path))
        assert left not in names and ".p1.old-0123abcd" not in names
        assert building in names  # (the living process's)
    finally:
        go.touch()
        assert living.wait(60) == 0
        go.unlink()
    assert sorted(os.listdir(tmp_path)) == sorted(["p1", *(f.name for f in mine)])
    assert all((f / "keep" / "x.txt").read_text() == "precious" for f in mine)
    assert os.listdir(photo) == ["who.txt"] and (photo / "who.txt").read_text() == "living"  # (the last one in)


@pytest.mark.slow  # fresh processes or pipelines built (the fast loop stays under 2 minutes)
def test_two_processes_writing_one_folder_at_once_each_put_a_whole_one_in_place(tmp_path: Path) -> None:
    """Two writers of one result folder at once (two `wbcap image` into one -o): they failed on
    each other's renames ("Directory not empty", "exists and is not a folder" for a folder moved
    in between, a vanished folder) and left staging folders behind (a break-it trial, ~10 % of
    3000 writes each). Every write now succeeds, and the folder is always one writer's whole."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from wbcap.atomic import staged_dir
        final, tag = Path(sys.argv[1]), sys.argv[2]
        for i in range(150):
            with staged_dir(final) as stage:
                for k in range(3):
                    (stage / f"person_{k}").mkdir()
                    (stage / f"person_{k}" / "x.txt").write_text(f"{tag} {i}")
    """)
    final = tmp_path / "photo"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(final), tag], stderr=subprocess.PIPE, text=True)
             for tag in "AB"]
    try:
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()  # (nothing where it ended; one left running by a timeout is stopped)
            p.wait()
    assert [p.returncode for p in procs] == [0, 0], errors
    assert os.listdir(tmp_path) == ["photo"]
    texts = {(final / f"person_{k}" / "x.txt").read_text() for k in range(3)}
    assert len(texts) == 1 and texts.pop().endswith(" 149")


def test_a_failed_rename_puts_the_previous_folder_back_unmarked(tmp_path: Path, monkeypatch) -> None:
    """A rename of the new folder into place that fails (EIO) put the previous one back with
    wbcap's staging marker inside, which the next `wbcap image` and `wbcap view` refused as a
    foreign file (a code review): it comes back as it was."""
    import errno

    import wbcap.atomic as atomic

    final = tmp_path / "photo"
    final.mkdir()
    (final / "prev.txt").write_text("previous")
    real = os.replace

    def failing(src, dst):
        if Path(dst) == final and ".staging-" in Path(src).name:
            raise OSError(errno.EIO, "Input/output error", str(src))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError, match="Input/output error"), staged_dir(final) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(os.listdir(tmp_path)) == ["photo"] and os.listdir(final) == ["prev.txt"]


def test_a_link_where_the_folder_goes_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A link at the folder's name was moved aside and wbcap's marker written into the folder it
    leads to, the moved link left for ever (a code review): refused, the link and its folder
    untouched."""
    target = tmp_path / "keep"
    target.mkdir()
    (target / "x.txt").write_text("mine")
    link = tmp_path / "photo"
    link.symlink_to(target)
    with pytest.raises(InputError, match="photo: is a symbolic link, which a new folder would replace"):
        with staged_dir(link):
            pass
    assert link.is_symlink() and os.listdir(target) == ["x.txt"] and sorted(os.listdir(tmp_path)) == ["keep", "photo"]


# ---------------------------------------------------------------- OBJ and JSON


def test_obj_round_trip(tmp_path: Path) -> None:
    """Read back by trimesh (an independent reader): the same vertices, in order, and faces."""
    rng = np.random.default_rng(0)
    verts = rng.normal(size=(10475, 3)).astype(np.float32)  # SMPL-X sizes
    faces = rng.integers(0, 10475, size=(20908, 3))
    path = tmp_path / "body.obj"
    write_obj(path, verts, faces)
    loaded = trimesh.load(path, process=False, maintain_order=True)
    assert loaded.vertices.shape == (10475, 3) and loaded.faces.shape == (20908, 3)
    np.testing.assert_allclose(loaded.vertices, verts, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, faces)
    lines = path.read_text().splitlines()
    assert lines[1] == "v {:.6f} {:.6f} {:.6f}".format(*verts[0].astype(np.float64))
    assert lines[1 + 10475] == "f {} {} {}".format(*(faces[0] + 1))  # 1-based
    assert os.listdir(tmp_path) == ["body.obj"]


def test_obj_is_readable_by_trimesh(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=1)
    path = tmp_path / "s.obj"
    write_obj(path, sphere.vertices, sphere.faces)
    loaded = trimesh.load(path, process=False, maintain_order=True)
    np.testing.assert_allclose(loaded.vertices, sphere.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, sphere.faces)


def test_obj_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="out of range|must be in"):
        write_obj(tmp_path / "bad.obj", np.zeros((3, 3)), np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match="NaN"):
        write_obj(tmp_path / "bad.obj", np.full((3, 3), np.nan), np.array([[0, 1, 2]]))
    assert os.listdir(tmp_path) == []


def test_params_json_round_trip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    params = {
        "betas": np.arange(10, dtype=np.float32) / 3,
        "body_pose": torch.full((21, 3), 0.25),
        "cam_trans": (0.1, -0.2, 3.0),
        "frame": np.int64(7),
        "bbox": [1, 2, 3, 4],
        "meta": {"detector": "hog", "score": np.float32(0.5)},
    }
    path = tmp_path / "person0.json"
    write_params_json(path, params)
    raw = json.loads(path.read_text())
    assert raw["format"] == FORMAT and list(raw)[0] == "format"
    back = read_params_json(path)
    assert list(back) == list(params)
    np.testing.assert_allclose(back["betas"], np.arange(10) / 3, rtol=1e-6)
    assert np.asarray(back["body_pose"]).shape == (21, 3) and back["body_pose"][20][2] == 0.25
    assert back["cam_trans"] == [0.1, -0.2, 3.0]
    assert back["frame"] == 7 and isinstance(back["frame"], int)
    assert back["meta"] == {"detector": "hog", "score": 0.5}

    with pytest.raises(ValueError, match="betas"):
        write_params_json(tmp_path / "nan.json", {"betas": np.array([np.nan])})
    with pytest.raises(ValueError, match="format"):
        write_params_json(tmp_path / "f.json", {"format": 1})
    assert sorted(os.listdir(tmp_path)) == ["person0.json"]


def test_params_json_read_errors(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{oops")
    with pytest.raises(InputError, match="a.json: not valid JSON"):
        read_params_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"betas": []}')
    with pytest.raises(InputError, match='b.json: no "format" field'):
        read_params_json(tmp_path / "b.json")
    (tmp_path / "c.json").write_text('{"format": "wbcap.params/99"}')
    with pytest.raises(InputError, match="c.json: params format"):
        read_params_json(tmp_path / "c.json")


# ---------------------------------------------------------------- rendering

H, W = 240, 320
FOCAL = (200.0, 210.0)
PRINCPT = (140.0, 100.0)  # off the image centre, to catch principal-point mistakes
BG = 30


def _sphere(centre: tuple[float, float, float], radius: float) -> tuple[np.ndarray, np.ndarray]:
    s = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    return (np.asarray(s.vertices) + centre).astype(np.float32), np.asarray(s.faces)


def _analytic_mask(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    """Pixels whose viewing ray (through the pixel centre) hits the sphere: the exact silhouette."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([(u - PRINCPT[0]) / FOCAL[0], (v - PRINCPT[1]) / FOCAL[1], np.ones_like(u)], -1)
    c = np.asarray(centre)
    t = (rays @ c) / (rays * rays).sum(-1)
    return np.linalg.norm(rays * t[..., None] - c, axis=-1) <= radius


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def gl_platform() -> str | None:
    return _gl.select_gl_platform()


@pytest.mark.parametrize("backend", ["software", "pyrender"])
def test_render_unit_sphere_matches_analytic_disc(backend: str, gl_platform: str | None) -> None:
    if backend == "pyrender" and gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    centre = (0.0, 0.0, 3.0)
    verts, faces = _sphere(centre, 1.0)
    image = np.full((H, W, 3), BG, np.uint8)
    image[0, 0] = (1, 2, 3)
    before = image.copy()
    out = render_meshes(image, [verts], faces, FOCAL, PRINCPT, backend=backend)
    np.testing.assert_array_equal(image, before)  # input not modified
    assert out.shape == image.shape and out.dtype == np.uint8
    changed = (out != image).any(-1)
    disc = _analytic_mask(centre, 1.0)
    assert changed[int(PRINCPT[1]), int(PRINCPT[0])]  # centre pixel covered
    for y, x in [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]:
        assert not changed[y, x] and (out[y, x] == image[y, x]).all()
    assert not (changed & ~_dilate(disc)).any()  # nothing drawn outside the disc (+1 px)
    assert _iou(changed, disc) > 0.97
    ys, xs = np.nonzero(changed)
    assert abs(xs.mean() - PRINCPT[0]) < 0.3 and abs(ys.mean() - PRINCPT[1]) < 0.3
    # Lit from the camera: the sphere's centre is bright and blue-ish (default colour).
    r, g, b = out[int(PRINCPT[1]), int(PRINCPT[0])].astype(int)
    assert b > r and b > 150


def _dilate(mask: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def test_backends_agree_and_off_axis_projection(gl_platform: str | None) -> None:
    if gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    centre = (0.6, -0.35, 4.0)  # off axis: silhouette is an ellipse-like conic
    verts, faces = _sphere(centre, 0.5)
    image = np.full((H, W, 3), BG, np.uint8)
    masks = {}
    for backend in ("software", "pyrender"):
        out = render_meshes(image, [verts], faces, FOCAL, PRINCPT, backend=backend)
        masks[backend] = (out != image).any(-1)
    exact = _analytic_mask(centre, 0.5)
    assert _iou(masks["software"], masks["pyrender"]) > 0.9
    assert _iou(masks["software"], exact) > 0.9 and _iou(masks["pyrender"], exact) > 0.9


@pytest.mark.parametrize("backend", ["software", "pyrender"])
def test_render_occlusion_and_alpha(backend: str, gl_platform: str | None) -> None:
    if backend == "pyrender" and gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    near_v, near_f = _sphere((0.0, 0.0, 3.0), 0.4)
    far_v, far_f = _sphere((0.0, 0.0, 6.0), 2.0)
    red, blue = (0.9, 0.1, 0.1), (0.1, 0.1, 0.9)
    image = np.full((H, W, 3), BG, np.uint8)
    # Far mesh listed last, then first: depth order, not list order, decides.
    for order in ((0, 1), (1, 0)):
        meshes = [[near_v, far_v][i] for i in order]
        faces = [[near_f, far_f][i] for i in order]
        colors = [[red, blue][i] for i in order]
        out = render_meshes(image, meshes, faces, FOCAL, PRINCPT, colors=colors, backend=backend)
        cx, cy = int(PRINCPT[0]), int(PRINCPT[1])
        r, _, b = out[cy, cx].astype(int)
        assert r > 150 and r > b + 100  # near red sphere in front
        r, _, b = out[cy, cx + 40].astype(int)  # outside the red disc (r ~ 29 px), inside blue
        assert b > 150 and b > r + 100
    full = render_meshes(image, [near_v], near_f, FOCAL, PRINCPT, colors=[red], backend=backend)
    half = render_meshes(
        image, [near_v], near_f, FOCAL, PRINCPT, colors=[red], alpha=0.5, backend=backend
    )
    expected = (full[cy, cx].astype(float) + BG) / 2
    np.testing.assert_allclose(half[cy, cx], expected, atol=1.0)
    np.testing.assert_array_equal(
        render_meshes(image, [near_v], near_f, FOCAL, PRINCPT, alpha=0.0, backend=backend), image
    )


def test_wbcap_shaders_draw_what_pyrenders_own_shaders_draw(gl_platform: str | None) -> None:
    """wbcap draws all meshes as one primitive with their colours on the vertices, through its own
    shaders (render._use_wbcap_shaders); pyrender's own shaders, one primitive and material per
    mesh, under the same camera and lights, draw the same pixels to 1/255 (overlapping meshes of
    different sizes and face arrays at different depths, an empty one among them, one sample per
    pixel). A scene with more lights drawn in between leaves no trace (pyrender sets only the
    lights a scene has)."""
    if gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    from pyrender.shader_program import ShaderProgramCache

    from wbcap.export import render

    def sphere(centre, radius, subdivisions):
        s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
        return (np.asarray(s.vertices) + centre).astype(np.float32), np.asarray(s.faces)

    box = trimesh.creation.box(extents=(0.8, 0.5, 0.6), transform=trimesh.transformations.rotation_matrix(
        0.6, (1.0, 1.0, 0.0)))
    parts = [sphere((-0.5, 0.0, 3.0), 0.6, 4), (np.zeros((3, 3), np.float32), np.zeros((0, 3), np.int64)),
             (np.asarray(box.vertices) + (-0.2, 0.7, 3.6), np.asarray(box.faces)),
             sphere((0.2, 0.1, 3.5), 0.7, 3), sphere((0.9, -0.3, 4.5), 0.9, 4)]
    meshes, faces = [v for v, _ in parts], [f for _, f in parts]
    colors = np.array([[0.9, 0.2, 0.2], [1.0, 1.0, 1.0], [0.95, 0.8, 0.2], [0.2, 0.8, 0.3], [0.3, 0.4, 0.95]])
    image = np.full((H, W, 3), BG, np.uint8)

    def draw() -> np.ndarray:
        return render_meshes(image, meshes, faces, FOCAL, PRINCPT, colors=colors, backend="pyrender",
                             multisample=False)

    ours = draw()
    cache = render._renderer._renderer._program_cache
    assert type(cache).__name__ == "WbcapShaders"  # wbcap's shaders drew it
    assert any("wbcap_mesh.frag" in str(p.fragment_shader) for p in cache._program_cache.values())

    pyrender = _gl.import_pyrender()

    def scene_of(lights, vertex_colors=False):
        scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0), ambient_light=(0.3, 0.3, 0.3))
        for v, f, c in zip(meshes, faces, colors):
            if len(f):
                material = pyrender.MetallicRoughnessMaterial(metallicFactor=0.0, roughnessFactor=0.7,
                                                              alphaMode="OPAQUE", baseColorFactor=(*c, 1.0))
                gl = v * (1.0, -1.0, -1.0)
                extra = {"color_0": np.ones((len(v), 4), np.float32)} if vertex_colors else {}
                scene.add(pyrender.Mesh([pyrender.Primitive(positions=gl, normals=render.vertex_normals(gl, f),
                                                            indices=f, material=material, **extra)]))
        scene.add(pyrender.IntrinsicsCamera(FOCAL[0], FOCAL[1], PRINCPT[0] + 0.5, PRINCPT[1] + 0.5,
                                            znear=render.ZNEAR, zfar=render.ZFAR), pose=np.eye(4))
        for intensity, pose in lights:
            scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=intensity), pose=pose)
        return scene

    wbcap_lights = [(render._HEAD_LIGHT, np.eye(4))] + [
        (render._SIDE_LIGHT, render._light_pose(np.array([side, -0.6, -1.0]))) for side in (-0.5, 0.5)]

    def draw_scene(scene):
        with render._render_lock:
            return render._premultiplied_and_cover(*render._renderer.render(scene, flags=pyrender.RenderFlags.RGBA))

    inner = render._renderer._renderer
    inner._program_cache = ShaderProgramCache()  # pyrender's own shaders, in the same context
    try:
        rgb, cover = draw_scene(scene_of(wbcap_lights))  # one sample per pixel, as ours
    finally:
        inner._program_cache.clear()
        inner._program_cache = cache
    assert set(np.unique(cover)) == {0, 255}
    drawn = cover == 255
    np.testing.assert_array_equal((ours != image).any(-1), drawn)
    assert drawn.sum() > 10000 and (np.abs(ours[drawn].astype(int) - (240, 204, 51)).max(-1) < 60).any()  # the box
    np.testing.assert_allclose(ours[drawn], rgb[drawn], atol=1)
    np.testing.assert_array_equal(ours[~drawn], image[~drawn])

    # four lights through the program wbcap draws with (vertex colours: the same defines), then
    # wbcap's three again: the fourth must not linger
    lit = draw_scene(scene_of(wbcap_lights + [(2.0, render._light_pose(np.array([1.0, 0.0, -0.2])))], True))[0]
    assert np.abs(lit[drawn].astype(int) - ours[drawn]).max() > 20
    np.testing.assert_array_equal(draw(), ours)


def test_renders_without_framebuffer_objects_take_coverage_from_depth(monkeypatch) -> None:
    """Platforms without framebuffer objects (OSMesa): pyrender gives RGB and depth, coverage is
    where there is depth; and a size change re-creates the renderer here, with wbcap's shaders
    (pyrender would re-create it inside ``render``, with its own)."""
    import types

    from pyrender.shader_program import ShaderProgramCache

    from wbcap.export import render

    rgb = np.full((4, 5, 3), 7, np.uint8)
    depth = np.zeros((4, 5), np.float32)
    depth[1:3, 2:4] = 2.5
    premultiplied, cover = render._premultiplied_and_cover(rgb, depth)
    assert cover.dtype == np.uint8 and (cover == np.where(depth > 0, 255, 0)).all()
    assert (premultiplied[depth > 0] == 7).all() and (premultiplied[depth == 0] == 0).all()
    rgba = np.dstack([rgb, (depth > 0) * np.uint8(255)])
    got = render._premultiplied_and_cover(rgba, None)
    assert (got[0] == rgb).all() and (got[1] == rgba[..., 3]).all()

    made, deleted = [], []

    class Offscreen:  # pyrender.OffscreenRenderer on a platform without framebuffer objects
        def __init__(self, width, height):
            self.viewport_width, self.viewport_height = width, height
            self._platform = types.SimpleNamespace(supports_framebuffers=lambda: False)
            self._renderer = types.SimpleNamespace(_program_cache=ShaderProgramCache())
            made.append(self)

        def delete(self):
            deleted.append(self)

    fake = types.SimpleNamespace(OffscreenRenderer=Offscreen)
    monkeypatch.setattr(render, "_renderer", None)
    first = render._get_renderer(fake, 64, 48)
    assert render._get_renderer(fake, 64, 48) is first and not deleted
    second = render._get_renderer(fake, 80, 60)
    assert second is not first and deleted == [first] and made == [first, second]
    assert (second.viewport_width, second.viewport_height) == (80, 60)
    assert all(type(r._renderer._program_cache).__name__ == "WbcapShaders" for r in made)
    monkeypatch.setattr(render, "_renderer", None)


def test_an_image_too_large_for_opengl_is_drawn_in_software_alone(gl_platform, monkeypatch, caplog) -> None:
    """An image larger than the GL platform's framebuffers (a panorama), or one GL has no memory
    for, is drawn in software, that image only: the platform is neither forgotten nor given up
    for later images. And one
    non-finite vertex does not hide the other meshes (it used to make the far plane infinite)."""
    import logging

    if gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    from wbcap.export import render

    verts, faces = _sphere((0.0, 0.0, 3.0), 0.5)
    small = np.full((48, 64, 3), BG, np.uint8)
    smooth = render_meshes(small, [verts], faces, (60.0, 60.0), (31.5, 23.5), backend="pyrender")
    with render._render_lock:
        limit = render._gl_size_limit(render._renderer)
    forgotten = []
    monkeypatch.setattr(_gl, "forget_cached_platform", lambda: forgotten.append(True))
    wide = np.full((16, limit + 1, 3), BG, np.uint8)
    with caplog.at_level(logging.WARNING):
        out = render_meshes(wide, [verts + (0.0, 0.0, 30.0)], faces, (60.0, 60.0), (limit / 2, 8.0), backend="pyrender")
    assert (f"OpenGL cannot draw this {limit + 1}x16 image (at most {limit} pixels a side here); it is drawn with "
            "the software renderer") in caplog.text
    assert (out != wide).any() and not forgotten
    assert render_backend("auto").startswith("pyrender")
    np.testing.assert_array_equal(render_meshes(small, [verts], faces, (60.0, 60.0), (31.5, 23.5), backend="pyrender"),
                                  smooth)
    # GL out of memory (a large photo's multisampled buffers): that image only, too
    from OpenGL.error import GLError

    def out_of_memory(*args, **kwargs):
        raise GLError(err=0x0505, result=None, baseOperation="glRenderbufferStorageMultisample")

    with monkeypatch.context() as patched:
        patched.setattr(render, "_render_pyrender", out_of_memory)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            out = render_meshes(small, [verts], faces, (60.0, 60.0), (31.5, 23.5), backend="pyrender")
    assert "OpenGL cannot draw this 64x48 image (out of memory)" in caplog.text and (out != small).any()
    assert not forgotten
    np.testing.assert_array_equal(render_meshes(small, [verts], faces, (60.0, 60.0), (31.5, 23.5), backend="pyrender"),
                                  smooth)
    broken = verts.copy()
    broken[0] = (np.inf, 0.0, np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # (and no NumPy warning about it)
        both = render_meshes(small, [broken + (0.0, 0.0, 1.0), verts], [faces, faces], (60.0, 60.0), (31.5, 23.5),
                             backend="pyrender")
    assert (both != small).any()


def test_composite_is_porter_duff_over() -> None:
    """Blending a render over the image: ``image * (1 - alpha * cover) + alpha * premultiplied``;
    with one sample per pixel and full opacity, a copy of the covered pixels."""
    from wbcap.export.render import _composite

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    straight = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    cover = np.zeros((H, W), np.uint8)
    cover[50:150, 60:200] = rng.integers(0, 256, (100, 140), dtype=np.uint8)
    premultiplied = np.rint(straight * (cover[..., None] / 255.0)).astype(np.uint8)
    for alpha in (1.0, 0.6):
        expected = image * (1.0 - alpha * cover[..., None] / 255.0) + alpha * premultiplied
        got = _composite(image, premultiplied, cover, alpha)
        assert np.abs(got.astype(float) - expected).max() <= 0.5 + 1e-3
        assert (got[cover == 0] == image[cover == 0]).all()
    binary = np.where(cover > 127, 255, 0).astype(np.uint8)
    opaque = np.where(binary[..., None] > 0, straight, 0).astype(np.uint8)
    before = image.copy()
    np.testing.assert_array_equal(_composite(image, opaque, binary, 1.0), np.where(binary[..., None] > 0, straight, image))
    np.testing.assert_array_equal(image, before)  # (a new image: the caller's is not drawn on)
    np.testing.assert_array_equal(_composite(image, opaque, np.zeros_like(binary), 1.0), image)


def test_joined_indices_equal_the_meshes_faces_offset_by_their_vertices() -> None:
    """One index buffer for meshes laid one after another: each mesh's faces plus the vertices
    before it; the array kept for a video's same faces and counts never goes stale."""
    from wbcap.export.render import _joined_indices

    rng = np.random.default_rng(2)
    faces = rng.integers(0, 50, (40, 3))
    other = rng.integers(0, 30, (25, 3))

    def expected(faces_list, counts):
        offsets = np.cumsum([0] + counts[:-1])
        return np.concatenate([f + o for f, o in zip(faces_list, offsets)]).astype(np.uint32)

    for faces_list, counts in (([faces] * 3, [50] * 3), ([faces], [50]), ([faces] * 11, [50] * 11),
                               ([faces] * 2, [50] * 2), ([faces, faces.copy()], [50, 50]),
                               ([faces, other], [50, 30]), ([faces, faces], [50, 60])):
        got = _joined_indices(faces_list, counts)
        assert got.dtype == np.uint32
        np.testing.assert_array_equal(got, expected(faces_list, counts))
    assert not _joined_indices([faces] * 2, [50] * 2).flags.writeable  # a view of the kept array
    faces[0] = (7, 8, 9)  # the caller's array changed in place: not the kept copy's values
    np.testing.assert_array_equal(_joined_indices([faces] * 2, [50] * 2), expected([faces] * 2, [50, 50]))


@pytest.mark.parametrize("multisample", [False, True])
def test_lean_drawing_draws_what_pyrenders_scene_draws(multisample, gl_platform, monkeypatch) -> None:
    """render._draw_lean (one vertex array kept in the context, a camera-and-lights scene kept
    per camera) draws what pyrender's render of the same meshes as a scene draws, render after
    render: other cameras, far planes (a far mesh), index arrays (other topologies, other
    numbers of meshes), an empty image, and back."""
    from wbcap.export import render

    if gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    a, fa = _sphere((-0.5, 0.1, 3.0), 0.4)
    b, fb = _sphere((0.6, -0.2, 4.0), 0.7)
    far, ff = _sphere((0.0, 0.0, 150.0), 20.0)  # beyond ZFAR: the far plane moves out for it
    box = trimesh.creation.box(extents=(0.8, 0.5, 0.6), transform=trimesh.transformations.rotation_matrix(
        0.6, (1.0, 1.0, 0.0)))
    bv, bf = (np.asarray(box.vertices) + (-0.2, 0.7, 3.6)).astype(np.float32), np.asarray(box.faces)
    other_camera = ((150.0, 150.0), (W / 2.0, H / 2.0))
    shifted = (FOCAL, (PRINCPT[0] + 30.0, PRINCPT[1] - 20.0))  # the same focal length, another centre
    scenes = [([a, b], [fa, fb], FOCAL, PRINCPT), ([a, a + (0.9, 0.0, 0.5)], [fa, fa], FOCAL, PRINCPT),
              ([bv, a], [bf, fa], FOCAL, PRINCPT), ([a, bv], [fa, bf], FOCAL, PRINCPT),  # same shapes, other indices
              ([far], [ff], FOCAL, PRINCPT), ([b], [fb], *other_camera), ([b], [fb], *shifted),
              ([a, a + (0.9, 0.0, 0.5), a + (0.0, 0.5, 1.0)], [fa] * 3, FOCAL, PRINCPT), ([], fa, FOCAL, PRINCPT),
              ([a, b], [fa, fb], FOCAL, PRINCPT)]
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    colors = [(0.9, 0.2, 0.2), (0.2, 0.3, 0.9), (0.3, 0.8, 0.3)]

    def draw_all():
        return [render_meshes(image, m, f, fo, pp, colors=colors[: len(m)] or None, backend="pyrender",
                              multisample=multisample) for m, f, fo, pp in scenes]

    drawn = []
    real = render._draw_lean
    monkeypatch.setattr(render, "_draw_lean", lambda *args: drawn.append(1) or real(*args))
    lean = draw_all()
    inner = render._renderer._renderer
    if getattr(inner, "_wbcap_lean", None) is None:
        skip_or_fail("this GL platform (OSMesa) has no framebuffer objects: pyrender draws its scenes")
    assert len(drawn) == len(scenes) - 1  # (the empty one is not drawn at all)
    monkeypatch.setattr(inner, "_wbcap_lean", None)  # pyrender's render of _pyrender_scene's scene
    stock = draw_all()
    for i, (got, want) in enumerate(zip(lean, stock)):
        assert (want != image).any() == (i != 8)
        # the lights' order in a pyrender scene is a set's: sums of their terms may round apart
        assert np.abs(got.astype(int) - want).max() <= 1, i
        np.testing.assert_array_equal((got != image).any(-1), (want != image).any(-1))


def test_a_gl_error_while_setting_up_the_lean_vertex_array_costs_that_image_only(gl_platform, monkeypatch,
                                                                                  caplog) -> None:
    """Out of GL memory while _draw_lean builds its vertex array (a fresh renderer): that image
    is drawn in software, the next one by OpenGL again, the vertex array built afresh."""
    import logging

    from OpenGL import GL
    from OpenGL.error import GLError

    from wbcap.export import render

    if gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    a, fa = _sphere((-0.5, 0.1, 3.0), 0.4)
    image = np.zeros((H, W, 3), np.uint8)
    want = render_meshes(image, [a], fa, FOCAL, PRINCPT, backend="pyrender", multisample=False)
    if getattr(render._renderer._renderer, "_wbcap_lean", None) is None:
        skip_or_fail("this GL platform (OSMesa) has no framebuffer objects: pyrender draws its scenes")
    render._delete_renderer()  # a fresh renderer: its vertex array is built on its first draw
    real, failed = GL.glGenBuffers, []

    def out_of_memory_once(n):
        if not failed:
            failed.append(n)
            raise GLError(err=0x0505, result=None, baseOperation="glGenBuffers")
        return real(n)

    monkeypatch.setattr(GL, "glGenBuffers", out_of_memory_once)
    with caplog.at_level(logging.WARNING):
        soft = render_meshes(image, [a], fa, FOCAL, PRINCPT, backend="pyrender", multisample=False)
    assert failed and "drawn with the software renderer" in caplog.text and (soft != image).any()
    assert render_backend("auto").startswith("pyrender")  # the platform is not given up
    state = render._renderer._renderer._wbcap_lean
    assert "vao" not in state  # nothing half-built kept
    np.testing.assert_array_equal(render_meshes(image, [a], fa, FOCAL, PRINCPT, backend="pyrender",
                                                multisample=False), want)
    assert "vao" in state


def test_lean_drawing_uploads_a_videos_indices_once(gl_platform, monkeypatch) -> None:
    """Frames with as many people of one topology share their index array
    (:func:`render._joined_indices` hands out the same object), so the index buffer goes up on the
    first frame only; another number of people uploads again."""
    from OpenGL import GL

    from wbcap.export import render

    if gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    a, fa = _sphere((-0.5, 0.1, 3.0), 0.4)
    image = np.zeros((H, W, 3), np.uint8)
    render_meshes(image, [a], [fa], FOCAL, PRINCPT, backend="pyrender", multisample=False)  # (set up)
    if getattr(render._renderer._renderer, "_wbcap_lean", None) is None:
        skip_or_fail("this GL platform (OSMesa) has no framebuffer objects: pyrender draws its scenes")
    uploads = []
    real = GL.glBufferData
    monkeypatch.setattr(GL, "glBufferData", lambda target, *args: uploads.append(target) or real(target, *args))
    frames = [[a + (0.1 * k, 0.0, 0.0), a + (0.0, 0.1 * k, 0.5)] for k in range(3)] + [[a, a + (0.5, 0, 0), a + (0, 0.5, 0)]]
    drawn = [render_meshes(image, m, fa, FOCAL, PRINCPT, backend="pyrender", multisample=False) for m in frames]
    assert uploads.count(GL.GL_ELEMENT_ARRAY_BUFFER) == 2  # the first two-person frame, the three-person one
    assert uploads.count(GL.GL_ARRAY_BUFFER) == 4  # the vertices, every frame
    assert all((d != image).any() for d in drawn) and (drawn[0] != drawn[1]).any()


@pytest.mark.parametrize("backend", ["software", "pyrender"])
def test_a_render_prepared_in_another_thread_draws_what_render_meshes_draws(backend: str,
                                                                            gl_platform: str | None) -> None:
    """prepare_render (no OpenGL: render.mp4 runs it in its posing thread) then draw_prepared
    here gives render_meshes' pixels; the image must have the prepared size."""
    import threading

    from wbcap.export.render import draw_prepared, prepare_render

    if backend == "pyrender" and gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    a, fa = _sphere((-0.5, 0.1, 3.0), 0.4)
    b, fb = _sphere((0.6, -0.2, 4.0), 0.7)
    image = np.full((H, W, 3), BG, np.uint8)
    colors = [(0.9, 0.2, 0.2), (0.2, 0.3, 0.9)]
    want = render_meshes(image, [a, b], [fa, fb], FOCAL, PRINCPT, colors=colors, backend=backend, multisample=False)
    box = []
    worker = threading.Thread(target=lambda: box.append(prepare_render(
        (H, W), [a, b], [fa, fb], FOCAL, PRINCPT, colors=colors, backend=backend, multisample=False)))
    worker.start()
    worker.join()
    prepared = box[0]
    assert (prepared.mesh is not None) == (backend == "pyrender")
    np.testing.assert_array_equal(draw_prepared(image, prepared), want)
    assert (want != image).any()
    with pytest.raises(ValueError, match="prepared for"):
        draw_prepared(np.zeros((H, W + 1, 3), np.uint8), prepared)
    nobody = prepare_render((H, W), [], fa, FOCAL, PRINCPT, backend=backend)
    np.testing.assert_array_equal(draw_prepared(image, nobody), image)


def test_render_edge_cases() -> None:
    image = np.full((20, 30, 3), BG, np.uint8)
    verts, faces = _sphere((0.0, 0.0, 3.0), 1.0)
    np.testing.assert_array_equal(render_meshes(image, [], faces, (20, 20), (15, 10)), image)
    behind, _ = _sphere((0.0, 0.0, -3.0), 1.0)  # behind the camera: nothing visible
    out = render_meshes(image, [behind], faces, (20, 20), (15, 10), backend="software")
    np.testing.assert_array_equal(out, image)
    with pytest.raises(ValueError, match="uint8"):
        render_meshes(image.astype(np.float32), [verts], faces, (20, 20), (15, 10))


def test_render_backend_selection(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    import logging

    from wbcap.export import render

    monkeypatch.setenv("WBCAP_RENDERER", "software")
    assert render_backend() == "software"
    monkeypatch.setenv("WBCAP_RENDERER", "vulkan")
    with pytest.raises(InputError, match="WBCAP_RENDERER=vulkan: unknown renderer"):
        render_backend()
    monkeypatch.delenv("WBCAP_RENDERER")
    # Without any working GL platform, auto falls back to software and 'pyrender' is an error.
    monkeypatch.setattr(_gl, "select_gl_platform", lambda: None)
    monkeypatch.setattr(render, "_warned_software", False)
    _gl._write_cache("the probe's key", None)  # (as the probe that found none kept its answer)
    with caplog.at_level(logging.WARNING):
        assert render_backend() == "software"
    # says where the answer is kept, so that a user who fixed the drivers can make it look again
    assert f"kept in {_gl.cache_file()}: delete it to look again" in caplog.text
    assert render_backend("auto") == "software"
    with pytest.raises(InputError, match="no OpenGL platform works"):
        render_backend("pyrender")
    monkeypatch.setattr(_gl, "select_gl_platform", lambda: "egl")
    assert render_backend() == "pyrender-egl"


def test_gl_probe_reports_a_broken_platform_as_unusable() -> None:
    assert _gl._probe("no-such-platform") is False


@pytest.mark.slow  # two GL probes in child processes
def test_gl_probe_ignores_a_stray_module_in_the_current_folder(tmp_path, monkeypatch, gl_platform) -> None:
    """A `numpy.py` where the command runs must not make the probe fail (and cache "no GL")."""
    if gl_platform is None:
        skip_or_fail("no OpenGL platform (EGL/OSMesa) on this machine")
    (tmp_path / "numpy.py").write_text("raise ImportError('a stray numpy.py')\n")
    monkeypatch.chdir(tmp_path)
    assert _gl._probe(gl_platform) is True


def test_staged_dir_under_a_file_is_a_user_error(tmp_path):
    from wbcap.atomic import staged_dir
    from wbcap.errors import InputError

    (tmp_path / "afile").write_text("")
    with pytest.raises(InputError, match=r"afile/out: cannot create the output folder \(Not a directory\)"):
        with staged_dir(tmp_path / "afile" / "out" / "photo"):
            pass


def test_vertex_normals_match_trimesh_area_weighted(body_layer):
    """render.vertex_normals == trimesh's area-weighted vertex normals (the face normals summed
    by face area), on a posed synthetic SMPL-X body and a hand-made corner."""
    import torch
    import trimesh

    from wbcap.export.render import vertex_normals

    faces = body_layer.faces
    with torch.no_grad():
        body_pose = 0.3 * torch.sin(torch.arange(63.0)).reshape(1, 63)
        z = torch.zeros
        verts = body_layer(betas=z(1, 10), body_pose=body_pose, global_orient=z(1, 3), left_hand_pose=z(1, 45),
                           right_hand_pose=z(1, 45), jaw_pose=z(1, 3), expression=z(1, 10)).vertices[0].double().numpy()
    tm = trimesh.Trimesh(verts, faces, process=False)
    area_weighted = np.repeat(tm.face_normals * tm.area_faces[:, None], 3, axis=0)  # one row per face corner
    ref = np.zeros_like(verts, dtype=np.float64)
    np.add.at(ref, tm.faces.reshape(-1), area_weighted)
    ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-20)
    ours = vertex_normals(verts, faces)
    used = np.unique(faces)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours[used], ref[used], atol=1e-5)
    # the same array object changed in place: the kept vertex-face matrix must not be reused
    faces_var = np.array(faces, np.int64)[::-1].copy()  # the triangles listed in reverse: the same normals
    np.testing.assert_allclose(vertex_normals(verts, faces_var)[used], ref[used], atol=1e-5)
    faces_var[:] = np.roll(faces_var, 1, axis=0)  # listed in another order, in place
    np.testing.assert_allclose(vertex_normals(verts, faces_var)[used], ref[used], atol=1e-5)
    # a unit right-angle corner: two faces in z=0 and x=0 meeting on the y axis
    corner = vertex_normals(np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1], [5, 5, 5.0]]),
                            np.array([[0, 2, 1], [0, 1, 3]]))
    np.testing.assert_allclose(corner[2], [0, 0, 1], atol=1e-7)  # (x, y) counter-clockwise: +z
    np.testing.assert_allclose(corner[3], [1, 0, 0], atol=1e-7)  # (y, z) counter-clockwise: +x
    np.testing.assert_allclose(corner[0], np.array([1, 0, 1]) / np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(corner[4], [0, 0, 1])  # in no face


# ---------------------------------------------------------------- animation formats


def test_animation_export_refuses_formats_it_would_not_write() -> None:
    """`AnimationExport(formats=("GLB",))` and a bare `formats="bvh"` (which became "b", "v", "h")
    ran and wrote no such file, without a word (a break-it trial): refused in one line."""
    from wbcap.export.animation import AnimationExport

    for bad, named in ((("GLB",), "'GLB'"), (("glb", "obj"), "'obj'")):
        with pytest.raises(InputError, match=rf"unknown format {named}; give a tuple of npz, glb, bvh, fbx, csv, angles, trc, c3d$"):
            AnimationExport(formats=bad)
    with pytest.raises(InputError, match=r"^export formats 'bvh': give a tuple of format names, e.g. \('bvh',\), not a str$"):
        AnimationExport(formats="bvh")
    assert AnimationExport(formats=["glb", "bvh"]).formats == ("glb", "bvh")


def test_animation_export_parse_none_stands_alone_in_the_api_too() -> None:
    """`none` with formats was refused only by the CLI (wbcap.cli.common): the Python API took
    "none,glb" for an unknown format none. AnimationExport.parse holds the rule; the CLI calls it."""
    from wbcap.export.animation import AnimationExport

    for text in ("none,glb", "bvh, NONE"):
        with pytest.raises(InputError) as err:
            AnimationExport.parse(text)
        assert str(err.value) == (f"formats {text}: none means no animation files and cannot be combined with formats; "
                                  "give none alone or only the formats wanted")
    with pytest.raises(InputError, match=r"^--export none,glb: none means no animation files"):
        AnimationExport.parse("none,glb", option="--export")
    assert AnimationExport.parse("none").formats == () and AnimationExport.parse(" none, NONE ").formats == ()
    assert AnimationExport.parse("bvh,GLB, npz", exact=True) == AnimationExport(formats=("npz", "glb", "bvh"), exact=True)
    with pytest.raises(InputError, match=r"^formats gltf: unknown format gltf; choose from npz, glb, bvh, fbx, csv, angles, trc, c3d$"):
        AnimationExport.parse("gltf")
    from wbcap.cli.common import parse_export

    for text in ("", " , "):  # (wbcap image/run took it for none without a word: a user trial's `--export ''`)
        with pytest.raises(InputError) as err:
            parse_export(text, exact=False)
        assert str(err.value) == f"--export {text!r}: names no format; give formats (npz, glb, bvh, fbx, csv, angles, trc, c3d, comma-separated) or none"


@pytest.mark.parametrize("command", ["image", "run"])
def test_export_option_names_the_formats_its_errors_list(command) -> None:
    """`--export`'s metavar said glb,bvh,fbx|none while an unknown format's error listed npz too
    (which `--export npz` takes): the metavar names FORMATS, the list the errors give."""
    import importlib

    import click

    from wbcap.export.animation import FORMATS

    cmd = getattr(importlib.import_module(f"wbcap.cli.{command}"), command)
    (option,) = [p for p in cmd.params if isinstance(p, click.Option) and "--export" in p.opts]
    assert option.metavar == ",".join(FORMATS) + "|none"
    assert all(f"{f} (" in option.help for f in FORMATS), option.help


def test_fbx_key_step_keeps_rows_on_frames_at_camera_rates():
    """The FBX's rate (:func:`wbcap.export.blender_fbx.key_step`): a multiple of the clip's on whose
    frames its first row lies, whole where one is, at most 240 fps; millisecond timestamps are on
    the grid; the move said where none fits (:func:`wbcap.export.fbx.grid_shift`)."""
    from wbcap.export.blender_fbx import MAX_FRAME, MAX_KEY_RATE, key_step
    from wbcap.export.fbx import grid_shift

    assert key_step(0.1, 5.0, 1.3) == 2 and key_step(0.2, 5.0, 1.3) == 1  # --start 0.1 --every 2 of 10 fps
    assert key_step(2.0, 10 / 3, 5.0) == 3 and key_step(0.0, 10 / 3, 5.0) == 3  # whole: 10 fps, not 3.33
    assert key_step(0.0, 30000 / 1001, 9.0) == 1 and key_step(0.0, 12.5, 9.0) == 2
    assert key_step(7 * 1001 / 30000, 30000 / 1001 / 3, 60.0) == 3  # --every 3 of 29.97 fps from frame 7
    assert key_step(0.1, 5.0, MAX_FRAME / 10 + 1) == 1  # 10 fps would pass Blender's last frame
    # a constant-rate video's millisecond times (Matroska) lie on its frames: no finer rate (a review:
    # 60 fps rows from 0.117 s got a 3000 fps FBX)
    for fps in (24.0, 30.0, 50.0, 60.0, 120.0, 240.0):
        for i in range(1, 400):
            t = round(i * 1000 / fps) / 1000
            assert key_step(t, fps, t + 10.0) == 1 and grid_shift(t, fps) == 0.0, (fps, t)
    # never above 240 fps, whatever the first row (variable-rate clips' average rates; 960 fps slow
    # motion, which a 46080 fps scene clamped to 32767 made 1.4x slower)
    rng = np.random.default_rng(0)
    for t, fps in zip(rng.uniform(0.0, 100.0, 500), rng.uniform(1.0, 1000.0, 500)):
        m = key_step(float(t), float(fps), float(t) + 20.0)
        assert m == 1 or fps * m <= MAX_KEY_RATE, (t, fps, m)
    assert key_step(0.10002147766323025, 960.0, 1.0) == 1
    # every track of one run that no finer rate fits moves the same way (half way: earlier), float32
    # times too; round() took 0.5 frame down and 1.5 up: tracks 2 frames apart (a user trial)
    assert grid_shift(0.0037, 100.0) == pytest.approx(-0.0037) and key_step(0.0037, 100.0, 1.0) == 1
    for first in (0.1, 0.3, 1.1, 21.7, *(float(np.float32(t)) for t in (0.1, 0.3, 1.1, 21.7))):
        assert grid_shift(first, 5.0) == pytest.approx(-0.1, abs=1e-6), first
        assert key_step(first, 5.0, first + 2.0) == 2, first
    assert grid_shift(2.0, 10 / 3) == pytest.approx(0.1) and grid_shift(0.2, 5.0) == 0.0


def test_a_job_given_the_command_lines_export_spelling_says_how_to_make_one():
    """A docs audit: `VideoJob(export="glb,bvh")` failed with AttributeError: 'str' object has no
    attribute 'formats'; both jobs say what to give instead."""
    from wbcap.export.animation import AnimationExport
    from wbcap.image_app import ImageJob
    from wbcap.video_app import VideoJob

    for make in (lambda e: VideoJob(source="x.mp4", out="o", export=e), lambda e: ImageJob(paths=("a.jpg",), out="o",
                                                                                           export=e)):
        with pytest.raises(TypeError, match=r"export 'glb,bvh': an AnimationExport, e\.g\. AnimationExport\.parse"):
            make("glb,bvh")
        assert make(AnimationExport.parse("glb,bvh")).export.formats[-2:] == ("glb", "bvh")
