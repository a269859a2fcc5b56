"""Outbound requests to URLs a tenant chose (the VNG forwarder, the openAPIinspector).

One shared client whose every connection obeys the egress policy (assay.runner.egress), a
total deadline per fetch, and a bound on how many fetches one tenant has in flight, so a
tenant pointing the gateway at a slow or trickling server holds at most its own few slots and
never the event loop, the thread pool, or anybody else's requests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx

from assay.runner import egress
from assay.runner.egress import EgressPolicy

CONNECT_TIMEOUT_SECONDS = 10.0


class OutboundBusy(Exception):
    """The tenant already has its maximum of outbound fetches in flight."""


class OutboundTooLarge(Exception):
    """An answer larger than the caller's cap."""


class Outbound:
    def __init__(self, policy: EgressPolicy, *, per_tenant: int, deadline_seconds: float):
        self.policy = policy
        self.per_tenant = per_tenant
        self.deadline_seconds = deadline_seconds
        self.client = egress.async_client(
            policy, follow_redirects=False, timeout=httpx.Timeout(deadline_seconds, connect=CONNECT_TIMEOUT_SECONDS)
        )
        self._in_flight: Counter[str] = Counter()

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """One of `tenant`'s fetches, within the total deadline (TimeoutError past it)."""
        if self._in_flight[tenant] >= self.per_tenant:
            raise OutboundBusy(f"at most {self.per_tenant} outbound requests at once per project")
        self._in_flight[tenant] += 1
        try:
            async with asyncio.timeout(self.deadline_seconds):
                yield
        finally:
            self._in_flight[tenant] -= 1
            if not self._in_flight[tenant]:
                del self._in_flight[tenant]

    @staticmethod
    async def read_capped(reply: httpx.Response, cap: int) -> bytes:
        """A streamed answer's body, refused past `cap` bytes without reading the rest."""
        declared = reply.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise OutboundTooLarge(cap)
        body = bytearray()
        async for chunk in reply.aiter_bytes():  # decoded: a compressed bomb is cut too
            body += chunk
            if len(body) > cap:
                raise OutboundTooLarge(cap)
        return bytes(body)

    async def aclose(self) -> None:
        await self.client.aclose()
