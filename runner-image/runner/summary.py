"""The small summary a runner pod reports through its termination message.

Kubernetes keeps at most 4096 bytes of a termination message, so this carries counts and a
few latency figures only; full results go to the store. Shard summaries merge exactly for
counts, min and max; the mean is weighted by request count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

TERMINATION_MESSAGE_LIMIT = 4096


class ShardSummary(BaseModel):
    model_config = ConfigDict(extra="ignore")

    shard: int | None = None
    requests: int = 0
    failures: int = 0
    min_ms: float | None = None
    max_ms: float | None = None
    total_ms: float = Field(0.0, description="sum of latencies, so means merge exactly")
    error: str | None = Field(None, description="why the shard could not run, if it could not")

    @property
    def avg_ms(self) -> float | None:
        return self.total_ms / self.requests if self.requests else None

    def record(self, latency_ms: float, ok: bool) -> None:
        self.requests += 1
        self.failures += 0 if ok else 1
        self.total_ms += latency_ms
        self.min_ms = latency_ms if self.min_ms is None else min(self.min_ms, latency_ms)
        self.max_ms = latency_ms if self.max_ms is None else max(self.max_ms, latency_ms)

    def to_message(self) -> str:
        text = self.model_dump_json(exclude_none=True)
        if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
            # Only a pathological error text can get here; counts always fit.
            short = self.model_copy(update={"error": (self.error or "")[:1000]})
            text = short.model_dump_json(exclude_none=True)
        return text

    @classmethod
    def from_message(cls, message: str | None) -> ShardSummary | None:
        if not message:
            return None
        try:
            return cls.model_validate(json.loads(message))
        except (ValueError, TypeError):
            return None


def merge(summaries: Iterable[ShardSummary]) -> ShardSummary:
    total = ShardSummary()
    for s in summaries:
        total.requests += s.requests
        total.failures += s.failures
        total.total_ms += s.total_ms
        if s.min_ms is not None:
            total.min_ms = s.min_ms if total.min_ms is None else min(total.min_ms, s.min_ms)
        if s.max_ms is not None:
            total.max_ms = s.max_ms if total.max_ms is None else max(total.max_ms, s.max_ms)
        if s.error and not total.error:
            total.error = s.error
    return total
