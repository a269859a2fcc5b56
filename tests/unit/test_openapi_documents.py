"""The per-family OpenAPI documents: valid OpenAPI 3.1, exactly the family's routes, each
operation's security from its token dependency, errors in the family's shape and never 422.
tests/cluster/test_*schemathesis.py fuzz the real gateway against them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from assay.api import openapi
from assay.api.auth import Authenticator, CredentialIndex
from assay.api.errors import install_error_handlers
from assay.api.routers import loadmill, runscope, runscope_results, runscope_teams, vng, xtc
from assay.api.settings import GatewaySettings

FAMILIES = {"xtc": "XtcError", "loadmill": "LoadmillError", "runscope": "RunscopeError", "vng": "VngError"}


@pytest.fixture(scope="module")
def client():
    settings = GatewaySettings(token_signing_key="k" * 40, store_dir="/nonexistent", public_url="http://gw.test/")
    auth = Authenticator(settings, None, None, index=CredentialIndex("assay.dev/org"))
    services = SimpleNamespace(settings=settings, kube=None, store=None, auth=auth, outbound=None)
    app = FastAPI()
    install_error_handlers(app)
    app.state.services = services
    openapi.install(app)
    for family in (xtc, loadmill, runscope, runscope_results, runscope_teams, vng):
        family.install(app, services)
    with TestClient(app) as client:
        yield client


def operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


@pytest.mark.parametrize(("family", "error"), FAMILIES.items())
def test_each_family_has_a_valid_document_with_its_error_shape(client, family, error):
    response = client.get(f"/openapi/{family}.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["servers"] == [{"url": "http://gw.test"}]
    assert error in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations(document):
        assert "422" not in operation["responses"], (method, path)
        for status, answer in operation["responses"].items():
            if status.startswith("4"):
                assert answer["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{error}"}, (
                    method,
                    path,
                    status,
                )


def test_documents_hold_only_their_familys_paths(client):
    paths = {family: set(client.get(f"/openapi/{family}.json").json()["paths"]) for family in FAMILIES}
    assert all(p.startswith("/public/api/v1/") for p in paths["xtc"])
    assert "/api/v1/labels" in paths["loadmill"] and not any("sessiontypes" in p for p in paths["loadmill"])
    assert "/api/v1/sessiontypes/" in paths["vng"] and "/api/v1/labels" not in paths["vng"]
    assert not any(p.startswith("/vng/exposed") for p in paths["vng"])
    assert {
        "/",
        "/buckets/{bucket_key}/tests/{test_id}/results",
        "/teams/{team_id}/people",
        "/radar/{trigger_id}/trigger",
    } <= paths["runscope"]
    assert client.get("/public/api/json").json() == client.get("/openapi/xtc.json").json()
    missing = client.get("/openapi/graphql.json")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_security_comes_from_each_operations_token_dependency(client):
    runscope_doc = client.get("/openapi/runscope.json").json()["paths"]
    assert runscope_doc["/teams/{team_id}/roles"]["post"]["security"] == [
        {"runscopeOAuth2": ["bucket:write", "team:read"]},
        {"bearerAuth": []},
    ]
    assert runscope_doc["/buckets/{bucket_key}/tests"]["get"]["security"][0] == {
        "runscopeOAuth2": ["api:read", "test:read"]
    }
    trigger = runscope_doc["/radar/{trigger_id}/trigger"]
    assert trigger["get"]["security"] == trigger["post"]["security"] == []
    assert "401" not in trigger["post"]["responses"] and "201" in trigger["post"]["responses"]
    assert "204" in runscope_doc["/buckets/{bucket_key}"]["delete"]["responses"]
    vng_doc = client.get("/openapi/vng.json").json()["paths"]
    assert vng_doc["/api/v1/testsessions/"]["post"]["security"] == [{"vngToken": []}]
    assert vng_doc["/api/v1/provider-run-shield/{uuid}"]["get"]["security"] == []
    loadmill_doc = client.get("/openapi/loadmill.json").json()
    assert loadmill_doc["paths"]["/api/v1/labels"]["get"]["security"] == [{"loadmillToken": []}, {"loadmillBasic": []}]
    assert loadmill_doc["components"]["securitySchemes"]["loadmillToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "The static API token of a ClientCredential with the `loadmill` scope, without a scheme.",
    }
    pools = loadmill_doc["paths"]["/api/v1/test-suites/{suiteId}/flows/{flowId}/pools"]["patch"]
    assert set(pools["requestBody"]["content"]) == {"text/csv"} and {"413", "415"} <= set(pools["responses"])


def test_a_path_with_a_control_character_is_a_400_in_the_familys_shape(client):
    # A trailing newline used to match the route without it: the session list for a session id.
    response = client.get("/api/v1/testsessions/%0A", headers={"Authorization": "Token x.y"})
    assert response.status_code == 400 and response.json() == {"detail": "the path must not contain control characters"}
    xtc_answer = client.get("/public/api/v1/orgs/a/projects/b/loadTests%0A")
    assert xtc_answer.status_code == 400 and xtc_answer.json()["code"] == "invalid_request"
