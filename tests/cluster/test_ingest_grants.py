"""Upload tokens are bound to their run and owner, through the real gateway process: a
tenant's genuine run token cannot file results under another tenant's owner or run, a token
for run X cannot write run Y, and a tick group's token writes only the runs of its own
ticks, as the group's CronJob, tick Job and members ConfigMap in the cluster say."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest

from assay.operator.runjob import build_upload_secret
from assay.operator.tickobjects import build_members_configmap
from assay.operator.tickplan import Group
from assay.operator.settings import OperatorSettings
from assay.crds.contracts.tick import group_upload_token, member_run_id, tick_job_name
from assay.crds.contracts.upload import (
    H_IDEMPOTENCY_KEY,
    H_KIND,
    H_OWNER_NAME,
    H_OWNER_UID,
    H_PROJECT,
    H_SHA256,
    H_TICK,
    document_path,
    idempotency_key,
)
from tests.conftest import GatewayProcess

pytestmark = pytest.mark.cluster

KEY = GatewayProcess.UPLOAD_KEY
SETTINGS = OperatorSettings(gateway_url="http://gateway", upload_key=KEY)


def suite(namespace: str, name: str, uid: str) -> dict:
    return {
        "apiVersion": "assay.dev/v1alpha1",
        "kind": "TestSuite",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {},
    }


def operators_token(owner: dict, run_id: str) -> str:
    """The token the operator puts into the run's upload Secret."""
    return base64.b64decode(build_upload_secret(owner, run_id, SETTINGS)["data"]["token"]).decode()


def put(
    gateway, run_id: str, token: str, name: str = "suite-run.json", body: bytes | None = None, **headers: str
) -> httpx.Response:
    body = body if body is not None else json.dumps({"id": run_id, "status": "PASSED", "progress": "1/1"}).encode()
    sha = hashlib.sha256(body).hexdigest()
    return httpx.put(
        gateway.url + document_path(run_id, name),
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            H_SHA256: sha,
            H_IDEMPOTENCY_KEY: idempotency_key(run_id, name, sha),
            **headers,
        },
    )


def refused(answer: httpx.Response, status: int, says: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == {401: "unauthorized", 403: "forbidden"}[status]
    assert says in answer.json()["message"], answer.json()


def test_a_tenants_run_token_cannot_file_results_under_another_tenants_owner_or_run(gateway):
    mine = suite("tenant-a", "cart", "a0000000-0000-4000-8000-00000000000a")
    theirs = suite("tenant-b", "checkout", "b0000000-0000-4000-8000-00000000000b")
    my_run, their_run = "cart-aaaa000000", "checkout-bbbb000000"
    my_token, their_token = operators_token(mine, my_run), operators_token(theirs, their_run)
    assert put(gateway, their_run, their_token).status_code == 201  # tenant B's own result

    # My stuck run's genuine token, with headers naming tenant B's namespace and owner: on my
    # run, on theirs, and on a new run id.
    as_b = {
        H_KIND: "TestSuite",
        H_PROJECT: "tenant-b",
        H_OWNER_NAME: "checkout",
        H_OWNER_UID: theirs["metadata"]["uid"],
    }
    refused(put(gateway, my_run, my_token, **as_b), 403, "the upload token is for namespace 'tenant-a'")
    refused(put(gateway, my_run, my_token, **{H_OWNER_NAME: "checkout"}), 403, "owner name 'cart'")
    refused(put(gateway, their_run, my_token, **as_b), 403, f"for run {my_run}, not {their_run}")
    refused(put(gateway, "checkout-forged00", my_token), 403, f"for run {my_run}, not checkout-forged00")
    # A token whose readable part is changed to tenant B keeps tenant A's MAC: not genuine.
    forged = my_token.replace("run.v2:tenant-a/TestSuite/cart/", "run.v2:tenant-b/TestSuite/checkout/")
    refused(put(gateway, my_run, forged), 401, "a valid upload token")
    # The token of the former format, HMAC(key, run id) alone, is not accepted any more.
    legacy = hmac.new(KEY.encode(), their_run.encode(), hashlib.sha256).hexdigest()
    refused(put(gateway, their_run, legacy, name="other.json"), 401, "a valid upload token")
    refused(
        httpx.get(f"{gateway.url}/internal/v1/runs/{their_run}", headers={"Authorization": f"Bearer {my_token}"}),
        403,
        f"for run {my_run}",
    )

    # Tenant B's figures hold B's result only; my own run, with or without headers, is mine.
    answer = put(gateway, my_run, my_token, **{H_KIND: "TestSuite", H_PROJECT: "tenant-a"})
    assert answer.status_code == 201, answer.text
    assert (answer.json()["run"]["project"], answer.json()["run"]["ownerName"]) == ("tenant-a", "cart")
    their = httpx.get(
        f"{gateway.url}/internal/v1/runs/{their_run}", headers={"Authorization": f"Bearer {their_token}"}
    ).json()
    assert [d["name"] for d in their["documents"]] == ["suite-run.json"]
    assert (their["run"]["project"], their["run"]["ownerUid"]) == ("tenant-b", theirs["metadata"]["uid"])

    with gateway.open_store() as store:
        assert [r.run_id for r in store.list_runs(project="tenant-b")] == [their_run]
        assert store.get_run("checkout-forged00") is None


def test_a_token_for_one_run_cannot_write_another_run_of_the_same_owner(gateway):
    owner = suite("tenant-a", "cart", "a0000000-0000-4000-8000-00000000000a")
    token_x = operators_token(owner, "cart-xxxx000000")
    refused(put(gateway, "cart-yyyy000000", token_x), 403, "for run cart-xxxx000000, not cart-yyyy000000")
    bearer = {"Authorization": f"Bearer {token_x}"}
    refused(
        httpx.get(f"{gateway.url}/internal/v1/runs/cart-yyyy000000", headers=bearer), 403, "for run cart-xxxx000000"
    )
    refused(
        httpx.put(f"{gateway.url}/internal/v1/runs/cart-yyyy000000/progress/0", content=b"{}", headers=bearer),
        403,
        "for run cart-xxxx000000",
    )
    assert put(gateway, "cart-xxxx000000", token_x).status_code == 201
    assert (
        httpx.get(
            f"{gateway.url}/internal/v1/runs/cart-yyyy000000",
            headers={"Authorization": f"Bearer {operators_token(owner, 'cart-yyyy000000')}"},
        ).status_code
        == 404
    )


# --- a tick group's token -------------------------------------------------------------------

GROUP = "assay-tick-0badc0de"
TICK = "29395567"
SCHEDULE_UID = "5c4e0000-0000-4000-8000-000000000002"


def member(namespace: str, name: str, uid: str) -> dict:
    return {
        "schedule": {"name": f"every-{name}", "uid": SCHEDULE_UID},
        "kind": "Monitor",
        "environment": None,
        "monitor": {
            "apiVersion": "assay.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {},
        },
        "subtests": [],
        "location": None,
        "locationIndex": 0,
        "locations": 1,
    }


def suspended_job(name: str, owner: dict | None) -> dict:
    meta = {"name": name, **({"ownerReferences": [owner]} if owner else {})}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "suspend": True,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "runner", "image": "assay/runner:none"}]}
            },
        },
    }


def apply(cluster, namespace: str, body: dict) -> dict:
    out = cluster.kubectl("create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(body))
    return json.loads(out.stdout)


@pytest.fixture
def tick_group(cluster, namespace):
    """A suspended tick CronJob with one Monitor member, its members ConfigMap as the
    operator writes it, the Job of tick TICK, and a Job of the same naming that the
    CronJob does not own (made by hand in the namespace)."""
    cronjob = apply(
        cluster,
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": GROUP},
            "spec": {
                "schedule": "* * * * *",
                "suspend": True,
                "jobTemplate": {"spec": suspended_job("x", None)["spec"]},
            },
        },
    )
    health = member(namespace, "health", "0a1b2c3d-0000-4000-8000-000000000001")
    group = Group(name=GROUP, cron="* * * * *", location=None, members=[health])
    apply(cluster, namespace, build_members_configmap(namespace, group, 8, cronjob))
    owner = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": GROUP,
        "uid": cronjob["metadata"]["uid"],
        "controller": True,
    }
    apply(cluster, namespace, suspended_job(tick_job_name(GROUP, TICK), owner))
    apply(cluster, namespace, suspended_job(tick_job_name(GROUP, "29395999"), None))
    return health


def test_a_group_token_writes_only_the_runs_of_its_own_ticks_and_members(gateway, namespace, tick_group):
    token = group_upload_token(KEY, namespace, GROUP)
    run_id = member_run_id(tick_group, TICK)
    result = json.dumps({"result": "pass", "started_at": 1, "finished_at": 2}).encode()

    def put_result(run: str, tick: str | None = TICK, with_token: str = token, **headers: str) -> httpx.Response:
        return put(
            gateway,
            run,
            with_token,
            name="monitor-result.json",
            body=result,
            **{H_KIND: "Monitor", H_PROJECT: namespace, **({H_TICK: tick} if tick else {}), **headers},
        )

    not_a_member = member(namespace, "intruder", "0a1b2c3d-0000-4000-8000-0000000000ff")
    another_group = group_upload_token(KEY, namespace, "assay-tick-12345678")
    for answer, says in (
        (put_result(member_run_id(not_a_member, TICK)), "is not a run of tick 29395567"),
        (put_result("health-0123456789"), "is not a run of tick 29395567"),  # a requested run's id
        (put_result(member_run_id(tick_group, "29395568")), "is not a run of tick 29395567"),  # another tick's
        (put_result(member_run_id(tick_group, "29395568"), tick="29395568"), "tick 29395568"),  # with no Job
        (
            put_result(member_run_id(tick_group, "29395999"), tick="29395999"),
            "tick 29395999",
        ),  # a Job the CronJob does not own
        (put_result(run_id, tick=None), "X-Assay-Tick is required"),
        (put_result(run_id, with_token=another_group), f"{namespace}/assay-tick-12345678"),
        (put_result(run_id, **{H_KIND: "LoadTest"}), "the upload token is for kind 'Monitor'"),
        (put_result(run_id, **{H_OWNER_NAME: "intruder"}), "owner name 'health'"),
    ):
        refused(answer, 403, says)
    bad_tick = put_result(run_id, tick="../../x")
    assert (bad_tick.status_code, bad_tick.json()["error"]) == (400, "invalid_request"), bad_tick.text
    other_namespace = group_upload_token(KEY, "tenant-b", GROUP)
    refused(
        put_result(run_id, with_token=other_namespace, **{H_PROJECT: "tenant-b"}),
        403,
        f"is not a run of tick {TICK} of tenant-b/{GROUP}",
    )

    answer = put_result(run_id)
    assert answer.status_code == 201, answer.text
    run = answer.json()["run"]
    assert (run["project"], run["kind"], run["ownerName"], run["ownerUid"], run["state"]) == (
        namespace,
        "Monitor",
        "health",
        tick_group["monitor"]["metadata"]["uid"],
        "succeeded",
    )

    with gateway.open_store() as store:
        assert [r.run_id for r in store.list_runs()] == [run_id]
