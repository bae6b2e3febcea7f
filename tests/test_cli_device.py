"""`--device` is checked as it is read, before anything else runs (a model, a detector, a
download, other inputs): one line, exit status 2, in every command that has the option."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from wbcap.cli import cli

NO_CUDA = "error: --device {}: CUDA is not available on this machine; use --device cpu (or auto)\n"


@pytest.mark.parametrize("args", [
    ["image", "{photo}", "-o", "{tmp}/out"],  # (the detector was built and logged first)
    ["run", "{tmp}/nope.mp4", "-o", "{tmp}/out", "--export", "bogus"],
    ["demo", "-o", "{tmp}/out"],
    ["demo", "--video", "{tmp}/nope.mp4", "-o", "{tmp}/out"],
    ["eval", "--dataset", "EHF", "--data-root", "{tmp}"],
    ["bench", "--detect-only"],
    ["train", "body", "--datasets", "synthetic", "-o", "{tmp}/out", "--epochs", "1", "--max-steps", "1"],
], ids=["image", "run", "demo", "demo --video", "eval", "bench", "train body"])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_device_without_cuda_is_the_first_and_only_line(tmp_path, monkeypatch, args, device):
    import cv2
    import torch

    import wbcap.pipeline
    from wbcap.testing.images import person_image

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), person_image(120, 160)[:, :, ::-1])
    argv = [a.format(photo=photo, tmp=tmp_path) for a in args]
    r = CliRunner().invoke(cli, [*argv, "--device", device])
    assert (r.exit_code, r.stderr) == (2, NO_CUDA.format(device)), r.output
    assert r.stdout == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_auto_and_cpu_import_no_torch_while_parsing(device):
    """(`wbcap image --device cpu` stays instant: the check imports torch for CUDA only.) The
    command is refused for its missing PATHS, which click reads after the --device typed before
    it: the check has run (`--help` would have ended the parsing before it)."""
    import subprocess
    import sys

    code = ("import sys\nfrom wbcap.cli import main\ntry:\n"
            f"    main(['image', '--device', {device!r}])\n"
            "except SystemExit as exc:\n    assert exc.code == 2, exc.code\nassert 'torch' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "Missing argument 'PATHS...'" in r.stderr, r.stderr
