"""Uploading a run's results to the gateway, and the per-run upload token.

The operator gives each run's pods `upload_token(upload_key, grant)` through a Secret: the
run's namespace, owner kind, owner name and uid and run id (`RunGrant`), readable, with an
HMAC over all of them. The gateway recomputes the HMAC from the same key, compares in
constant time, and takes the run's namespace, kind and owner from the token, not from the
headers: a token lets a pod write the results of its own run of its own owner only, and
nobody has to store tokens.

    run.v2:<namespace>/<kind>/<owner name>/<owner uid>/<run id>:<hex HMAC-SHA256 of the part before>

`UploadClient.upload()` PUTs one document (a shard's metrics JSON, a suite's result) to
`/internal/v1/runs/<run id>/documents/<name>` with its SHA-256, so the gateway can tell a
whole body from a truncated one, and retries until it is acknowledged or ~2 minutes pass.
Uploads are idempotent per (run, name, content): a retry after a lost answer, or after the
gateway died half-way, stores the document once. The `Idempotency-Key` header carries
exactly that identity (`idempotency_key()`); the gateway checks it.

Wire format (headers of the PUT; the body is the document's bytes):

    Authorization: Bearer <upload token>
    Idempotency-Key: <idempotency_key(run_id, name, sha256)>
    X-Assay-Content-SHA256: <hex SHA-256 of the body>
    X-Assay-Kind: LoadTest | TestSuite | Monitor      (the run's owner kind)
    X-Assay-Project, X-Assay-Owner-Name, X-Assay-Owner-Uid, X-Assay-Shards, X-Assay-Shard
    X-Assay-Labels: a JSON object (optional)
    X-Assay-Tick: the schedule tick of a tick group's run (assay.runner.batch)

Kind, project and owner repeat what the token says (the gateway refuses an upload whose
headers contradict its token); older runners send them, and the group token of a schedule
tick, which names no run, needs them to say which member's run it uploads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

RETRY_FOR_SECONDS = 120.0
REQUEST_TIMEOUT_SECONDS = 60.0
SHARD_DOCUMENT = "shard-{index}.json"
"""A LoadTest shard's metrics; the gateway builds the run's archives once all have arrived."""

# Headers, shared with the gateway's ingest router.
H_SHA256 = "X-Assay-Content-SHA256"
H_KIND = "X-Assay-Kind"
H_PROJECT = "X-Assay-Project"
H_OWNER_NAME = "X-Assay-Owner-Name"
H_OWNER_UID = "X-Assay-Owner-Uid"
H_SHARD = "X-Assay-Shard"
H_SHARDS = "X-Assay-Shards"
H_LABELS = "X-Assay-Labels"
H_TICK = "X-Assay-Tick"
H_IDEMPOTENCY_KEY = "Idempotency-Key"

# Answers that will not change by asking again.
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
_RETRYABLE_CODES = {"checksum_mismatch", "incomplete_body"}


RUN_TOKEN_PREFIX = "run.v2:"
"""The version of the run token's format; a token of another version is not a run token."""
_TOKEN_FIELD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class RunGrant:
    """What an upload token lets its holder write: one run of one owner in one namespace."""

    namespace: str
    kind: str
    """"LoadTest" | "TestSuite" | "Monitor"."""
    owner_name: str
    owner_uid: str
    run_id: str

    def subject(self) -> str:
        fields = (self.namespace, self.kind, self.owner_name, self.owner_uid, self.run_id)
        for value in fields:
            # The fields are joined with "/" and the MAC follows the last ":": neither may occur in one.
            if not _TOKEN_FIELD.match(value):
                raise ValueError(f"{value!r} cannot be part of an upload token")
        return RUN_TOKEN_PREFIX + "/".join(fields)


def _mac(key: str | bytes, subject: str) -> str:
    if isinstance(key, str):
        key = key.encode()
    if not key:
        raise ValueError("the upload key is empty")
    return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()


def upload_token(key: str | bytes, grant: RunGrant) -> str:
    """The run's upload token: the grant, readable, and the HMAC-SHA256 of it under the upload key."""
    subject = grant.subject()
    return f"{subject}:{_mac(key, subject)}"


def verify_upload_token(key: str | bytes, token: str) -> RunGrant | None:
    """The grant of a genuine run token; None for anything else (another format or version,
    a changed field, another key)."""
    subject, _, mac = token.rpartition(":")
    if not subject.startswith(RUN_TOKEN_PREFIX):
        return None
    fields = subject[len(RUN_TOKEN_PREFIX):].split("/")
    if len(fields) != 5 or not all(_TOKEN_FIELD.match(f) for f in fields):
        return None
    if not hmac.compare_digest(_mac(key, subject).encode(), mac.encode()):
        return None
    return RunGrant(*fields)


def idempotency_key(run_id: str, name: str, sha256: str) -> str:
    """What makes two uploads the same upload: the run, the document's name and its content."""
    return hashlib.sha256(f"{run_id}\n{name}\n{sha256}".encode()).hexdigest()


def document_path(run_id: str, name: str) -> str:
    return f"/internal/v1/runs/{quote(run_id, safe='')}/documents/{quote(name, safe='')}"


class UploadError(RuntimeError):
    """The document was not stored: a permanent refusal, or the retries ran out."""


class UploadClient:
    """Uploads documents of one run. Synchronous: a runner uploads after its work is done."""

    def __init__(self, gateway_url: str, run_id: str, token: str, *, retry_for: float = RETRY_FOR_SECONDS,
                 timeout: float = REQUEST_TIMEOUT_SECONDS, log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.gateway_url = gateway_url.rstrip("/")
        self.run_id = run_id
        self.token = token
        self.retry_for = retry_for
        self.timeout = timeout
        self.log = log or (lambda _message: None)
        self.sleep = sleep

    def upload(self, kind: str, shard: int | None, name: str, data: bytes, meta: Mapping[str, Any]) -> dict:
        """Store `data` as document `name` of the run; returns the gateway's answer.

        `kind` is the run's owner kind; `meta` may hold `project`, `owner_name`, `owner_uid`,
        `shards`, `labels` and `tick`. Retries connection errors, timeouts and 5xx with backoff for
        up to `retry_for` seconds; raises UploadError when the gateway refuses for good or
        never answers."""
        sha256 = hashlib.sha256(data).hexdigest()
        headers = {
            "Authorization": f"Bearer {self.token}",
            H_IDEMPOTENCY_KEY: idempotency_key(self.run_id, name, sha256),
            H_SHA256: sha256,
            H_KIND: kind,
            "Content-Type": "application/octet-stream",
        }
        for header, key in ((H_PROJECT, "project"), (H_OWNER_NAME, "owner_name"), (H_OWNER_UID, "owner_uid"),
                            (H_SHARDS, "shards"), (H_TICK, "tick")):
            if meta.get(key) not in (None, ""):
                headers[header] = str(meta[key])
        if shard is not None:
            headers[H_SHARD] = str(shard)
        if meta.get("labels"):
            headers[H_LABELS] = json.dumps(dict(meta["labels"]), separators=(",", ":"), sort_keys=True)
        url = self.gateway_url + document_path(self.run_id, name)

        deadline = time.monotonic() + self.retry_for
        delay, attempt = 0.5, 0
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                attempt += 1
                problem = self._attempt(client, url, headers, data, sha256)
                if isinstance(problem, dict):
                    return problem
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UploadError(f"uploading {name} of run {self.run_id} to {self.gateway_url} failed "
                                      f"after {attempt} attempts over {self.retry_for:.0f}s: {problem}")
                wait = min(delay * (0.8 + 0.4 * random.random()), remaining)
                self.log(f"upload of {name} failed ({problem}); retrying in {wait:.1f}s")
                self.sleep(wait)
                delay = min(delay * 2, 10.0)

    def _attempt(self, client: httpx.Client, url: str, headers: dict, data: bytes, sha256: str) -> dict | str:
        """The gateway's answer when done; a description of the problem when worth retrying."""
        try:
            response = client.put(url, content=data, headers=headers)
        except httpx.TransportError as exc:  # connect, read, write, timeouts, a dropped connection
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code in (200, 201):
            return body
        if response.status_code == 409 and body.get("sha256") == sha256:
            return body  # the same bytes were stored before: done
        code = body.get("error", "")
        described = f"HTTP {response.status_code} {code}: {body.get('message') or response.text[:200]}"
        if response.status_code in _RETRYABLE_STATUS or code in _RETRYABLE_CODES:
            return described
        raise UploadError(f"the gateway refused {url}: {described}")


__all__ = ["SHARD_DOCUMENT", "RunGrant", "UploadClient", "UploadError", "document_path", "idempotency_key",
           "upload_token", "verify_upload_token"]
