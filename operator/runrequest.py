"""Run requests: how a user, a GitOps tool or the gateway asks for a TestSuite or Monitor run.

A run is requested by setting the annotation `assay.dev/run-request` on the TestSuite or
Monitor. Its value is either a plain request id:

    kubectl annotate testsuite checkout assay.dev/run-request=$(date +%s) --overwrite

or a JSON object with the id and the run's options:

    TestSuite  {"id": "<request id>", "forceAllFlows": false, "additionalDescription": "nightly",
                "overrideParameters": {"baseUrl": "https://staging.example"}}
    Monitor    {"id": "<request id>", "environment": "<environment name or id>",
                "params": {"user": "alice"}}

Every field but `id` is optional; unknown fields are refused. The request id is any string of
1 to 253 characters the requester chooses (a timestamp, a UUID, a Git commit): the run id is
derived from the resource's uid and the request id (`names.run_id_for_request`), and the run's
Job is named after the run id. So

* setting the same id again (a replayed `kubectl annotate`, a GitOps tool re-applying, an
  operator restart) changes nothing: the run exists already, or is in the status history;
* a new id starts a new run, whatever the previous run is doing;
* the annotation holds one request: an id replaced before the operator saw it is superseded
  and never runs. The gateway waits for `status.lastRun.runId` before it requests again.

A request that cannot be used (bad JSON, an environment the Monitor does not have) starts
nothing; the `RunRequest` condition says why, until the annotation changes.
"""

from __future__ import annotations

import json
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from .names import RUN_REQUEST_ANNOTATION

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=253, strip_whitespace=True)]


class _Request(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    id: RequestId


class SuiteRunRequest(_Request):
    """The options of a TestSuite run, as the Loadmill "run test suite" call takes them."""

    force_all_flows: bool = False
    additional_description: str = Field("", max_length=1024)
    override_parameters: dict[str, str] = {}

    def options(self) -> dict:
        """What the runner reads from ASSAY_RUN_OPTIONS."""
        return {"forceAllFlows": self.force_all_flows, "additionalDescription": self.additional_description,
                "overrideParameters": dict(self.override_parameters)}


class MonitorRunRequest(_Request):
    """The options of a Monitor run, as the Runscope trigger takes them."""

    environment: str | None = Field(None, max_length=128)
    """An environment's name or id; the Monitor's default environment when unset."""
    params: dict[str, str] = {}
    """Variables that override the environment's initial variables."""


RunRequest = Union[SuiteRunRequest, MonitorRunRequest]


class InvalidRunRequest(ValueError):
    """The annotation is set but cannot be used; the message says why, for the status."""


def _coerce_values(document: dict, field: str) -> None:
    # JSON written by hand often has numbers or booleans as parameter values; runs take text.
    values = document.get(field)
    if isinstance(values, dict):
        document[field] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def parse_run_request(annotations: dict | None, model: type[RunRequest]) -> RunRequest | None:
    """The request in the owner's annotations; None when there is none. Raises
    InvalidRunRequest for a value that is neither a request id nor a valid JSON request."""
    raw = (annotations or {}).get(RUN_REQUEST_ANNOTATION)
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.startswith("{"):
        try:
            return model(id=text)
        except ValidationError as exc:
            raise InvalidRunRequest(f"{RUN_REQUEST_ANNOTATION}: {_first_error(exc)}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InvalidRunRequest(f"{RUN_REQUEST_ANNOTATION}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise InvalidRunRequest(f"{RUN_REQUEST_ANNOTATION}: expected a JSON object")
    for field in ("overrideParameters", "params"):
        _coerce_values(document, field)
    if isinstance(document.get("id"), (int, float)) and not isinstance(document.get("id"), bool):
        document["id"] = str(document["id"])
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidRunRequest(f"{RUN_REQUEST_ANNOTATION}: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    where = ".".join(str(p) for p in errors[0]["loc"]) or "value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {errors[0]['msg']}{more}"
