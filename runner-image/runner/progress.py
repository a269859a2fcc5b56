"""A load shard's live progress, pushed to the gateway while the shard runs.

The CLI prints a `Progress` line once a second (load/engine.py). In a pod the same figures
also go to the gateway, so the operator can show them in the LoadTest's status while it runs
(the runner never talks to the Kubernetes API; the operator stays the only status writer):

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

`ProgressPusher` sends the latest progress every `interval` seconds from a daemon thread:
the engine's event loop only stores the newest `Progress` (a dict assignment under a lock),
and the thread does the encoding and the HTTP. Pushing is fire-and-forget: one attempt with
a short timeout, no retry (the next push carries newer figures), and no failure ever reaches
the run. A failure is logged once, and again only after a push has succeeded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Optional
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from .load.engine import Progress

PUSH_INTERVAL_SECONDS = 2.0
PUSH_TIMEOUT_SECONDS = 1.0
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

    @classmethod
    def combine(cls, parts: Iterable[Progress], *, done: bool = False) -> ShardProgress:
        """One shard's progress from the progress of the processes that run it."""
        from .load.histogram import Histogram, layout

        parts = list(parts)
        window = Histogram(layout(digits=WINDOW_HISTOGRAM_DIGITS))
        for part in parts:
            window.add(part.window_histogram)
        window_s = max((p.window_s for p in parts), default=0)
        window_requests = sum(p.window_requests for p in parts)
        return cls(
            requests=sum(p.requests for p in parts), errors=sum(p.errors for p in parts),
            active_users=sum(p.active_users for p in parts),
            elapsed_s=round(max((p.elapsed_s for p in parts), default=0.0), 3), window_s=window_s,
            window_requests=window_requests, window_errors=sum(p.window_errors for p in parts),
            rps=round(window_requests / window_s, 3) if window_s else 0.0,
            p95_ms=round(window.value_at_percentile(95.0) / 1000.0, 3) if window.total else None,
            window_histogram=window.encode() if window.total else None, done=done)

    def histogram(self):
        """The window histogram (empty when there is none); raises ValueError when it does not decode."""
        from .load.histogram import Histogram

        return Histogram.decode(self.window_histogram) if self.window_histogram else Histogram()

    def to_body(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class ProgressPusher:
    """Sends a shard's latest progress to the gateway every `interval` seconds.

        pusher = ProgressPusher(url, run_id, token, shard)
        with pusher:                       # starts the thread; on exit, one last push
            run(..., on_progress=pusher.update)
    """

    def __init__(self, gateway_url: str, run_id: str, token: str, shard: int, *,
                 interval: float = PUSH_INTERVAL_SECONDS, timeout: float = PUSH_TIMEOUT_SECONDS,
                 log: Callable[[str], None] | None = None, transport: httpx.BaseTransport | None = None):
        self.url = gateway_url.rstrip("/") + progress_path(run_id, shard)
        self.interval = interval
        self.log = log or (lambda _message: None)
        self.pushed = 0
        """Pushes the gateway accepted."""
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._client = httpx.Client(timeout=timeout, transport=transport)
        self._latest: dict[int, Progress] = {}
        self._version = 0
        self._sent_version = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def update(self, unit: int, progress: Progress) -> None:
        """The newest progress of one of the shard's processes (`unit`); cheap, any thread."""
        with self._lock:
            self._latest[unit] = progress
            self._version += 1

    def start(self) -> ProgressPusher:
        self._thread = threading.Thread(target=self._loop, name="assay-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, final: bool = True) -> None:
        """Stop the thread; with `final`, push the last progress once more, marked done, so the
        shard's totals are exact while other shards still run."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if final:
                self.push(done=True)
        finally:
            self._client.close()

    def __enter__(self) -> ProgressPusher:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def push(self, *, done: bool = False) -> bool:
        """Send the latest progress if there is any news; True when the gateway took it."""
        with self._lock:
            if not self._latest or (self._version == self._sent_version and not done):
                return False
            parts, version = list(self._latest.values()), self._version
        try:
            body = ShardProgress.combine(parts, done=done).to_body()
            response = self._client.put(self.url, content=body, headers=self._headers)
        except Exception as exc:  # whatever goes wrong here, the run goes on
            return self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if response.status_code >= 300:
            return self._failed(f"HTTP {response.status_code}: {response.text[:200]}")
        self._sent_version = version
        self.pushed += 1
        if self._failing:
            self._failing = False
            self.log(f"progress reaches {self.url} again")
        return True

    def _failed(self, problem: str) -> bool:
        if not self._failing:
            self._failing = True
            self.log(f"progress push to {self.url} failed ({problem}); the run goes on, "
                     f"trying again every {self.interval:g}s")
        return False


def pusher_from_env(environ, shard: int, log: Callable[[str], None] | None = None) -> Optional[ProgressPusher]:
    """A pusher when the operator wired a gateway (ASSAY_GATEWAY_URL, ASSAY_UPLOAD_TOKEN,
    ASSAY_RUN_ID), else None."""
    url, token, run_id = (environ.get(f"ASSAY_{name}") for name in ("GATEWAY_URL", "UPLOAD_TOKEN", "RUN_ID"))
    if not (url and token and run_id):
        return None
    return ProgressPusher(url, run_id, token, shard, log=log)


__all__ = ["PROGRESS_MAX_BYTES", "ProgressPusher", "ShardProgress", "progress_path", "pusher_from_env"]
