"""The store with its documents and archives in S3-compatible object storage (a real SeaweedFS
server, tests/support/s3.py), on either index: what lands in the bucket, what a replica reads
of another's writes, and that nothing is left behind."""

from __future__ import annotations

import threading
import time

import pytest

from assay.api.store import QuotaExceeded, ResultIngest
from assay.api.store.quota import Quota
from assay.runner.report import read_report, verify_result_archive
from tests.unit.test_store_ingest import shard_uploads, suite_upload
from tests.unit.test_store_replicas import race

pytestmark = pytest.mark.s3

HOUR = 3600.0


@pytest.fixture
def replicas(tmp_path, make_store, database_url, objects_url):
    """Two stores on one index and one bucket: on PostgreSQL each with a folder of its own (as
    replicas' pods have), on SQLite over one folder, where its index is."""
    stores = [
        make_store(tmp_path / (f"pod-{i}" if database_url else "store"), objects_url=objects_url) for i in range(2)
    ]
    yield stores
    for store in stores:
        store.close()


def test_documents_are_objects_that_another_replica_reads_and_replacing_one_deletes_the_old(replicas, s3, objects_url):
    first, second = replicas
    first.put_document("r1", "shard-0.json", b'{"a": 1}', project="shop")
    old = first.document_info("r1", "shard-0.json").key
    assert s3.keys(objects_url) == [old] and old.startswith("runs/r1/")
    assert second.get_document("r1", "shard-0.json") == b'{"a": 1}'
    first.put_document("r1", "shard-0.json", b'{"a": 1}', project="shop")  # the same bytes: nothing
    assert s3.keys(objects_url) == [old]
    second.put_document("r1", "shard-0.json", b'{"a": 2}', project="shop")
    new = second.document_info("r1", "shard-0.json")
    assert s3.keys(objects_url) == [new.key] and new.key != old
    assert first.get_document("r1", "shard-0.json") == b'{"a": 2}'
    assert first.local_file(first.document_info("r1", "shard-0.json")).read_bytes() == b'{"a": 2}'
    assert first.get_document("r1", "nothing.json") is None


def test_a_load_test_whose_last_shard_reaches_both_replicas_has_its_archives_once_in_the_bucket(
    replicas, s3, objects_url
):
    ingests = [ResultIngest(store) for store in replicas]
    uploads = shard_uploads("checkout-aaaa", shards=3)
    ingests[0].accept(uploads[0])
    ingests[1].accept(uploads[1])
    race(4, lambda i: ingests[i % 2].accept(uploads[2]))
    archives = replicas[1].list_archives(run_id="checkout-aaaa")
    assert [(a.kind, a.number) for a in archives] == [("report", 1), ("result", 1)]
    documents = [d.key for d in replicas[0].list_documents("checkout-aaaa")]
    assert s3.keys(objects_url) == sorted(documents + [a.key for a in archives]), "nothing staged is left"
    result, report = (replicas[0].local_file(a) for a in sorted(archives, key=lambda a: a.kind, reverse=True))
    verify_result_archive(result)
    assert read_report(report)["total"]["count"] > 0
    assert replicas[1].get_run("checkout-aaaa").summary["resultNumber"] == 1


def test_purging_a_run_deletes_its_objects(tmp_path, make_store, s3, objects_url):
    with make_store(tmp_path / "pod", objects_url=objects_url, retention_days=1) as store:
        ingest = ResultIngest(store)
        for upload in shard_uploads("old-run"):
            ingest.accept(upload)
        ingest.accept(suite_upload("kept-run", "log.json", 10))
        assert any(key.startswith("runs/old-run/archives/") for key in s3.keys(objects_url))
        store.local_file(store.list_archives(run_id="old-run")[0])  # a cached copy goes too
        assert store.purge_expired(now=time.time() + 2 * 86400) == 1  # the suite never finished
        assert s3.keys(objects_url) == [store.document_info("kept-run", "log.json").key]
        assert not (tmp_path / "pod" / "cache" / "runs" / "old-run").exists()


def test_sweeping_removes_old_unreferenced_objects_and_keeps_the_rest(tmp_path, make_store, s3, objects_url):
    with make_store(tmp_path / "pod", objects_url=objects_url, retention_days=0) as store:
        store.put_document("r1", "kept.json", b"{}")
        # What a gateway killed between its PUT and the index's commit leaves behind.
        store.objects.put("runs/r1/0123456789abcdef-lost.json", b"{}")
        store.objects.put("staging/0123-result-1.zip", b"PK")
        assert store.sweep_temporaries() == 0, "too young: it could be a write in progress"
        assert store.sweep_temporaries(now=time.time() + 2 * HOUR) == 2
        assert s3.keys(objects_url) == [store.document_info("r1", "kept.json").key]
        assert store.get_document("r1", "kept.json") == b"{}"


def test_racing_uploads_cannot_pass_a_quota_together_and_the_losers_leave_no_object(replicas, s3, objects_url):
    quota = Quota(namespace_documents=3)
    ingests = [ResultIngest(store, quota=quota) for store in replicas]
    outcomes: list[str] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        try:
            ingests[i % 2].accept(suite_upload(f"cart-{i}", "log.json", 100))
            outcome = "stored"
        except QuotaExceeded:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    race(8, send)
    assert sorted(outcomes) == ["refused"] * 5 + ["stored"] * 3
    assert len(s3.keys(objects_url)) == 3


def test_a_missing_object_is_a_missing_file(replicas):
    replicas[0].put_document("r1", "a.json", b"{}")
    record = replicas[0].document_info("r1", "a.json")
    replicas[0].objects.delete(record.key)
    assert not replicas[1].stored(record)
    with pytest.raises(FileNotFoundError):
        replicas[1].local_file(record)
