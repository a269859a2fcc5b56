"""Upload quotas through the real gateway process: a run and a namespace may fill only their
share of the store; an upload past a quota is refused with 507 and a message naming the
quota and the numbers, before anything is written; the usage is read from the store's
index, so it holds after a restart."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from assay.crds.contracts.upload import (
    H_IDEMPOTENCY_KEY,
    H_SHA256,
    RunGrant,
    document_path,
    idempotency_key,
    upload_token,
)
from tests.conftest import GatewayProcess

pytestmark = pytest.mark.cluster

QUOTAS = {
    "ASSAY_UPLOAD_RUN_MAX_DOCUMENTS": "3",
    "ASSAY_UPLOAD_RUN_MAX_BYTES": "10000",
    "ASSAY_UPLOAD_NAMESPACE_MAX_BYTES": "25000",
    "ASSAY_UPLOAD_NAMESPACE_MAX_DOCUMENTS": "100",
}


class QuotaGateway(GatewayProcess):
    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **QUOTAS}


@pytest.fixture
def gateway(cluster, tmp_path):
    proc = QuotaGateway(cluster, tmp_path / "store", tmp_path / "gateway.log").start()
    yield proc
    proc.stop()


def put(gateway, namespace: str, run_id: str, name: str, size: int, chunked: bool = False) -> httpx.Response:
    """A document of `size` bytes; `chunked`: sent without a Content-Length, so the gateway
    learns the size only from the body."""
    data = (name.encode() * size)[:size]
    sha = hashlib.sha256(data).hexdigest()
    token = upload_token(GatewayProcess.UPLOAD_KEY, RunGrant(namespace, "TestSuite", "cart", "uid-cart", run_id))
    headers = {"Authorization": f"Bearer {token}", H_SHA256: sha, H_IDEMPOTENCY_KEY: idempotency_key(run_id, name, sha)}
    content = iter([data[: size // 2], data[size // 2 :]]) if chunked else data
    return httpx.put(gateway.url + document_path(run_id, name), content=content, headers=headers, timeout=30)


def over_quota(answer: httpx.Response, quota: str, message: str, limit: int, used: int, adding: int) -> None:
    assert answer.status_code == 507, answer.text
    body = answer.json()
    assert body["error"] == "quota_exceeded" and body["message"] == message, body
    assert (body["quota"], body["limit"], body["used"], body["adding"]) == (quota, limit, used, adding)


def files_of(gateway, run_id: str) -> list[str]:
    keys = [key for key in gateway.stored_keys(f"runs/{run_id}/*") if key.count("/") == 2]  # not archives/
    return sorted(key.rsplit("/", 1)[1].split("-", 1)[1] for key in keys)


def test_uploads_past_the_run_and_namespace_quotas_are_refused_and_nothing_is_stored(gateway):
    # Per run, documents: three fit, the fourth does not, sent with or without a length.
    for i in range(3):
        assert put(gateway, "quota-a", "cart-r1", f"log-{i}.json", 1000).status_code == 201
    for chunked in (False, True):
        over_quota(
            put(gateway, "quota-a", "cart-r1", "log-3.json", 1000, chunked=chunked),
            "run_documents",
            "the upload quota of run cart-r1 is 3 documents; 3 are stored and one more document does not fit",
            3,
            3,
            1,
        )
    assert files_of(gateway, "cart-r1") == ["log-0.json", "log-1.json", "log-2.json"]

    # Per run, bytes.
    assert put(gateway, "quota-a", "cart-r2", "big.json", 9000).status_code == 201
    over_quota(
        put(gateway, "quota-a", "cart-r2", "more.json", 2000),
        "run_bytes",
        "the upload quota of run cart-r2 is 10000 bytes; 9000 are stored and a document of 2000 bytes does not fit",
        10000,
        9000,
        2000,
    )

    # Per namespace, bytes: 3000 + 9000 + 9000 stored, 5000 more do not fit, in a new run too.
    assert put(gateway, "quota-a", "cart-r3", "big.json", 9000).status_code == 201
    message = (
        "the upload quota of namespace quota-a is 25000 bytes; 21000 are stored and a document of 5000 "
        "bytes does not fit"
    )
    for chunked in (False, True):
        over_quota(
            put(gateway, "quota-a", "cart-r4", "big.json", 5000, chunked=chunked),
            "namespace_bytes",
            message,
            25000,
            21000,
            5000,
        )
    assert files_of(gateway, "cart-r4") == []
    with gateway.open_store() as store:
        assert store.get_run("cart-r4") is None and store.list_documents("cart-r4") == []
    # Another namespace has its own quota.
    assert put(gateway, "quota-b", "cart-r5", "big.json", 5000).status_code == 201

    # The usage is the store's: after a restart the namespace is still full, and a retry of a
    # document stored before is still answered as stored.
    gateway.stop()
    gateway.start()
    over_quota(put(gateway, "quota-a", "cart-r4", "big.json", 5000), "namespace_bytes", message, 25000, 21000, 5000)
    assert put(gateway, "quota-a", "cart-r1", "log-0.json", 1000).status_code == 200
    assert put(gateway, "quota-a", "cart-r4", "small.json", 4000).status_code == 201  # what still fits
    with gateway.open_store() as store:
        assert [d.name for d in store.list_documents("cart-r4")] == ["small.json"]
        assert [d.name for d in store.list_documents("cart-r2")] == ["big.json"]
        assert store.usage("cart-r4", "quota-a")[1].bytes == 25000
