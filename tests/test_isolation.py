"""The test suite never touches the developer's real wbcap folders, also from fixtures that
pytest sets up before any function-scoped one (module and session scope)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wbcap.model import strategy
from wbcap.paths import user_cache_dir, user_data_dir


@pytest.fixture(scope="module")
def module_env():
    return {"cache": strategy.cache_path(), "data": user_data_dir(), "form": os.environ.get(strategy.ENV_STRATEGY),
            "offline": os.environ.get("WBCAP_OFFLINE")}


def _real_home_dirs() -> list[Path]:
    import platformdirs

    return [Path(platformdirs.user_cache_dir("wbcap", appauthor=False)).resolve(),
            Path(platformdirs.user_data_dir("wbcap", appauthor=False)).resolve()]


def test_module_fixtures_see_isolated_folders(module_env, tmp_path_factory):
    base = tmp_path_factory.getbasetemp().resolve()
    for key in ("cache", "data"):
        assert base in module_env[key].resolve().parents, module_env
        assert all(real not in module_env[key].resolve().parents for real in _real_home_dirs())
    # A module fixture that runs the pipeline uses the fixed CPU form and never downloads.
    assert module_env["form"] == "fused" and module_env["offline"] == "1"


def test_tests_see_their_own_folders(module_env, tmp_path_factory):
    assert user_cache_dir() != module_env["cache"].parent and user_data_dir() != module_env["data"]
    assert tmp_path_factory.getbasetemp().resolve() in user_cache_dir().resolve().parents
