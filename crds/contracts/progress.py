"""A load shard's live progress, as the runner pushes it to the gateway while the shard runs
(assay.runner.progress) and the gateway stores and merges it (assay.api.store.progress):

    PUT /internal/v1/runs/<run id>/progress/<shard>
    Authorization: Bearer <upload token>
    Content-Type: application/json
    {"requests", "errors", "activeUsers", "elapsedS", "windowS", "windowRequests",
     "windowErrors", "rps", "p95Ms", "windowHistogram", "done"}

`ShardProgress` is that body: the shard's totals so far and its last `windowS` seconds
(`windowHistogram`: base64 HdrHistogram V2 of those seconds' latencies in µs at 2
significant digits, so the gateway merges shards' windows into one p95 instead of guessing
from per-shard percentiles). A shard running over several processes sends one body, their
parts combined. Each body replaces the shard's previous one.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .histogram import Histogram

PROGRESS_MAX_BYTES = 64 * 1024
"""The gateway refuses larger bodies; a 2-digit window histogram is at most a few kB."""
WINDOW_HISTOGRAM_DIGITS = 2


def progress_path(run_id: str, shard: int) -> str:
    return f"/internal/v1/runs/{quote(run_id, safe='')}/progress/{int(shard)}"


class ShardProgress(BaseModel):
    """One shard's progress so far, as the runner sends it and the gateway stores it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    requests: int = Field(0, ge=0)
    """Requests completed so far."""
    errors: int = Field(0, ge=0)
    """Failed requests so far."""
    active_users: int = Field(0, ge=0)
    """Virtual users (closed model) or iterations (open model) running now."""
    elapsed_s: float = Field(0.0, ge=0)
    window_s: int = Field(0, ge=0)
    """How many of the last seconds the window figures cover (up to 5)."""
    window_requests: int = Field(0, ge=0)
    window_errors: int = Field(0, ge=0)
    rps: float = Field(0.0, ge=0)
    """window_requests / window_s."""
    p95_ms: Optional[float] = Field(None, ge=0)
    """The window's p95 latency in milliseconds (None: no request in the window)."""
    window_histogram: Optional[str] = Field(None, max_length=32 * 1024)
    """The window's latencies: base64 HdrHistogram V2, µs, 2 significant digits."""
    done: bool = False
    """The shard has finished: its totals are final and it adds no more throughput."""

    def histogram(self):
        """The window histogram (empty when there is none); raises ValueError when it does not decode."""
        return Histogram.decode(self.window_histogram) if self.window_histogram else Histogram()

    def to_body(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
