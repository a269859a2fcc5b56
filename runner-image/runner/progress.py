"""A load shard's live progress, pushed to the gateway while the shard runs.

The CLI prints a `Progress` line once a second (load/engine.py). In a pod the same figures
also go to the gateway, so the operator can show them in the LoadTest's status while it runs
(the runner never talks to the Kubernetes API; the operator stays the only status writer).
The body is `ShardProgress` (assay.crds.contracts.progress); `combine` builds it from the
progress of the processes that run the shard.

`ProgressPusher` sends the latest progress every `interval` seconds from a daemon thread:
the engine's event loop only stores the newest `Progress` (a dict assignment under a lock),
and the thread does the encoding and the HTTP. Pushing is fire-and-forget: one attempt with
a short timeout, no retry (the next push carries newer figures), and no failure ever reaches
the run. A failure is logged once, and again only after a push has succeeded.

The gateway's answer carries one instruction back: `{"abort": reason}` once someone set the
LoadTest's `spec.abort`; `abort_reason` keeps it for the engine, which asks once a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Optional

import httpx

from assay.crds.contracts.histogram import Histogram, layout
from assay.crds.contracts.progress import WINDOW_HISTOGRAM_DIGITS, ShardProgress, progress_path
from assay.crds.contracts.runner_settings import RunnerSettings

if TYPE_CHECKING:
    from .load.engine import Progress

PUSH_INTERVAL_SECONDS = 2.0
PUSH_TIMEOUT_SECONDS = 1.0


def combine(parts: Iterable[Progress], *, done: bool = False) -> ShardProgress:
    """One shard's progress from the progress of the processes that run it."""
    parts = list(parts)
    window = Histogram(layout(digits=WINDOW_HISTOGRAM_DIGITS))
    for part in parts:
        window.add(part.window_histogram)
    window_s = max((p.window_s for p in parts), default=0)
    window_requests = sum(p.window_requests for p in parts)
    return ShardProgress(
        requests=sum(p.requests for p in parts),
        errors=sum(p.errors for p in parts),
        active_users=sum(p.active_users for p in parts),
        elapsed_s=round(max((p.elapsed_s for p in parts), default=0.0), 3),
        window_s=window_s,
        window_requests=window_requests,
        window_errors=sum(p.window_errors for p in parts),
        rps=round(window_requests / window_s, 3) if window_s else 0.0,
        p95_ms=round(window.value_at_percentile(95.0) / 1000.0, 3) if window.total else None,
        window_histogram=window.encode() if window.total else None,
        done=done,
    )


class ProgressPusher:
    """Sends a shard's latest progress to the gateway every `interval` seconds.

    pusher = ProgressPusher(url, run_id, token, shard)
    with pusher:                       # starts the thread; on exit, one last push
        run(..., on_progress=pusher.update)
    """

    def __init__(
        self,
        gateway_url: str,
        run_id: str,
        token: str,
        shard: int,
        *,
        interval: float = PUSH_INTERVAL_SECONDS,
        timeout: float = PUSH_TIMEOUT_SECONDS,
        log: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = gateway_url.rstrip("/") + progress_path(run_id, shard)
        self.interval = interval
        self.log = log or (lambda _message: None)
        self.pushed = 0
        """Pushes the gateway accepted."""
        self.abort_reason: Optional[str] = None
        """Why the gateway asked this shard to abort, once it did."""
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
            body = combine(parts, done=done).to_body()
            response = self._client.put(self.url, content=body, headers=self._headers)
        except Exception as exc:  # whatever goes wrong here, the run goes on
            return self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if response.status_code >= 300:
            return self._failed(f"HTTP {response.status_code}: {response.text[:200]}")
        self._sent_version = version
        self.pushed += 1
        if response.status_code == 200 and self.abort_reason is None:
            self.abort_reason = _abort_reason(response)
        if self._failing:
            self._failing = False
            self.log(f"progress reaches {self.url} again")
        return True

    def _failed(self, problem: str) -> bool:
        if not self._failing:
            self._failing = True
            self.log(
                f"progress push to {self.url} failed ({problem}); the run goes on, "
                f"trying again every {self.interval:g}s"
            )
        return False


def _abort_reason(response: httpx.Response) -> Optional[str]:
    try:
        reason = response.json().get("abort")
    except (ValueError, AttributeError):  # an answer from something else than the gateway
        return None
    return str(reason)[:255] if reason else None


def pusher_for(
    settings: RunnerSettings, shard: int, log: Callable[[str], None] | None = None
) -> Optional[ProgressPusher]:
    """A pusher when the operator wired a gateway (ASSAY_GATEWAY_URL, ASSAY_UPLOAD_TOKEN,
    ASSAY_RUN_ID), else None."""
    if not (settings.uploads and settings.run_id):
        return None
    return ProgressPusher(settings.gateway_url, settings.run_id, settings.upload_token, shard, log=log)


__all__ = ["ProgressPusher", "combine", "pusher_for"]
