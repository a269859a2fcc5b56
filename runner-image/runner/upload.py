"""Uploading a run's results to the gateway.

`UploadClient.upload()` PUTs one document (a shard's metrics JSON, a suite's result) as the
upload contract describes it (assay.crds.contracts.upload: token, path, headers), and retries
until it is acknowledged or ~2 minutes pass.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from assay.crds.contracts.upload import (
    H_IDEMPOTENCY_KEY,
    H_KIND,
    H_LABELS,
    H_OWNER_NAME,
    H_OWNER_UID,
    H_PROJECT,
    H_SHA256,
    H_SHARD,
    H_SHARDS,
    H_TICK,
    document_path,
    idempotency_key,
)

RETRY_FOR_SECONDS = 120.0
REQUEST_TIMEOUT_SECONDS = 60.0

# Answers that will not change by asking again.
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
_RETRYABLE_CODES = {"checksum_mismatch", "incomplete_body"}


class UploadError(RuntimeError):
    """The document was not stored: a permanent refusal, or the retries ran out."""


class UploadClient:
    """Uploads documents of one run. Synchronous: a runner uploads after its work is done."""

    def __init__(
        self,
        gateway_url: str,
        run_id: str,
        token: str,
        *,
        retry_for: float = RETRY_FOR_SECONDS,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        log: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
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
        for header, key in (
            (H_PROJECT, "project"),
            (H_OWNER_NAME, "owner_name"),
            (H_OWNER_UID, "owner_uid"),
            (H_SHARDS, "shards"),
            (H_TICK, "tick"),
        ):
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
                    raise UploadError(
                        f"uploading {name} of run {self.run_id} to {self.gateway_url} failed "
                        f"after {attempt} attempts over {self.retry_for:.0f}s: {problem}"
                    )
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


__all__ = ["UploadClient", "UploadError"]
