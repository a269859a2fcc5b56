"""Result ingest on a real store: documents once, archives once per run, numbered per load test,
whatever the order, repetition or interruption of the uploads (the HTTP side is in
tests/cluster/test_ingest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from assay.api.routers.ingest import REFUSALS, refusal
from assay.api.store import (
    DocumentConflict,
    Invalid,
    Quota,
    QuotaExceeded,
    ResultIngest,
    RunConflict,
    Store,
    Upload,
    Usage,
)
from assay.runner.report import read_report, verify_result_archive
from tests.unit.test_report_factory import make_run

REPO = Path(__file__).resolve().parents[2]
CRITERIA = [{"criterion": "p95 < 5s", "observed": 1.0, "passed": True}]


def shard_uploads(
    run_id: str, *, shards: int = 2, owner_uid: str = "lt-uid-1", seed: int = 1, criteria=CRITERIA
) -> list[Upload]:
    dicts, _ = make_run(run_id=run_id, shards=shards, seconds=3, rate=10, seed=seed, criteria=criteria)
    return [
        Upload(
            run_id=run_id,
            name=f"shard-{d['shard']}.json",
            data=json.dumps(d).encode(),
            kind="LoadTest",
            project="shop",
            owner_name="checkout",
            owner_uid=owner_uid,
            shards=shards,
            shard=d["shard"],
        )
        for d in dicts
    ]


@pytest.fixture
def store(tmp_path, make_store):
    with make_store(tmp_path / "store") as s:
        yield s


def test_all_shards_make_one_result_and_one_report_archive_numbered_per_load_test(store):
    ingest = ResultIngest(store)
    first, second = shard_uploads("checkout-aaaa")
    accepted = ingest.accept(first)
    assert accepted.created and accepted.archives == []
    assert (accepted.run.state, accepted.run.shards_received) == ("running", 1)
    accepted = ingest.accept(second)
    run = accepted.run
    assert (run.state, run.result, run.shards_received) == ("succeeded", "passed", 2)
    assert [(a.kind, a.number) for a in accepted.archives] == [("report", 1), ("result", 1)]
    summary = run.summary
    assert summary["requests"] > 0 and summary["failures"] >= 0
    assert summary["p50Ms"] <= summary["p95Ms"] <= summary["p99Ms"]
    assert summary["throughputRps"] > 0
    assert (summary["resultNumber"], summary["reportNumber"]) == (1, 1)
    assert summary["criteria"] == [
        {"criterion": "p95 < 5s", "observed": summary["criteria"][0]["observed"], "passed": True}
    ]

    result = store.get_archive("shop", "lt-uid-1", "result", 1)
    manifest = verify_result_archive(result.path)
    assert (manifest["runId"], manifest["shards"]) == ("checkout-aaaa", 2)
    assert [f["source"] for f in manifest["files"]] == ["shard-0.json", "shard-1.json"]
    report = read_report(store.get_archive("shop", "lt-uid-1", "report", 1).path)
    assert report["total"]["count"] == summary["requests"]
    assert report["total"]["p95Ms"] == summary["p95Ms"]

    # The next run of the same load test gets the next numbers; another load test starts at 1.
    for upload in shard_uploads("checkout-bbbb", seed=2):
        accepted = ingest.accept(upload)
    assert [(a.kind, a.number) for a in accepted.archives] == [("report", 2), ("result", 2)]
    for upload in shard_uploads("other-cccc", owner_uid="lt-uid-2", seed=3):
        accepted = ingest.accept(upload)
    assert [(a.kind, a.number) for a in accepted.archives] == [("report", 1), ("result", 1)]


def test_a_repeated_upload_changes_nothing(store):
    ingest = ResultIngest(store)
    uploads = shard_uploads("checkout-aaaa")
    for upload in uploads:
        ingest.accept(upload)
    before = store.get_run("checkout-aaaa")
    archives = store.list_archives()
    for upload in [*uploads, uploads[1]]:
        again = ingest.accept(upload)
        assert not again.created
    assert store.get_run("checkout-aaaa") == before
    assert store.list_archives() == archives
    assert len(store.list_documents("checkout-aaaa")) == 2


def test_different_bytes_under_a_stored_name_are_refused_with_the_stored_checksum(store):
    ingest = ResultIngest(store)
    upload = shard_uploads("checkout-aaaa")[0]
    ingest.accept(upload)
    other = shard_uploads("checkout-aaaa", seed=9)[0]
    with pytest.raises(DocumentConflict) as refused:
        ingest.accept(other)
    assert refused.value.sha256 == store.document_info("checkout-aaaa", "shard-0.json").sha256
    assert store.get_document("checkout-aaaa", "shard-0.json") == upload.data


def test_each_refusal_of_the_store_has_its_http_answer(store):
    ingest = ResultIngest(store, quota=Quota(run_documents=1))
    first, second = shard_uploads("checkout-aaaa")
    ingest.accept(first)
    stored = store.document_info("checkout-aaaa", "shard-0.json").sha256

    def answer(upload: Upload) -> tuple[int, dict]:
        with pytest.raises(REFUSALS) as refused:
            ingest.accept(upload)
        response = refusal(refused.value)
        return response.status_code, json.loads(response.body)

    status, body = answer(shard_uploads("checkout-aaaa", seed=9)[0])
    assert (status, list(body)) == (409, ["error", "message", "sha256"])
    assert body == {
        "error": "conflict",
        "sha256": stored,
        "message": f"run checkout-aaaa already has a different "
        f"shard-0.json (sha256 {stored}); a stored document is never replaced",
    }
    assert answer(replace(second, project="billing")) == (
        409,
        {"error": "conflict", "message": "run checkout-aaaa belongs to project 'shop', not 'billing'"},
    )
    assert answer(replace(second, kind="Job")) == (
        400,
        {"error": "invalid_request", "message": "kind 'Job' is not one of LoadTest, TestSuite, Monitor"},
    )
    status, body = answer(second)  # one document more than the run's quota
    assert (status, list(body)) == (507, ["error", "message", "quota", "limit", "used", "adding"])
    assert body == {
        "error": "quota_exceeded",
        "quota": "run_documents",
        "limit": 1,
        "used": 1,
        "adding": 1,
        "message": "the upload quota of run checkout-aaaa is 1 documents; 1 are stored and one more "
        "document does not fit",
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"run_id": "someone-else"}, "of run checkout-aaaa"),
        ({"name": "shard-1.json", "shard": None}, "the metrics are of shard 0"),
        ({"name": "shard-1.json"}, "the shard header says 0"),
        ({"shards": 3}, "the metrics say 2 shards"),
        ({"name": "shard-2.json", "shard": None}, "shard 2 of 2 shards"),
        ({"data": b"{not json"}, "not load-test shard metrics"),
        ({"project": ""}, "project"),
        ({"kind": "Job"}, "kind"),
    ],
)
def test_a_shard_that_does_not_fit_its_run_is_refused_and_not_stored(store, change, message):
    upload = shard_uploads("checkout-aaaa")[0]
    for key, value in change.items():
        setattr(upload, key, value)
    with pytest.raises(Invalid) as refused:
        ResultIngest(store).accept(upload)
    assert message in str(refused.value)
    assert store.list_documents(upload.run_id) == [] and store.get_run(upload.run_id) is None


def test_an_upload_for_another_project_or_owner_of_the_run_is_refused(store):
    ingest = ResultIngest(store)
    first, second = shard_uploads("checkout-aaaa")
    ingest.accept(first)
    second.project = "billing"
    with pytest.raises(RunConflict):
        ingest.accept(second)
    assert store.get_document("checkout-aaaa", "shard-1.json") is None


def test_last_shards_arriving_together_build_the_archives_once(tmp_path, make_store):
    # Two ingests on two stores over the same folder: like two gateway processes, so the
    # in-process lock does not help and the store's transactions must.
    stores = [make_store(tmp_path / "store"), make_store(tmp_path / "store")]
    try:
        ingests = [ResultIngest(s) for s in stores]
        for attempt in range(3):
            uploads = shard_uploads(f"checkout-{attempt}", shards=4, seed=attempt)
            ingests[0].accept(uploads[0])
            ingests[1].accept(uploads[1])
            barrier = threading.Barrier(4)
            errors = []

            def send(ingest, upload):
                try:
                    barrier.wait()  # noqa: B023  (the threads are joined inside this attempt)
                    ingest.accept(upload)
                except Exception as exc:  # pragma: no cover - reported below
                    errors.append(exc)  # noqa: B023  (the threads are joined inside this attempt)

            threads = [threading.Thread(target=send, args=(ingests[i % 2], uploads[2 + i % 2])) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
            archives = stores[0].list_archives(run_id=f"checkout-{attempt}")
            assert [(a.kind, a.number) for a in archives] == [("report", attempt + 1), ("result", attempt + 1)]
            assert stores[0].get_run(f"checkout-{attempt}").summary["resultNumber"] == attempt + 1
    finally:
        for s in stores:
            s.close()


CRASH_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from assay.api.store import ResultIngest, Store, Upload

    root, crash_after = Path(sys.argv[1]), sys.argv[2]
    store = Store(root, database_url=os.environ.get("ASSAY_DATABASE_URL") or None)
    ingest = ResultIngest(store)
    real_add = store.add_archive
    real_upsert = store.upsert_run

    def add_archive(run_id, kind, *args, **kwargs):
        record = real_add(run_id, kind, *args, **kwargs)
        if kind == crash_after:
            os._exit(9)  # the archive is committed; the gateway dies before the next step
        return record

    def upsert_run(run):
        if crash_after == "archives" and run.state == "succeeded":
            os._exit(9)  # both archives committed, the run not yet marked finished
        return real_upsert(run)

    store.add_archive, store.upsert_run = add_archive, upsert_run
    for line in sys.stdin:
        ingest.accept(Upload(**{**json.loads(line), "data": json.loads(line)["data"].encode()}))
""")


@pytest.mark.parametrize("crash_after", ["result", "report", "archives"])
def test_a_gateway_dying_between_the_steps_of_finishing_a_run_is_completed_exactly_once(
    tmp_path, crash_after, make_store, database_url
):
    root = tmp_path / "store"
    make_store(root).close()
    uploads = shard_uploads("checkout-aaaa")
    lines = "".join(json.dumps({**u.__dict__, "data": u.data.decode()}) + "\n" for u in uploads)
    child = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), crash_after],
        input=lines,
        text=True,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "ASSAY_DATABASE_URL": database_url or ""},
        timeout=120,
    )
    assert child.returncode == 9, child.stderr
    with make_store(root) as store:
        run = store.get_run("checkout-aaaa")
        assert run.state == "running" and run.shards_received == 2
        # The runner's retry of its last shard (or recover() at start-up) finishes the run.
        accepted = ResultIngest(store).accept(uploads[1])
        assert not accepted.created
        assert (accepted.run.state, accepted.run.summary["resultNumber"]) == ("succeeded", 1)
        assert [(a.kind, a.number) for a in store.list_archives()] == [("report", 1), ("result", 1)]
        assert ResultIngest(store).recover() == []
        for upload in shard_uploads("checkout-bbbb", seed=5):
            accepted = ResultIngest(store).accept(upload)
        assert [(a.kind, a.number) for a in accepted.archives] == [("report", 2), ("result", 2)]


def test_recover_finishes_runs_left_complete_but_unfinished(tmp_path, make_store, database_url):
    root = tmp_path / "store"
    make_store(root).close()
    uploads = shard_uploads("checkout-aaaa")
    lines = "".join(json.dumps({**u.__dict__, "data": u.data.decode()}) + "\n" for u in uploads)
    subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), "result"],
        input=lines,
        text=True,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "ASSAY_DATABASE_URL": database_url or ""},
        timeout=120,
    )
    with make_store(root) as store:
        assert ResultIngest(store).recover() == ["checkout-aaaa"]
        assert store.get_run("checkout-aaaa").state == "succeeded"
        assert [(a.kind, a.number) for a in store.list_archives()] == [("report", 1), ("result", 1)]


def test_a_run_failing_its_criteria_is_finished_with_result_failed(store):
    ingest = ResultIngest(store)
    for upload in shard_uploads(
        "checkout-aaaa", criteria=[{"criterion": "p95 < 1ms", "observed": 1.0, "passed": True}]
    ):
        accepted = ingest.accept(upload)
    assert (accepted.run.state, accepted.run.result) == ("succeeded", "failed")
    assert accepted.run.summary["criteria"][0]["passed"] is False


def test_documents_of_other_kinds_are_stored_without_archives(store):
    accepted = ResultIngest(store).accept(
        Upload(
            run_id="smoke-1234",
            name="result.json",
            data=b'{"passed": true}',
            kind="TestSuite",
            project="shop",
            owner_name="smoke",
            owner_uid="ts-uid",
        )
    )
    assert accepted.created and accepted.archives == []
    assert accepted.run.kind == "TestSuite" and accepted.run.state == "running"
    assert store.get_document("smoke-1234", "result.json") == b'{"passed": true}'


def test_a_suite_run_document_finishes_a_test_suite_run(store):
    doc = {
        "id": "smoke-1234",
        "status": "FAILED",
        "startTime": 1_700_000_000_000,
        "endTime": 1_700_000_004_500,
        "progress": "2/2",
        "successRate": "50%",
        "avgResTime": "12 ms",
        "testSuiteFlowRuns": [{}, {}],
    }
    accepted = ResultIngest(store).accept(
        Upload(
            run_id="smoke-1234",
            name="suite-run.json",
            data=json.dumps(doc).encode(),
            kind="TestSuite",
            project="shop",
            owner_name="smoke",
            owner_uid="ts-uid",
        )
    )
    run = accepted.run
    assert (run.state, run.result, run.started_at, run.finished_at) == (
        "succeeded",
        "failed",
        1_700_000_000.0,
        1_700_000_004.5,
    )
    assert run.summary == {
        "status": "FAILED",
        "progress": "2/2",
        "successRate": "50%",
        "avgResTime": "12 ms",
        "flowRuns": 2,
    }


def test_a_monitor_run_in_two_regions_finishes_when_both_results_are_in(store):
    ingest = ResultIngest(store)

    def upload(i, result):
        doc = {
            "result": result,
            "region": f"r{i}",
            "started_at": 100.0 + i,
            "finished_at": 110.0 + i,
            "requests_executed": 3,
            "assertions_defined": 2,
            "assertions_passed": 2 - (result == "fail"),
            "assertions_failed": int(result == "fail"),
        }
        return ingest.accept(
            Upload(
                run_id="health-1",
                name=f"monitor-result-{i}.json",
                data=json.dumps(doc).encode(),
                kind="Monitor",
                project="shop",
                owner_name="health",
                owner_uid="m-uid",
                shards=2,
                shard=i,
            )
        ).run

    assert upload(0, "pass").state == "running"
    run = upload(1, "fail")
    assert (run.state, run.result, run.started_at, run.finished_at, run.shards_received) == (
        "succeeded",
        "failed",
        100.0,
        111.0,
        2,
    )
    assert run.summary == {
        "result": "fail",
        "regions": ["r0", "r1"],
        "requests_executed": 6,
        "assertions_defined": 4,
        "assertions_passed": 3,
        "assertions_failed": 1,
    }


def test_run_locks_do_not_pile_up(store):
    ingest = ResultIngest(store)
    for upload in shard_uploads("checkout-aaaa"):
        ingest.accept(upload)
    assert ingest._locks == {}


# --- upload quotas ----------------------------------------------------------------------------


def suite_upload(run_id: str, name: str, size: int, project: str = "shop") -> Upload:
    return Upload(
        run_id=run_id,
        name=name,
        data=b"x" * size,
        kind="TestSuite",
        project=project,
        owner_name="cart",
        owner_uid="ts-uid",
    )


def test_racing_uploads_cannot_pass_a_quota_together_and_the_losers_leave_no_file(tmp_path, make_store):
    # Two stores over the same folder, like two gateway processes: only the transaction that
    # records a document can tell how many are stored.
    stores = [make_store(tmp_path / "store"), make_store(tmp_path / "store")]
    quota = Quota(namespace_documents=5, namespace_bytes=10_000)
    try:
        ingests = [ResultIngest(s, quota=quota) for s in stores]
        barrier, outcomes = threading.Barrier(12), []

        def send(i: int):
            barrier.wait()
            try:
                ingests[i % 2].accept(suite_upload(f"cart-{i}", "log.json", 100))
                outcomes.append("stored")
            except QuotaExceeded as exc:
                outcomes.append(exc.details()["quota"])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes, key=str) == sorted(["stored"] * 5 + ["namespace_documents"] * 7, key=str)
        assert stores[0].usage("any", "shop")[1] == Usage(5, 500)
        assert len(list((tmp_path / "store" / "runs").rglob("*-log.json"))) == 5
        assert len(stores[0].list_runs(project="shop")) == 5
    finally:
        for s in stores:
            s.close()


def test_a_store_of_schema_1_gets_its_documents_projects_from_their_runs(tmp_path):
    import sqlite3

    with Store(tmp_path / "store") as store:
        ResultIngest(store).accept(suite_upload("cart-1", "log.json", 300))
    db = sqlite3.connect(tmp_path / "store" / "index.sqlite3")
    db.executescript(
        "DROP INDEX documents_by_project; ALTER TABLE documents DROP COLUMN project; PRAGMA user_version = 1;"
    )
    db.close()
    with Store(tmp_path / "store") as store:
        assert store.usage("cart-2", "shop") == (Usage(0, 0), Usage(1, 300))
        with pytest.raises(QuotaExceeded, match="namespace shop is 400 bytes; 300 are stored"):
            ResultIngest(store, quota=Quota(namespace_bytes=400)).accept(suite_upload("cart-2", "log.json", 200))
