"""The upload of a run's results to the gateway: the per-run upload token, the request's
path and headers. The runner's `UploadClient` (assay.runner.upload) writes it; the gateway's
ingest router reads it.

The operator gives each run's pods `upload_token(upload_key, grant)` through a Secret: the
run's namespace, owner kind, owner name and uid and run id (`RunGrant`), readable, with an
HMAC over all of them. The gateway recomputes the HMAC from the same key, compares in
constant time, and takes the run's namespace, kind and owner from the token, not from the
headers: a token lets a pod write the results of its own run of its own owner only, and
nobody has to store tokens.

    run.v2:<namespace>/<kind>/<owner name>/<owner uid>/<run id>:<hex HMAC-SHA256 of the part before>

One document (a shard's metrics JSON, a suite's result) is PUT to `document_path(run id,
name)` with its SHA-256, so the gateway can tell a whole body from a truncated one. Uploads
are idempotent per (run, name, content): a retry after a lost answer, or after the gateway
died half-way, stores the document once. The `Idempotency-Key` header carries exactly that
identity (`idempotency_key()`); the gateway checks it.

Wire format (headers of the PUT; the body is the document's bytes):

    Authorization: Bearer <upload token>
    Idempotency-Key: <idempotency_key(run_id, name, sha256)>
    X-Assay-Content-SHA256: <hex SHA-256 of the body>
    X-Assay-Kind: LoadTest | TestSuite | Monitor      (the run's owner kind)
    X-Assay-Project, X-Assay-Owner-Name, X-Assay-Owner-Uid, X-Assay-Shards, X-Assay-Shard
    X-Assay-Labels: a JSON object (optional)
    X-Assay-Tick: the schedule tick of a tick group's run (assay.crds.contracts.tick)

Kind, project and owner repeat what the token says (the gateway refuses an upload whose
headers contradict its token); older runners send them, and the group token of a schedule
tick, which names no run, needs them to say which member's run it uploads.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

SHARD_DOCUMENT = "shard-{index}.json"
"""A LoadTest shard's metrics; the gateway builds the run's archives once all have arrived."""

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


def token_mac(key: str | bytes, subject: str) -> str:
    """The hex HMAC-SHA256 of a token's readable part under the upload key."""
    if isinstance(key, str):
        key = key.encode()
    if not key:
        raise ValueError("the upload key is empty")
    return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()


def upload_token(key: str | bytes, grant: RunGrant) -> str:
    """The run's upload token: the grant, readable, and the HMAC-SHA256 of it under the upload key."""
    subject = grant.subject()
    return f"{subject}:{token_mac(key, subject)}"


def verify_upload_token(key: str | bytes, token: str) -> RunGrant | None:
    """The grant of a genuine run token; None for anything else (another format or version,
    a changed field, another key)."""
    subject, _, mac = token.rpartition(":")
    if not subject.startswith(RUN_TOKEN_PREFIX):
        return None
    fields = subject[len(RUN_TOKEN_PREFIX) :].split("/")
    if len(fields) != 5 or not all(_TOKEN_FIELD.match(f) for f in fields):
        return None
    if not hmac.compare_digest(token_mac(key, subject).encode(), mac.encode()):
        return None
    return RunGrant(*fields)


def idempotency_key(run_id: str, name: str, sha256: str) -> str:
    """What makes two uploads the same upload: the run, the document's name and its content."""
    return hashlib.sha256(f"{run_id}\n{name}\n{sha256}".encode()).hexdigest()


def document_path(run_id: str, name: str) -> str:
    return f"/internal/v1/runs/{quote(run_id, safe='')}/documents/{quote(name, safe='')}"
