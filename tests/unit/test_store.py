"""The result store: a real SQLite index and real files in a temporary folder.

Crashes are real too: a child process is SIGKILLed while it is inside a write (it signals
when it gets there), and a fresh Store on the same folder must see all or nothing."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from assay.api.store import RunConflict, RunRecord, Store, archive_counter
from assay.api.store.store import check_component

REPO = Path(__file__).resolve().parents[2]
DAY = 86400.0


@pytest.fixture
def store(tmp_path, make_store):
    with make_store(tmp_path / "store") as s:
        yield s


@pytest.fixture
def sqlite_store(tmp_path):
    """For what only SQLite has: its query plans, its pragmas."""
    with Store(tmp_path / "store") as s:
        yield s


def run(run_id: str, **fields) -> RunRecord:
    defaults = dict(kind="LoadTest", project="shop", owner_name="checkout", owner_uid="uid-1")
    defaults.update(fields)
    return RunRecord(run_id=run_id, **defaults)


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("index.sqlite3"))


# --- numbers ------------------------------------------------------------------------------------


def test_number_for_allocates_once_and_then_returns_the_same_number(store):
    assert store.number_for("shop", "loadtest", "uid-a") == 1
    assert store.number_for("shop", "loadtest", "uid-b") == 2
    assert store.number_for("shop", "loadtest", "uid-a") == 1
    assert store.number_for("shop", "loadtest", "uid-c") == 3
    assert store.key_for_number("shop", "loadtest", 2) == "uid-b"
    assert store.key_for_number("shop", "loadtest", 4) is None


def test_numbers_are_independent_per_project_and_per_counter(store):
    assert store.number_for("shop", "loadtest", "a") == 1
    assert store.number_for("billing", "loadtest", "a") == 1
    assert store.number_for("billing", "loadtest", "b") == 2
    assert store.number_for("shop", "report/a", "run-1") == 1
    assert store.number_for("shop", "loadtest", "b") == 2
    assert store.key_for_number("billing", "loadtest", 2) == "b"
    assert store.key_for_number("shop", "report/a", 1) == "run-1"


def test_numbers_survive_reopening_the_store(tmp_path, make_store):
    with make_store(tmp_path / "s") as first:
        first.number_for("shop", "loadtest", "a")
        first.number_for("shop", "loadtest", "b")
    with make_store(tmp_path / "s") as again:
        assert again.number_for("shop", "loadtest", "b") == 2
        assert again.number_for("shop", "loadtest", "c") == 3


def test_threads_allocating_numbers_get_no_duplicates_and_no_gaps(store):
    keys = [f"key-{i}" for i in range(200)]
    results: dict[str, set[int]] = {key: set() for key in keys}
    errors = []
    lock = threading.Lock()

    def allocate(offset: int):
        try:
            # Every thread asks for every key, in a different order: races on the same key
            # as well as on the next free number.
            for key in keys[offset:] + keys[:offset]:
                number = store.number_for("shop", "loadtest", key)
                with lock:
                    results[key].add(number)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=allocate, args=(i * 25,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(len(numbers) == 1 for numbers in results.values()), "a key got two numbers"
    assert sorted(n for numbers in results.values() for n in numbers) == list(range(1, 201))


def _allocate_in_process(root: str, database_url: str | None, worker: int, queue) -> None:
    with Store(Path(root), database_url=database_url) as s:
        queue.put([s.number_for("shop", "loadtest", f"w{worker}-{i}") for i in range(30)])


def test_processes_sharing_the_store_allocate_distinct_numbers(tmp_path, make_store, database_url):
    make_store(tmp_path / "s").close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_allocate_in_process, args=(str(tmp_path / "s"), database_url, w, queue)) for w in range(3)
    ]
    for p in procs:
        p.start()
    numbers = [n for _ in procs for n in queue.get(timeout=60)]
    for p in procs:
        p.join(30)
    assert sorted(numbers) == list(range(1, 91))


# --- runs ---------------------------------------------------------------------------------------


def test_upsert_run_creates_and_merges_without_moving_a_finished_run_back(store):
    created = store.upsert_run(run("r1", created_at=100.0, summary={"a": 1}, labels={"x": "1"}))
    assert created.state == "pending" and created.created_at == 100.0
    running = store.upsert_run(
        run("r1", state="running", started_at=110.0, created_at=150.0, shards=2, shards_received=1, summary={"b": 2})
    )
    assert (running.state, running.created_at, running.started_at) == ("running", 100.0, 110.0)
    assert running.summary == {"a": 1, "b": 2} and running.labels == {"x": "1"}
    done = store.upsert_run(run("r1", state="succeeded", result="passed", finished_at=200.0, shards_received=2))
    assert (done.state, done.result, done.finished_at, done.shards, done.shards_received) == (
        "succeeded",
        "passed",
        200.0,
        2,
        2,
    )
    late = store.upsert_run(run("r1", state="running", shards_received=1, summary={"c": 3}))
    assert (late.state, late.result, late.finished_at, late.shards_received) == ("succeeded", "passed", 200.0, 2)
    assert late.summary == {"a": 1, "b": 2, "c": 3}
    assert store.get_run("r1") == late
    # Among final states the later word wins: the operator may declare a failure.
    failed = store.upsert_run(run("r1", state="failed", result="failed"))
    assert (failed.state, failed.result, failed.finished_at) == ("failed", "failed", 200.0)


def test_a_finished_run_without_a_finish_time_gets_one(store):
    before = time.time()
    assert store.upsert_run(run("r1", state="failed")).finished_at >= before


def test_upsert_run_refuses_another_project_kind_or_owner(store):
    store.upsert_run(run("r1"))
    for change in ({"project": "billing"}, {"kind": "Monitor"}, {"owner_uid": "uid-2"}):
        with pytest.raises(RunConflict):
            store.upsert_run(run("r1", **change))
    assert store.get_run("r1").project == "shop"


def test_upsert_run_refuses_unknown_states_and_unsafe_ids(store):
    with pytest.raises(ValueError):
        store.upsert_run(run("r1", state="done"))
    for bad in ("../etc", "a/b", "", ".hidden", "r1\n"):
        with pytest.raises(ValueError):
            store.upsert_run(run(bad))


def test_list_runs_is_newest_first_with_filters_and_paging(store):
    for i in range(10):
        store.upsert_run(
            run(
                f"r{i}",
                created_at=1000.0 + i,
                project="shop" if i % 2 else "billing",
                kind="LoadTest" if i < 5 else "Monitor",
                owner_uid=f"uid-{i % 3}",
            )
        )
    assert [r.run_id for r in store.list_runs()] == [f"r{i}" for i in range(9, -1, -1)]
    assert [r.run_id for r in store.list_runs(limit=3)] == ["r9", "r8", "r7"]
    assert [r.run_id for r in store.list_runs(limit=3, offset=3)] == ["r6", "r5", "r4"]
    assert [r.run_id for r in store.list_runs(project="shop")] == ["r9", "r7", "r5", "r3", "r1"]
    assert [r.run_id for r in store.list_runs(project="shop", kind="LoadTest")] == ["r3", "r1"]
    assert [r.run_id for r in store.list_runs(owner_uid="uid-0")] == ["r9", "r6", "r3", "r0"]
    assert [r.run_id for r in store.list_runs(since=1003.0, before=1006.0)] == ["r5", "r4", "r3"]
    assert store.list_runs(project="nobody") == []


def test_list_runs_uses_the_indexes(sqlite_store):
    conn = sqlite_store._conn()
    for sql, args in (
        ("SELECT * FROM runs WHERE project=? ORDER BY created_at DESC, run_id DESC", ("shop",)),
        ("SELECT * FROM runs WHERE owner_uid=? ORDER BY created_at DESC, run_id DESC", ("u",)),
        ("SELECT * FROM runs ORDER BY created_at DESC, run_id DESC", ()),
    ):
        plan = " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan


# --- documents ----------------------------------------------------------------------------------


def test_put_document_is_idempotent_and_different_bytes_replace(store):
    first = store.put_document("r1", "shard-0.json", b'{"a": 1}')
    assert store.get_document("r1", "shard-0.json") == b'{"a": 1}'
    mtime = first.stat().st_mtime_ns
    assert store.put_document("r1", "shard-0.json", b'{"a": 1}') == first
    assert first.stat().st_mtime_ns == mtime
    second = store.put_document("r1", "shard-0.json", b'{"a": 2}')
    assert store.get_document("r1", "shard-0.json") == b'{"a": 2}'
    assert not first.exists(), "the replaced version is deleted"
    assert all_files(store.root) == [second]
    info = store.document_info("r1", "shard-0.json")
    assert (info.size, info.path) == (8, second)
    assert store.get_document("r1", "nothing.json") is None
    assert store.get_document("r2", "shard-0.json") is None


def test_document_names_are_checked(store):
    for bad in ("../x", "a/b", ".x", "", "x" * 300, "result.json\n"):
        with pytest.raises(ValueError):
            store.put_document("r1", bad, b"data")
    assert not list(store.runs_dir.rglob("*\n*"))


def test_list_documents_by_prefix(store):
    for name in ("shard-1.json", "shard-0.json", "result.json"):
        store.put_document("r1", name, name.encode())
    assert [d.name for d in store.list_documents("r1")] == ["result.json", "shard-0.json", "shard-1.json"]
    assert [d.name for d in store.list_documents("r1", prefix="shard-")] == ["shard-0.json", "shard-1.json"]


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from assay.api.store import Store, files

    root, what, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    store = Store(root, database_url=os.environ.get("ASSAY_DATABASE_URL") or None)

    def hang(*args, **kwargs):
        print("inside", flush=True)
        time.sleep(600)

    if point == "fsync":          # the bytes are written to the temporary file, not yet synced
        os.fsync = hang
    elif point == "after_rename":  # the file is in place, its index row not yet committed
        real_replace = os.replace
        def replace_then_hang(src, dst):
            real_replace(src, dst)
            hang()
        os.replace = replace_then_hang
    if what == "document":
        store.put_document("r1", "big.json", b"n" * (8 << 20))
    else:
        store.add_archive("r1", "result", root.parent / "source.zip", loadtest_uid="lt-1", project="shop")
    print("finished", flush=True)
""")


def crash_inside(root: Path, what: str, point: str, database_url: str | None) -> None:
    """Run the write `what` in a child and SIGKILL it while it waits at `point`."""
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), what, point],
        cwd=REPO,
        env={**os.environ, "ASSAY_DATABASE_URL": database_url or ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "inside", child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)


def test_a_writer_killed_mid_write_leaves_no_partial_document(tmp_path, make_store, database_url):
    root = tmp_path / "store"
    with make_store(root) as s:
        s.put_document("r1", "big.json", b"old")
    crash_inside(root, "document", "fsync", database_url)
    with make_store(root) as s:
        assert s.get_document("r1", "big.json") == b"old"
        leftovers = [p for p in all_files(root) if p.name.startswith(".tmp-")]
        assert leftovers, "the crash should have left its temporary file"
        assert s.sweep_temporaries(now=time.time() + 2 * 3600) == len(leftovers)
        assert [p.name for p in all_files(root)] == [s.document_info("r1", "big.json").path.name]


def test_a_writer_killed_after_the_rename_but_before_the_index_commit_keeps_the_old_document(
    tmp_path, make_store, database_url
):
    root = tmp_path / "store"
    with make_store(root) as s:
        s.put_document("r1", "big.json", b"old")
    crash_inside(root, "document", "after_rename", database_url)
    with make_store(root) as s:
        assert s.get_document("r1", "big.json") == b"old"
        assert [d.size for d in s.list_documents("r1")] == [3]
        assert len(all_files(root)) == 2, "the new file is in place but not referenced"
        assert s.sweep_temporaries() == 0, "too young: it could be a write in progress"
        assert s.sweep_temporaries(now=time.time() + 2 * 3600) == 1
        assert len(all_files(root)) == 1 and s.get_document("r1", "big.json") == b"old"
        crash_inside(root, "document", "after_rename", database_url)
        data = b"n" * (8 << 20)
        s.put_document("r1", "big.json", data)
        assert s.get_document("r1", "big.json") == data
        assert len(all_files(root)) == 1, "the old version is gone once the new one is committed"


def test_an_archive_killed_between_file_and_index_is_completed_once_by_the_retry(tmp_path, make_store, database_url):
    root = tmp_path / "store"
    (tmp_path / "source.zip").write_bytes(b"PK-archive")
    make_store(root).close()
    # Killed inside the index transaction, with the archive file already renamed into place.
    crash_inside(root, "archive", "after_rename", database_url)
    with make_store(root) as s:
        assert s.list_archives() == []
        record = s.add_archive("r1", "result", tmp_path / "source.zip", loadtest_uid="lt-1", project="shop")
        assert record.number == 1 and record.path.read_bytes() == b"PK-archive"
        assert [a.number for a in s.list_archives()] == [1]


# --- archives -----------------------------------------------------------------------------------


def test_archives_are_numbered_per_load_test_and_kind_and_idempotent_per_run(store, tmp_path):
    source = tmp_path / "a.zip"
    source.write_bytes(b"zip-1")
    first = store.add_archive("run-1", "result", source, loadtest_uid="lt-1", project="shop")
    assert (first.number, first.kind, first.size, first.path.read_bytes()) == (1, "result", 5, b"zip-1")
    source.write_bytes(b"zip-other")
    again = store.add_archive("run-1", "result", source, loadtest_uid="lt-1", project="shop")
    assert again == first and first.path.read_bytes() == b"zip-1"
    assert store.add_archive("run-1", "report", source, loadtest_uid="lt-1", project="shop").number == 1
    assert store.add_archive("run-2", "result", source, loadtest_uid="lt-1", project="shop").number == 2
    assert store.add_archive("run-3", "result", source, loadtest_uid="lt-2", project="shop").number == 1
    assert store.add_archive("run-4", "result", source, loadtest_uid="lt-1", project="billing").number == 1
    assert store.get_archive("shop", "lt-1", "result", 2).run_id == "run-2"
    assert store.get_archive("shop", "lt-1", "result", 3) is None
    assert [(a.kind, a.number) for a in store.list_archives(run_id="run-1")] == [("report", 1), ("result", 1)]
    assert [(a.run_id, a.kind) for a in store.list_archives(loadtest_uid="lt-1")] == [
        ("run-4", "result"),
        ("run-1", "report"),
        ("run-1", "result"),
        ("run-2", "result"),
    ]
    assert store.key_for_number("shop", archive_counter("result", "lt-1"), 2) == "run-2"


def test_add_archive_with_move_removes_the_source(store, tmp_path):
    source = tmp_path / "a.zip"
    source.write_bytes(b"zip")
    record = store.add_archive("run-1", "report", source, loadtest_uid="lt", project="shop", move=True)
    assert not source.exists() and record.path.read_bytes() == b"zip"


def test_threads_adding_the_same_archive_register_it_once(store, tmp_path):
    sources = []
    for i in range(6):
        sources.append(tmp_path / f"s{i}.zip")
        sources[-1].write_bytes(f"zip-{i}".encode())
    results = []
    threads = [
        threading.Thread(
            target=lambda s=s: results.append(
                store.add_archive("run-1", "result", s, loadtest_uid="lt", project="shop")
            )
        )
        for s in sources
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({(r.number, r.sha256) for r in results}) == 1
    (record,) = store.list_archives()
    assert record.number == 1
    assert hashlib.sha256(record.path.read_bytes()).hexdigest() == record.sha256
    assert store.number_for("shop", archive_counter("result", "lt"), "run-2") == 2


# --- records ------------------------------------------------------------------------------------


def test_records_put_get_list_and_delete(store):
    store.put_record("teams", "t1", {"name": "one"})
    store.put_record("buckets", "b1", {"name": "b"}, project="shop")
    store.put_record("buckets", "b2", {"name": "c"}, project="billing")
    store.put_record("buckets", "b1", {"name": "b2"}, project="shop")
    assert store.get_record("buckets", "b1") == {"name": "b2"}
    assert store.list_records("buckets") == [{"name": "b2"}, {"name": "c"}]
    assert store.list_records("buckets", project="billing") == [{"name": "c"}]
    assert store.delete_record("buckets", "b1") is True
    assert store.delete_record("buckets", "b1") is False
    assert store.get_record("buckets", "b1") is None
    assert store.list_records("teams") == [{"name": "one"}]


# --- retention ----------------------------------------------------------------------------------


def test_purge_removes_runs_finished_before_the_retention_with_their_files(tmp_path, make_store):
    now = 1_800_000_000.0
    with make_store(tmp_path / "s", retention_days=30) as s:
        source = tmp_path / "a.zip"
        source.write_bytes(b"zip")
        s.upsert_run(run("old", state="succeeded", created_at=now - 40 * DAY, finished_at=now - 31 * DAY))
        s.upsert_run(run("recent", state="failed", created_at=now - 40 * DAY, finished_at=now - 29 * DAY))
        s.upsert_run(run("unfinished", state="running", created_at=now - 400 * DAY))
        for run_id in ("old", "recent", "unfinished"):
            s.put_document(run_id, "shard-0.json", b"{}")
        s.add_archive("old", "result", source, loadtest_uid="lt", project="shop")
        s.add_archive("recent", "result", source, loadtest_uid="lt", project="shop")
        s.put_record("teams", "t", {"kept": True})

        assert s.purge_expired(now=now) == 1
        assert s.get_run("old") is None and s.get_document("old", "shard-0.json") is None
        assert not (s.runs_dir / "old").exists()
        assert s.get_archive("shop", "lt", "result", 1) is None
        assert [r.run_id for r in s.list_runs()] == ["recent", "unfinished"]
        assert s.get_document("recent", "shard-0.json") == b"{}"
        assert s.get_record("teams", "t") == {"kept": True}
        # Numbers stay allocated: the purged run's number is never handed out again.
        assert s.add_archive("new", "result", source, loadtest_uid="lt", project="shop").number == 3
        assert s.purge_expired(now=now) == 0


def test_retention_zero_keeps_everything(tmp_path, make_store):
    with make_store(tmp_path / "s", retention_days=0) as s:
        s.upsert_run(run("old", state="succeeded", finished_at=1.0, created_at=1.0))
        assert s.purge_expired(now=time.time()) == 0
        assert s.get_run("old") is not None


def test_an_interrupted_purge_finishes_on_the_next_call(tmp_path, monkeypatch, make_store):
    from assay.api.store import files

    with make_store(tmp_path / "s", retention_days=1) as s:
        s.upsert_run(run("old", state="succeeded", finished_at=1.0, created_at=1.0))
        s.put_document("old", "shard-0.json", b"{}")
        real = s.runs_dir

        def die(path):
            raise KeyboardInterrupt  # the rows are gone; the process dies before the folder

        monkeypatch.setattr(files, "remove_tree", die)
        with pytest.raises(KeyboardInterrupt):
            s.purge_expired(now=10 * DAY)
        monkeypatch.undo()
        assert s.get_run("old") is None and (real / "old").exists()
        assert s.purge_expired(now=10 * DAY) == 0
        assert not (real / "old").exists()


def test_store_files_are_world_readable_and_the_index_is_wal(sqlite_store):
    path = sqlite_store.put_document("r1", "a.json", b"{}")
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sqlite_store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sqlite_store._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_component_with_a_trailing_newline_is_not_a_file_name():
    """`$` in a pattern also matches before a final newline; the whole value must match."""
    assert check_component("result.json", "document name") == "result.json"
    for bad in ("result.json\n", "run-1\n", "\nrun-1"):
        with pytest.raises(ValueError):
            check_component(bad, "run id")
