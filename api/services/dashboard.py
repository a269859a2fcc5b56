"""What the dashboard shows: the load tests, monitors and suite runs of the namespaces a
principal reaches, as plain camelCase dicts that the page renders and the JSON API returns.

Sources
    Load tests     the LoadTest resources (state, result, summary) numbered as XTC numbers
                   them, with the report and result archives the store holds for each.
    Monitors       `status.history` of each Monitor (result and responseTimeMs of the last
                   runs) merged with the Monitor's runs in the store, which keeps every run but
                   no response time: older runs show their result without a chart point.
    Suite runs     `status.lastRun` and `status.history` of each TestSuite merged with the
                   TestSuite runs in the store.

Everything is read-only. Tenancy is the caller's business: every method takes the namespaces
the principal reaches and never looks outside them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from typing import Any, Optional

from assay.crds.runs import RunCounts

from ..kube import NotFound as KubeNotFound
from ..store.store import RunRecord
from .loadtests import LoadTestService, NumberedLoadTest, iso, parse_time, run_figures

MONITOR_STORE_RUNS = 100
"""Store runs read per Monitor: the chart and the result strip look no further back."""
MONITOR_RUNS_SHOWN = 30
SUITE_STORE_RUNS = 50
SUITE_RUNS_SHOWN = 50

RESULT_OF_STORE_RUN = {"passed": "passed", "failed": "failed"}


# --- states -----------------------------------------------------------------------------------------


def moment(value: Any) -> Optional[str]:
    """Any timestamp (API-server text, epoch seconds) as ISO 8601 UTC to the second, so that
    runs from the status and from the store sort together."""
    return iso(parse_time(value))


def loadtest_state(status: dict) -> str:
    """One word for a LoadTest: its verdict once finished, else where it is."""
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        result = status.get("result")
        return result.lower() if result else phase.lower()
    return (phase or "pending").lower()


def run_state(entry: dict) -> str:
    """One word for a TestSuite's or Monitor's run record: its verdict once finished, else running."""
    return entry["result"].lower() if entry.get("result") else "running"


def store_run_state(run: RunRecord) -> str:
    if run.finished:
        return RESULT_OF_STORE_RUN.get(run.result or "", "failed")
    return "running" if run.state == "running" else "pending"


def duration_seconds(start: Any, end: Any) -> Optional[float]:
    began, ended = parse_time(start), parse_time(end)
    if began is None or ended is None:
        return None
    return max(round((ended - began).total_seconds(), 3), 0.0)


# --- load tests ---------------------------------------------------------------------------------------


def archive_url(namespace: str, number: int, kind: str, archive_number: int) -> str:
    return f"/dashboard/api/namespaces/{namespace}/loadtests/{number}/{kind}s/{archive_number}"


def loadtest_view(namespace: str, item: NumberedLoadTest, archives: list, record_summary: Optional[dict]) -> dict:
    status, spec = item.status, item.spec
    figures = run_figures(status.get("summary"), record_summary)
    progress = status.get("progress") or {}

    def links(kind: str) -> list[dict]:
        return [
            {
                "number": a.number,
                "createdAt": a.created_at,
                "size": a.size,
                "url": archive_url(namespace, item.number, kind, a.number),
            }
            for a in archives
            if a.kind == kind
        ]

    return {
        "namespace": namespace,
        "name": item.name,
        "number": item.number,
        "description": spec.get("description") or "",
        "state": loadtest_state(status),
        "phase": status.get("phase"),
        "result": status.get("result"),
        "message": status.get("message"),
        "createdAt": moment(item.meta.get("creationTimestamp")),
        "startedAt": moment(status.get("startTime")),
        "finishedAt": moment(status.get("completionTime")),
        "durationSeconds": duration_seconds(status.get("startTime"), status.get("completionTime")),
        "requests": figures.get("requests", progress.get("requests")),
        "failures": figures.get("failures", progress.get("errors")),
        "errorRate": figures.get("errorRate"),
        "p95Ms": figures.get("p95Ms", progress.get("p95Ms")),
        "rps": figures.get("rps", progress.get("rps")),
        "failedCriteria": list(status.get("failedCriteria") or []),
        "reports": links("report"),
        "results": links("result"),
    }


# --- monitors ---------------------------------------------------------------------------------------------


def monitor_runs(status: dict, store_runs: list[RunRecord]) -> list[dict]:
    """The Monitor's runs, newest first: those in its status (with response times) and those
    only the store still knows."""
    runs: dict[str, dict] = {}
    for run in store_runs:
        runs[run.run_id] = {
            "runId": run.run_id,
            "result": store_run_state(run),
            "startedAt": moment(run.started_at or run.created_at),
            "finishedAt": moment(run.finished_at),
            "responseTimeMs": None,
            "environment": None,
            "regions": [r for r in (run.summary or {}).get("regions") or [] if r],
            "schedule": None,
        }
    entries = [*(status.get("history") or []), status.get("lastRun") or {}]
    for entry in entries:
        if not entry.get("runId"):
            continue
        known = runs.get(entry["runId"], {})
        runs[entry["runId"]] = {
            "runId": entry["runId"],
            "result": run_state(entry),
            "startedAt": moment(entry.get("startTime")) or known.get("startedAt"),
            "finishedAt": moment(entry.get("completionTime")) or known.get("finishedAt"),
            "responseTimeMs": entry.get("responseTimeMs"),
            "environment": entry.get("environment"),
            "regions": list(entry.get("regions") or known.get("regions") or []),
            "schedule": entry.get("schedule"),
        }
    return sorted(runs.values(), key=lambda r: (r["startedAt"] or "", r["runId"]), reverse=True)


def monitor_view(namespace: str, monitor: dict, store_runs: list[RunRecord], shown: int = MONITOR_RUNS_SHOWN) -> dict:
    meta, spec, status = monitor.get("metadata") or {}, monitor.get("spec") or {}, monitor.get("status") or {}
    runs = monitor_runs(status, store_runs)
    finished = [r for r in runs if r["result"] in ("passed", "failed")]
    timed = [r["responseTimeMs"] for r in runs if isinstance(r["responseTimeMs"], (int, float))]
    return {
        "namespace": namespace,
        "name": meta.get("name", ""),
        "uid": meta.get("uid"),
        "displayName": spec.get("displayName") or meta.get("name", ""),
        "description": spec.get("description") or "",
        "lastResult": runs[0]["result"] if runs else None,
        "lastRunAt": runs[0]["startedAt"] if runs else None,
        "runCount": len(runs),
        "passRate": round(100.0 * sum(r["result"] == "passed" for r in finished) / len(finished), 1)
        if finished
        else None,
        "avgResponseTimeMs": round(sum(timed) / len(timed), 1) if timed else None,
        "responseTimes": [
            {"at": r["startedAt"], "ms": r["responseTimeMs"], "result": r["result"]}
            for r in reversed(runs)
            if isinstance(r["responseTimeMs"], (int, float)) and r["startedAt"]
        ],
        "runs": runs[:shown],
    }


# --- suite runs -----------------------------------------------------------------------------------------------


def suite_runs(namespace: str, suite: dict, store_runs: list[RunRecord]) -> list[dict]:
    """A TestSuite's runs, newest first, from its status and the store."""
    name = (suite.get("metadata") or {}).get("name", "")
    status = suite.get("status") or {}
    runs: dict[str, dict] = {}
    for run in store_runs:
        summary = run.summary or {}
        runs[run.run_id] = {
            "namespace": namespace,
            "suite": name,
            "runId": run.run_id,
            "state": store_run_state(run),
            "startedAt": moment(run.started_at or run.created_at),
            "finishedAt": moment(run.finished_at),
            "progress": summary.get("progress"),
            "successRate": summary.get("successRate"),
        }
    for entry in [*(status.get("history") or []), status.get("lastRun") or {}]:
        if not entry.get("runId"):
            continue
        known = runs.get(entry["runId"], {})
        counts = RunCounts.model_validate(entry["counts"]) if entry.get("counts") else None
        runs[entry["runId"]] = {
            "namespace": namespace,
            "suite": name,
            "runId": entry["runId"],
            "state": run_state(entry),
            "startedAt": moment(entry.get("startTime")) or known.get("startedAt"),
            "finishedAt": moment(entry.get("completionTime")) or known.get("finishedAt"),
            "progress": counts.progress if counts else known.get("progress"),
            "successRate": round(counts.success_rate, 2) if counts else known.get("successRate"),
        }
    for run in runs.values():
        run["durationSeconds"] = duration_seconds(run["startedAt"], run["finishedAt"])
    return sorted(runs.values(), key=lambda r: (r["startedAt"] or "", r["runId"]), reverse=True)


def fingerprint(overview: dict) -> str:
    """Changes whenever anything shown changes; the page polls it to know when to redraw."""
    content = {k: v for k, v in overview.items() if k not in ("generatedAt", "fingerprint")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- the service ----------------------------------------------------------------------------------------------


class DashboardService:
    def __init__(self, kube, store, loadtests: LoadTestService | None = None):
        self.kube = kube
        self.store = store
        self.loadtests = loadtests or LoadTestService(kube, store)

    def _by_namespace(self, plural: str, namespaces: list[str]) -> dict[str, list[dict]]:
        """The resources of `namespaces`: one namespaced list for one namespace, one
        cluster-wide list filtered to them for several."""
        wanted = set(namespaces)
        items = self.kube.list(plural, namespaces[0]) if len(namespaces) == 1 else self.kube.list(plural)
        grouped: dict[str, list[dict]] = defaultdict(list)
        for item in items:
            namespace = (item.get("metadata") or {}).get("namespace")
            if namespace in wanted:
                grouped[namespace].append(item)
        return grouped

    def load_tests(self, namespaces: list[str]) -> list[dict]:
        out = []
        for namespace, items in sorted(self._by_namespace("loadtests", namespaces).items()):
            for item in reversed(self.loadtests.numbered(namespace, items)):
                record = self.loadtests.run_record(item)
                out.append(
                    loadtest_view(
                        namespace, item, self.loadtests.archives(namespace, item), getattr(record, "summary", None)
                    )
                )
        return out

    def monitors(
        self, namespaces: list[str], store_runs: int = MONITOR_STORE_RUNS, shown: int = MONITOR_RUNS_SHOWN
    ) -> list[dict]:
        out = []
        for namespace, items in sorted(self._by_namespace("monitors", namespaces).items()):
            for monitor in sorted(items, key=lambda m: m["metadata"]["name"]):
                runs = self.store.list_runs(
                    project=namespace, kind="Monitor", owner_uid=monitor["metadata"]["uid"], limit=store_runs
                )
                out.append(monitor_view(namespace, monitor, runs, shown))
        return out

    def monitor(self, namespace: str, name: str) -> Optional[dict]:
        """One Monitor with the longest history the dashboard reads, or None."""
        try:
            monitor = self.kube.get("monitors", namespace, name)
        except KubeNotFound:
            return None
        runs = self.store.list_runs(
            project=namespace, kind="Monitor", owner_uid=monitor["metadata"]["uid"], limit=MONITOR_STORE_RUNS
        )
        return monitor_view(namespace, monitor, runs, shown=MONITOR_STORE_RUNS)

    def suite_runs(self, namespaces: list[str]) -> list[dict]:
        out = []
        for namespace, items in sorted(self._by_namespace("testsuites", namespaces).items()):
            for suite in items:
                runs = self.store.list_runs(
                    project=namespace, kind="TestSuite", owner_uid=suite["metadata"]["uid"], limit=SUITE_STORE_RUNS
                )
                out.extend(suite_runs(namespace, suite, runs))
        out.sort(key=lambda r: (r["startedAt"] or "", r["runId"]), reverse=True)
        return out[:SUITE_RUNS_SHOWN]

    def overview(self, namespaces: list[str], reachable: list[str], selected: Optional[str]) -> dict:
        """Everything the page shows for `namespaces` (all reachable ones, or the selected one)."""
        overview = {
            "namespaces": reachable,
            "namespace": selected,
            "loadTests": self.load_tests(namespaces) if namespaces else [],
            "monitors": self.monitors(namespaces) if namespaces else [],
            "suiteRuns": self.suite_runs(namespaces) if namespaces else [],
        }
        overview["fingerprint"] = fingerprint(overview)
        overview["generatedAt"] = iso(dt.datetime.now(dt.timezone.utc))
        return overview

    def archive(self, namespace: str, number: int, kind: str, archive_number: int):
        """(the load test, the archive record); NotFound for either missing."""
        item = self.loadtests.get(namespace, number)
        return item, self.loadtests.archive(namespace, item, kind, archive_number)
