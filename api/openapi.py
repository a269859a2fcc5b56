"""One OpenAPI document per API family, generated from the family's own routes.

    GET /openapi/xtc.json  /openapi/loadmill.json  /openapi/runscope.json  /openapi/vng.json

Each family describes itself once (`ApiFamily`: title, security schemes, error shape) and
publishes its routes from its `install()`; the document is FastAPI's `get_openapi` over exactly
those routes, completed with what FastAPI cannot see:

- security: an operation needs a token when one of its dependencies is `require_bearer` or
  `require_static_token`, which carry their scopes (`auth.dependencies.token_requirement`); the
  operation then lists the family's schemes, OAuth2 schemes with those scopes. Operations
  without such a dependency (badges, the trigger URL) are public: `security: []`.
- errors: FastAPI documents validation errors as 422 in its own shape; the gateway answers 400
  in the family's shape (errors.py), so 422 is replaced by the family's error statuses; these
  and the error statuses a route declares itself (`responses={409: {...}}`) get the family's
  error schema.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from .auth.dependencies import token_requirement
from .errors import ApiError

PATH = "/openapi/{family}.json"
AUTH_STATUSES = (401, 403)
"""Error statuses only an operation that takes a token can answer."""


@dataclass(frozen=True)
class ApiFamily:
    name: str
    """The document's name: /openapi/<name>.json."""
    title: str
    description: str
    security_schemes: Callable[[str], dict]
    """Public URL -> components.securitySchemes (token URLs are absolute)."""
    error_name: str
    error_schema: dict
    errors: dict[int, str] = field(default_factory=dict)
    """Status -> description of the errors every operation of the family may answer."""


def operation_scopes(route: APIRoute) -> tuple[str, ...] | None:
    """The scopes the route's token must carry; None when it takes no token."""

    def walk(dependant: Dependant) -> Iterable[tuple[str, ...]]:
        for dependency in dependant.dependencies:
            requirement = token_requirement(dependency.call)
            if requirement is not None:
                yield requirement
            yield from walk(dependency)

    found = list(walk(route.dependant))
    return tuple(sorted({scope for scopes in found for scope in scopes})) if found else None


def security_requirements(schemes: dict, scopes: tuple[str, ...]) -> list[dict]:
    """Any one of the family's schemes satisfies an operation; OAuth2 ones name the scopes."""
    return [{name: list(scopes) if scheme.get("type") == "oauth2" else []} for name, scheme in schemes.items()]


def family_document(family: ApiFamily, routes: list[BaseRoute], public_url: str) -> dict:
    base = public_url.rstrip("/")
    api_routes = [r for r in routes if isinstance(r, APIRoute) and r.include_in_schema]
    with warnings.catch_warnings():
        # "Duplicate Operation ID" for multi-method routes: the ids are made unique below.
        warnings.filterwarnings("ignore", message="Duplicate Operation ID")
        document = get_openapi(
            title=family.title,
            version="v1",
            openapi_version="3.1.0",
            routes=api_routes,
            servers=[{"url": base}],
            description=family.description,
        )
    components = document.setdefault("components", {})
    schemes = family.security_schemes(base)
    components["securitySchemes"] = schemes
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas[family.error_name] = family.error_schema
    error_content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{family.error_name}"}}}
    scopes_of = {(r.path_format, method.lower()): operation_scopes(r) for r in api_routes for method in r.methods}
    operation_ids: set[str] = set()
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            # FastAPI names every method of a multi-method route after its first one.
            if operation.get("operationId") in operation_ids:
                operation["operationId"] = f"{operation['operationId'].rsplit('_', 1)[0]}_{method}"
            operation_ids.add(operation.get("operationId"))
            scopes = scopes_of.get((path, method))
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in family.errors.items():
                if scopes is None and status in AUTH_STATUSES:
                    continue
                responses.setdefault(str(status), {"description": description})
            for status, response in responses.items():
                if status[0] == "4" and "content" not in response:
                    response["content"] = error_content
            operation["security"] = [] if scopes is None else security_requirements(schemes, scopes)
    return document


class Documents:
    """The families' routes as they are installed, and their documents, built once on first use
    (after every router is in)."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[ApiFamily, list[BaseRoute]]] = {}
        self._built: dict[str, dict] = {}

    def publish(self, family: ApiFamily, routes: Iterable[BaseRoute]) -> None:
        _, known = self._families.setdefault(family.name, (family, []))
        known.extend(routes)
        self._built.pop(family.name, None)

    def document(self, name: str, public_url: str) -> dict:
        if name not in self._families:
            raise ApiError(404, f"no API family {name!r}; there are {', '.join(sorted(self._families))}", "not_found")
        if name not in self._built:
            family, routes = self._families[name]
            self._built[name] = family_document(family, routes, public_url)
        return self._built[name]


def documents(app: FastAPI) -> Documents:
    if not hasattr(app.state, "openapi_documents"):
        app.state.openapi_documents = Documents()
    return app.state.openapi_documents


def publish(app: FastAPI, family: ApiFamily, routes: Iterable[BaseRoute]) -> None:
    documents(app).publish(family, routes)


def document(app: FastAPI, name: str) -> dict:
    return documents(app).document(name, app.state.services.settings.public_url)


def install(app: FastAPI) -> None:
    @app.get(PATH, include_in_schema=False)
    def openapi_document(family: str) -> JSONResponse:
        return JSONResponse(document(app, family))
