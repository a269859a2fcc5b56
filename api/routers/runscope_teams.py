"""The Runscope API's team administration (seeds/003: Teams, Integrations, Agents, Role Based
Access Control, Bucket Custom Emails).

    /teams/{team_id}                         GET
    /teams/{team_id}/people                  GET list (page, count), PUT assign a role
    /teams/{team_id}/people/{email}          GET, DELETE
    /teams/{team_id}/people/{email}/groups   GET
    /teams/{team_id}/invite                  POST
    /teams/{team_id}/groups                  GET, POST        /groups/{group_id}  GET, PUT, DELETE
    /teams/{team_id}/roles                   GET, POST        /roles/{role_id}    GET, PUT, DELETE
    /teams/{team_id}/email-domains           GET, POST
    /teams/{team_id}/integrations            GET
    /teams/{team_id}/agents                  GET
    /buckets/{key}/custom-emails             GET, POST, DELETE

Each also under `/v1` and with `/team/` for `/teams/`. A team is reachable by the principals
of its organization only (anyone else: 404). Reads take team:read; changes take team:read and
bucket:write from an org-level credential of the team (the document names no team write
scope; bucket:write is the one that administers). Custom e-mails are a bucket's: api:read to
list, bucket:write to change. Bodies are JSON whatever the Content-Type (the document's
invite curl sends none).
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .. import openapi
from ..auth import Principal, require_bearer
from ..bodies import body_limit, json_document
from ..services import InvalidInput
from ..services.runscope_teams import (
    AGENT_LABEL,
    RunscopeTeams,
    agent_item,
    monitor_integrations,
    node_ready,
    team_buckets,
    team_detail,
)
from .runscope_results import spellings
from .runscope_wire import FAMILY, JSON_OBJECT_BODY, bucket_namespace, deleted, install_error_shape, ok

MAX_BODY_BYTES = 256 * 1024
TEAM_READ = ("team:read",)
TEAM_WRITE = ("team:read", "bucket:write")


def success_without_data() -> JSONResponse:
    """`{"error": null, "meta": {"status": "success"}}`, as the e-mail endpoints answer."""
    return JSONResponse({"error": None, "meta": {"status": "success"}})


async def json_body(request: Request) -> dict:
    value = json_document(await request.body() or b"null")
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object")
    return value


def build_router(services) -> APIRouter:
    teams = RunscopeTeams(services.store)
    router = APIRouter(tags=["runscope"])
    reader, writer = require_bearer(*TEAM_READ), require_bearer(*TEAM_WRITE)

    def route(path: str, method: str, **kwargs) -> Callable:
        def register(endpoint: Callable) -> Callable:
            for variant in spellings(path):
                router.add_api_route(variant, body_limit(MAX_BODY_BYTES)(endpoint), methods=[method], **kwargs)
            return endpoint

        return register

    def buckets_of(principal: Principal, team_id: str, write: bool = False) -> list[str]:
        return team_buckets(principal, services.auth.tenancy.index.namespaces(), team_id, write=write)

    async def in_team(principal: Principal, team_id: str, work: Callable[[], Any], *, write: bool = False) -> Any:
        def call():
            buckets_of(principal, team_id, write)
            return work()

        return await run_in_threadpool(call)

    @route("/teams/{team_id}", "GET")
    async def team(team_id: str, principal: Principal = Depends(reader)):
        return ok(await in_team(principal, team_id, lambda: team_detail(team_id)))

    # people ------------------------------------------------------------------------------------------

    @route("/teams/{team_id}/people", "GET")
    async def list_people(team_id: str, page: int = 1, count: int = 100, principal: Principal = Depends(reader)):
        with_email = "account:email" in principal.scopes
        return ok(
            await in_team(
                principal, team_id, lambda: teams.list_people(team_id, page=page, count=count, with_email=with_email)
            )
        )

    @route("/teams/{team_id}/people", "PUT", openapi_extra=JSON_OBJECT_BODY)
    async def assign_role(team_id: str, request: Request, principal: Principal = Depends(writer)):
        body = await json_body(request)
        return ok(await in_team(principal, team_id, lambda: teams.assign_role(team_id, body), write=True))

    @route("/teams/{team_id}/people/{email}", "GET")
    async def person(team_id: str, email: str, principal: Principal = Depends(reader)):
        return ok(await in_team(principal, team_id, lambda: teams.person(team_id, email)))

    @route(
        "/teams/{team_id}/people/{email}",
        "DELETE",
        status_code=204,
        responses={409: {"description": "The team's last person cannot be removed."}},
    )
    async def remove_person(team_id: str, email: str, principal: Principal = Depends(writer)):
        await in_team(principal, team_id, lambda: teams.remove_person(team_id, email), write=True)
        return deleted()

    @route("/teams/{team_id}/people/{email}/groups", "GET")
    async def person_groups(team_id: str, email: str, principal: Principal = Depends(reader)):
        return ok(await in_team(principal, team_id, lambda: teams.person_groups(team_id, email.strip())))

    @route("/teams/{team_id}/invite", "POST", openapi_extra=JSON_OBJECT_BODY, status_code=201)
    async def invite(team_id: str, request: Request, principal: Principal = Depends(writer)):
        body = await json_body(request)
        return ok(
            await in_team(principal, team_id, lambda: teams.invite(team_id, body, principal.client_id), write=True),
            status=201,
        )

    # groups ------------------------------------------------------------------------------------------

    @route("/teams/{team_id}/groups", "GET")
    async def list_groups(team_id: str, principal: Principal = Depends(reader)):
        return ok(await in_team(principal, team_id, lambda: teams.groups(team_id)))

    @route("/teams/{team_id}/groups", "POST", openapi_extra=JSON_OBJECT_BODY, status_code=201)
    async def create_group(team_id: str, request: Request, principal: Principal = Depends(writer)):
        body = await json_body(request)
        return ok(await in_team(principal, team_id, lambda: teams.create_group(team_id, body), write=True), status=201)

    @route("/teams/{team_id}/groups/{group_id}", "GET")
    async def group(team_id: str, group_id: str, principal: Principal = Depends(reader)):
        return ok(await in_team(principal, team_id, lambda: teams.group(team_id, group_id)))

    @route("/teams/{team_id}/groups/{group_id}", "PUT", openapi_extra=JSON_OBJECT_BODY)
    async def modify_group(team_id: str, group_id: str, request: Request, principal: Principal = Depends(writer)):
        body = await json_body(request)

        def work():
            return teams.modify_group(team_id, group_id, body, buckets_of(principal, team_id, write=True))

        return ok(await in_team(principal, team_id, work, write=True))

    @route("/teams/{team_id}/groups/{group_id}", "DELETE", status_code=204)
    async def delete_group(team_id: str, group_id: str, principal: Principal = Depends(writer)):
        await in_team(principal, team_id, lambda: teams.delete_group(team_id, group_id), write=True)
        return deleted()

    # roles -------------------------------------------------------------------------------------------

    @route("/teams/{team_id}/roles", "GET")
    async def list_roles(team_id: str, principal: Principal = Depends(reader)):
        return ok(await in_team(principal, team_id, lambda: teams.roles(team_id)))

    @route("/teams/{team_id}/roles", "POST", openapi_extra=JSON_OBJECT_BODY, status_code=201)
    async def create_role(team_id: str, request: Request, principal: Principal = Depends(writer)):
        body = await json_body(request)
        return ok(await in_team(principal, team_id, lambda: teams.create_role(team_id, body), write=True), status=201)

    @route("/teams/{team_id}/roles/{role_id}", "GET")
    async def role(team_id: str, role_id: str, principal: Principal = Depends(reader)):
        return ok(await in_team(principal, team_id, lambda: teams.role(team_id, role_id)))

    @route("/teams/{team_id}/roles/{role_id}", "PUT", openapi_extra=JSON_OBJECT_BODY)
    async def modify_role(team_id: str, role_id: str, request: Request, principal: Principal = Depends(writer)):
        body = await json_body(request)
        return ok(await in_team(principal, team_id, lambda: teams.modify_role(team_id, role_id, body), write=True))

    @route("/teams/{team_id}/roles/{role_id}", "DELETE", status_code=204)
    async def delete_role(team_id: str, role_id: str, principal: Principal = Depends(writer)):
        await in_team(principal, team_id, lambda: teams.delete_role(team_id, role_id), write=True)
        return deleted()

    # e-mail domains ------------------------------------------------------------------------------------

    @route("/teams/{team_id}/email-domains", "GET")
    async def email_domains(team_id: str, principal: Principal = Depends(reader)):
        return ok(await in_team(principal, team_id, lambda: teams.email_domains(team_id)))

    @route("/teams/{team_id}/email-domains", "POST", openapi_extra=JSON_OBJECT_BODY)
    async def add_email_domains(team_id: str, request: Request, principal: Principal = Depends(writer)):
        body = await json_body(request)
        await in_team(
            principal, team_id, lambda: teams.add_email_domains(team_id, body, principal.client_id), write=True
        )
        return success_without_data()

    # integrations and agents ---------------------------------------------------------------------------

    @route("/teams/{team_id}/integrations", "GET")
    async def integrations(team_id: str, principal: Principal = Depends(reader)):
        def work():
            buckets = buckets_of(principal, team_id)
            return monitor_integrations(m for key in buckets for m in services.kube.list("monitors", key))

        return ok(await run_in_threadpool(work))

    @route("/teams/{team_id}/agents", "GET")
    async def agents(team_id: str, principal: Principal = Depends(reader)):
        def work():
            buckets_of(principal, team_id)
            nodes = services.kube.nodes(f"{AGENT_LABEL},{services.settings.org_label}={team_id}")
            return [agent_item(n, team_id) for n in nodes if node_ready(n)]

        return ok(await run_in_threadpool(work))

    # a bucket's custom e-mails ---------------------------------------------------------------------------

    @route("/buckets/{bucket_key}/custom-emails", "GET")
    async def custom_emails(bucket_key: str, principal: Principal = Depends(require_bearer("api:read"))):
        return ok(
            await run_in_threadpool(lambda: teams.custom_emails(bucket_namespace(services, principal, bucket_key)))
        )

    def bucket_team(principal: Principal, bucket_key: str) -> str | None:
        namespace = bucket_namespace(services, principal, bucket_key)
        record = services.auth.tenancy.index.namespace(namespace)
        return record.organization if record else None

    @route("/buckets/{bucket_key}/custom-emails", "POST", openapi_extra=JSON_OBJECT_BODY)
    async def add_custom_email(
        bucket_key: str, request: Request, principal: Principal = Depends(require_bearer("bucket:write"))
    ):
        body = await json_body(request)
        await run_in_threadpool(
            lambda: teams.add_custom_email(bucket_key, bucket_team(principal, bucket_key), body, principal.client_id)
        )
        return success_without_data()

    @route("/buckets/{bucket_key}/custom-emails", "DELETE", openapi_extra=JSON_OBJECT_BODY, status_code=204)
    async def delete_custom_email(
        bucket_key: str, request: Request, principal: Principal = Depends(require_bearer("bucket:write"))
    ):
        body = await json_body(request)

        def work():
            bucket_namespace(services, principal, bucket_key)
            teams.delete_custom_email(bucket_key, body)

        await run_in_threadpool(work)
        return deleted()

    return router


def install(app: FastAPI, services) -> None:
    install_error_shape(app)
    router = build_router(services)
    app.include_router(router)
    openapi.publish(app, FAMILY, router.routes)
