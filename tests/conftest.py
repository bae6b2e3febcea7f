"""Shared fixtures: a synthetic SMPL-X model, checkpoints with the official key names, and an
isolated user data folder so tests never read a developer's real files."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"

# A small architecture (all ResNet-18) for fast tests; the full-size model is used only in the
# few end-to-end tests that need the official checkpoint layout.
SMALL = dict(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18)


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("wbcap_home")
    monkeypatch.setenv("WBCAP_HOME", str(home))
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    # Tests never download on their own (--detector auto would fetch YOLOX); the tests of the
    # downloader serve files on 127.0.0.1 and lift this themselves.
    monkeypatch.setenv("WBCAP_OFFLINE", "1")
    monkeypatch.delenv("WBCAP_WEIGHTS_MIRROR", raising=False)
    yield


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (it is only beside the project checkout)")
    return SHARED


@pytest.fixture(scope="session")
def body_dir(tmp_path_factory) -> Path:
    """Folder with smplx/SMPLX_NEUTRAL.npz (synthetic, exact SMPL-X format)."""
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    folder = tmp_path_factory.mktemp("body_models")
    write_synthetic_smplx(folder)
    return folder


@pytest.fixture(scope="session")
def body_layer(body_dir):
    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer

    return SMPLXLayer.from_file(find_body_model("neutral", body_dir))


@pytest.fixture(scope="session")
def small_config():
    from wbcap.config import ModelConfig

    return ModelConfig(**SMALL)


@pytest.fixture(scope="session")
def small_net(small_config):
    from wbcap.testing.checkpoints import random_network

    return random_network(small_config, seed=0, upright=True)


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory, small_net) -> Path:
    """A wbcap-format checkpoint of the small network (config inside)."""
    from wbcap.model.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pth", small_net, epoch=1)


@pytest.fixture(scope="session")
def official_ckpt(tmp_path_factory) -> Path:
    """A full-size checkpoint in the released file's layout ('module.' keys), deterministic values."""
    from wbcap.testing.checkpoints import write_official_checkpoint

    return write_official_checkpoint(tmp_path_factory.mktemp("official") / "snapshot_6.pth.tar", seed=0, upright=True)


@pytest.fixture(scope="session")
def official_ckpt_raw(tmp_path_factory) -> Path:
    """Like ``official_ckpt`` but with every head left as drawn (not upright), so poses, shape,
    camera and boxes all depend on the image features (for precision tests)."""
    from wbcap.testing.checkpoints import write_official_checkpoint

    return write_official_checkpoint(tmp_path_factory.mktemp("official_raw") / "snapshot_6.pth.tar", seed=0)


@pytest.fixture()
def one_torch_thread():
    """Run the test with one torch intra-op thread (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
