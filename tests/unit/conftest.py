"""Fixtures shared by the unit tests."""

from __future__ import annotations

import asyncio

import pytest

from assay.runner.apitest.http import Exchange, make_client, send
from tests.support.http_targets import HttpTarget


@pytest.fixture(scope="module")
def fetch():
    """`fetch(path) -> Exchange`: one real GET per path against a loopback HttpTarget, cached
    for the module so the many assertion and extraction cases share each response."""
    cache: dict[str, Exchange] = {}
    with HttpTarget() as target:

        async def get(path):
            async with make_client() as client:
                return await send(client, "GET", target.url + path)

        def fetch(path):
            if path not in cache:
                cache[path] = asyncio.run(get(path))
            return cache[path]

        yield fetch
