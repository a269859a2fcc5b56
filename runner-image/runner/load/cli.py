"""The load engine behind `python -m assay.runner loadtest` (a Job pod) and `run` (a laptop).

Both show live throughput, errors and p95 once a second on stderr and print the final
table on stdout. Either can spread its work over several processes (`--processes N`):
each shard s of S splits exactly into sub-shards s + S*p of S*N (p = 0..N-1), one per
process, and their metrics merge into shard s's again, so a process count changes how the
load is generated, never what is generated.

In a pod (`loadtest`): the shard's metrics JSON goes to `--out` and to
`$ASSAY_RESULTS_DIR/shard-<index>.json`, its summary to the termination message
(`$ASSAY_TERMINATION_LOG`). The exit status is 0 when the shard ran, whatever its results
(the operator judges the merged run; a non-zero exit would make the Job retry a finished
run), 2 when the spec cannot run.

On a laptop (`run FILE`): every shard of the spec runs at once, as in the cluster, and the
merged run is judged against the criteria. Exit 0 passed; 1 a criterion failed, the run
aborted, sent no request, or (without criteria) any request failed; 2 the spec is invalid.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Optional, TextIO

from assay.crds.contracts.histogram import Histogram
from assay.crds.loadtest import LoadTestSpec

from . import criteria as criteria_module
from .engine import LoadSpecError, Progress, check_spec, run, run_load_shard
from .metrics import ShardMetrics, merge

Unit = tuple[int, int]
"""(shard, shards) as run_load_shard takes them."""


def sub_shards(shard: int, shards: int, processes: int) -> list[list[Unit]]:
    """What each of `processes` processes runs so that together they run shard `shard`."""
    return [[(shard + shards * p, shards * processes)] for p in range(processes)]


def all_shards(shards: int, processes: int) -> list[list[Unit]]:
    """What each process runs so that together they run every shard of the spec."""
    return [[(s + shards * p, shards * processes) for s in range(shards)] for p in range(processes)]


class ProgressBoard:
    """Combines the progress of several concurrent shard runs into one line a second."""

    def __init__(self, units: int, out: TextIO = sys.stderr, started: Optional[float] = None):
        self.units = units
        self.out = out
        self.latest: dict[int, Progress] = {}
        self.printed_second = 0
        self.started = started if started is not None else time.time()

    def update(self, unit: int, progress: Progress) -> None:
        self.latest[unit] = progress
        if len(self.latest) < self.units:
            return
        second = min(p.second for p in self.latest.values())
        if second > self.printed_second:
            self.printed_second = second
            print(self.line(), file=self.out, flush=True)

    def line(self) -> str:
        parts = list(self.latest.values())
        window = Histogram()
        for p in parts:
            window.add(p.window_histogram)
        window_s = max((p.window_s for p in parts), default=0) or 1
        requests = sum(p.window_requests for p in parts)
        errors = sum(p.window_errors for p in parts)
        p95 = f"{window.value_at_percentile(95.0) / 1000.0:8.1f} ms" if window.total else "       - ms"
        elapsed = time.time() - self.started
        return (
            f"[{elapsed:6.1f}s] users {sum(p.active_users for p in parts):6d}  "
            f"{requests / window_s:9.1f} req/s  errors {errors / window_s:7.1f}/s  p95 {p95}  "
            f"| total {sum(p.requests for p in parts)} requests, {sum(p.errors for p in parts)} errors"
        )


async def _run_units(
    spec: LoadTestSpec,
    units: list[Unit],
    run_id: str,
    verify_tls: bool,
    report: Callable[[int, Progress], None],
    abort_requested: Optional[Callable[[], Optional[str]]] = None,
) -> list[ShardMetrics]:
    import asyncio

    def reporter(i: int):
        return lambda progress: report(i, progress)

    return list(
        await asyncio.gather(
            *(
                run_load_shard(
                    spec,
                    shard,
                    shards,
                    run_id=run_id,
                    on_progress=reporter(i),
                    verify_tls=verify_tls,
                    abort_requested=abort_requested,
                )
                for i, (shard, shards) in enumerate(units)
            )
        )
    )


def _child(spec_json: str, units: list[Unit], run_id: str, verify_tls: bool, offset: int, queue, abort_reason) -> None:
    try:
        spec = LoadTestSpec.model_validate_json(spec_json)
        results = run(
            _run_units(
                spec,
                units,
                run_id,
                verify_tls,
                lambda i, progress: queue.put(("progress", offset + i, progress)),
                lambda: abort_reason.value.decode("utf-8", "replace") or None,
            )
        )
        queue.put(("result", offset, [m.to_dict() for m in results]))
    except BaseException as exc:  # the parent must hear about it, whatever it was
        queue.put(("error", offset, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_processes(
    spec: LoadTestSpec,
    plan: list[list[Unit]],
    *,
    run_id: str = "",
    verify_tls: bool = True,
    progress_out: Optional[TextIO] = sys.stderr,
    on_progress: Optional[Callable[[int, Progress], None]] = None,
    abort_requested: Optional[Callable[[], Optional[str]]] = None,
) -> list[ShardMetrics]:
    """Run `plan` (one list of units per process) and return every unit's metrics;
    `on_progress(unit, progress)` hears every unit's progress, as the printed line does;
    `abort_requested()` returns why to abort the run early, or None (run_load_shard)."""
    check_spec(spec)
    units = sum(len(p) for p in plan)
    board = ProgressBoard(units, progress_out) if progress_out is not None else None

    def report(i: int, progress: Progress) -> None:
        if board is not None:
            board.update(i, progress)
        if on_progress is not None:
            on_progress(i, progress)

    if len(plan) == 1:
        return run(_run_units(spec, plan[0], run_id, verify_tls, report, abort_requested))

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    queue = context.Queue()
    # The processes hear an abort through shared memory: the reason, empty until there is one.
    abort_reason = context.Array("c", 256, lock=False)
    spec_json = spec.model_dump_json(by_alias=True)
    children, offset = [], 0
    for units_of_process in plan:
        child = context.Process(
            target=_child,
            args=(spec_json, units_of_process, run_id, verify_tls, offset, queue, abort_reason),
            daemon=True,
        )
        child.start()
        children.append(child)
        offset += len(units_of_process)
    results: dict[int, list[ShardMetrics]] = {}
    failure = None
    try:
        while len(results) < len(children) and failure is None:
            if abort_requested is not None and not abort_reason.value and (reason := abort_requested()):
                abort_reason.value = reason.encode()[:255]
            try:
                kind, where, payload = queue.get(timeout=1.0)
            except Exception:  # queue.Empty: see whether a child died without a word
                dead = [c for c in children if c.exitcode not in (None, 0)]
                if dead:
                    failure = f"a load process exited with status {dead[0].exitcode}"
                continue
            if kind == "progress":
                report(where, payload)
            elif kind == "result":
                results[where] = [ShardMetrics.from_json(d) for d in payload]
            else:
                failure = payload
    finally:
        for child in children:
            child.join(timeout=5 if failure is None else 0.1)
            if child.is_alive():
                child.terminate()
    if failure is not None:
        raise RuntimeError(failure)
    return [m for where in sorted(results) for m in results[where]]


# --- output -----------------------------------------------------------------------------------


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(metrics: ShardMetrics) -> str:
    """The final table: one row per request name and the total, then the criteria."""
    duration = metrics.duration_s or 0.0
    header = (
        f"{'request':<32} {'count':>9} {'errors':>7} {'req/s':>9} {'min':>8} {'mean':>8} {'p50':>8} "
        f"{'p90':>8} {'p95':>8} {'p99':>8} {'max':>8}  (ms)"
    )
    lines = [header, "-" * len(header)]

    def row(name: str, stats) -> str:
        fig = stats.to_dict()
        rps = stats.count / duration if duration else 0.0
        return (
            f"{name[:32]:<32} {stats.count:>9} {stats.error_count:>7} {rps:>9.1f} {_ms(fig['minMs']):>8} "
            f"{_ms(fig['meanMs']):>8} {_ms(fig['p50Ms']):>8} {_ms(fig['p90Ms']):>8} {_ms(fig['p95Ms']):>8} "
            f"{_ms(fig['p99Ms']):>8} {_ms(fig['maxMs']):>8}"
        )

    for name, stats in metrics.requests.items():
        lines.append(row(name, stats))
    lines.append(row("total", metrics.total))
    kinds = ", ".join(f"{kind} {n}" for kind, n in metrics.total.errors_by_kind().items() if n)
    lines.append(
        f"duration {duration:.1f} s"
        + (f"; errors: {kinds}" if kinds else "; no errors")
        + (f"; {metrics.dropped_iterations} iterations dropped (max users busy)" if metrics.dropped_iterations else "")
    )
    for kind, message in metrics.error_samples.items():
        lines.append(f"first {kind} error: {message}")
    for result in metrics.criteria:
        lines.append("criterion " + criteria_module.describe(result))
    if metrics.aborted:
        lines.append(f"ABORTED: {metrics.abort_reason}")
    return "\n".join(lines)


def write_json(path: str | Path, metrics: ShardMetrics) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(metrics.to_json())
    tmp.replace(path)


# --- the two commands -------------------------------------------------------------------------


def run_pod_shard(
    spec: LoadTestSpec,
    shard: int,
    shards: int,
    *,
    run_id: str = "",
    processes: int = 1,
    out: Optional[str] = None,
    results_dir: Optional[str] = None,
    verify_tls: bool = True,
    on_progress: Optional[Callable[[int, Progress], None]] = None,
    abort_requested: Optional[Callable[[], Optional[str]]] = None,
) -> ShardMetrics:
    """Run shard `shard` of `shards` (over `processes` processes) and write its metrics to `out`
    and to `results_dir`/shard-<shard>.json; `on_progress(process, progress)` hears each
    process's progress about once a second; `abort_requested` as in run_processes."""
    parts = run_processes(
        spec,
        sub_shards(shard, shards, processes),
        run_id=run_id,
        verify_tls=verify_tls,
        on_progress=on_progress,
        abort_requested=abort_requested,
    )
    metrics = parts[0] if len(parts) == 1 else merge(parts, shard=shard, shards=shards)
    metrics.shard, metrics.shards, metrics.run_id = shard, shards, run_id
    metrics.criteria = criteria_module.evaluate(spec.parsed_criteria(), metrics)
    targets = [out] if out else []
    if results_dir:
        targets.append(str(Path(results_dir) / f"shard-{shard}.json"))
    for target in targets:
        write_json(target, metrics)
    return metrics


def run_local(
    spec: LoadTestSpec, *, processes: int = 1, out: Optional[str] = None, run_id: str = "local", verify_tls: bool = True
) -> tuple[ShardMetrics, int]:
    """Run every shard at once, merged and judged; returns the metrics and the exit status."""
    parts = run_processes(spec, all_shards(spec.shards, processes), run_id=run_id, verify_tls=verify_tls)
    metrics = merge(parts, shards=spec.shards)
    metrics.criteria = criteria_module.evaluate(spec.parsed_criteria(), metrics)
    if out:
        write_json(out, metrics)
    failed = (
        metrics.aborted
        or metrics.total.count == 0
        or bool(criteria_module.failed(metrics.criteria))
        or (not metrics.criteria and metrics.total.error_count > 0)
    )
    return metrics, 1 if failed else 0


__all__ = ["LoadSpecError", "ProgressBoard", "run_local", "run_pod_shard", "run_processes", "table"]
