"""Run requests and run ids: the contract between users, the gateway and the operator for how
a TestSuite or Monitor run is asked for, and how every run is named.

A run is requested by setting the annotation `assay.dev/run-request` on the TestSuite or
Monitor. Its value is either a plain request id:

    kubectl annotate testsuite checkout assay.dev/run-request=$(date +%s) --overwrite

or a JSON object with the id and the run's options:

    TestSuite  {"id": "<request id>", "forceAllFlows": false, "additionalDescription": "nightly",
                "overrideParameters": {"baseUrl": "https://staging.example"},
                "labels": ["smoke"], "pool": "staging-users"}
    Monitor    {"id": "<request id>", "environment": "<environment name or id>",
                "params": {"user": "alice"}, "regions": ["us1"], "remoteAgents": ["lab-1"]}

Every field but `id` is optional; unknown fields are refused. The request id is any string of
1 to 253 characters the requester chooses (a timestamp, a UUID, a Git commit): the run id is
derived from the resource's uid and the request id (`run_id_for_request`), and the run's
Job is named after the run id. So

* setting the same id again (a replayed `kubectl annotate`, a GitOps tool re-applying, an
  operator restart) changes nothing: the run exists already, or is in the status history;
* a new id starts a new run, whatever the previous run is doing;
* the annotation holds one request: an id replaced before the operator saw it is superseded
  and never runs. The gateway waits for `status.lastRun.runId` before it requests again
  (`pending_run_id`), and writes its requests with `annotation()`.

A request that cannot be used (bad JSON, an environment the Monitor does not have) starts
nothing; the `RunRequest` condition says why, until the annotation changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

RUN_REQUEST_ANNOTATION = "assay.dev/run-request"
REGION_LABEL = "topology.kubernetes.io/region"
AGENT_LABEL = "assay.dev/agent"
"""The node labels a Monitor run's regions and remote agents select its nodes by."""
RUN_REQUEST_CONDITION = "RunRequest"
"""The owner's status condition about its request: True started, False refused, Unknown pending."""
MAX_NAME = 63
RUN_ID_LIMIT = 52
"""Pod names of an Indexed Job are `<job>-<index>-<5 random>`; run ids leave room for that."""


def fit_name(base: str, suffix: str, limit: int = MAX_NAME) -> str:
    """`base-suffix` within `limit` characters; a cut base gets a hash so two long names
    sharing a prefix still differ."""
    name = f"{base}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{base[:keep].rstrip('-')}-{digest}-{suffix}"


def run_id_for(name: str, uid: str) -> str:
    """The run id of a one-shot resource (a LoadTest runs once): its name plus its uid's
    first eight characters, so a deleted and recreated LoadTest of the same name is a new run."""
    return fit_name(name, uid.replace("-", "")[:8], limit=RUN_ID_LIMIT)


def run_id_for_request(name: str, uid: str, request_id: str) -> str:
    """The run id of a requested run (TestSuite, Monitor): the owner's name plus ten hex
    characters of sha256("<uid>/<request id>").

    A repeated or replayed request yields the same id, hence the same Job name, so it never
    starts a second run; a new request id is a new run. The gateway computes the same id to
    answer "run started" with the id the run will have."""
    digest = hashlib.sha256(f"{uid}/{request_id}".encode()).hexdigest()[:10]
    return fit_name(name, digest, limit=RUN_ID_LIMIT)


RequestId = Annotated[str, StringConstraints(min_length=1, max_length=253, strip_whitespace=True)]
NodeLabelValue = Annotated[str, StringConstraints(min_length=1, max_length=63)]
"""A region code or a remote agent's name: a node label value (operator/monitorruns.py)."""


class _Request(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    id: RequestId

    def annotation(self) -> str:
        """The annotation value asking for this run, which `parse_run_request` reads back."""
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True), sort_keys=True, separators=(",", ":"))


class SuiteRunRequest(_Request):
    """The options of a TestSuite run, as the Loadmill "run test suite" call takes them."""

    force_all_flows: bool = False
    additional_description: str = Field("", max_length=1024)
    override_parameters: dict[str, str] = {}
    labels: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] | None = Field(None, max_length=50)
    """Run only the flows carrying one of these labels (TestSuiteSpec.ci_flows)."""
    pool: str | None = Field(None, min_length=1, max_length=253)
    """Run flows over their parameter pool only if it has this name (SuiteFlow.pool_for_run)."""

    def options(self) -> dict:
        """What the runner reads from ASSAY_RUN_OPTIONS."""
        options: dict = {
            "forceAllFlows": self.force_all_flows,
            "additionalDescription": self.additional_description,
            "overrideParameters": dict(self.override_parameters),
        }
        if self.labels:
            options["labels"] = list(self.labels)
        if self.pool is not None:
            options["pool"] = self.pool
        return options


class MonitorRunRequest(_Request):
    """The options of a Monitor run, as the Runscope trigger takes them."""

    environment: str | None = Field(None, max_length=128)
    """An environment's name or id; the Monitor's default environment when unset."""
    params: dict[str, str] = {}
    """Variables that override the environment's initial variables."""
    regions: list[NodeLabelValue] | None = Field(None, max_length=20)
    """Run in these regions instead of the environment's (Runscope's `runscope_region`)."""
    remote_agents: list[NodeLabelValue] | None = Field(None, max_length=20)
    """Run on these remote agents (their names) instead of the environment's
    (`runscope_agent`). Either field set replaces both of the environment's lists: a run
    asked for in one region runs on none of the environment's agents, and the reverse."""

    def places(self) -> bool:
        """Whether the request says where to run, rather than leaving it to the environment."""
        return self.regions is not None or self.remote_agents is not None


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


def requested_id(annotations: dict | None) -> str | None:
    """The request id in the annotation, whatever its options; None for none or for a value
    with no readable id. Lenient on purpose: a request the operator has not judged yet is
    outstanding even if it will be refused."""
    raw = ((annotations or {}).get(RUN_REQUEST_ANNOTATION) or "").strip()
    if not raw:
        return None
    if not raw.startswith("{"):
        return raw
    try:
        value = json.loads(raw).get("id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value not in (None, "") else None


def recorded_run_ids(status: dict) -> set[str]:
    """The run ids the owner's status knows: its last run and its history."""
    entries = [status.get("lastRun") or {}, *(status.get("history") or [])]
    return {e["runId"] for e in entries if e.get("runId")}


def pending_run_id(owner: dict) -> str | None:
    """The run id of the request on `owner` (a TestSuite or Monitor) the operator has not acted
    on yet, or None. A new request must wait for it: the annotation holds one request, and one
    replaced before the operator saw it would never run."""
    meta, status = owner["metadata"], owner.get("status") or {}
    request_id = requested_id(meta.get("annotations"))
    if request_id is None:
        return None
    run_id = run_id_for_request(meta["name"], meta["uid"], request_id)
    if run_id in recorded_run_ids(status):
        return None
    for condition in status.get("conditions") or []:
        if condition.get("type") == RUN_REQUEST_CONDITION and condition.get("status") in ("True", "False"):
            # True: started (maybe not in lastRun yet); False: refused, it will never run.
            if condition.get("status") == "False" or run_id in (condition.get("message") or ""):
                return None
    return run_id


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    where = ".".join(str(p) for p in errors[0]["loc"]) or "value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {errors[0]['msg']}{more}"
