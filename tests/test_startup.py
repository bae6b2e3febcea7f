"""What one photo costs before its first pixel (issue 14): no heavy import to build a pipeline,
the OpenGL platform read from a per-machine cache instead of probed by child processes, and the
fused network built without an extra channels_last copy (same outputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from clients import skip_or_fail

from wbcap.export import _gl

#: Never needed to build a pipeline (rendering imports pyrender lazily, on its first render).
HEAVY = ("torch._dynamo", "torch._inductor", "pyrender", "trimesh", "networkx", "pyglet")


@pytest.mark.slow  # a fresh process; fast loop kept under 2 minutes
def test_building_a_pipeline_imports_nothing_heavy(tmp_path, micro_ckpt, body_dir):
    code = f"""
        import json, sys
        from wbcap.config import BodyModelConfig, PipelineConfig
        from wbcap.pipeline import Pipeline
        Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path={str(body_dir)!r}),
                                            checkpoint={str(micro_ckpt)!r}, device="cpu"))
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WBCAP_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@pytest.fixture()
def probes(monkeypatch, tmp_path):
    """The platform choice with a fresh process cache and disk cache, and a recorded fake probe."""
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(_gl.ENV_PLATFORM, raising=False)
    # as in a fresh process: OpenGL not imported yet (earlier tests may have rendered), so the
    # choice is written to PYOPENGL_PLATFORM (restored after the test)
    monkeypatch.delitem(sys.modules, "OpenGL", raising=False)
    monkeypatch.setattr(_gl, "_candidates", lambda: ["egl", "osmesa"])
    calls: list[str] = []
    works = {"egl": False, "osmesa": True}
    monkeypatch.setattr(_gl, "_probe", lambda p: calls.append(p) or works[p])
    _gl._reset_for_tests()
    yield calls, works
    _gl._reset_for_tests()
    os.environ.pop(_gl.ENV_PLATFORM, None)


@pytest.mark.slow  # real OpenGL probes in child processes (fast loop under 2 minutes)
def test_a_probe_answers_the_same_from_a_working_folder_deleted_meanwhile(tmp_path, monkeypatch):
    """The probe's child ran in the working folder: deleted meanwhile, the child failed and its
    "no OpenGL" was kept for the machine, so every later run rendered in software (an admin's
    trial). It runs from the root folder now."""

    works = next((p for p in _gl._candidates() if _gl._probe(p)), None)
    if works is None:
        skip_or_fail("no OpenGL platform renders here (EGL or OSMesa)")
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert _gl._probe(works) is True


def test_platform_is_probed_once_per_machine_then_read_from_disk(probes):
    calls, _ = probes
    assert _gl.select_gl_platform() == "osmesa" and calls == ["egl", "osmesa"]
    assert json.loads(_gl.cache_file().read_text())["platform"] == "osmesa"
    _gl._reset_for_tests()  # a new process: read from the disk cache, no probing child
    assert _gl.select_gl_platform() == "osmesa" and calls == ["egl", "osmesa"]
    assert os.environ[_gl.ENV_PLATFORM] == "osmesa"


def test_none_works_is_cached_too_and_a_broken_or_forgotten_cache_means_probing(probes):
    calls, works = probes
    works["osmesa"] = False
    assert _gl.select_gl_platform() is None and len(calls) == 2
    _gl._reset_for_tests()
    assert _gl.select_gl_platform() is None and len(calls) == 2  # "none" read back
    _gl.cache_file().write_text("{not json")
    _gl._reset_for_tests()
    works["osmesa"] = True
    assert _gl.select_gl_platform() == "osmesa" and len(calls) == 4
    _gl.forget_cached_platform()
    assert not _gl.cache_file().exists()


def test_nothing_is_cached_after_an_unanswered_probe(probes):
    calls, works = probes
    works["egl"], works["osmesa"] = None, False  # egl timed out, osmesa said no
    assert _gl.select_gl_platform() is None and calls == ["egl", "osmesa"]
    assert not _gl.cache_file().exists()
    _gl._reset_for_tests()  # egl timed out again; osmesa works: used, but not cached
    works["osmesa"] = True
    assert _gl.select_gl_platform() == "osmesa" and calls == ["egl", "osmesa", "egl", "osmesa"]
    assert not _gl.cache_file().exists()
    _gl._reset_for_tests()  # the next process asks again, and egl answers this time: cached
    works["egl"] = True
    assert _gl.select_gl_platform() == "egl" and calls[-1] == "egl"
    assert json.loads(_gl.cache_file().read_text())["platform"] == "egl"


def test_another_setup_is_another_key(probes, monkeypatch):
    calls, _ = probes
    _gl.select_gl_platform()
    _gl._reset_for_tests()
    monkeypatch.setattr(_gl, "_candidates", lambda: ["osmesa"])  # e.g. the user set PYOPENGL_PLATFORM
    assert _gl.select_gl_platform() == "osmesa" and calls == ["egl", "osmesa", "osmesa"]


def test_a_setting_that_breaks_opengl_is_another_key(probes, monkeypatch):
    """One run with EGL's vendor files pointed nowhere kept "no platform works" for every later
    run without it (a break-it trial): the loader's variables are part of the key."""
    calls, works = probes
    works["osmesa"] = False
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexist.json")
    assert _gl.select_gl_platform() is None and calls == ["egl", "osmesa"]
    works["egl"] = True
    monkeypatch.delenv("__EGL_VENDOR_LIBRARY_FILENAMES")
    _gl._reset_for_tests()  # (the next process, without the setting: it probes again, and egl works)
    assert _gl.select_gl_platform() == "egl" and calls == ["egl", "osmesa", "egl"]
    for name in ("LIBGL_DRIVERS_PATH", "LD_LIBRARY_PATH"):
        assert name in _gl.GL_ENVIRONMENT


def test_no_platform_found_under_too_few_open_files_is_not_kept_and_said_so(probes, monkeypatch, caplog):
    """Under `ulimit -n 12` the probes' children could not open EGL's libraries: "none works" was
    kept for every later run, and the warning said to install EGL (a break-it trial). It is not
    kept, and the warning names the limit."""
    import logging

    import wbcap.limits
    from wbcap.export import render as render_mod

    calls, works = probes
    works["osmesa"] = False
    monkeypatch.setattr(wbcap.limits, "open_files_limit", lambda: 12)
    monkeypatch.setattr(render_mod, "_warned_software", False)
    with caplog.at_level(logging.WARNING, logger="wbcap.export.render"):
        assert render_mod.render_backend("auto") == "software"
    assert not _gl.cache_file().exists() and calls == ["egl", "osmesa"]
    assert [r.getMessage() for r in caplog.records] == [
        "no OpenGL platform could be tried, as this process may have only 12 files open at once; using the software "
        "renderer (raise the limit: ulimit -n 4096)"]
    monkeypatch.setattr(wbcap.limits, "open_files_limit", lambda: 1024)
    _gl._reset_for_tests()
    assert _gl.select_gl_platform() is None and json.loads(_gl.cache_file().read_text())["platform"] is None


@pytest.mark.slow  # fresh processes or pipelines built (the fast loop stays under 2 minutes)
def test_opengls_failure_is_one_short_line(probes, monkeypatch, caplog):
    """PyOpenGL's GLError printed as a dozen lines of tabs and object addresses in the warning
    (a break-it trial under a memory limit): its code and call, one line. (PyOpenGL's own class
    in a child process: imported here, with the probes' OpenGL taken out of this one, it would
    leave this process's OpenGL half imported for later tests.)"""
    import logging
    import subprocess

    from wbcap.export import render as render_mod

    code = ("from OpenGL.error import GLError\nfrom wbcap.export.render import gl_error_summary\n"
            "def eglInitialize(): pass\n"
            "e = GLError(err=12289, baseOperation=eglInitialize, cArguments=(object(), None, None))\n"
            "print(repr(str(e).count(chr(10))), gl_error_summary(e))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    lines, summary = child.stdout.strip().split(" ", 1)
    assert int(lines) > 5 and summary == "GLError 12289 in eglInitialize", child.stderr

    def eglInitialize():  # (named as EGL's call)
        pass

    class GLError(Exception):  # (PyOpenGL's attributes and text's shape)
        def __init__(self):
            super().__init__("GLError(\n\terr = 12289,\n\tbaseOperation = eglInitialize,\n)")
            self.err, self.baseOperation = 12289, eglInitialize

    monkeypatch.setattr(render_mod, "render_backend", lambda backend=None: "pyrender-egl")
    monkeypatch.setattr(render_mod, "_render_pyrender", lambda *a, **k: (_ for _ in ()).throw(GLError()))
    tri = np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.0, 0.1, 1.0]])
    with caplog.at_level(logging.WARNING, logger="wbcap.export.render"):
        render_mod.render_meshes(np.zeros((40, 30, 3), np.uint8), [tri], np.array([[0, 1, 2]]), (50.0, 50.0), (15.0, 20.0))
    said = [r.getMessage() for r in caplog.records if "OpenGL" in r.getMessage()]
    assert said == ["OpenGL rendering failed (GLError 12289 in eglInitialize); this process renders in software from "
                    "now on, the next run looks for a working platform again"]
    assert render_mod.gl_error_summary(ValueError("first\nsecond")) == "ValueError: first"
    assert len(render_mod.gl_error_summary(ImportError("x" * 500))) == render_mod.GL_ERROR_SUMMARY_MAX


def test_no_opengl_names_the_cache_only_where_the_answer_was_kept(probes, monkeypatch, caplog):
    """"the answer is kept in .../gl_platform.json: delete it to look again" was said where the
    file could not be written (a break-it trial: out of file descriptors)."""
    import logging

    from wbcap.export import render as render_mod

    calls, works = probes
    works["osmesa"] = False
    real_write = _gl._write_cache
    for writable in (False, True):
        _gl._reset_for_tests()
        monkeypatch.setattr(render_mod, "_warned_software", False)
        monkeypatch.setattr(_gl, "_write_cache", real_write if writable else lambda key, platform: None)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wbcap.export.render"):
            assert render_mod.render_backend("auto") == "software"
        (said,) = [r.getMessage() for r in caplog.records]
        assert ("the answer is kept in" in said) == writable and _gl.cache_file().is_file() == writable, said


def test_a_failing_gl_render_falls_back_to_software_and_forgets_the_platform(probes, monkeypatch, caplog):
    from wbcap.export import render as render_mod

    render_backend = render_mod.render_backend
    _gl.select_gl_platform()
    assert _gl.cache_file().exists()
    monkeypatch.setattr(render_mod, "render_backend", lambda backend=None: "pyrender-osmesa")
    monkeypatch.setattr(render_mod, "_render_pyrender", lambda *a: (_ for _ in ()).throw(RuntimeError("no EGL")))
    image = np.zeros((40, 30, 3), np.uint8)
    tri = np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.0, 0.1, 1.0]])
    out = render_mod.render_meshes(image, [tri], np.array([[0, 1, 2]]), (50.0, 50.0), (15.0, 20.0))
    want = render_mod.render_meshes(image, [tri], np.array([[0, 1, 2]]), (50.0, 50.0), (15.0, 20.0), backend="software")
    np.testing.assert_array_equal(out, want)
    assert not _gl.cache_file().exists() and "renders in software from now on" in caplog.text
    # once per process: the next frame goes straight to software, without trying GL or warning again
    caplog.clear()
    assert _gl.select_gl_platform() is None
    monkeypatch.setattr(render_mod, "render_backend", render_backend)
    again = render_mod.render_meshes(image, [tri], np.array([[0, 1, 2]]), (50.0, 50.0), (15.0, 20.0))
    np.testing.assert_array_equal(again, want)
    assert "OpenGL" not in caplog.text
    _gl._reset_for_tests()


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_fused_pipeline_skips_the_nhwc_copy_with_the_same_outputs(micro_ckpt, body_dir):
    """Building the fused form straight from the checkpoint's weights (no channels_last copy
    first) gives bit for bit the network of the old order (NHWC copy, then fusing)."""
    import torch

    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.detect.base import Detection
    from wbcap.pipeline import Pipeline
    from wbcap.testing.images import person_image

    cfg = PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt), device="cpu")
    direct = Pipeline.from_config(cfg)
    old_order = Pipeline.from_config(cfg, optimize=False)  # NHWC copy made in the constructor
    old_order.optimize()
    image = person_image(192, 256)
    jobs = direct.crop(image, [Detection((20.0, 10.0, 150.0, 230.0), 1.0)])
    a, b = direct.regress(jobs)[0], old_order.regress(jobs)[0]
    np.testing.assert_array_equal(a.vertices, b.vertices)
    for k, v in a.params.to_axis_angle().items():
        assert torch.equal(v, b.params.to_axis_angle()[k]), k


@pytest.mark.slow  # fresh processes; fast loop kept under 2 minutes
def test_the_renderer_is_imported_ahead_in_a_thread_unless_software_is_asked_for(tmp_path):
    """wbcap run's pass 2 imports pyrender in a thread (render.import_renderer_in_background);
    the software renderer needs no import; once imported there is nothing to do."""
    code = """
        import json, sys
        from wbcap.export.render import import_renderer_in_background
        thread = import_renderer_in_background()
        if thread is not None:
            thread.join(120)
        again = import_renderer_in_background()
        print(json.dumps([thread is not None, thread is not None and thread.name, "pyrender" in sys.modules,
                          again is None]))
    """
    home = str(tmp_path / "home")
    answers = {}
    for renderer in ("auto", "software"):
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "WBCAP_HOME": home, "WBCAP_RENDERER": renderer})
        assert proc.returncode == 0, proc.stderr[-2000:]
        answers[renderer] = json.loads(proc.stdout.strip().splitlines()[-1])
    gl = _gl.select_gl_platform() is not None
    assert answers["auto"] == [True, "wbcap-import-renderer", gl, gl]
    assert answers["software"] == [False, False, False, True]


@pytest.mark.slow  # fresh processes; fast loop kept under 2 minutes
def test_vertex_normals_while_the_renderer_is_imported_ahead(tmp_path):
    """wbcap run's main thread computes vertex normals (trimesh) for the GLB files while the
    thread above imports pyrender (which imports trimesh): CPython 3.11 failed the second import
    with KeyError: 'trimesh' in about two of three runs timed like this (found by a user's
    --resume run), before both imports went under one lock (_gl.import_module)."""
    code = """
        import sys, time
        import numpy as np
        from wbcap.export.render import import_renderer_in_background, vertex_normals
        thread = import_renderer_in_background()
        if sys.argv[1] == "join" and thread is not None:
            thread.join(120)  # (the GL platform is cached on disk once its probe ends)
        time.sleep(0 if sys.argv[1] == "join" else float(sys.argv[1]))
        n = vertex_normals(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2]]))
        print(n.tolist())
    """
    env = {**os.environ, "WBCAP_HOME": str(tmp_path / "home")}
    for delay in ("join", 0.05, 0.2):  # (0.1 and 0.3 too before: the suite's 6 minutes)
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(delay)], capture_output=True, text=True,
                              timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[0.0, 0.0, 1.0]] * 3


def test_dir_of_the_package_names_its_lazy_attributes():
    """A user trial: ``dir(wbcap)`` (tab completion) missed ``Pipeline``, which loads on first use."""
    import wbcap

    assert {"Pipeline", "__version__"} <= set(dir(wbcap)) and "annotations" in dir(wbcap)
    assert wbcap.Pipeline.__name__ == "Pipeline"
