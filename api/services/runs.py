"""Asking for a TestSuite or Monitor run: the one way every REST family starts one (Loadmill
and VNG provider runs through `suites`, the Runscope trigger).

The gateway sets the annotation of assay.crds.runrequest on the owner, with a new uuid4 as
the request id and the run's options, and answers with the run id the operator will derive
from the owner's uid and that id (`run_id_for_request`), before the run exists.

The annotation holds one request: one replaced before the operator saw it would never run. So
a request waits (up to `PENDING_WAIT_SECONDS`) while the owner has a pending one
(`pending_run_id`) and then answers 409 with Retry-After. The patch carries the
resourceVersion it was computed from, so two gateways asking at once cannot overwrite each
other's request: the loser reads again (the shared optimistic loop) and waits for the winner's.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Optional

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from assay.crds.contracts import optimistic
from assay.crds.runrequest import (
    RUN_REQUEST_ANNOTATION,
    MonitorRunRequest,
    SuiteRunRequest,
    pending_run_id,
    run_id_for_request,
)

from ..kube import NotFound as KubeNotFound
from . import Conflict, InvalidInput, NotFound, api_conflict

KINDS = {"TestSuite": ("testsuites", SuiteRunRequest), "Monitor": ("monitors", MonitorRunRequest)}
"""kind -> (plural, the request's options)."""
PENDING_WAIT_SECONDS = 10.0
POLL_SECONDS = 0.25
RETRY_AFTER_SECONDS = 2


class RunRequests:
    def __init__(
        self, kube, *, sleep: Callable[[float], None] = time.sleep, pending_wait: float = PENDING_WAIT_SECONDS
    ):
        self.kube = kube
        self.sleep = sleep
        self.pending_wait = pending_wait

    def request(
        self, kind: str, namespace: str, name: str, options: dict, *, busy: str, owner: Optional[dict] = None
    ) -> str:
        """Ask for a run of the `kind` named `name` with `options` (the fields of its run
        request but the id); returns the run id the run will have. `owner` is the object as
        the caller has just read it, if it has; `busy` is the 409's message when a previous
        request is still pending."""
        plural, model = KINDS[kind]
        try:
            request = model(id=str(uuid.uuid4()), **options)
        except ValidationError as exc:
            raise InvalidInput(str(exc)) from None
        value = request.annotation()
        first = [owner] if owner is not None else []

        def read() -> dict:
            if first:
                return first.pop()
            try:
                return self.kube.get(plural, namespace, name)
            except KubeNotFound:
                raise NotFound(f"{kind} {name!r} was deleted while its run was being requested") from None

        def compute(current: dict) -> Optional[dict]:
            if pending_run_id(current) is not None:
                return None  # not now: wait for the operator to take the pending one
            return {
                "metadata": {
                    "resourceVersion": current["metadata"]["resourceVersion"],
                    "annotations": {RUN_REQUEST_ANNOTATION: value},
                }
            }

        def write(current: dict, patch: dict) -> str:
            self.kube.patch(plural, namespace, name, patch)
            return run_id_for_request(current["metadata"]["name"], current["metadata"]["uid"], request.id)

        deadline = time.monotonic() + self.pending_wait
        while True:
            try:
                run_id = optimistic.update(read, compute, write, conflict=api_conflict)
            except ApiException as exc:
                if not api_conflict(exc):
                    raise
                run_id = None  # other requesters kept winning: wait like for a pending request
            if run_id is not None:
                return run_id
            if time.monotonic() >= deadline:
                raise Conflict(busy, retry_after=RETRY_AFTER_SECONDS)
            self.sleep(POLL_SECONDS)
