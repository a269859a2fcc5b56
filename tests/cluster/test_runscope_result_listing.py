"""Result lists at bounded cost through the real gateway: a test with thousands of results,
written into the gateway's store through the store's own write path while it runs, is listed
ten times at once while another tenant asks for its own results; the lists stay quick and
the other tenant is not kept waiting."""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from assay.api.store import ResultIngest
from tests.conftest import OperatorProcess
from tests.support.credentials import bearer, create_credential, make_namespace, request_token
from tests.support.monitor_results import result_doc, upload

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

MANY = 5000
READ_SCOPES = ("api:read", "test:read")
CONCURRENT = 10
BURSTS = 3
OTHER_TENANT_DELAY_S = 2.0
"""How much longer the other tenant's list may take while the ten run than on its own."""
TEN_LISTS_S = 10.0
"""How long the ten lists may take together (each read every result document of the last
day before the index: ten took about 35 s)."""


def monitor_manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "health"},
            "spec": {"steps": [{"stepType": "request", "id": "step-ping", "url": "http://127.0.0.1:9/ping"}]},
        }
    )


@pytest.fixture
def tenants(cluster, namespace, gateway, tmp_path):
    """Two buckets of two teams, each with a Monitor and a reader token: (bucket, test id, headers)."""
    quiet = make_namespace(cluster, f"{namespace}-quiet", {"assay.dev/org": f"team-{namespace}-quiet"})
    cluster.kubectl("label", "namespace", namespace, f"assay.dev/org=team-{namespace}")
    operator = OperatorProcess(cluster, tmp_path / "operator.log", [namespace, quiet]).start()
    try:
        found = {}
        for bucket in (namespace, quiet):
            cluster.kubectl("apply", "-n", bucket, "-f", "-", input=monitor_manifest())
            test_id = json.loads(cluster.kubectl("get", "monitor", "health", "-n", bucket, "-o", "json").stdout)[
                "metadata"
            ]["uid"]
            client_id, secret = create_credential(cluster, bucket, "reader", scopes=READ_SCOPES)
            found[bucket] = (bucket, test_id, bearer(request_token(cluster, gateway, client_id, secret, READ_SCOPES)))
        yield found[namespace], found[quiet]
    finally:
        operator.stop()
        print(operator.log()[-3000:], file=sys.stderr)
        cluster.kubectl("delete", "namespace", quiet, "--wait=false", check=False)


def seed(gateway, bucket: str, test_id: str, count: int, now: float, prefix: str) -> list[str]:
    """`count` results started over the last day, newest last; their run ids."""
    run_ids = []
    with gateway.open_store() as store:
        ingest = ResultIngest(store)
        for n in range(count):
            run_id = f"{prefix}-{n:010d}"
            doc = result_doc(run_id=run_id, started=now - 86400 + 86400 * (n + 1) / (count + 1))
            upload(ingest, run_id, "monitor-result.json", doc, 1, project=bucket, owner_uid=test_id)
            run_ids.append(run_id)
    return run_ids


def list_results(gateway, tenant, **params) -> tuple[float, list[dict]]:
    bucket, test_id, headers = tenant
    start = time.perf_counter()
    response = httpx.get(
        f"{gateway.url}/buckets/{bucket}/tests/{test_id}/results", params=params, headers=headers, timeout=120
    )
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return elapsed, response.json()["data"]


def test_ten_lists_of_thousands_of_results_do_not_hold_up_another_tenant(cluster, gateway, tenants):
    busy, quiet = tenants
    now = time.time()
    busy_runs = seed(gateway, busy[0], busy[1], MANY, now, "busy")
    quiet_runs = seed(gateway, quiet[0], quiet[1], 5, now, "quiet")

    _, page = list_results(gateway, busy, count=50)
    assert [i["test_run_id"] for i in page] == busy_runs[::-1][:50]
    alone = statistics.median(list_results(gateway, quiet)[0] for _ in range(5))

    for _ in range(BURSTS):
        started = threading.Barrier(CONCURRENT + 1)

        def one_busy_list():
            started.wait()  # noqa: B023  (every call finishes inside this burst)
            return list_results(gateway, busy, count=50)

        with ThreadPoolExecutor(CONCURRENT) as pool:
            burst_start = time.perf_counter()
            lists = [pool.submit(one_busy_list) for _ in range(CONCURRENT)]
            started.wait()
            time.sleep(0.05)  # the ten are in the gateway
            waited, quiet_page = list_results(gateway, quiet)
            pages = [future.result() for future in lists]
            ten = time.perf_counter() - burst_start
        print(
            f"the other tenant's list: {alone * 1000:.0f} ms alone, {waited * 1000:.0f} ms during ten lists "
            f"of {MANY} results, which took {ten:.2f} s",
            file=sys.stderr,
        )
        assert [i["test_run_id"] for i in quiet_page] == quiet_runs[::-1]
        assert all([i["test_run_id"] for i in data] == busy_runs[::-1][:50] for _, data in pages)
        assert waited - alone < OTHER_TENANT_DELAY_S, (alone, waited)
        assert ten < TEN_LISTS_S, ten
