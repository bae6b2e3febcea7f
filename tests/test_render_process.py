"""Rendering in a child process (wbcap.export.render_process) and the console script's quick exit:
the child draws exactly what rendering here draws, failures fall back to rendering here, and
``wbcap image`` in a fresh process renders through the child without importing pyrender itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from clients import skip_or_fail

from wbcap.export.render import render_backend, render_meshes
from wbcap.export.render_process import RenderProcess

FOCAL, PRINCPT = (60.0, 60.0), (31.5, 23.5)


def _scene():
    """Two offset triangles facing the camera, in front of a gradient image (H=48, W=64)."""
    image = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (48, 1, 3))
    tri = np.array([[-0.3, -0.25, 1.5], [0.3, -0.2, 1.5], [0.0, 0.3, 1.6]])
    faces = np.array([[0, 2, 1]])
    return image, [tri, tri + (0.1, 0.05, 0.4)], faces


def _backends() -> list[str]:
    return ["software", "pyrender"] if render_backend("auto").startswith("pyrender") else ["software"]


@pytest.mark.parametrize("backend", ["software", pytest.param("pyrender", marks=pytest.mark.slow)])
def test_the_child_draws_what_rendering_here_draws(backend):
    if backend not in _backends():
        skip_or_fail("no OpenGL platform (EGL/OSMesa) works here")
    image, meshes, faces = _scene()
    colors = [(0.9, 0.2, 0.2), (0.2, 0.9, 0.2)]
    with RenderProcess(backend) as proc:
        for alpha in (1.0, 0.5):
            got = proc.render_meshes(image, meshes, faces, FOCAL, PRINCPT, colors=colors, alpha=alpha)
            assert proc.alive, "the child failed and the call fell back to rendering here"
            want = render_meshes(image, meshes, faces, FOCAL, PRINCPT, colors=colors, alpha=alpha, backend=backend)
            np.testing.assert_array_equal(got, want)
        assert (got != image).any()  # something was drawn
    assert not proc.alive


def test_a_dead_child_means_rendering_here(monkeypatch):
    image, meshes, faces = _scene()
    proc = RenderProcess("software")
    proc._proc.kill()
    proc._proc.wait()
    got = proc.render_meshes(image, meshes, faces, FOCAL, PRINCPT)
    np.testing.assert_array_equal(got, render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="software"))
    assert not proc.alive
    proc.close()


def test_bad_arguments_raise_as_rendering_here_does_and_the_child_stays():
    image, meshes, faces = _scene()
    with RenderProcess("software") as proc:
        with pytest.raises(ValueError, match="uint8"):
            proc.render_meshes(image.astype(np.float32), meshes, faces, FOCAL, PRINCPT)
        assert proc.alive
        np.testing.assert_array_equal(proc.render_meshes(image, meshes, faces, FOCAL, PRINCPT),
                                      render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="software"))


@pytest.mark.slow  # a child process each
def test_a_child_that_takes_no_request_times_out(monkeypatch):
    """A child stuck before reading (e.g. in a GL driver) cannot block the command: a request
    larger than the pipe's buffer is given up after REPLY_TIMEOUT_S and drawn here."""
    from wbcap.export import render_process

    monkeypatch.setattr(render_process, "REPLY_TIMEOUT_S", 1.0)
    image = np.zeros((480, 640, 3), np.uint8)  # 900 KB: far more than a pipe holds
    _, meshes, faces = _scene()
    proc = RenderProcess("software")
    proc._proc.kill()
    proc._proc.wait()
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    proc._proc = stuck
    got = proc.render_meshes(image, meshes, faces, FOCAL, PRINCPT)
    np.testing.assert_array_equal(got, render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="software"))
    assert not proc.alive
    assert stuck.returncode == -signal.SIGKILL  # given up on and killed, not waited for


@pytest.mark.slow  # a child process each
def test_a_child_that_stops_half_way_through_a_reply_times_out(monkeypatch):
    """The timeout covers the whole reply, not just its first byte."""
    from wbcap.export import render_process

    monkeypatch.setattr(render_process, "REPLY_TIMEOUT_S", 1.0)
    image, meshes, faces = _scene()
    proc = RenderProcess("software")
    proc._proc.kill()
    proc._proc.wait()
    half = ("import sys, time; sys.stdout.buffer.write((1000).to_bytes(8, 'little') + b'x' * 10); "
            "sys.stdout.buffer.flush(); time.sleep(600)")
    stuck = subprocess.Popen([sys.executable, "-c", half], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc._proc = stuck
    got = proc.render_meshes(image, meshes, faces, FOCAL, PRINCPT)
    np.testing.assert_array_equal(got, render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="software"))
    assert not proc.alive and stuck.returncode == -signal.SIGKILL


@pytest.mark.slow  # a child process each
def test_the_child_ignores_the_current_folder_and_the_terminal(tmp_path, monkeypatch):
    """A stray numpy.py where the command runs does not shadow the real one in the child, and the
    child has its own session (Ctrl-C in the terminal reaches only the command)."""
    (tmp_path / "numpy.py").write_text("raise ImportError('the shadowing numpy.py was imported')\n")
    monkeypatch.chdir(tmp_path)
    image, meshes, faces = _scene()
    with RenderProcess("software") as proc:
        assert os.getsid(proc._proc.pid) != os.getsid(0)
        got = proc.render_meshes(image, meshes, faces, FOCAL, PRINCPT)
        assert proc.alive, "the child died (and the call fell back to rendering here)"
    np.testing.assert_array_equal(got, render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="software"))


@pytest.mark.slow  # a child process each
def test_the_childs_log_records_keep_their_logger_names(caplog, monkeypatch):
    """Records come back under their own loggers, so the command's per-logger levels apply (the
    CLI keeps OpenGL's INFO lines quiet)."""
    import logging

    from wbcap.export import render_process

    image, meshes, faces = _scene()
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(logging.getLogger("OpenGL"), "level", logging.WARNING)
    real = render_process._receive

    def receive(stream, timeout=None):  # the child's real reply, with two records added
        reply = real(stream, timeout)
        reply["log"] = np.array(["OpenGL.acceleratesupport\t20\tNo OpenGL_accelerate module loaded",
                                 "wbcap.x\t30\ta warning\twith a tab"])
        return reply

    monkeypatch.setattr(render_process, "_receive", receive)
    with RenderProcess("software") as proc:
        proc.render_meshes(image, meshes, faces, FOCAL, PRINCPT)
        assert proc.alive
    names = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("wbcap.x", 30, "a warning\twith a tab") in names
    assert not [n for n in names if n[0].startswith("OpenGL")]


@pytest.mark.slow  # (the fast loop keeps under 2 minutes; the full suite runs it)
def test_no_child_where_it_saves_nothing_or_is_refused(monkeypatch):
    from wbcap.errors import InputError

    monkeypatch.setenv("WBCAP_RENDER_PROCESS", "1")
    monkeypatch.setenv("WBCAP_RENDERER", "software")
    assert RenderProcess.start_if_useful() is None
    monkeypatch.delenv("WBCAP_RENDERER")
    monkeypatch.setitem(sys.modules, "pyrender", sys.modules.get("pyrender", object()))
    assert RenderProcess.start_if_useful() is None
    monkeypatch.delitem(sys.modules, "pyrender")
    monkeypatch.setenv("WBCAP_RENDER_PROCESS", "0")
    assert RenderProcess.start_if_useful() is None
    monkeypatch.setenv("WBCAP_RENDER_PROCESS", "yes")
    with pytest.raises(InputError, match="WBCAP_RENDER_PROCESS=yes"):
        RenderProcess.start_if_useful()
    from wbcap.image_app import ImageJob, run_images

    with pytest.raises(InputError, match="WBCAP_RENDER_PROCESS=yes"):  # also with a ready pipeline (no child)
        run_images(ImageJob(paths=("never-read.jpg",), out="never-written"), pipeline=object())
    monkeypatch.setenv("WBCAP_RENDER_PROCESS", "1")
    monkeypatch.setenv("WBCAP_RENDERER", "auto")
    image, meshes, faces = _scene()
    with RenderProcess.start_if_useful(sizes=[(48, 64)]) as proc:
        got = proc.render_meshes(image, meshes, faces, FOCAL, PRINCPT)
        assert proc.alive  # drawn by the child, not here
    np.testing.assert_array_equal(got, render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="auto"))


@pytest.mark.slow
def test_image_in_a_fresh_process_renders_through_the_child(tmp_path, micro_ckpt, body_dir):
    """run_images as ``wbcap image`` runs it: renders come from the child (pyrender never imported
    here), and they equal the renders of the same photo drawn in this process."""
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.image_app import ImageJob, run_images
    from wbcap.testing.images import person_image

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(person_image(160, 200), cv2.COLOR_RGB2BGR))
    box = (40.0, 20.0, 80.0, 170.0)
    code = f"""
        import json, sys
        from wbcap.config import BodyModelConfig, PipelineConfig
        from wbcap.image_app import ImageJob, run_images
        job = ImageJob(paths=({str(photo)!r},), out={str(tmp_path / "child")!r}, boxes=({box!r},),
                       pipeline=PipelineConfig(body=BodyModelConfig(path={str(body_dir)!r}),
                                               checkpoint={str(micro_ckpt)!r}, device="cpu"))
        res = run_images(job)
        print(json.dumps([res[0].people, res[0].error, "pyrender" in sys.modules, "trimesh" in sys.modules]))
    """
    env = {**os.environ, "WBCAP_HOME": str(tmp_path / "home"), "WBCAP_RENDER_PROCESS": "1"}
    env.pop("WBCAP_RENDERER", None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [1, None, False, False]
    job = ImageJob(paths=(str(photo),), out=str(tmp_path / "here"), boxes=(box,),
                   pipeline=PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt),
                                           device="cpu"))
    assert run_images(job)[0].people == 1
    for name in ("render_original_img.jpg", "render_cropped_img.jpg"):
        child = cv2.imread(str(tmp_path / "child" / "photo" / "person_0" / name))
        here = cv2.imread(str(tmp_path / "here" / "photo" / "person_0" / name))
        assert child is not None and here is not None
        np.testing.assert_array_equal(child, here)


def _script(body: str, tmp_path) -> subprocess.CompletedProcess:
    """Run ``body`` as a script file in ``tmp_path`` (a file: spawned processes import it)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_quick_exit_flushes_output_skips_teardown_and_keeps_the_code(tmp_path):
    proc = _script("""
        import atexit, logging, logging.handlers, pathlib, sys
        from wbcap.cli import exit_without_finalising
        atexit.register(lambda: pathlib.Path("atexit_ran").write_text("yes"))
        # buffered until logging.shutdown() flushes it
        target = logging.FileHandler("log.txt")
        logging.getLogger().addHandler(logging.handlers.MemoryHandler(100, flushLevel=logging.CRITICAL, target=target))
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("x").info("logged")
        print("printed", end="")
        sys.stderr.write("to stderr")
        exit_without_finalising(3)
        print("never")
    """, tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "printed", "to stderr")
    assert "logged" in (tmp_path / "log.txt").read_text()
    assert not (tmp_path / "atexit_ran").exists()  # the interpreter's teardown was skipped
    proc = _script("from wbcap.cli import exit_without_finalising\nexit_without_finalising('bad thing')", tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (1, "bad thing")


@pytest.mark.parametrize("what", ["thread", "process"])
def test_quick_exit_waits_for_threads_and_processes_that_would_be_joined(tmp_path, what):
    start = {"thread": "threading.Thread(target=work).start()",
             "process": "multiprocessing.get_context('spawn').Process(target=work).start()"}[what]
    proc = _script(f"""
        import atexit, multiprocessing, pathlib, threading, time
        from wbcap.cli import exit_without_finalising
        def work():
            time.sleep(0.3)
            pathlib.Path("done").write_text("yes")
        if __name__ == "__main__":
            atexit.register(lambda: pathlib.Path("atexit_ran").write_text("yes"))
            {start}
            exit_without_finalising(0)
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "done").read_text() == "yes"
    assert (tmp_path / "atexit_ran").exists()  # the normal exit, which joins it


def test_console_script_exits_as_click_does(tmp_path):
    run = [sys.executable, "-c", "import sys; from wbcap.cli import console_main; sys.argv[0] = 'wbcap'; console_main()"]
    proc = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "wbcap" in proc.stdout
    missing = tmp_path / "missing.jpg"
    proc = subprocess.run([*run, "image", str(missing), "-o", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "WBCAP_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:") and "missing.jpg" in proc.stderr
    proc = subprocess.run([*run, "image", "--no-such-option"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "No such option" in proc.stderr


# (pyrender's own read-back, the reference here, calls PyOpenGL's deprecated tostring())
@pytest.mark.filterwarnings("ignore:tostring\\(\\) is deprecated:DeprecationWarning")
def test_colour_only_readback_reads_what_pyrender_reads():
    """wbcap's renderer skips pyrender's depth read-back; the colour it reads is pyrender's."""
    if "pyrender" not in _backends():
        skip_or_fail("no OpenGL platform (EGL/OSMesa) works here")
    from wbcap.export import render

    image, meshes, faces = _scene()
    render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="pyrender")
    if not render._renderer._platform.supports_framebuffers():
        skip_or_fail("this GL platform (OSMesa) has no framebuffer objects: pyrender's own read-back")
    render._renderer._platform.make_current()
    inner = render._renderer._renderer
    assert "_read_main_framebuffer" in vars(inner)  # the instance's own method is in place
    pyrender = sys.modules["pyrender"]
    flags = pyrender.RenderFlags.RGBA | pyrender.RenderFlags.OFFSCREEN
    ours, no_depth = inner._read_main_framebuffer(None, flags)
    scene = type("Scene", (), {})()  # pyrender's own method needs the camera's planes for its depth
    scene.main_camera_node = type("Node", (), {"camera": type("Cam", (), {"znear": 0.05, "zfar": 100.0})()})()
    stock, depth = type(inner)._read_main_framebuffer(inner, scene, flags)
    assert no_depth is None and depth.shape == stock.shape[:2]
    np.testing.assert_array_equal(ours, stock)
    assert ours.shape == (48, 64, 4) and ours[..., 3].any()


def test_one_sample_per_pixel_differs_only_along_edges():
    """multisample=False (video frames) draws the same picture with hard edges: pixels inside
    the triangles and the background match the 4x multisampled render."""
    if "pyrender" not in _backends():
        skip_or_fail("no OpenGL platform (EGL/OSMesa) works here")
    from wbcap.export import render

    image, meshes, faces = _scene()
    smooth = render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="pyrender")
    if not render._renderer._platform.supports_framebuffers():
        skip_or_fail("this GL platform (OSMesa) has no framebuffer objects: one sample per pixel always")
    hard = render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="pyrender", multisample=False)
    again = render_meshes(image, meshes, faces, FOCAL, PRINCPT, backend="pyrender")  # switching back
    np.testing.assert_array_equal(again, smooth)
    differ = (np.abs(hard.astype(int) - smooth.astype(int)).max(axis=-1) > 2)
    edges = np.zeros(image.shape[:2], bool)  # each triangle's outline, one pixel either side
    for mesh in meshes:
        drawn = (render_meshes(image, [mesh], faces, FOCAL, PRINCPT, backend="pyrender") != image).any(axis=-1)
        line = drawn ^ cv2.erode(drawn.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        edges |= cv2.dilate(line.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert differ.any() and not (differ & ~edges).any()
    drawn = (smooth != image).any(axis=-1)
    assert ((hard != image).any(axis=-1) == drawn).mean() > 0.97


def test_quick_exit_with_a_closed_stream(tmp_path):
    """`wbcap ... >&-` (no stdout at all): said as a stdout that cannot be written (exit 2, the
    result repeated on stderr: a locale trial lost results with exit 0); `2>&-`: the command's own
    exit code; no traceback either way."""
    code = "import sys; from wbcap.cli import console_main; sys.argv = ['wbcap', '--version']; console_main()"
    for closed in (">&-", "2>&-"):
        proc = subprocess.run(f"{sys.executable} -c \"{code}\" {closed}", shell=True, capture_output=True,
                              text=True, timeout=120)
        if closed == "2>&-":  # stdout still gets the version
            assert proc.returncode == 0 and "wbcap" in proc.stdout.lower(), (proc.stdout, proc.stderr)
        else:
            assert proc.returncode == 2 and proc.stderr == ("error: could not write to standard output (Bad file "
                                                            "descriptor); the result was: wbcap, version 0.1.0\n")


def test_an_interrupt_while_importing_is_not_a_missing_package():
    from wbcap.detect.yolox import _reraise_interrupt

    try:
        raise ImportError("initialization failed") from KeyboardInterrupt()
    except ImportError as exc:
        with pytest.raises(KeyboardInterrupt):
            _reraise_interrupt(exc)
    _reraise_interrupt(ImportError("No module named 'onnxruntime'"))  # really missing: nothing raised
