"""The openAPIinspector's validation and its refusal of unusable URLs and documents."""

from __future__ import annotations

import pytest

from assay.api.services.openapi_inspector import (
    InspectionInputError,
    checked_url,
    inspect_document,
    parse_document,
    pointer,
)

VALID = {
    "openapi": "3.0.3",
    "info": {"title": "Quotes", "version": "1"},
    "paths": {
        "/quotes/{id}": {
            "get": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "a quote"}},
            }
        }
    },
}


def test_a_valid_document_satisfies():
    result = inspect_document(VALID)
    assert result.to_dict() == {"version": 3, "openapi": "3.0.3", "satisfied": True, "errors": []}


def test_each_error_is_reported_with_its_place():
    broken = {
        "openapi": "3.0.3",
        "info": {"title": "Quotes"},
        "paths": {"/quotes": {"get": {"description": "no responses"}}},
    }
    errors = inspect_document(broken).errors
    assert {"path": "/info", "message": "'version' is a required property"} in errors or any(
        e["path"] == "/info" and "version" in e["message"] for e in errors
    ), errors
    assert any(e["path"] == "/paths/~1quotes/get" and "responses" in e["message"] for e in errors), errors
    assert all("\n" not in e["message"] for e in errors)
    assert not inspect_document(broken).satisfied


def test_semantic_errors_are_placed_at_the_operation_they_name():
    document = {
        **VALID,
        "paths": {
            "/quotes/{id}": {"get": {"operationId": "q", "responses": {"200": {"description": "x"}}}},
            "/all": {"get": {"operationId": "q", "responses": {"200": {"description": "x"}}}},
        },
    }
    errors = inspect_document(document).errors
    assert {
        "path": "/paths/~1quotes~1{id}/get",
        "message": "Path parameter 'id' for 'get' operation in '/quotes/{id}' was not resolved",
    } in errors
    assert len([e for e in errors if "Path parameter" in e["message"]]) == 1
    assert any(e["path"] == "/paths/~1all/get" and "not unique" in e["message"] for e in errors), errors


def test_remote_references_are_not_followed():
    document = {
        **VALID,
        "components": {"schemas": {"Quote": {"$ref": "file:///etc/passwd"}}},
        "paths": {
            "/q": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "x",
                            "content": {"application/json": {"schema": {"$ref": "file:///etc/passwd"}}},
                        }
                    }
                }
            }
        },
    }
    errors = inspect_document(document).errors
    assert any("file:///etc/passwd" in e["message"] for e in errors), errors


def test_swagger_2_and_other_documents_are_not_oas3():
    assert inspect_document({"swagger": "2.0"}).to_dict()["version"] == 2
    assert not inspect_document({"swagger": "2.0"}).satisfied
    assert inspect_document({"hello": "world"}).errors[0]["path"] == "/openapi"


def test_urls_and_documents_that_cannot_be_used():
    for url in ("", None, "file:///etc/passwd", "ftp://x/y", "http://", 7):
        with pytest.raises(InspectionInputError):
            checked_url(url)
    assert checked_url(" https://a.example/spec.yaml ") == "https://a.example/spec.yaml"
    assert parse_document(b"openapi: 3.0.0\ninfo: {title: t}\n")["openapi"] == "3.0.0"
    for body in (b"[1, 2]", b"\xff\xfe", b"{unclosed", b""):
        with pytest.raises(InspectionInputError, match="json schema"):
            parse_document(body)
    assert pointer(["paths", "/a/{b}", "get", 0, "x~y"]) == "/paths/~1a~1{b}/get/0/x~0y"
