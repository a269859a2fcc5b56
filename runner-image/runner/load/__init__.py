"""The load engine: virtual users and arrival rates against HTTP targets, measured exactly.

Public surface (the modules behind it are private layers, each importing only the ones
listed after it):

    cli        what `python -m assay.runner loadtest|run` do with a LoadTest (processes, output)
    engine     run_load_shard(spec, shard, shards, *, run_id, on_progress) -> ShardMetrics,
               Progress, run() (an event loop, uvloop where installed), LoadSpecError
    criteria   evaluate(criteria, metrics), AbortWatchdog
    metrics    ShardMetrics (to_json / from_json), Stats, merge(list[ShardMetrics])
    profile    ClosedSchedule, OpenSchedule, share(), weighted_order(), think_sampler()
    checks     extractions and assertions compiled for the hot path
    cookies    CookieJar: a virtual user's cookies (RFC 6265), made on its first Set-Cookie
    client     HttpClient, RequestError, prepare(): HTTP/1.1 on asyncio Protocols + httptools
    histogram  Histogram: sparse HdrHistogram with the HdrHistogram V2 wire encoding

Templates are the API-test engine's language (`assay.runner.templating`, shared by both
engines: variables and helpers such as `{{uuid}}` or `{{hmac_sha256(key, body)}}`),
compiled once per run (CompiledTemplate) so that a request without `{{` costs nothing and
plain variables a join.
"""

from .criteria import AbortWatchdog, evaluate
from .engine import LoadSpecError, Progress, run, run_load_shard
from .metrics import ShardMetrics, Stats, merge

__all__ = [
    "AbortWatchdog",
    "LoadSpecError",
    "Progress",
    "ShardMetrics",
    "Stats",
    "evaluate",
    "merge",
    "run",
    "run_load_shard",
]
