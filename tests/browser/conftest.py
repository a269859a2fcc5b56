"""The browser every test of this folder renders with: one headless Chromium per module."""

from __future__ import annotations

import pytest

from tests.browser.headless import Chromium, find_chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_chromium()
    if not binary:
        pytest.skip("chromium is not installed: run `bash hack/install-browser.sh` (make test does)")
    folder = tmp_path_factory.mktemp("chromium")
    with Chromium(binary, folder / "profile", folder / "chromium.log") as chromium:
        yield chromium
