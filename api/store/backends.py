"""The databases the store's index can live in, and everything in which they differ.

The store (store.py) writes its SQL once, in what both speak: `?` placeholders, `INSERT ...
ON CONFLICT`, `UPDATE ... FROM`, `CAST`. What differs is here and nowhere else:

                        SQLite (embedded, the default)    PostgreSQL 14+ (several replicas)
    where               <root>/index.sqlite3              ASSAY_DATABASE_URL
    placeholders        ?                                 %s (`?` translated once per statement)
    write transaction   BEGIN IMMEDIATE: the database's   BEGIN, then one transaction-scoped
                        one write lock                    advisory lock per schema, so
                                                          replicas serialise their writes as
                                                          SQLite's processes do
    schema              SCHEMA below, PRAGMA user_version yoyo-migrations (migrations/*.sql),
                                                          applied under a session advisory lock
                                                          so replicas starting together apply
                                                          each migration once
    one run's work      this process only                 a session advisory lock per run, so
                                                          one replica builds a run's archives
    planner hints       INDEXED BY, unary +               none

Both hand out connections whose `execute(sql, params)` returns a cursor with `fetchone`,
`fetchall`, `rowcount` and iteration, and whose rows are read by column name or position.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMA_VERSION = 5
"""SQLite's PRAGMA user_version. 2: documents carry their run's project, which upload quotas
count by. 3: monitor_results, filled from the stored documents on the first start after the
upgrade. 4: authorization codes and revoked tokens, shared by every process of the store.
5: run_progress_samples, a running load test's live figures over time."""

MIGRATIONS = Path(__file__).parent / "migrations"
"""PostgreSQL's schema, one yoyo migration per file, applied in name order."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    owner_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    shards INTEGER NOT NULL,
    shards_received INTEGER NOT NULL,
    summary TEXT NOT NULL,
    labels TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_project ON runs (project, created_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner_uid, created_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_kind ON runs (kind, created_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_finished ON runs (finished_at);

CREATE TABLE IF NOT EXISTS counters (
    project TEXT NOT NULL,
    counter TEXT NOT NULL,
    key TEXT NOT NULL,
    number INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (project, counter, key),
    UNIQUE (project, counter, number)
);

CREATE TABLE IF NOT EXISTS documents (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    project TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, name)
);

CREATE TABLE IF NOT EXISTS archives (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    loadtest_uid TEXT NOT NULL,
    number INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, kind),
    UNIQUE (project, loadtest_uid, kind, number)
);

CREATE TABLE IF NOT EXISTS records (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    project TEXT,
    doc TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (collection, key)
);
CREATE INDEX IF NOT EXISTS records_by_project ON records (collection, project, created_at);

-- The latest progress report of each shard of a running load test, deleted when the run
-- finishes (upsert_run) or goes quiet for a day (purge_expired).
CREATE TABLE IF NOT EXISTS run_progress (
    run_id TEXT NOT NULL,
    shard INTEGER NOT NULL,
    doc TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, shard)
);

-- Merged live figures of a load test run over time (progress.py progress_sample), at most
-- one per SAMPLE_SECONDS and MAX_SAMPLES per run, purged with the run.
CREATE TABLE IF NOT EXISTS run_progress_samples (
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (run_id, at)
);

-- One row per Monitor result document (monitor_results.py): what the result list, metrics
-- and request counts read instead of the documents.
CREATE TABLE IF NOT EXISTS monitor_results (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    owner_uid TEXT NOT NULL,
    location INTEGER,
    started_at REAL,
    result TEXT,
    environment_id TEXT,
    region TEXT,
    requests_executed INTEGER NOT NULL,
    response_time_ms REAL,
    header TEXT NOT NULL,
    listed INTEGER NOT NULL,
    listed_at REAL NOT NULL,
    run_created_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
-- In the list's order, so a page is the first rows of one range.
CREATE INDEX IF NOT EXISTS monitor_results_by_test ON monitor_results
    (project, owner_uid, listed, listed_at DESC, run_created_at DESC, run_id DESC, location);
CREATE INDEX IF NOT EXISTS monitor_results_by_start
    ON monitor_results (project, listed, started_at, requests_executed);

-- Runs whose rows are deleted but whose folders may not be yet: a purge interrupted
-- between the two finishes here next time.
CREATE TABLE IF NOT EXISTS purge_queue (run_id TEXT PRIMARY KEY);

-- Authorization codes of the web flow (api/auth/tokens.py), under their hash: redeemable
-- once by whichever process of the gateway receives the exchange.
CREATE TABLE IF NOT EXISTS authorization_codes (
    code_hash TEXT PRIMARY KEY,
    grant_doc TEXT NOT NULL,
    expires_at REAL NOT NULL,
    redeemed INTEGER NOT NULL,
    tokens TEXT NOT NULL
);

-- Access tokens revoked before their expiry (those of a replayed authorization code).
CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires_at REAL NOT NULL);
"""
"""SQLite's schema; PostgreSQL's is the same tables in migrations/."""


def upsert(table: str, columns: Sequence[str], key: Sequence[str], values: Sequence[str] | None = None) -> str:
    """An INSERT of one row that replaces the row of the same `key` (what SQLite's INSERT OR
    REPLACE does), in the ON CONFLICT form both databases speak. `values` are the SQL of each
    column's value, `?` by default."""
    values = values or ["?"] * len(columns)
    updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for `parts`."""
    digest = hashlib.sha256("\0".join(("assay", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SQLiteIndex:
    """The index in one SQLite file (WAL, synchronous=FULL) beside the documents."""

    kind = "sqlite"
    connection_errors: tuple[type[Exception], ...] = (sqlite3.ProgrammingError,)
    plus = "+"
    """Unary plus on a column: keeps SQLite's planner off an index for that term."""

    def __init__(self, path: Path):
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def connect(self) -> sqlite3.Connection:
        # isolation_level=None: we say where transactions begin (BEGIN IMMEDIATE).
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def begin(self, conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def indexed_by(self, index: str) -> str:
        return f"INDEXED BY {index}"

    @contextlib.contextmanager
    def run_lock(self, conn, run_id: str) -> Iterator[None]:
        yield

    def migrate(self, store) -> None:
        from .store import StoreError

        store._conn().execute("PRAGMA journal_mode=WAL")
        with store._write() as tx:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    tx.execute(statement)
            version = tx.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}; this gateway knows "
                    f"up to {SCHEMA_VERSION}: upgrade the gateway"
                )
            _add_document_projects(tx)
        if version < SCHEMA_VERSION:
            if version < 3:
                store._index_monitor_results()
            with store._write() as tx:
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _add_document_projects(tx: sqlite3.Connection) -> None:
    """Schema 1 to 2: a project column on documents, filled from their runs."""
    columns = {row["name"] for row in tx.execute("PRAGMA table_info(documents)")}
    if "project" not in columns:
        tx.execute("ALTER TABLE documents ADD COLUMN project TEXT NOT NULL DEFAULT ''")
        tx.execute(
            "UPDATE documents SET project = COALESCE((SELECT project FROM runs "
            "WHERE runs.run_id = documents.run_id), '')"
        )
    # With the size, a namespace's usage is summed from the index alone.
    tx.execute("CREATE INDEX IF NOT EXISTS documents_by_project ON documents (project, size)")


class _Row(tuple):
    """A PostgreSQL row read like sqlite3.Row: by column name or by position."""

    _names: dict[str, int]

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor):
    names = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values):
        row = _Row(values)
        row._names = names
        return row

    return make


@lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _PostgresConnection:
    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql: str, params: Any = ()):
        return self.raw.execute(_placeholders(sql), tuple(params))

    def close(self) -> None:
        self.raw.close()


class PostgresIndex:
    """The index in a PostgreSQL database that several gateway replicas share.

    `url` is a libpq URL, postgresql://user@host:port/database; a `schema` query parameter
    puts the tables in that schema (created when missing) instead of the user's default. A
    password may be in the URL or, better, in PGPASSWORD, which libpq reads."""

    kind = "postgresql"
    plus = ""
    connection_errors: tuple[type[Exception], ...] = ()

    def __init__(self, url: str):
        import psycopg

        self.connection_errors = (psycopg.Error,)
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"the database URL must start with postgresql://, not {parts.scheme}://")
        query = dict(parse_qsl(parts.query))
        self.schema = query.pop("schema", None)
        self._url = urlunsplit(parts._replace(query=urlencode(query)))
        self._yoyo_url = urlunsplit(parts._replace(scheme="postgresql+psycopg"))
        self._display = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))
        scope = self.schema or ""
        self._write_key = _lock_key("write", scope)
        self._migrate_key = _lock_key("migrate", scope)
        self._run_scope = scope

    def __str__(self) -> str:
        return self._display

    def _raw(self):
        import psycopg

        options = {"options": f"-c search_path={self.schema}"} if self.schema else {}
        return psycopg.connect(self._url, autocommit=True, row_factory=_row_factory, **options)

    def connect(self) -> _PostgresConnection:
        return _PostgresConnection(self._raw())

    def begin(self, conn) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (self._write_key,))

    def indexed_by(self, index: str) -> str:
        return ""

    @contextlib.contextmanager
    def run_lock(self, conn, run_id: str) -> Iterator[None]:
        key = _lock_key("run", self._run_scope, run_id)
        conn.execute("SELECT pg_advisory_lock(?)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(?)", (key,))

    def migrate(self, store) -> None:
        from yoyo import get_backend, read_migrations

        from .store import StoreError

        with contextlib.closing(self._admin()) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (self._migrate_key,))
            try:
                if self.schema:
                    from psycopg import sql

                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                backend = get_backend(self._yoyo_url)
                try:
                    migrations = read_migrations(str(MIGRATIONS))
                    unknown = set(backend.get_applied_migration_hashes()) - {m.hash for m in migrations}
                    if unknown:
                        raise StoreError(
                            f"{self} has {len(unknown)} schema migrations this gateway does not know: "
                            "upgrade the gateway"
                        )
                    with backend.lock():
                        backend.apply_migrations(backend.to_apply(migrations))
                finally:
                    backend.connection.close()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._migrate_key,))

    def _admin(self):
        import psycopg

        return psycopg.connect(self._url, autocommit=True)


def index_for(root: Path, database_url: str | None) -> SQLiteIndex | PostgresIndex:
    """PostgreSQL when a database URL is given, else SQLite in the store's folder."""
    return PostgresIndex(database_url) if database_url else SQLiteIndex(root / "index.sqlite3")
