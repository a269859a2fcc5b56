"""The load engine: virtual users and arrival rates against HTTP targets, measured exactly.

Public surface (the modules behind it are private layers, each importing only the ones
listed after it):

    cli        what `python -m assay.runner loadtest|run` do with a LoadTest (processes, output)
    engine     run_load_shard(spec, shard, shards, *, run_id, on_progress) -> ShardMetrics,
               Progress, run() (an event loop, uvloop where installed), LoadSpecError
    criteria   evaluate(criteria, metrics), AbortWatchdog
    metrics    ShardMetrics (to_json / from_json), Stats, merge(list[ShardMetrics])
    profile    ClosedSchedule, OpenSchedule, share(), weighted_order()
    checks, template   extractions, assertions and `{{name}}` rendering for the hot path
    client     HttpClient, RequestError, prepare(): HTTP/1.1 on asyncio Protocols + httptools
    histogram  Histogram: sparse HdrHistogram with the HdrHistogram V2 wire encoding
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
