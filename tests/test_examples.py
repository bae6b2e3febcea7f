"""The scripts in examples/ run, check their arguments first and create their output folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from wbcap.testing.images import person_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, h: int, w: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(person_image(w, h, seed=seed), cv2.COLOR_RGB2BGR))


@pytest.mark.slow  # (the fast loop keeps under 2 minutes; the full suite runs it)
def test_export_meshes_creates_missing_output_folder(tmp_path, monkeypatch, micro_ckpt, body_dir, capsys):
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(body_dir))
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    _write(tmp_path / "in" / "cam1" / "0001.jpg", 128, 96, seed=1)
    _write(tmp_path / "in" / "cam2" / "0001.jpg", 128, 96, seed=2)
    dst = tmp_path / "out" / "meshes"  # neither folder exists yet
    rc = _load("export_meshes").main([str(tmp_path / "in" / "*" / "*.jpg"), str(dst), "--detector", "full"])
    assert rc == 0
    objs = sorted(str(p.relative_to(dst)) for p in dst.rglob("*.obj"))
    assert objs == ["cam1/0001_person0.obj", "cam2/0001_person0.obj"]  # same stem, two results
    import trimesh

    mesh = trimesh.load(dst / objs[0], process=False, maintain_order=True)
    verts, faces = mesh.vertices, mesh.faces
    assert verts.shape == (10475, 3) and faces.shape == (20908, 3) and np.isfinite(verts).all()
    assert "2 mesh(es) written" in capsys.readouterr().out
    # a rerun replaces an image's meshes as a whole: an earlier run's extra person goes, other files stay
    for extra in ("cam1/0001_person1.obj", "cam1/0001_person12.obj", "cam1/0001_person1_person0.obj", "notes.txt"):
        (dst / extra).write_text("earlier")
    assert _load("export_meshes").main([str(tmp_path / "in" / "cam1" / "0001.jpg"), str(dst / "cam1"),
                                        "--detector", "full"]) == 0  # (one input: named by its stem)
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == [
        "cam1/0001_person0.obj", "cam1/0001_person1_person0.obj", "cam2/0001_person0.obj", "notes.txt"]


def test_export_meshes_checks_arguments_before_loading_the_model(tmp_path, monkeypatch, capsys):
    module = _load("export_meshes")

    def never(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(module.Pipeline, "from_files", never)
    with pytest.raises(SystemExit) as info:
        module.main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        module.main([str(tmp_path / "nope"), str(tmp_path / "out")])
    assert info.value.code == 2 and "nope" in capsys.readouterr().err
    _write(tmp_path / "a.jpg", 64, 48, seed=1)
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as info:
        module.main([str(tmp_path / "a.jpg"), str(tmp_path / "file")])
    assert info.value.code == 2 and "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # (it was said once per image, after loading the model)
        module.main([str(tmp_path / "a.jpg"), str(tmp_path / "out"), "--detector", "yolo"])
    assert info.value.code == 2 and "invalid choice: 'yolo'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_meshes_missing_model_is_one_line(tmp_path, monkeypatch, capsys):
    """No SMPL-X model or checkpoint anywhere: one usage error naming what is missing, not a
    traceback (Pipeline.from_files was outside the script's try)."""
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    _write(tmp_path / "a.jpg", 64, 48, seed=1)
    with pytest.raises(SystemExit) as info:
        _load("export_meshes").main([str(tmp_path / "a.jpg"), str(tmp_path / "out"), "--body-models", str(tmp_path / "no")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err and "error:" in err, err


def test_image_to_params_without_anybody_is_one_line(tmp_path, monkeypatch, micro_ckpt, body_dir, capsys):
    """A photo with nobody in it: one error line naming the photo and how to give boxes, exit
    status 1 (the trial's traceback); the pipeline says the detector found nobody."""
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(body_dir))
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    assert _load("image_to_params").main([str(blank), "--device", "cpu"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert err == [f"error: {blank}: no person found by the hog detector; pass boxes x,y,w,h or detector='full'"]


def test_export_meshes_names_the_image_it_skips(tmp_path, monkeypatch, micro_ckpt, body_dir, capsys):
    """An image with nobody in it was skipped as "image: no person found" (which of them? a user
    trial): the pipeline's messages name the image given as ``source``."""
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(body_dir))
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    (tmp_path / "in").mkdir()
    blank = tmp_path / "in" / "b.jpg"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    assert _load("export_meshes").main([str(tmp_path / "in"), str(tmp_path / "out"), "--detector", "hog"]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"skipped: {blank}: no person found by the hog detector; pass boxes x,y,w,h or "
                                "detector='full'"]
    assert out.endswith("0 mesh(es) written to " + str(tmp_path / "out") + "; 1 image(s) skipped\n")
