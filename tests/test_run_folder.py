"""wbcap.io.run_folder: the rule for paths recorded in ``run.json`` and the resume of a run."""

from __future__ import annotations

import os

from wbcap.io.run_folder import absolute_path, same_path


def test_same_path_matches_the_same_file_by_any_spelling_and_an_older_record_as_typed(tmp_path, monkeypatch):
    """A recorded absolute path matches any spelling of it (a link too); an older run's path as
    typed matches the same spelling, or what it resolves to from here; another file never."""
    (tmp_path / "models").mkdir()
    (tmp_path / "other").mkdir()
    os.symlink(tmp_path / "models", tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    now = absolute_path("./models")
    assert now == str(tmp_path / "models")
    assert same_path(str(tmp_path / "models"), "./models", now)
    assert same_path(str(tmp_path / "link"), "./models", now)  # (links followed)
    assert same_path("models", "./models", now)  # an older run: resolves here to the same folder
    assert same_path("elsewhere/models", "elsewhere/models", absolute_path("elsewhere/models"))  # as typed
    assert not same_path(str(tmp_path / "other"), "./models", now)
    assert not same_path("other", "other/../models", now)
    assert same_path(None, None, None)
    assert not same_path(None, "models", now) and not same_path(str(tmp_path / "models"), None, None)
    assert not same_path(7, "models", now)
