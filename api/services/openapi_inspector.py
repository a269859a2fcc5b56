"""The openAPIinspector: fetch an API description by URL and validate it against OpenAPI 3.

The document is fetched over http(s) only, through the gateway's outbound client (the egress
policy on every hop, a total deadline, a per-project bound on fetches in flight, see
api/services/outbound.py) with a size cap, and parsed as JSON or YAML. Validation is openapi-spec-validator's (the OAS 3.0 or 3.1 schema plus its semantic
checks: path parameters, duplicate operation ids, defaults against their schemas, ...). Every
error is reported with where it is in the document, as a JSON pointer.

`$ref`s are resolved inside the document only: resolving remote or `file:` references would
let any caller make the gateway read its own files or call hosts on its network. A document
whose validation needs such a reference gets one error naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import yaml
from starlette.concurrency import run_in_threadpool
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator
from referencing.exceptions import Unresolvable

from assay.runner.egress import EgressDenied

from .outbound import Outbound, OutboundTooLarge

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
MAX_ERRORS = 200
_OPERATION_IN_MESSAGE = re.compile(r"for '([A-Za-z]+)'(?: operation)? in '([^']+)'")


class InspectionInputError(ValueError):
    """The URL cannot be used or its document cannot be read; the message is for the caller."""


class _LocalOnly30(OpenAPIV30SpecValidator):
    resolver_handlers: dict = {}


class _LocalOnly31(OpenAPIV31SpecValidator):
    resolver_handlers: dict = {}


@dataclass(frozen=True)
class Inspection:
    version: int
    """The major version the document declares: 3 for `openapi: 3.x`, 2 for `swagger: "2.0"`."""
    declared: str
    errors: list[dict]
    """[{"path": JSON pointer, "message"}], in document order as the validator finds them."""

    @property
    def satisfied(self) -> bool:
        return self.version == 3 and not self.errors

    def to_dict(self) -> dict:
        return {"version": self.version, "openapi": self.declared, "satisfied": self.satisfied, "errors": self.errors}


def checked_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InspectionInputError("Enter a valid URL.")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InspectionInputError("Enter a valid URL: only http and https links can be inspected.")
    return url.strip()


async def fetch_document(url: str, outbound: Outbound) -> bytes:
    """The body at `url`, at most MAX_DOCUMENT_BYTES, following up to MAX_REDIRECTS http(s)
    redirects (each hop a new, checked connection). Raises InspectionInputError for anything
    that is not a readable 2xx answer. Call it inside `outbound.slot(...)`."""
    try:
        for _ in range(MAX_REDIRECTS + 1):
            request = outbound.client.build_request(
                "GET", url, headers={"Accept": "application/json, application/yaml, */*"}
            )
            reply = await outbound.client.send(request, stream=True)
            try:
                if reply.is_redirect and reply.headers.get("location"):
                    url = checked_url(str(reply.url.join(reply.headers["location"])))
                    continue
                if reply.status_code >= 400:
                    raise InspectionInputError(f"The link provided answered HTTP {reply.status_code}.")
                return await outbound.read_capped(reply, MAX_DOCUMENT_BYTES)
            finally:
                await reply.aclose()
        raise InspectionInputError("The link provided redirects too often.")
    except OutboundTooLarge:
        raise InspectionInputError(f"The document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB.") from None
    except EgressDenied:
        raise InspectionInputError("The link provided points to an address the gateway may not reach.") from None
    except httpx.HTTPError:
        raise InspectionInputError("The link provided is not reachable") from None


def parse_document(body: bytes) -> dict:
    try:
        document = yaml.safe_load(body.decode("utf-8-sig"))  # JSON is YAML too
    except (UnicodeDecodeError, yaml.YAMLError):
        raise InspectionInputError("The link provided does not contain a json schema") from None
    if not isinstance(document, dict):
        raise InspectionInputError("The link provided does not contain a json schema")
    return document


def pointer(path) -> str:
    """A JSON pointer (RFC 6901) for a path of keys and indexes."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def inspect_document(document: dict) -> Inspection:
    declared = document.get("openapi")
    if isinstance(declared, str) and declared.startswith("3."):
        validator = _LocalOnly31 if declared.startswith("3.1") else _LocalOnly30
        return Inspection(3, declared, _errors(validator(document)))
    swagger = document.get("swagger")
    if swagger is not None:
        return Inspection(
            2,
            str(swagger),
            [{"path": "/swagger", "message": "a Swagger 2.0 document; the inspector checks OpenAPI 3 documents"}],
        )
    return Inspection(
        0,
        str(declared or ""),
        [{"path": "/openapi", "message": "not an OpenAPI 3 document: `openapi: 3.x.y` is required"}],
    )


def error_place(error) -> str:
    """Where an error is: its path in the document, or for the semantic checks (which carry
    none) the operation their message names."""
    path = list(getattr(error, "absolute_path", ()) or ())
    if path:
        return pointer(path)
    named = _OPERATION_IN_MESSAGE.search(str(getattr(error, "message", "")))
    return pointer(["paths", named.group(2), named.group(1)]) if named else ""


def _errors(validator) -> list[dict]:
    errors: list[dict] = []
    try:
        for error in validator.iter_errors():
            # The message's first line is the finding; the rest repeats the schema and instance.
            finding = {"path": error_place(error), "message": str(getattr(error, "message", error)).split("\n", 1)[0]}
            if finding not in errors:  # a parameter missing on both sides is reported twice
                errors.append(finding)
            if len(errors) >= MAX_ERRORS:
                break
    except Unresolvable as exc:
        errors.append(
            {
                "path": "",
                "message": f"cannot resolve $ref {exc.ref!r}: only references inside the "
                "document are resolved; validation stopped here",
            }
        )
    except RecursionError:
        errors.append({"path": "", "message": "the document's references nest too deeply to validate"})
    return errors


async def inspect_url(url: object, outbound: Outbound, tenant: str) -> Inspection:
    """Fetch and validate; raises OutboundBusy when `tenant` has its maximum of fetches in flight."""
    url = checked_url(url)
    try:
        async with outbound.slot(tenant):
            body = await fetch_document(url, outbound)
    except TimeoutError:
        raise InspectionInputError("The link provided did not answer in time.") from None
    # Parsing and validating are CPU work: off the event loop.
    return await run_in_threadpool(lambda: inspect_document(parse_document(body)))
