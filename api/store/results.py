"""Result ingest: what the gateway does with a document a runner uploads.

`ResultIngest.accept()` stores a run's document once (same bytes again: nothing happens;
other bytes under a stored name: refused), records the run, and finishes the run once its
results are all in:

* a LoadTest when every `shard-<i>.json` has arrived: the shards are merged, the result and
  report archives built and registered under the load test's next numbers, and the run's
  summary written (`run_summary`);
* a TestSuite on its `suite-run.json`, a Monitor on its `monitor-result.json` (or one
  `monitor-result-<i>.json` per region): state, result, times and a small summary.

Finishing is re-entrant and derives everything from what is stored: the shard count comes
from the stored documents (never from a counter bumped per upload), an archive already
registered is not built again (`Store.add_archive` is idempotent per run and kind), and the
run is marked finished last. So a repeated upload, two last shards arriving together, or a
gateway killed between any two steps end with the same single record; the runner's retry,
or `recover()` at start-up, completes what was interrupted.

A refused upload raises the store's own errors, `Invalid`, `DocumentConflict`, `RunConflict`
or `QuotaExceeded`; api/routers/ingest.py gives each its HTTP status.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .monitor_results import MonitorResultRecord, json_object
from .quota import Quota
from .store import (
    ArchiveRecord,
    DocumentConflict,
    DocumentRecord,
    Invalid,
    RunConflict,
    RunRecord,
    Store,
    check_component,
)

SHARD_NAME = re.compile(r"shard-(\d{1,5})\.json")
RUN_KINDS = ("LoadTest", "TestSuite", "Monitor")
MAX_SHARDS = 10_000


@dataclass
class Upload:
    run_id: str
    name: str
    data: bytes
    kind: str
    project: str
    owner_name: str
    owner_uid: str
    shards: int = 1
    shard: int | None = None
    labels: dict = field(default_factory=dict)


@dataclass
class Accepted:
    created: bool
    """False when the same bytes were stored before."""
    document: DocumentRecord
    run: RunRecord
    archives: list[ArchiveRecord]


class ResultIngest:
    def __init__(self, store: Store, quota: Quota = Quota()):
        self.store = store
        self.quota = quota
        self._locks: dict[str, list] = {}  # run id -> [lock, holders and waiters]
        self._locks_guard = threading.Lock()

    @contextlib.contextmanager
    def _run_lock(self, run_id: str) -> Iterator[None]:
        """Serialises the work on one run inside this process, and, on PostgreSQL, across the
        replicas (`Store.run_lock`), so a run's archives are built once; elsewhere the store's
        transactions keep processes apart, and a second build is only registered once.
        A run's lock lives while someone holds or waits for it."""
        with self._locks_guard:
            entry = self._locks.setdefault(run_id, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0], self.store.run_lock(run_id):
                yield
        finally:
            with self._locks_guard:
                entry[1] -= 1
                if not entry[1]:
                    del self._locks[run_id]

    # --- accepting a document ---------------------------------------------------------------

    def accept(self, upload: Upload) -> Accepted:
        self._validate(upload)
        sha256 = hashlib.sha256(upload.data).hexdigest()
        with self._run_lock(upload.run_id):
            run = self.store.get_run(upload.run_id)
            if run is not None:
                self._check_same_run(run, upload)
            stored = self.store.document_info(upload.run_id, upload.name)
            if stored is not None and stored.sha256 != sha256:
                raise DocumentConflict(
                    f"run {upload.run_id} already has a different {upload.name} "
                    f"(sha256 {stored.sha256}); a stored document is never replaced",
                    sha256=stored.sha256,
                )
            created = stored is None or not self.store.stored(stored)
            if created:
                self.store.put_document(
                    upload.run_id,
                    upload.name,
                    upload.data,
                    quota=self.quota,
                    project=upload.project,
                    monitor_result=self._monitor_result(upload),
                )
            document = self.store.document_info(upload.run_id, upload.name)
            received = len(self._shard_documents(upload.run_id)) if upload.kind == "LoadTest" else 0
            run = self.store.upsert_run(
                RunRecord(
                    run_id=upload.run_id,
                    kind=upload.kind,
                    project=upload.project,
                    owner_name=upload.owner_name,
                    owner_uid=upload.owner_uid,
                    state="running",
                    shards=upload.shards,
                    shards_received=received,
                    labels=dict(upload.labels),
                )
            )
            if upload.kind == "LoadTest" and received >= run.shards:
                run = self._finish_loadtest(run)
            elif upload.kind in ("TestSuite", "Monitor"):
                run = self._finish_api_test(run)
        return Accepted(
            created=created, document=document, run=run, archives=self.store.list_archives(run_id=upload.run_id)
        )

    def check_quota(self, run_id: str, name: str, project: str, size: int) -> None:
        """Refuse (QuotaExceeded) a new document of `size` bytes that would not fit, before
        its body is read; a document stored before (a retry) is not new."""
        if self.store.document_info(run_id, name) is None:
            self.store.check_quota(self.quota, run_id, project, size)

    def _validate(self, upload: Upload) -> None:
        try:
            check_component(upload.run_id, "run id")
            check_component(upload.name, "document name")
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if upload.kind not in RUN_KINDS:
            raise Invalid(f"kind {upload.kind!r} is not one of {', '.join(RUN_KINDS)}")
        for what, value in (
            ("project", upload.project),
            ("owner name", upload.owner_name),
            ("owner uid", upload.owner_uid),
        ):
            if not value:
                raise Invalid(f"the {what} of run {upload.run_id} is missing")
        if not 1 <= upload.shards <= MAX_SHARDS:
            raise Invalid(f"shards must be 1..{MAX_SHARDS}, not {upload.shards}")
        match = SHARD_NAME.fullmatch(upload.name)
        if upload.kind == "LoadTest" and match:
            self._validate_shard(upload, int(match.group(1)))

    @staticmethod
    def _validate_shard(upload: Upload, index: int) -> None:
        """A shard's metrics must be readable and belong where they are uploaded: a document
        that would break the merge is refused before it is stored."""
        from assay.runner.load.metrics import ShardMetrics

        where = f"{upload.name} of run {upload.run_id}"
        if index >= upload.shards:
            raise Invalid(f"{where}: shard {index} of {upload.shards} shards")
        if upload.shard is not None and upload.shard != index:
            raise Invalid(f"{where}: the shard header says {upload.shard}")
        try:
            metrics = ShardMetrics.from_json(upload.data)
        except (ValueError, KeyError, TypeError) as exc:
            raise Invalid(f"{where}: not load-test shard metrics ({exc})") from None
        if metrics.shard != index:
            raise Invalid(f"{where}: the metrics are of shard {metrics.shard}")
        if metrics.run_id and metrics.run_id != upload.run_id:
            raise Invalid(f"{where}: the metrics are of run {metrics.run_id}")
        if metrics.shards != upload.shards:
            raise Invalid(f"{where}: the metrics say {metrics.shards} shards, the upload {upload.shards}")

    @staticmethod
    def _check_same_run(run: RunRecord, upload: Upload) -> None:
        for what, mine, theirs in (
            ("project", run.project, upload.project),
            ("kind", run.kind, upload.kind),
            ("owner uid", run.owner_uid, upload.owner_uid),
        ):
            if mine != theirs:
                raise RunConflict(f"run {run.run_id} belongs to {what} {mine!r}, not {theirs!r}")

    @staticmethod
    def _monitor_result(upload: Upload) -> MonitorResultRecord | None:
        if upload.kind != "Monitor":
            return None
        return MonitorResultRecord.of(upload.run_id, upload.name, upload.project, upload.owner_uid, upload.data)

    def _shard_documents(self, run_id: str) -> dict[int, DocumentRecord]:
        return {
            int(m.group(1)): doc
            for doc in self.store.list_documents(run_id, prefix="shard-")
            if (m := SHARD_NAME.fullmatch(doc.name))
        }

    # --- finishing a load-test run ------------------------------------------------------------

    def finish_loadtest(self, run_id: str) -> RunRecord | None:
        """Finish the run if all its shards are stored; the run as it is now (None: unknown)."""
        with self._run_lock(run_id):
            run = self.store.get_run(run_id)
            if run is None or run.kind != "LoadTest":
                return run
            return self._finish_loadtest(run)

    def _finish_loadtest(self, run: RunRecord) -> RunRecord:
        if run.finished and all(self.store.get_run_archive(run.run_id, k) for k in ("result", "report")):
            return run
        shards = self._shard_documents(run.run_id)
        if set(shards) != set(range(run.shards)):
            return run
        staging = Path(tempfile.mkdtemp(prefix=f"{run.run_id}.", dir=self.store.staging_dir))
        try:
            merged, meta = self._merge(run, shards, staging)
            from assay.runner.report import build_report_archive, build_result_archive

            loadtest_uid = run.owner_uid  # a LoadTest's archives are numbered per LoadTest
            builders = {
                "result": lambda out: build_result_archive(
                    [staging / f"shard-{i}.json" for i in sorted(shards)], out, meta=meta
                ),
                "report": lambda out: build_report_archive(merged, out, meta=meta),
            }
            archives = {}
            for kind, build in builders.items():
                archive = self.store.get_run_archive(run.run_id, kind)
                if archive is None:
                    built = build(staging / f"{kind}.zip")
                    archive = self.store.add_archive(
                        run.run_id, kind, built, loadtest_uid=loadtest_uid, project=run.project, move=True
                    )
                archives[kind] = archive
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        summary = run_summary(merged, meta)
        summary.update(resultNumber=archives["result"].number, reportNumber=archives["report"].number)
        return self.store.upsert_run(
            RunRecord(
                run_id=run.run_id,
                kind=run.kind,
                project=run.project,
                owner_name=run.owner_name,
                owner_uid=run.owner_uid,
                state="failed" if merged.aborted else "succeeded",
                result="passed" if summary["passed"] else "failed",
                created_at=run.created_at,
                started_at=merged.started_at,
                finished_at=merged.finished_at or time.time(),
                shards=run.shards,
                shards_received=len(shards),
                summary=summary,
            )
        )

    def _merge(self, run: RunRecord, shards: dict[int, DocumentRecord], staging: Path):
        """The merged metrics of the stored shards, with the criteria judged on the whole, and
        the archive metadata. Everything comes from the stored files, so a rebuild after a
        crash gives the same archives (the creation time is the run's last finish)."""
        from assay.runner.load.metrics import ShardMetrics
        from assay.runner.report import load_shards
        from assay.runner.report.metrics import iso_utc

        paths = []
        for index, doc in sorted(shards.items()):
            link = staging / f"shard-{index}.json"  # the archive records this name, not the store's
            link.symlink_to(self.store.local_file(doc))
            paths.append(link)
        first = ShardMetrics.from_json(paths[0].read_bytes())
        criteria = [c.criterion for c in first.criteria]  # every shard judged the same spec criteria
        merged = load_shards(paths, criteria=criteria)
        merged.run_id = run.run_id
        created = merged.finished_at or run.created_at
        meta = {
            "runId": run.run_id,
            "loadTest": run.owner_name,
            "shards": run.shards,
            "createdAt": iso_utc(created),
            "project": run.project,
        }
        if run.labels.get("label"):
            meta["label"] = run.labels["label"]
        return merged, meta

    # --- finishing a TestSuite or Monitor run ---------------------------------------------------

    def _finish_api_test(self, run: RunRecord) -> RunRecord:
        """A TestSuite run is finished by its `suite-run.json` (Loadmill shape), a Monitor run
        by its `monitor-result.json` (Runscope shape; `monitor-result-<i>.json` per region when
        it ran in several): the run's state, result, times and a small summary come from them.
        Documents of another shape are stored and leave the run as it is."""
        if run.kind == "TestSuite":
            doc = json_object(self.store.get_document(run.run_id, "suite-run.json"))
            if not doc or doc.get("status") not in ("PASSED", "FAILED"):
                return run
            summary = {key: doc.get(key) for key in ("status", "progress", "successRate", "avgResTime")}
            summary["flowRuns"] = len(doc.get("testSuiteFlowRuns") or [])
            return self.store.upsert_run(
                replace_state(
                    run,
                    passed=doc["status"] == "PASSED",
                    started_at=_ms_epoch(doc.get("startTime")),
                    finished_at=_ms_epoch(doc.get("endTime")),
                    summary=summary,
                    received=1,
                )
            )
        names = ["monitor-result.json"] if run.shards == 1 else [f"monitor-result-{i}.json" for i in range(run.shards)]
        docs = [json_object(self.store.get_document(run.run_id, name)) for name in names]
        if not all(doc and doc.get("result") in ("pass", "fail") for doc in docs):
            return run
        starts = [d["started_at"] for d in docs if isinstance(d.get("started_at"), (int, float))]
        finishes = [d["finished_at"] for d in docs if isinstance(d.get("finished_at"), (int, float))]
        summary = {
            "result": "pass" if all(d["result"] == "pass" for d in docs) else "fail",
            "regions": [d.get("region") or d.get("agent") for d in docs],
            **{
                key: sum(int(d.get(key) or 0) for d in docs)
                for key in ("requests_executed", "assertions_defined", "assertions_passed", "assertions_failed")
            },
        }
        return self.store.upsert_run(
            replace_state(
                run,
                passed=summary["result"] == "pass",
                started_at=min(starts) if starts else None,
                finished_at=max(finishes) if finishes else None,
                summary=summary,
                received=len(docs),
            )
        )

    def recover(self) -> list[str]:
        """Finish the runs whose results are all stored but that a crash left unfinished (a
        load test's archives, a suite's or monitor's state); returns their ids. Cheap when
        there are none: run it at start-up."""
        done = []
        for state in ("pending", "running"):
            stuck = []
            offset = 0
            while batch := self.store.list_runs(state=state, limit=500, offset=offset):
                offset += len(batch)
                stuck += batch
            for run in stuck:
                if run.kind == "LoadTest" and run.shards_received < run.shards:
                    continue
                with self._run_lock(run.run_id):
                    current = self.store.get_run(run.run_id)
                    if current is None or current.finished:
                        continue
                    finished = (
                        self._finish_loadtest(current) if current.kind == "LoadTest" else self._finish_api_test(current)
                    )
                if finished.finished:
                    done.append(run.run_id)
        return done


def replace_state(
    run: RunRecord, *, passed: bool, started_at: float | None, finished_at: float | None, summary: dict, received: int
) -> RunRecord:
    """The finished form of `run`, for `Store.upsert_run` to merge."""
    return RunRecord(
        run_id=run.run_id,
        kind=run.kind,
        project=run.project,
        owner_name=run.owner_name,
        owner_uid=run.owner_uid,
        state="succeeded",
        result="passed" if passed else "failed",
        created_at=run.created_at,
        started_at=started_at,
        finished_at=finished_at or time.time(),
        shards=run.shards,
        shards_received=received,
        summary=summary,
    )


def _ms_epoch(value) -> float | None:
    return value / 1000.0 if isinstance(value, (int, float)) else None


def run_summary(merged, meta: dict) -> dict:
    """The run's summary in the store: what list and detail endpoints show without opening an
    archive. Figures are the report's own (summary.json), so they match the report."""
    from assay.runner.report import summarize

    report = summarize(merged, meta)
    total = report["total"]
    criteria = report["criteria"]
    # The load CLI's rule (`run_local`): no request at all, an abort, a failed criterion, or,
    # without criteria, any failed request fails the run.
    passed = not (
        report["run"]["aborted"]
        or total["count"] == 0
        or any(not c["passed"] for c in criteria)
        or (not criteria and total["errors"] > 0)
    )
    return {
        "requests": total["count"],
        "failures": total["errors"],
        "errorRatePct": total["errorRatePct"],
        "errorsByKind": total["errorsByKind"],
        "throughputRps": total["throughputRps"],
        **{key: total[key] for key in ("minMs", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs")},
        "bytesSent": total["bytesSent"],
        "bytesReceived": total["bytesReceived"],
        "startedAt": report["run"]["startedAt"],
        "finishedAt": report["run"]["finishedAt"],
        "durationS": report["run"]["durationS"],
        "aborted": report["run"]["aborted"],
        "abortReason": report["run"]["abortReason"],
        "criteria": criteria,
        "verdict": report["verdict"],
        "passed": passed,
    }
