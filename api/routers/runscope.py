"""The Runscope API (seeds/003), part one: the root resource, account, regions, buckets,
tests, steps, environments (test and shared), schedules, revisions and the trigger URLs (a
test's, its batch URL and a bucket's).

Paths are accepted as the document spells them, with and without `/v1` and with `/tests/` or
`/test/`; `POST .../schedules` differs between the two versions (services/runscope_tests.py).
Reads need `api:read` (and `test:read` for tests), changes to tests `test:write`, creating a
bucket `message:write` and deleting one `bucket:write`, as the document describes the scopes.
The trigger URLs need no token: the id is the capability. Every answer is Runscope's envelope
(runscope_wire), errors included.
"""

from __future__ import annotations

from typing import Callable, Optional
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from .. import openapi
from ..auth import Principal, require_bearer
from ..bodies import JsonBody, json_document
from ..services import InvalidInput
from ..services.runscope_buckets import UTILIZATION_THRESHOLD, RunscopeBuckets
from ..services.runscope_tests import MAX_BATCH, TRIGGER_CONTROL, RunscopeTests, TriggerSet
from .runscope_wire import (
    FAMILY,
    JSON_ARRAY_BODY,
    JSON_OBJECT_BODY,
    bucket_namespace,
    deleted,
    install_error_shape,
    ok,
    render_error,
)

BUCKETS = ("/buckets/{bucket_key}", "/v1/buckets/{bucket_key}")
TESTS = tuple(f"{bucket}/{tests}/{{test_id}}" for bucket in BUCKETS for tests in ("tests", "test"))
TRIGGER_PREFIX = "/radar/"
LISTABLE = (TRIGGER_CONTROL + "region", TRIGGER_CONTROL + "agent")
"""Trigger parameters a JSON body may give as a list."""

STATUS_OF = {"GET": 200, "PUT": 200, "POST": 201, "DELETE": 204}
"""What each method's handlers answer (ok(..., status=201), deleted()), for the OpenAPI document."""

READ = require_bearer("api:read")
READ_TESTS = require_bearer("api:read", "test:read")
WRITE_TESTS = require_bearer("test:write")


def build_router(services) -> APIRouter:
    tests = RunscopeTests(services.kube, services.store, services.settings)
    buckets = RunscopeBuckets(services.kube, services.auth.tenancy, services.settings, tests.bucket_trigger_url)
    public_url = services.settings.public_url.rstrip("/")
    router = APIRouter(tags=["runscope"])

    def ns(principal: Principal, bucket_key: str) -> str:
        return bucket_namespace(services, principal, bucket_key)

    def add(method: str, paths: tuple[str, ...], suffix: str, handler: Callable) -> None:
        for path in paths:
            router.add_api_route(path + suffix, handler, methods=[method], status_code=STATUS_OF[method])

    # --- root, account, regions, buckets -------------------------------------------------

    @router.get("/")
    def root(principal: Principal = Depends(READ)):
        return ok({"bucket_list_url": f"{public_url}/buckets", "current_account_url": f"{public_url}/account"})

    @router.get("/account")
    def account(principal: Principal = Depends(READ)):
        return ok(buckets.account(principal, with_email="account:email" in principal.scopes))

    @router.get("/regions")
    def regions(principal: Principal = Depends(READ)):
        return ok({"regions": buckets.regions()})

    @router.get("/buckets")
    def bucket_list(principal: Principal = Depends(READ)):
        return ok(buckets.buckets(principal))

    @router.post("/buckets", status_code=201)
    def bucket_create(
        name: Optional[str] = Query(None),
        team_uuid: Optional[str] = Query(None),
        principal: Principal = Depends(require_bearer("message:write")),
    ):
        return ok(buckets.create(principal, name, team_uuid), status=201)

    def bucket_detail(bucket_key: str, principal: Principal = Depends(READ)):
        return ok(buckets.bucket(ns(principal, bucket_key)))

    def bucket_delete(bucket_key: str, principal: Principal = Depends(require_bearer("bucket:write"))):
        buckets.delete(principal, ns(principal, bucket_key))
        return deleted()

    def bucket_detail_v1(
        bucket_key: str,
        list_utilizations_gt: int = Query(UTILIZATION_THRESHOLD, ge=0, le=100),
        principal: Principal = Depends(READ),
    ):
        namespace = ns(principal, bucket_key)
        return ok(
            {
                **buckets.bucket(namespace),
                "locations_utilization_%": buckets.locations_utilization(namespace, list_utilizations_gt),
            }
        )

    add("GET", BUCKETS[:1], "", bucket_detail)
    add("GET", BUCKETS[1:], "", bucket_detail_v1)
    add("DELETE", BUCKETS, "", bucket_delete)

    # --- tests ---------------------------------------------------------------------------

    def test_list(
        bucket_key: str,
        count: int = Query(10, ge=1, le=1000),
        offset: int = Query(0, ge=0),
        principal: Principal = Depends(READ_TESTS),
    ):
        return ok(tests.list_tests(ns(principal, bucket_key), count, offset))

    def test_create(bucket_key: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)):
        created = [tests.detail(m) for m in tests.create_tests(ns(principal, bucket_key), body, principal)]
        return ok(created if isinstance(body, list) else created[0], status=201)

    def test_detail(bucket_key: str, test_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.detail(tests.monitor(ns(principal, bucket_key), test_id)))

    def test_modify(bucket_key: str, test_id: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)):
        return ok(tests.detail(tests.modify(ns(principal, bucket_key), test_id, body, principal)))

    def test_delete(bucket_key: str, test_id: str, principal: Principal = Depends(WRITE_TESTS)):
        tests.delete(ns(principal, bucket_key), test_id)
        return deleted()

    def test_revisions(bucket_key: str, test_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.revisions(ns(principal, bucket_key), test_id))

    for bucket in BUCKETS:
        for plural in ("tests", "test"):
            router.add_api_route(f"{bucket}/{plural}", test_list, methods=["GET"])
            router.add_api_route(f"{bucket}/{plural}", test_create, methods=["POST"], status_code=201)
    add("GET", TESTS, "", test_detail)
    add("PUT", TESTS, "", test_modify)
    add("DELETE", TESTS, "", test_delete)
    add("GET", TESTS, "/revisions", test_revisions)

    # --- steps ---------------------------------------------------------------------------

    def step_list(bucket_key: str, test_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.steps(tests.monitor(ns(principal, bucket_key), test_id)))

    def step_add(bucket_key: str, test_id: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)):
        # The live API answers the test's steps, the new one last; clients read it from there.
        return ok(tests.steps(tests.add_step(ns(principal, bucket_key), test_id, body, principal)), status=201)

    def step_reorder(bucket_key: str, test_id: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)):
        return ok(tests.reorder_steps(ns(principal, bucket_key), test_id, body, principal))

    def step_detail(bucket_key: str, test_id: str, step_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.step(ns(principal, bucket_key), test_id, step_id))

    def step_modify(
        bucket_key: str, test_id: str, step_id: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)
    ):
        return ok(tests.modify_step(ns(principal, bucket_key), test_id, step_id, body, principal))

    def step_delete(bucket_key: str, test_id: str, step_id: str, principal: Principal = Depends(WRITE_TESTS)):
        tests.delete_step(ns(principal, bucket_key), test_id, step_id, principal)
        return deleted()

    add("GET", TESTS, "/steps", step_list)
    add("POST", TESTS, "/steps", step_add)
    add("PUT", TESTS, "/steps", step_reorder)
    add("GET", TESTS, "/steps/{step_id}", step_detail)
    add("PUT", TESTS, "/steps/{step_id}", step_modify)
    add("DELETE", TESTS, "/steps/{step_id}", step_delete)

    # --- test environments ---------------------------------------------------------------

    def env_list(bucket_key: str, test_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.environments(ns(principal, bucket_key), test_id))

    def env_create(bucket_key: str, test_id: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)):
        return ok(tests.create_environment(ns(principal, bucket_key), test_id, body, principal), status=201)

    def env_detail(bucket_key: str, test_id: str, environment_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.environment(ns(principal, bucket_key), test_id, environment_id))

    def env_modify(
        bucket_key: str,
        test_id: str,
        environment_id: str,
        body: JsonBody = None,
        principal: Principal = Depends(WRITE_TESTS),
    ):
        return ok(tests.modify_environment(ns(principal, bucket_key), test_id, environment_id, body, principal))

    def env_delete(bucket_key: str, test_id: str, environment_id: str, principal: Principal = Depends(WRITE_TESTS)):
        tests.delete_environment(ns(principal, bucket_key), test_id, environment_id, principal)
        return deleted()

    add("GET", TESTS, "/environments", env_list)
    add("POST", TESTS, "/environments", env_create)
    add("GET", TESTS, "/environments/{environment_id}", env_detail)
    add("PUT", TESTS, "/environments/{environment_id}", env_modify)
    add("DELETE", TESTS, "/environments/{environment_id}", env_delete)

    # --- shared environments -------------------------------------------------------------

    def shared_list(bucket_key: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.shared_environments(ns(principal, bucket_key)))

    def shared_create(bucket_key: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)):
        return ok(tests.create_shared_environment(ns(principal, bucket_key), body), status=201)

    def shared_detail(bucket_key: str, environment_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.shared_environment(ns(principal, bucket_key), environment_id))

    def shared_modify(
        bucket_key: str, environment_id: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)
    ):
        return ok(tests.modify_shared_environment(ns(principal, bucket_key), environment_id, body))

    def shared_delete(bucket_key: str, environment_id: str, principal: Principal = Depends(WRITE_TESTS)):
        tests.delete_shared_environment(ns(principal, bucket_key), environment_id, principal)
        return deleted()

    add("GET", BUCKETS, "/environments", shared_list)
    add("POST", BUCKETS, "/environments", shared_create)
    add("GET", BUCKETS, "/environments/{environment_id}", shared_detail)
    add("PUT", BUCKETS, "/environments/{environment_id}", shared_modify)
    add("DELETE", BUCKETS, "/environments/{environment_id}", shared_delete)

    # --- schedules -----------------------------------------------------------------------

    def schedule_list(bucket_key: str, test_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.schedules(ns(principal, bucket_key), test_id))

    def schedule_creator(v0: bool):
        def schedule_create(
            bucket_key: str, test_id: str, body: JsonBody = None, principal: Principal = Depends(WRITE_TESTS)
        ):
            return ok(
                tests.create_schedule(ns(principal, bucket_key), test_id, body, update_same_environment=v0), status=201
            )

        return schedule_create

    def schedule_detail(bucket_key: str, test_id: str, schedule_id: str, principal: Principal = Depends(READ_TESTS)):
        return ok(tests.schedule(ns(principal, bucket_key), test_id, schedule_id))

    def schedule_modify(
        bucket_key: str,
        test_id: str,
        schedule_id: str,
        body: JsonBody = None,
        principal: Principal = Depends(WRITE_TESTS),
    ):
        return ok(tests.modify_schedule(ns(principal, bucket_key), test_id, schedule_id, body))

    def schedule_delete(bucket_key: str, test_id: str, schedule_id: str, principal: Principal = Depends(WRITE_TESTS)):
        tests.delete_schedule(ns(principal, bucket_key), test_id, schedule_id)
        return deleted()

    add("GET", TESTS, "/schedules", schedule_list)
    for path in TESTS:
        router.add_api_route(
            path + "/schedules", schedule_creator(v0=not path.startswith("/v1/")), methods=["POST"], status_code=201
        )
    add("GET", TESTS, "/schedules/{schedule_id}", schedule_detail)
    add("PUT", TESTS, "/schedules/{schedule_id}", schedule_modify)
    add("DELETE", TESTS, "/schedules/{schedule_id}", schedule_delete)

    # --- trigger URL ---------------------------------------------------------------------

    @router.api_route(
        TRIGGER_PREFIX + "{trigger_id}/trigger",
        methods=["GET", "POST"],
        status_code=201,
        openapi_extra=JSON_OBJECT_BODY,
    )
    async def trigger(trigger_id: str, request: Request):
        return await start(tests.trigger, trigger_id, request)

    @router.api_route(
        TRIGGER_PREFIX + "bucket/{trigger_id}/trigger",
        methods=["GET", "POST"],
        status_code=201,
        openapi_extra=JSON_OBJECT_BODY,
    )
    async def bucket_trigger(trigger_id: str, request: Request):
        return await start(tests.trigger_bucket, trigger_id, request)

    @router.post(TRIGGER_PREFIX + "{trigger_id}/batch", status_code=201, openapi_extra=JSON_ARRAY_BODY)
    async def batch_trigger(trigger_id: str, request: Request):
        query = list(request.query_params.multi_items())
        sets = [TriggerSet.of(query, pairs) for pairs in await batch_body(request)]
        return ok(await run_in_threadpool(tests.trigger_batch, trigger_id, sets), status=201)

    async def start(run: Callable, trigger_id: str, request: Request):
        body = await trigger_body(request) if request.method == "POST" else []
        parameters = TriggerSet.of(request.query_params.multi_items(), body)
        return ok(await run_in_threadpool(run, trigger_id, parameters), status=201)

    return router


async def trigger_body(request: Request) -> list[tuple[str, str]]:
    """Parameters in a trigger's POST body: a JSON object or a form."""
    raw = await request.body()
    if not raw.strip():
        return []
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        return parse_qsl(raw.decode(errors="replace"))
    document = json_document(raw)
    if not isinstance(document, dict):
        raise InvalidInput("the body must be a JSON object of variables")
    return parameter_pairs(document)


async def batch_body(request: Request) -> list[list[tuple[str, str]]]:
    """The batch trigger's body: a JSON array of 1 to MAX_BATCH objects, one run each."""
    document = json_document(await request.body())
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise InvalidInput("the body must be a JSON array of objects, one per run")
    if not 1 <= len(document) <= MAX_BATCH:
        raise InvalidInput(f"a batch holds 1 to {MAX_BATCH} runs, not {len(document)}")
    return [parameter_pairs(item) for item in document]


def parameter_pairs(document: dict) -> list[tuple[str, str]]:
    """A JSON object's parameters as text; a list of regions or agents is one pair each."""
    pairs = []
    for key, value in document.items():
        if key in LISTABLE and isinstance(value, list):
            pairs += [(key, as_text(v)) for v in value]
        else:
            pairs.append((str(key), as_text(value)))
    return pairs


def as_text(value) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def install(app: FastAPI, services) -> None:
    install_error_shape(app)
    app.state.error_shapes.register(TRIGGER_PREFIX, render_error)
    router = build_router(services)
    app.include_router(router)
    openapi.publish(app, FAMILY, router.routes)
