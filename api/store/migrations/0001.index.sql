-- The index's tables on PostgreSQL: the same as SQLite's (api/store/backends.py SCHEMA), with
-- PostgreSQL's types, and byte-order collation so that ids sort as they do in SQLite.
-- A later change of the schema is a new file here, never an edit of this one.
CREATE TABLE runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    project TEXT COLLATE "C" NOT NULL,
    owner_name TEXT COLLATE "C" NOT NULL,
    owner_uid TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    result TEXT COLLATE "C",
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    shards INTEGER NOT NULL,
    shards_received INTEGER NOT NULL,
    summary TEXT COLLATE "C" NOT NULL,
    labels TEXT COLLATE "C" NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX runs_by_created ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_by_project ON runs (project, created_at DESC, run_id DESC);
CREATE INDEX runs_by_owner ON runs (owner_uid, created_at DESC, run_id DESC);
CREATE INDEX runs_by_kind ON runs (kind, created_at DESC, run_id DESC);
CREATE INDEX runs_by_finished ON runs (finished_at);

CREATE TABLE counters (
    project TEXT COLLATE "C" NOT NULL,
    counter TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    number BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, counter, key),
    UNIQUE (project, counter, number)
);

CREATE TABLE documents (
    run_id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    project TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, name)
);

CREATE TABLE archives (
    run_id TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    project TEXT COLLATE "C" NOT NULL,
    loadtest_uid TEXT COLLATE "C" NOT NULL,
    number BIGINT NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, kind),
    UNIQUE (project, loadtest_uid, kind, number)
);

CREATE TABLE records (
    collection TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    project TEXT COLLATE "C",
    doc TEXT COLLATE "C" NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (collection, key)
);
CREATE INDEX records_by_project ON records (collection, project, created_at);

-- The latest progress report of each shard of a running load test, deleted when the run
-- finishes (upsert_run) or goes quiet for a day (purge_expired).
CREATE TABLE run_progress (
    run_id TEXT COLLATE "C" NOT NULL,
    shard INTEGER NOT NULL,
    doc TEXT COLLATE "C" NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, shard)
);

-- One row per Monitor result document (monitor_results.py): what the result list, metrics
-- and request counts read instead of the documents.
CREATE TABLE monitor_results (
    run_id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    project TEXT COLLATE "C" NOT NULL,
    owner_uid TEXT COLLATE "C" NOT NULL,
    location INTEGER,
    started_at DOUBLE PRECISION,
    result TEXT COLLATE "C",
    environment_id TEXT COLLATE "C",
    region TEXT COLLATE "C",
    requests_executed BIGINT NOT NULL,
    response_time_ms DOUBLE PRECISION,
    header TEXT COLLATE "C" NOT NULL,
    listed SMALLINT NOT NULL,
    listed_at DOUBLE PRECISION NOT NULL,
    run_created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, name)
);
-- In the list's order, so a page is the first rows of one range.
CREATE INDEX monitor_results_by_test ON monitor_results
    (project, owner_uid, listed, listed_at DESC, run_created_at DESC, run_id DESC, location);
CREATE INDEX monitor_results_by_start
    ON monitor_results (project, listed, started_at, requests_executed);

-- Runs whose rows are deleted but whose folders may not be yet: a purge interrupted
-- between the two finishes here next time.
CREATE TABLE purge_queue (run_id TEXT COLLATE "C" PRIMARY KEY);

-- Authorization codes of the web flow (api/auth/tokens.py), under their hash: redeemable
-- once by whichever process of the gateway receives the exchange.
CREATE TABLE authorization_codes (
    code_hash TEXT COLLATE "C" PRIMARY KEY,
    grant_doc TEXT COLLATE "C" NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    redeemed SMALLINT NOT NULL,
    tokens TEXT COLLATE "C" NOT NULL
);

-- Access tokens revoked before their expiry (those of a replayed authorization code).
CREATE TABLE revoked_tokens (jti TEXT COLLATE "C" PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL);

-- With the size, a namespace's usage is summed from the index alone.
CREATE INDEX documents_by_project ON documents (project, size);
