"""Which run an upload token lets its holder write: the grant the ingest router stores under.

A run token (assay.crds.contracts.upload.upload_token) carries its grant: namespace, owner kind,
owner name and uid, run id, under an HMAC the gateway checks in constant time. A tick
group's token (assay.crds.contracts.tick.group_upload_token) carries only its namespace and group;
its grant is the member run the upload names (X-Assay-Tick, the run id in the path), and
exists only when

* the group's CronJob has a Job for that tick (`<group>-<tick>`, or the tick's own name for a
  Job created by hand), controlled by the CronJob, and
* the run id is one of the runs that tick runs (assay.crds.contracts.tick.tick_runs, from the
  members ConfigMap the CronJob's pods read).

Either way the run's namespace, kind and owner come from the grant, never from the request:
headers that say otherwise are refused (403), so a token cannot file results under another
namespace, owner or run.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from assay.crds.contracts.tick import group_upload_token, members_of, parse_group_token, tick_job_name, tick_runs
from assay.crds.contracts.upload import (
    H_KIND,
    H_OWNER_NAME,
    H_OWNER_UID,
    H_PROJECT,
    H_TICK,
    RunGrant,
    verify_upload_token,
)

from .errors import ApiError

TICK_RUNS_TTL_SECONDS = 60.0
"""How long a tick's runs are remembered: a tick's pods upload within minutes of each other,
and each lookup costs two reads from the API server."""
TICK_RUNS_REMEMBERED = 512

_TICK = re.compile(r"^[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?$")
"""A tick is a Job name's suffix, or a whole Job name (DNS subdomain without dots)."""
_CLAIMED = ((H_PROJECT, "namespace"), (H_KIND, "kind"), (H_OWNER_NAME, "owner_name"), (H_OWNER_UID, "owner_uid"))


def _unauthorized(run_id: str) -> ApiError:
    return ApiError(
        401,
        f"a valid upload token for run {run_id} is required",
        code="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="assay-ingest"'},
    )


def _forbidden(message: str) -> ApiError:
    return ApiError(403, message, code="forbidden")


def check_claims(grant: RunGrant, headers: Mapping[str, str]) -> None:
    """Refuse headers that contradict the grant (runners send them; they may not choose them)."""
    for header, field in _CLAIMED:
        claimed = headers.get(header)
        if claimed not in (None, "") and claimed != getattr(grant, field):
            raise _forbidden(
                f"the upload token is for {field.replace('_', ' ')} {getattr(grant, field)!r}; "
                f"{header} says {claimed!r}"
            )


class TickRuns:
    """The runs of tick group ticks, read from the cluster and remembered for a minute."""

    def __init__(self, kube, ttl: float = TICK_RUNS_TTL_SECONDS):
        self.kube, self.ttl = kube, ttl
        self._known: OrderedDict[tuple[str, str, str], tuple[float, dict[str, RunGrant]]] = OrderedDict()
        self._lock = threading.Lock()

    def runs(self, namespace: str, group: str, tick: str) -> dict[str, RunGrant]:
        """The runs of the group's tick by run id; empty when the group has no such tick."""
        key, now = (namespace, group, tick), time.monotonic()
        with self._lock:
            known = self._known.get(key)
            if known and known[0] > now:
                return known[1]
        try:
            runs = self._read(namespace, group, tick)
        except (ApiException, OSError, HTTPError) as exc:
            # Not cached: the runner retries, and the next attempt asks again.
            raise ApiError(
                503, f"the tick's runs cannot be read from the cluster: {type(exc).__name__}", code="unavailable"
            ) from None
        with self._lock:
            self._known[key] = (now + self.ttl, runs)
            self._known.move_to_end(key)
            while len(self._known) > TICK_RUNS_REMEMBERED:
                self._known.popitem(last=False)
        return runs

    def _read(self, namespace: str, group: str, tick: str) -> dict[str, RunGrant]:
        if self.kube is None:
            return {}
        job = self.kube.job(namespace, tick_job_name(group, tick))
        owners = ((job or {}).get("metadata") or {}).get("ownerReferences") or []
        if not any(
            ref.get("kind") == "CronJob" and ref.get("name") == group and ref.get("controller") for ref in owners
        ):
            return {}
        configmap = self.kube.config_map(namespace, group)
        if configmap is None:
            return {}
        try:
            document = members_of(configmap)
        except (KeyError, ValueError, OSError, EOFError):
            return {}
        if document.get("namespace") != namespace or document.get("group") != group:
            return {}
        return tick_runs(document, tick)


def grant_for(authorization: str, run_id: str, headers: Mapping[str, str], key: str, ticks: TickRuns) -> RunGrant:
    """The grant of the request's bearer token for `run_id`; ApiError 401 for a token that is
    not genuine, 403 for a genuine one that does not cover the run or the claimed owner."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized(run_id)
    if parse_group_token(token) is not None:
        grant = _tick_grant(token, run_id, headers, key, ticks)
    else:
        grant = verify_upload_token(key, token)
        if grant is None:
            raise _unauthorized(run_id)
        if grant.run_id != run_id:
            raise _forbidden(f"the upload token is for run {grant.run_id}, not {run_id}")
    check_claims(grant, headers)
    return grant


def _tick_grant(token: str, run_id: str, headers: Mapping[str, str], key: str, ticks: TickRuns) -> RunGrant:
    namespace, group, _ = parse_group_token(token)
    if not hmac.compare_digest(group_upload_token(key, namespace, group).encode(), token.encode()):
        raise _unauthorized(run_id)
    tick = headers.get(H_TICK, "")
    if not tick:
        raise _forbidden(f"a tick group's token writes the runs of its ticks only: {H_TICK} is required")
    if not _TICK.match(tick):
        raise ApiError(
            400, f"{H_TICK} must be a tick Job's name or its minute suffix, not {tick[:80]!r}", code="invalid_request"
        )
    grant = ticks.runs(namespace, group, tick).get(run_id)
    if grant is None:
        raise _forbidden(f"run {run_id} is not a run of tick {tick} of {namespace}/{group}")
    return grant
