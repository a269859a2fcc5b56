"""The first-cut load engine: a fixed amount of work per shard, counted exactly.

Each shard runs its share of the virtual users; each user runs its flows `iterations` times
(or until `duration` has passed) and every request is counted once. The full engine (open
model, ramps, histograms, criteria) replaces the loop, not the shape of the result.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urljoin

import httpx

from assay.crds.common import parse_duration
from assay.crds.loadtest import LoadTestSpec

from .summary import ShardSummary


def share(total: int, parts: int, index: int) -> int:
    """How much of `total` part `index` of `parts` gets; the shares add up to `total`."""
    return total // parts + (1 if index < total % parts else 0)


def weighted_order(weights: list[int]) -> list[int]:
    """One cycle of smooth weighted round-robin: indexes in proportion to their weights,
    spread out rather than bunched, so short runs still mix flows as the weights say."""
    current = [0] * len(weights)
    total = sum(weights)
    order = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: current[i])
        current[best] -= total
        order.append(best)
    return order


def resolve_url(base_url: str | None, url: str) -> str:
    if base_url and not url.startswith(("http://", "https://")):
        return urljoin(base_url.rstrip("/") + "/", url.lstrip("/"))
    return url


async def _virtual_user(spec: LoadTestSpec, client: httpx.AsyncClient, summary: ShardSummary,
                        first_iteration: int, deadline: float | None) -> None:
    order = weighted_order([flow.weight for flow in spec.flows])
    iterations = spec.load.iterations
    n = 0
    while (iterations is None or n < iterations) and (deadline is None or time.monotonic() < deadline):
        flow = spec.flows[order[(first_iteration + n) % len(order)]]
        for request in flow.requests:
            url = resolve_url(spec.base_url, request.url)
            timeout = parse_duration(request.timeout or spec.request_timeout)
            started = time.perf_counter()
            try:
                response = await client.request(request.method, url, headers=request.headers,
                                                content=request.body, timeout=timeout)
                ok = response.status_code < 400
            except httpx.HTTPError:
                ok = False
            summary.record((time.perf_counter() - started) * 1000, ok)
        think = parse_duration(flow.think_time)
        if think:
            await asyncio.sleep(think)
        n += 1


async def run_shard(spec: LoadTestSpec, shard: int, shards: int) -> ShardSummary:
    summary = ShardSummary(shard=shard)
    users = share(spec.load.users, shards, shard)
    if users == 0:
        return summary
    duration = parse_duration(spec.load.duration) if spec.load.duration else None
    deadline = time.monotonic() + duration if duration else None
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(limits=limits, verify=True, follow_redirects=False) as client:
        # Users of all shards together take consecutive iteration numbers, so the flow mix
        # of a sharded run equals the mix of the same run on one shard.
        first_user = sum(share(spec.load.users, shards, i) for i in range(shard))
        await asyncio.gather(*(
            _virtual_user(spec, client, summary, first_user + u, deadline) for u in range(users)
        ))
    return summary
