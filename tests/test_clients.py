"""The missing-client rule of tests/clients.py: a skip normally, a failure where CI requires them."""

from __future__ import annotations

import pytest
from clients import REQUIRE_ENV, node_packages_missing, skip_or_fail


def test_missing_client_skips_or_fails(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no such client"):
        skip_or_fail("no such client")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no such client"):
        skip_or_fail("no such client")


def test_a_package_not_in_tests_js_is_reported_missing():
    reason = node_packages_missing("no-such-npm-package-wbcap")
    assert reason is not None and ("no-such-npm-package-wbcap" in reason or "node is not installed" in reason)
