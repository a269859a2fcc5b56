"""The result store: files on the persistent volume, indexed by SQLite on the same volume
(the default); or, for several gateway replicas, indexed by PostgreSQL (backends.py), with the
documents and archives in S3-compatible object storage (objects.py) or on a shared volume.

    <root>/index.sqlite3                       the SQLite index (WAL, synchronous=FULL)
    <root>/runs/<run id>/<sha256[:16]>-<name>  a run's documents (shard metrics, results)
    <root>/runs/<run id>/archives/<kind>-<n>.zip   a run's result / report archive, number n
    <root>/staging/                            scratch space for archives being built

In S3 the objects have the same keys (runs/...) under the bucket's prefix, and <root>/cache/
holds the copies served as files (downloads, the shard merge).

Monitor result documents also have a row in `monitor_results` (monitor_results.py), written
in the document's transaction, so lists, metrics and request counts read the index, not the
documents.

A running load test's live progress (`run_progress`, one row per shard, replaced on every
report) is the exception to the rules below: it is small, lives only until its run finishes,
and losing the last report in a crash costs nothing but a few seconds of figures. So are the
run's live samples (`run_progress_samples`, a bounded ring of merged figures over time, kept
with the run so its live chart outlasts the end of the run).

Durability rules, so that a crash at any instant loses nothing that was acknowledged and
leaves nothing half-written behind:

* Files and objects are written whole (files.py, one PUT) *before* the row that points at
  them commits; the row is the commit point. A crash in between leaves an unreferenced file,
  never a row that points at a missing or partial one.
* A document's file name carries its content hash, so the file a row points at is never
  rewritten: replacing a document writes a new file, switches the row, then deletes the old.
* Every read-modify-write of the index is one transaction that takes the index's write lock
  up front (`_write`: SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock), so threads
  (FastAPI's pool), processes and replicas never interleave an allocation or a merge.
* Numbers (XTC load test, result, report numbers) live in `counters` and are never deleted,
  so a number is allocated once and never reused, even after its run is purged.

Authorization codes and revoked tokens live in the index too, so every process and replica
sharing it honours them. One database connection per thread; all are closed by `close()`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import files
from .monitor_results import INSERT as _INSERT_MONITOR_RESULT
from .monitor_results import RELIST as _RELIST_MONITOR_RESULTS
from .monitor_results import MonitorResultRecord, ResultFigures, record_from_row
from .backends import index_for, upsert
from .objects import objects_for
from .quota import Quota, QuotaExceeded, Usage

_INDEX_BATCH = 500
FINISHED_STATES = frozenset({"succeeded", "failed"})
RUN_STATES = ("pending", "running", "succeeded", "failed")
_STATE_RANK = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2}
RUN_KINDS = ("LoadTest", "TestSuite", "Monitor")
ARCHIVE_KINDS = ("result", "report")
TEMPORARY_MAX_AGE_SECONDS = 3600.0
PROGRESS_MAX_AGE_SECONDS = 86400.0
"""Progress no shard has updated for this long belongs to a run that died unfinished."""

_UPSERT_RUN = upsert(
    "runs",
    (
        "run_id",
        "kind",
        "project",
        "owner_name",
        "owner_uid",
        "state",
        "result",
        "created_at",
        "started_at",
        "finished_at",
        "shards",
        "shards_received",
        "summary",
        "labels",
        "updated_at",
    ),
    ("run_id",),
)
_UPSERT_DOCUMENT = upsert(
    "documents", ("run_id", "name", "path", "size", "sha256", "created_at", "project"), ("run_id", "name")
)

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class StoreError(Exception):
    pass


class RunConflict(StoreError):
    """A run record that contradicts the stored one: another project, kind or owner."""


class DocumentConflict(StoreError):
    """Different bytes under the name of a stored document, which is never replaced."""

    def __init__(self, message: str, sha256: str):
        super().__init__(message)
        self.sha256 = sha256
        """The stored document's."""


class Invalid(StoreError):
    """An upload that cannot be stored as it is: a bad name, kind or shard, a missing owner."""


@dataclass
class RunRecord:
    run_id: str
    kind: str
    """"LoadTest" | "TestSuite" | "Monitor"."""
    project: str
    """The namespace."""
    owner_name: str
    owner_uid: str
    state: str = "pending"
    """pending | running | succeeded | failed; succeeded and failed are final."""
    result: str | None = None
    """passed | failed, once known."""
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    shards: int = 1
    shards_received: int = 0
    summary: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def to_dict(self) -> dict:
        return {
            "runId": self.run_id,
            "kind": self.kind,
            "project": self.project,
            "ownerName": self.owner_name,
            "ownerUid": self.owner_uid,
            "state": self.state,
            "result": self.result,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "shards": self.shards,
            "shardsReceived": self.shards_received,
            "summary": self.summary,
            "labels": self.labels,
        }


@dataclass
class ArchiveRecord:
    run_id: str
    project: str
    loadtest_uid: str
    kind: str
    """"result" | "report"."""
    number: int
    path: Path
    """On the volume, the archive's file; with S3, where `Store.local_file` caches it."""
    size: int
    sha256: str
    created_at: float
    key: str = ""
    """The object's key: its path under the store's folder or in the bucket."""

    def to_dict(self) -> dict:
        return {
            "runId": self.run_id,
            "project": self.project,
            "loadTestUid": self.loadtest_uid,
            "kind": self.kind,
            "number": self.number,
            "size": self.size,
            "sha256": self.sha256,
            "createdAt": self.created_at,
        }


@dataclass
class DocumentRecord:
    run_id: str
    name: str
    path: Path
    """On the volume, the document's file; with S3, where `Store.local_file` caches it."""
    size: int
    sha256: str
    created_at: float
    key: str = ""
    """The object's key: its path under the store's folder or in the bucket."""

    def to_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "createdAt": self.created_at}


@dataclass
class ProgressRecord:
    run_id: str
    shard: int
    doc: dict
    """The shard's report as it sent it (assay.crds.contracts.progress.ShardProgress, camelCase keys)."""
    updated_at: float
    """When the gateway received it (epoch seconds)."""


def archive_counter(kind: str, loadtest_uid: str) -> str:
    """The counter that numbers a load test's archives of one kind (XTC result/report numbers)."""
    return f"archive/{kind}/{loadtest_uid}"


def check_component(value: str, what: str) -> str:
    """`value` is used as a file name: refuse separators, dot-names and oddities."""
    if not isinstance(value, str) or not _SAFE_COMPONENT.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not allowed: use letters, digits, '.', '_' and '-' "
            f"(up to 200 characters, starting with a letter or digit)"
        )
    return value


def _merge_runs(old: RunRecord, new: RunRecord, now: float) -> RunRecord:
    for name in ("project", "kind", "owner_uid"):
        mine, theirs = getattr(old, name), getattr(new, name)
        if mine and theirs and mine != theirs:
            raise RunConflict(f"run {old.run_id} belongs to {name} {mine!r}, not {theirs!r}")
    merged = replace(old, summary=dict(old.summary), labels=dict(old.labels))
    merged.project = old.project or new.project
    merged.kind = old.kind or new.kind
    merged.owner_uid = old.owner_uid or new.owner_uid
    merged.owner_name = new.owner_name or old.owner_name
    merged.created_at = min(old.created_at, new.created_at)
    starts = [t for t in (old.started_at, new.started_at) if t is not None]
    merged.started_at = min(starts) if starts else None
    merged.shards = max(old.shards, new.shards)
    merged.shards_received = max(old.shards_received, new.shards_received)
    merged.summary.update(new.summary)
    merged.labels.update(new.labels)
    # A state only moves forward; among final states the later word wins (a run the gateway
    # saw complete may still be declared failed by the operator).
    if _STATE_RANK[new.state] >= _STATE_RANK[old.state] and not (old.finished and not new.finished):
        merged.state = new.state
        if new.result is not None:
            merged.result = new.result
        if new.finished:
            merged.finished_at = new.finished_at or old.finished_at or now
    if merged.finished and merged.finished_at is None:
        merged.finished_at = now
    return merged


class Store:
    def __init__(
        self, root: Path, *, retention_days: int = 90, database_url: str | None = None, objects_url: str | None = None
    ):
        """Documents and archives under `root`, or in the S3 bucket of `objects_url`
        (objects.py); the index in SQLite under `root`, or in the PostgreSQL database at
        `database_url` (backends.py), whose schema is brought up to date."""
        self.root = Path(root)
        self.retention_days = retention_days
        files.ensure_dir(self.root)
        self.index = index_for(self.root, database_url)
        self.objects = objects_for(self.root, objects_url)
        self.runs_dir = self.root / "runs"
        self.staging_dir = self.objects.staging_dir
        """Local scratch space, for archives being built, whichever the objects' place."""
        self._local = threading.local()
        self._connections: list = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._relist = _RELIST_MONITOR_RESULTS.format(plus=self.index.plus)
        self.index.migrate(self)

    def _index_monitor_results(self) -> None:
        """Index the Monitor result documents stored before `monitor_results` existed, reading
        each once. Batches commit one by one and skip what is indexed, so an upgrade cut short
        (a crash, a liveness probe's restart) goes on where it stopped at the next start; the
        rows are listed at the end, all in one statement."""
        after = 0
        while True:
            with self._write() as tx:
                rows = tx.execute(
                    # CROSS JOIN: documents in rowid order drive the query, so a batch stops at its LIMIT.
                    "SELECT d.rowid, d.run_id, d.name, d.path, r.project, r.owner_uid FROM documents d "
                    "CROSS JOIN runs r ON r.run_id = d.run_id WHERE d.rowid > ? AND r.kind = 'Monitor' "
                    "AND d.name LIKE 'monitor-result%' AND NOT EXISTS (SELECT 1 FROM monitor_results p "
                    "WHERE p.run_id = d.run_id AND p.name = d.name) ORDER BY d.rowid LIMIT ?",
                    (after, _INDEX_BATCH),
                ).fetchall()
                for row in rows:
                    data = self.objects.get(row["path"])
                    if data is None:
                        continue
                    record = MonitorResultRecord.of(row["run_id"], row["name"], row["project"], row["owner_uid"], data)
                    if record is not None:
                        tx.execute(_INSERT_MONITOR_RESULT, record.row())
            if not rows:
                break
            after = rows[-1]["rowid"]
        with self._write() as tx:
            tx.execute(self._relist)

    # --- connections and transactions -------------------------------------------------------

    def _conn(self):
        if self._closed:
            raise StoreError("the store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.index.connect()
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator:
        """One read-modify-write of the index, serialised with every other (backends.py)."""
        conn = self._conn()
        self.index.begin(conn)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """Keeps the other processes sharing this index off the run's work (building its
        archives) while held; with SQLite, which one process per volume uses, it holds nothing."""
        with self.index.run_lock(self._conn(), run_id):
            yield

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
            self._closed = True
        for conn in connections:
            try:
                conn.close()
            except self.index.connection_errors:
                pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    @staticmethod
    def _run_key(run_id: str) -> str:
        return f"runs/{check_component(run_id, 'run id')}"

    def run_dir(self, run_id: str) -> Path:
        """The run's folder of files on the volume (with S3, of cached copies)."""
        return self.objects.path(self._run_key(run_id))

    def local_file(self, record: DocumentRecord | ArchiveRecord) -> Path:
        """A file on this machine with the document's or archive's bytes: its own on the volume,
        a cached copy of the object in S3 (FileNotFoundError when the object is gone)."""
        try:
            return self.objects.local_file(record.key)
        except Exception as exc:
            if self.objects.exists(record.key):
                raise
            raise FileNotFoundError(record.key) from exc

    def stored(self, record: DocumentRecord | ArchiveRecord) -> bool:
        """Whether the bytes the record names are there."""
        return self.objects.exists(record.key)

    # --- numbers ----------------------------------------------------------------------------

    def number_for(self, project: str, counter: str, key: str) -> int:
        """The number of `key` in (project, counter): allocated on first ask as one more than
        the highest so far (1, 2, 3, ...), the same number on every later ask."""
        conn = self._conn()
        row = conn.execute(
            "SELECT number FROM counters WHERE project=? AND counter=? AND key=?", (project, counter, key)
        ).fetchone()
        if row:
            return row[0]
        with self._write() as tx:
            return self._allocate(tx, project, counter, key)

    @staticmethod
    def _allocate(tx, project: str, counter: str, key: str) -> int:
        row = tx.execute(
            "SELECT number FROM counters WHERE project=? AND counter=? AND key=?", (project, counter, key)
        ).fetchone()
        if row:
            return row[0]
        number = tx.execute(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM counters WHERE project=? AND counter=?", (project, counter)
        ).fetchone()[0]
        tx.execute(
            "INSERT INTO counters (project, counter, key, number, created_at) VALUES (?, ?, ?, ?, ?)",
            (project, counter, key, number, time.time()),
        )
        return number

    def key_for_number(self, project: str, counter: str, number: int) -> str | None:
        row = (
            self._conn()
            .execute("SELECT key FROM counters WHERE project=? AND counter=? AND number=?", (project, counter, number))
            .fetchone()
        )
        return row[0] if row else None

    # --- runs -------------------------------------------------------------------------------

    @staticmethod
    def _run_from_row(row) -> RunRecord:
        return RunRecord(
            run_id=row["run_id"],
            kind=row["kind"],
            project=row["project"],
            owner_name=row["owner_name"],
            owner_uid=row["owner_uid"],
            state=row["state"],
            result=row["result"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            shards=row["shards"],
            shards_received=row["shards_received"],
            summary=json.loads(row["summary"]),
            labels=json.loads(row["labels"]),
        )

    def upsert_run(self, run: RunRecord) -> RunRecord:
        """Create the run or merge `run` into the stored one, and return what is stored.

        Merging keeps the first creation time and start, adds summary and labels, takes the
        larger shard counts, and moves the state forward only (pending → running → succeeded
        or failed): a finished run never goes back to pending or running. Raises RunConflict
        when project, kind or owner uid contradict the stored run."""
        check_component(run.run_id, "run id")
        if run.state not in _STATE_RANK:
            raise ValueError(f"run state {run.state!r} is not one of {', '.join(RUN_STATES)}")
        now = time.time()
        with self._write() as tx:
            row = tx.execute("SELECT * FROM runs WHERE run_id=?", (run.run_id,)).fetchone()
            if row is None:
                merged = replace(run, summary=dict(run.summary), labels=dict(run.labels))
                if merged.finished and merged.finished_at is None:
                    merged.finished_at = now
            else:
                merged = _merge_runs(self._run_from_row(row), run, now)
            tx.execute(
                _UPSERT_RUN,
                (
                    merged.run_id,
                    merged.kind,
                    merged.project,
                    merged.owner_name,
                    merged.owner_uid,
                    merged.state,
                    merged.result,
                    merged.created_at,
                    merged.started_at,
                    merged.finished_at,
                    merged.shards,
                    merged.shards_received,
                    json.dumps(merged.summary, sort_keys=True),
                    json.dumps(merged.labels, sort_keys=True),
                    now,
                ),
            )
            if merged.finished:
                # Live figures are over once the final ones exist.
                tx.execute("DELETE FROM run_progress WHERE run_id=?", (merged.run_id,))
            self._relist_monitor_results(tx, merged.run_id)
        return merged

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._conn().execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return self._run_from_row(row) if row else None

    def list_runs(
        self,
        *,
        project: str | None = None,
        kind: str | None = None,
        owner_uid: str | None = None,
        since: float | None = None,
        before: float | None = None,
        limit: int = 50,
        offset: int = 0,
        state: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first (by creation time); `since` and `before` bound the creation time
        (since <= created_at < before)."""
        where, args = [], []
        for column, value in (("project", project), ("kind", kind), ("owner_uid", owner_uid), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if before is not None:
            where.append("created_at < ?")
            args.append(before)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?"
        rows = self._conn().execute(sql, (*args, max(int(limit), 0), max(int(offset), 0))).fetchall()
        return [self._run_from_row(row) for row in rows]

    def count_runs(self) -> dict[tuple[str, str], int]:
        """How many runs there are of each (kind, state), for the gateway's metrics."""
        rows = self._conn().execute("SELECT kind, state, COUNT(*) AS n FROM runs GROUP BY kind, state").fetchall()
        return {(row["kind"], row["state"]): row["n"] for row in rows}

    # --- documents --------------------------------------------------------------------------

    def _document_from_row(self, row) -> DocumentRecord:
        return DocumentRecord(
            run_id=row["run_id"],
            name=row["name"],
            path=self.objects.path(row["path"]),
            size=row["size"],
            sha256=row["sha256"],
            created_at=row["created_at"],
            key=row["path"],
        )

    def document_info(self, run_id: str, name: str) -> DocumentRecord | None:
        row = self._conn().execute("SELECT * FROM documents WHERE run_id=? AND name=?", (run_id, name)).fetchone()
        return self._document_from_row(row) if row else None

    def list_documents(self, run_id: str, *, prefix: str = "") -> list[DocumentRecord]:
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM documents WHERE run_id=? AND substr(name, 1, ?) = ? ORDER BY name",
                (run_id, len(prefix), prefix),
            )
            .fetchall()
        )
        return [self._document_from_row(row) for row in rows]

    def usage(self, run_id: str, project: str, conn=None) -> tuple[Usage, Usage]:
        """The documents stored for the run, and for the namespace `project`."""
        conn = conn or self._conn()
        run = conn.execute(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM documents WHERE run_id=?", (run_id,)
        ).fetchone()
        namespace = conn.execute(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM documents WHERE project=?", (project,)
        ).fetchone()
        return Usage(run[0], run[1]), Usage(namespace[0], namespace[1])

    def check_quota(self, quota: Quota, run_id: str, project: str, size: int, conn=None) -> None:
        """Raise QuotaExceeded when a new document of `size` bytes does not fit the run's or the namespace's quota."""
        quota.check(run_id, project, *self.usage(run_id, project, conn), size)

    def put_document(
        self,
        run_id: str,
        name: str,
        data: bytes,
        *,
        quota: Quota | None = None,
        project: str = "",
        monitor_result: MonitorResultRecord | None = None,
    ) -> Path:
        """Store `data` as the run's document `name`, atomically and durably. The same bytes
        again change nothing; different bytes replace the document. `project` is the run's
        namespace; with a `quota`, a new document that does not fit the run's or the
        namespace's quota raises QuotaExceeded and nothing is stored. A Monitor result's
        index row (`monitor_result`, of these bytes) commits with the document's row."""
        check_component(name, "document name")
        sha256 = hashlib.sha256(data).hexdigest()
        current = self.document_info(run_id, name)
        if current and current.sha256 == sha256 and self.stored(current) and monitor_result is None:
            return current.path
        if quota is not None and current is None:
            self.check_quota(quota, run_id, project, len(data))
        key = f"{self._run_key(run_id)}/{sha256[:16]}-{name}"
        self.objects.put(key, data)
        replaced = None
        try:
            with self._write() as tx:
                row = tx.execute(
                    "SELECT path, sha256 FROM documents WHERE run_id=? AND name=?", (run_id, name)
                ).fetchone()
                if quota is not None and row is None:
                    self.check_quota(quota, run_id, project, len(data), tx)
                if row is None or row["sha256"] != sha256:
                    if row is not None and row["path"] != key:
                        replaced = row["path"]
                    tx.execute(_UPSERT_DOCUMENT, (run_id, name, key, len(data), sha256, time.time(), project))
                if monitor_result is not None:
                    tx.execute(_INSERT_MONITOR_RESULT, monitor_result.row())
                    self._relist_monitor_results(tx, run_id)
        except QuotaExceeded:
            self.objects.delete(key)
            raise
        if replaced is not None:
            self.objects.delete(replaced)
        return self.objects.path(key)

    def get_document(self, run_id: str, name: str) -> bytes | None:
        info = self.document_info(run_id, name)
        return None if info is None else self.objects.get(info.key)

    # --- Monitor results (the index of their documents) ---------------------------------------

    def _relist_monitor_results(self, tx, run_id: str) -> None:
        tx.execute(self._relist + " AND monitor_results.run_id = ?", (run_id,))

    def list_monitor_results(
        self, project: str, owner_uid: str, *, since: float | None = None, before: float | None = None, limit: int = 10
    ) -> list[tuple[RunRecord, MonitorResultRecord]]:
        """A test's results, one per location, newest start first (since < start < before), at
        most `limit`: the first rows of one range of an index. Equal starts go newest run
        first, then by location."""
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM monitor_results WHERE project = ? AND owner_uid = ? AND listed = 1 "
                "AND listed_at > ? AND listed_at < ? "
                "ORDER BY listed_at DESC, run_created_at DESC, run_id DESC, location LIMIT ?",
                (
                    project,
                    owner_uid,
                    -math.inf if since is None else since,
                    math.inf if before is None else before,
                    max(int(limit), 0),
                ),
            )
            .fetchall()
        )
        runs = {run_id: self.get_run(run_id) for run_id in {row["run_id"] for row in rows}}
        return [(runs[row["run_id"]], record_from_row(row)) for row in rows]

    def run_monitor_results(self, run_id: str) -> list[MonitorResultRecord]:
        """The run's results, by location."""
        rows = (
            self._conn()
            .execute("SELECT * FROM monitor_results WHERE run_id = ? AND listed = 1 ORDER BY location", (run_id,))
            .fetchall()
        )
        return [record_from_row(row) for row in rows]

    def latest_monitor_run(self, project: str, owner_uid: str) -> RunRecord | None:
        """The test's newest run (by creation) that has a result."""
        row = (
            self._conn()
            .execute(
                f"SELECT * FROM runs r {self.index.indexed_by('runs_by_owner')} WHERE r.owner_uid = ? AND r.project = ? "
                "AND r.kind = 'Monitor' AND EXISTS "
                "(SELECT 1 FROM monitor_results p WHERE p.run_id = r.run_id AND p.listed = 1) "
                "ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1",
                (owner_uid, project),
            )
            .fetchone()
        )
        return self._run_from_row(row) if row else None

    def monitor_result_figures(self, project: str, owner_uid: str, since: float, until: float) -> list[ResultFigures]:
        """The figures of the test's results that started from `since` to `until`, both included."""
        # A result with a start of its own is listed at it, so the listing index finds them.
        rows = (
            self._conn()
            .execute(
                f"SELECT {', '.join(ResultFigures._fields)} FROM monitor_results WHERE project = ? AND owner_uid = ? "
                "AND listed = 1 AND listed_at >= ? AND listed_at <= ? AND started_at IS NOT NULL "
                "ORDER BY listed_at DESC, run_created_at DESC, run_id DESC, location",
                (project, owner_uid, since, until),
            )
            .fetchall()
        )
        return [ResultFigures(*row) for row in rows]

    def monitor_requests(self, project: str, since: float, before: float) -> int:
        """How many requests the project's results that started in [since, before) executed."""
        return (
            self._conn()
            .execute(
                "SELECT CAST(COALESCE(SUM(requests_executed), 0) AS BIGINT) FROM monitor_results "
                "WHERE project = ? AND listed = 1 AND started_at >= ? AND started_at < ?",
                (project, since, before),
            )
            .fetchone()[0]
        )

    # --- archives ---------------------------------------------------------------------------

    def _archive_from_row(self, row) -> ArchiveRecord:
        return ArchiveRecord(
            run_id=row["run_id"],
            project=row["project"],
            loadtest_uid=row["loadtest_uid"],
            kind=row["kind"],
            number=row["number"],
            path=self.objects.path(row["path"]),
            size=row["size"],
            sha256=row["sha256"],
            created_at=row["created_at"],
            key=row["path"],
        )

    def get_run_archive(self, run_id: str, kind: str) -> ArchiveRecord | None:
        row = self._conn().execute("SELECT * FROM archives WHERE run_id=? AND kind=?", (run_id, kind)).fetchone()
        return self._archive_from_row(row) if row else None

    def add_archive(
        self, run_id: str, kind: str, source: Path, *, loadtest_uid: str, project: str, move: bool = False
    ) -> ArchiveRecord:
        """Register the run's `kind` archive, copied from `source` (and `source` removed with
        `move=True`). Its number is the next of (project, loadtest_uid, kind), allocated once
        per run: asking again, concurrently or after a crash, returns the same record."""
        if kind not in ARCHIVE_KINDS:
            raise ValueError(f"archive kind {kind!r} is not one of {', '.join(ARCHIVE_KINDS)}")
        existing = self.get_run_archive(run_id, kind)
        if existing is None:
            number = self.number_for(project, archive_counter(kind, loadtest_uid), run_id)
            key = f"{self._run_key(run_id)}/archives/{kind}-{number}.zip"
            staged, size, sha256 = self.objects.stage(Path(source), key)
            try:
                with self._write() as tx:
                    row = tx.execute("SELECT * FROM archives WHERE run_id=? AND kind=?", (run_id, kind)).fetchone()
                    if row is None:
                        # Put in place inside the transaction: a racing writer of the same archive
                        # waits for our commit and then finds the row instead of writing over us.
                        self.objects.commit(staged, key)
                        tx.execute(
                            "INSERT INTO archives (run_id, kind, project, loadtest_uid, number, path, size, "
                            "sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (run_id, kind, project, loadtest_uid, number, key, size, sha256, time.time()),
                        )
            finally:
                self.objects.discard(staged)
            existing = self.get_run_archive(run_id, kind)
        if move:
            files.discard(Path(source))
        return existing

    def get_archive(self, project: str, loadtest_uid: str, kind: str, number: int) -> ArchiveRecord | None:
        row = (
            self._conn()
            .execute(
                "SELECT * FROM archives WHERE project=? AND loadtest_uid=? AND kind=? AND number=?",
                (project, loadtest_uid, kind, number),
            )
            .fetchone()
        )
        return self._archive_from_row(row) if row else None

    def list_archives(
        self,
        *,
        run_id: str | None = None,
        loadtest_uid: str | None = None,
        project: str | None = None,
        kind: str | None = None,
    ) -> list[ArchiveRecord]:
        """Archives, oldest number first."""
        where, args = [], []
        for column, value in (("run_id", run_id), ("loadtest_uid", loadtest_uid), ("project", project), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM archives" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._conn().execute(sql + " ORDER BY project, loadtest_uid, kind, number", args).fetchall()
        return [self._archive_from_row(row) for row in rows]

    # --- live progress ----------------------------------------------------------------------

    def put_progress(self, run_id: str, shard: int, doc: dict, now: float | None = None) -> bool:
        """Store `doc` as shard `shard`'s latest progress of the run, replacing the previous
        one. A finished run takes no more progress: returns False and stores nothing (its
        rows went when it finished, and a late report must not bring them back)."""
        check_component(run_id, "run id")
        now = time.time() if now is None else now
        with self._write() as tx:
            row = tx.execute("SELECT state FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is not None and row["state"] in FINISHED_STATES:
                return False
            tx.execute(
                "INSERT INTO run_progress (run_id, shard, doc, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id, shard) DO UPDATE SET doc=excluded.doc, updated_at=excluded.updated_at",
                (run_id, int(shard), json.dumps(doc, separators=(",", ":")), now),
            )
        return True

    def list_progress(self, run_id: str) -> list[ProgressRecord]:
        """The run's latest progress per shard, by shard."""
        rows = self._conn().execute("SELECT * FROM run_progress WHERE run_id=? ORDER BY shard", (run_id,)).fetchall()
        return [
            ProgressRecord(
                run_id=row["run_id"], shard=row["shard"], doc=json.loads(row["doc"]), updated_at=row["updated_at"]
            )
            for row in rows
        ]

    def add_progress_sample(
        self, run_id: str, doc: dict, *, min_interval: float, keep: int, now: float | None = None
    ) -> bool:
        """Append `doc` to the run's samples unless the newest is younger than `min_interval`
        seconds; only the newest `keep` stay. True when it was appended."""
        check_component(run_id, "run id")
        now = time.time() if now is None else now
        with self._write() as tx:
            newest = tx.execute("SELECT MAX(at) FROM run_progress_samples WHERE run_id=?", (run_id,)).fetchone()[0]
            if newest is not None and now - newest < min_interval:
                return False
            tx.execute(
                upsert("run_progress_samples", ("run_id", "at", "doc"), ("run_id", "at")),
                (run_id, now, json.dumps(doc, separators=(",", ":"))),
            )
            tx.execute(
                "DELETE FROM run_progress_samples WHERE run_id=? AND at NOT IN "
                "(SELECT at FROM run_progress_samples WHERE run_id=? ORDER BY at DESC LIMIT ?)",
                (run_id, run_id, keep),
            )
        return True

    def list_progress_samples(self, run_id: str) -> list[dict]:
        """The run's samples, oldest first, each with its time as `at` (epoch seconds)."""
        rows = (
            self._conn()
            .execute("SELECT at, doc FROM run_progress_samples WHERE run_id=? ORDER BY at", (run_id,))
            .fetchall()
        )
        return [{**json.loads(doc), "at": at} for at, doc in rows]

    def runs_with_progress(self) -> list[RunRecord]:
        """The unfinished runs that have live progress, for the gateway's metrics."""
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM runs WHERE run_id IN (SELECT DISTINCT run_id FROM run_progress) "
                f"AND state NOT IN ({', '.join('?' for _ in FINISHED_STATES)}) ORDER BY run_id",
                tuple(FINISHED_STATES),
            )
            .fetchall()
        )
        return [self._run_from_row(row) for row in rows]

    # --- small JSON records -------------------------------------------------------------------

    def put_record(self, collection: str, key: str, doc: dict, *, project: str | None = None) -> None:
        """Create or replace the record `key` of `collection` (its creation time is kept)."""
        now = time.time()
        with self._write() as tx:
            tx.execute(
                "INSERT INTO records (collection, key, project, doc, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (collection, key) DO UPDATE SET "
                "project=excluded.project, doc=excluded.doc, updated_at=excluded.updated_at",
                (collection, key, project, json.dumps(doc), now, now),
            )

    def get_record(self, collection: str, key: str) -> dict | None:
        row = self._conn().execute("SELECT doc FROM records WHERE collection=? AND key=?", (collection, key)).fetchone()
        return json.loads(row[0]) if row else None

    def list_records(self, collection: str, *, project: str | None = None) -> list[dict]:
        """The collection's records in creation order."""
        if project is None:
            rows = (
                self._conn()
                .execute("SELECT doc FROM records WHERE collection=? ORDER BY created_at, key", (collection,))
                .fetchall()
            )
        else:
            rows = (
                self._conn()
                .execute(
                    "SELECT doc FROM records WHERE collection=? AND project=? ORDER BY created_at, key",
                    (collection, project),
                )
                .fetchall()
            )
        return [json.loads(row[0]) for row in rows]

    def delete_record(self, collection: str, key: str) -> bool:
        with self._write() as tx:
            return tx.execute("DELETE FROM records WHERE collection=? AND key=?", (collection, key)).rowcount > 0

    # --- authorization codes and revoked tokens (shared by every process of the index) -----------

    def add_code(self, code_hash: str, grant: dict, expires_at: float, *, now: float, max_outstanding: int) -> bool:
        """Store an authorization code's grant under the code's hash, valid until `expires_at`;
        False (nothing stored) when `max_outstanding` unredeemed codes are valid already."""
        with self._write() as tx:
            tx.execute("DELETE FROM authorization_codes WHERE expires_at <= ?", (now,))
            outstanding = tx.execute("SELECT COUNT(*) FROM authorization_codes WHERE redeemed = 0").fetchone()[0]
            if outstanding >= max_outstanding:
                return False
            tx.execute(
                "INSERT INTO authorization_codes (code_hash, grant_doc, expires_at, redeemed, tokens) "
                "VALUES (?, ?, ?, 0, '[]')",
                (code_hash, json.dumps(grant), expires_at),
            )
        return True

    def redeem_code(
        self, code_hash: str, *, now: float, keep_for: float, check: Callable[[dict], None]
    ) -> tuple[dict | None, bool, list[tuple[str, int]]]:
        """Use up the code, once: (grant, True, []) the first time, after which its record is
        kept `keep_for` seconds more; (grant, False, token ids recorded for it) on a replay;
        (None, False, []) for an unknown or expired code. `check(grant)` runs first in the same
        transaction; when it raises, the code stays as it was."""
        with self._write() as tx:
            row = tx.execute(
                "SELECT grant_doc, redeemed, tokens FROM authorization_codes WHERE code_hash = ? AND expires_at > ?",
                (code_hash, now),
            ).fetchone()
            if row is None:
                return None, False, []
            grant = json.loads(row["grant_doc"])
            check(grant)
            if row["redeemed"]:
                return grant, False, [(jti, exp) for jti, exp in json.loads(row["tokens"])]
            tx.execute(
                "UPDATE authorization_codes SET redeemed = 1, expires_at = expires_at + ? WHERE code_hash = ?",
                (keep_for, code_hash),
            )
        return grant, True, []

    def add_code_token(self, code_hash: str, jti: str, expires_at: int) -> None:
        """Record a token issued for a redeemed code, for its revocation should the code be replayed."""
        with self._write() as tx:
            row = tx.execute("SELECT tokens FROM authorization_codes WHERE code_hash = ?", (code_hash,)).fetchone()
            if row is not None:
                tokens = [*json.loads(row["tokens"]), [jti, expires_at]]
                tx.execute(
                    "UPDATE authorization_codes SET tokens = ? WHERE code_hash = ?", (json.dumps(tokens), code_hash)
                )

    def revoke_tokens(self, tokens: list[tuple[str, int]], now: float) -> None:
        """Revoke the tokens (jti, expiry) until they expire; forget those expired."""
        with self._write() as tx:
            for jti, expires_at in tokens:
                tx.execute(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (jti, expires_at),
                )
            tx.execute("DELETE FROM revoked_tokens WHERE expires_at <= ?", (now,))

    def token_revoked(self, jti: str) -> bool:
        return self._conn().execute("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)).fetchone() is not None

    # --- retention --------------------------------------------------------------------------

    def purge_expired(self, now: float | None = None) -> int:
        """Delete the runs that finished more than `retention_days` ago, with their documents
        and archives; returns how many runs went. Numbers stay allocated (never reused).
        Unfinished runs and records are never purged; `retention_days` 0 keeps everything.
        Progress nobody updated for `PROGRESS_MAX_AGE_SECONDS` goes whatever the retention.

        Rows go first, in one transaction, so the API stops showing the run at once; the
        folders follow. A purge interrupted in between finishes on the next call."""
        now = time.time() if now is None else now
        purged = 0
        with self._write() as tx:
            tx.execute("DELETE FROM run_progress WHERE updated_at < ?", (now - PROGRESS_MAX_AGE_SECONDS,))
            # Samples of a run the store never recorded (its shards reported, nothing else came).
            tx.execute(
                "DELETE FROM run_progress_samples WHERE at < ? AND run_id NOT IN (SELECT run_id FROM runs)",
                (now - PROGRESS_MAX_AGE_SECONDS,),
            )
        if self.retention_days and self.retention_days > 0:
            cutoff = now - self.retention_days * 86400.0
            with self._write() as tx:
                ids = [
                    row[0]
                    for row in tx.execute(
                        "SELECT run_id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)
                    )
                ]
                for run_id in ids:
                    tx.execute("INSERT INTO purge_queue (run_id) VALUES (?) ON CONFLICT DO NOTHING", (run_id,))
                    for table in ("monitor_results", "documents", "archives", "run_progress_samples", "runs"):
                        tx.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
            purged = len(ids)
        for (run_id,) in self._conn().execute("SELECT run_id FROM purge_queue").fetchall():
            self.objects.delete_run(run_id)
            with self._write() as tx:
                tx.execute("DELETE FROM purge_queue WHERE run_id=?", (run_id,))
        self.sweep_temporaries(now)
        return purged

    def sweep_temporaries(self, now: float | None = None, max_age: float = TEMPORARY_MAX_AGE_SECONDS) -> int:
        """Remove what interrupted writes left behind, once older than `max_age` (younger
        ones may belong to a write in progress): temporary files, staging folders, and files
        or objects put in place whose index row never committed."""
        now = time.time() if now is None else now
        conn = self._conn()
        referenced = {row[0] for row in conn.execute("SELECT path FROM documents UNION ALL SELECT path FROM archives")}
        return self.objects.sweep(referenced, now, max_age)
