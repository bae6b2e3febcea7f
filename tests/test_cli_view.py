"""`wbcap view OUT --open` where no web browser can be opened: one warning line with the address
(the server stubbed: tests/test_view.py serves real pages)."""

from __future__ import annotations

import contextlib
import webbrowser
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from wbcap.cli import cli

URL = "http://127.0.0.1:8123/index.html"


@pytest.fixture()
def served(monkeypatch):
    """`wbcap view` serves a stub server that stops at once."""
    import wbcap.view.site

    @contextlib.contextmanager
    def serve_view(job):
        yield SimpleNamespace(url=URL, wait=lambda: None)

    monkeypatch.setattr(wbcap.view.site, "serve_view", serve_view)


def _no_browser(url):
    return False


def _browser_error(url):
    raise webbrowser.Error("could not locate runnable browser")


@pytest.mark.parametrize("browser", [_no_browser, _browser_error], ids=["none found", "webbrowser.Error"])
@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["", "-q"])
def test_open_without_a_browser_says_so_with_the_address(tmp_path, monkeypatch, served, browser, quiet):
    monkeypatch.setattr(webbrowser, "open", browser)
    r = CliRunner().invoke(cli, [*quiet, "view", str(tmp_path), "--open"])
    assert r.exit_code == 0, r.output
    assert r.stdout == f"wbcap view: {URL}  (Ctrl-C to stop)\n"
    assert r.stderr == (f"WARNING  --open: no web browser could be opened on this machine; open {URL} in one (from "
                        "another machine: ssh -L 8123:127.0.0.1:8123 <this machine>, then the same address there)\n")


def test_open_with_a_browser_is_silent(tmp_path, monkeypatch, served):
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    r = CliRunner().invoke(cli, ["view", str(tmp_path), "--open"])
    assert r.exit_code == 0 and r.stderr == "" and opened == [URL], r.output


def test_a_taken_port_is_said_before_the_site_is_built(tmp_path, monkeypatch):
    """`wbcap view --port N` with N taken built the site for seconds before saying so (a user
    trial): the port is bound first."""
    import socket

    import wbcap.view.site as site
    from wbcap.errors import InputError

    def built(job, folder, link):
        raise AssertionError("the site was built before the port was taken")

    monkeypatch.setattr(site, "build_site", built)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=rf"^port {port}: cannot serve on 127.0.0.1 \("), \
                site.serve_view(site.ViewJob(out=str(tmp_path), port=port)):
            pass
