"""Result ingest from runner pods: `/internal/v1/runs/...`, not part of any public API family.

    PUT /internal/v1/runs/{run_id}/documents/{name}    store one document of the run
    PUT /internal/v1/runs/{run_id}/progress/{shard}    a running load shard's latest progress
    GET /internal/v1/runs/{run_id}                     what is stored for the run

All take `Authorization: Bearer <upload token>`: the run's token (assay.crds.contracts.upload.upload_token,
naming its namespace, owner and run under an HMAC of the upload key), or a schedule tick's
group token (assay.crds.contracts.tick.group_upload_token) for the runs of the group's ticks only.
api/upload_grants.py turns the token into the run's grant; the run is stored under the
grant's namespace, kind and owner, and headers or a stored run that contradict it are refused
(403). The PUT's headers are listed in assay.crds.contracts.upload; the body is the document.
A body is stored only when it is complete and matches its declared SHA-256: a gateway or
connection dying mid-upload leaves nothing behind, and the runner's retry stores it once. Answers: 201 stored, 200 the
same bytes were stored before, 409 a different document is stored under that name (its
sha256 in the answer), 507 `quota_exceeded` (the run or its namespace would exceed its
upload quota, api/store/quota.py; nothing is stored), 400/401/403/413 as usual. A document may
be ASSAY_UPLOAD_MAX_BYTES large and take ASSAY_UPLOAD_TIMEOUT_SECONDS to arrive (bodies.py
enforces both). Errors have the default shape `{"error", "message"}`.

The progress PUT's body is a small JSON object (assay.crds.contracts.progress.ShardProgress) that
replaces the shard's previous one: 204 stored, 200 stored with `{"abort": reason}` when the
LoadTest's `spec.abort` is set (the shard stops early and reports), 409 `run_finished` (the run's final figures
exist; live ones are dropped when it finishes and not taken after), 400/401/413. The GET
shows them as `progress`: `{"shards": [each shard's latest report], "merged": all shards
as one}` (api/store/progress.py says how they merge), or null when there are none. The
operator reads `merged` into a running LoadTest's `status.progress`; each stored report also
adds, at most every few seconds, a merged sample to the run's live curve (the dashboard's).
"""

from __future__ import annotations

import hashlib
import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from assay.crds.contracts.progress import PROGRESS_MAX_BYTES, ShardProgress
from assay.crds.contracts.upload import (
    H_IDEMPOTENCY_KEY,
    H_LABELS,
    H_SHA256,
    H_SHARD,
    H_SHARDS,
    RunGrant,
    idempotency_key,
)

from ..bodies import body_limit, json_document
from ..errors import ApiError
from ..kube import NotFound
from ..services.loadtests import PLURAL as LOADTEST_PLURAL
from ..store import (
    DocumentConflict,
    Invalid,
    Quota,
    QuotaExceeded,
    ResultIngest,
    RunConflict,
    Upload,
    merge_progress,
    shard_view,
)
from ..store.progress import MAX_SAMPLES, SAMPLE_SECONDS, progress_sample
from ..store.results import MAX_SHARDS
from ..upload_grants import TickRuns, grant_for

PREFIX = "/internal/v1/runs"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def install(app: FastAPI, services) -> None:
    settings = services.settings
    ingest = ResultIngest(services.store, quota=Quota.of(settings))
    app.state.ingest = ingest
    document_limit = body_limit(settings.upload_max_bytes, settings.upload_timeout_seconds)
    upload_key = settings.upload_key
    ticks = TickRuns(services.kube)
    # A crash between a run's last shard and its archives is finished here, before serving.
    ingest.recover()

    def authorize(request: Request, run_id: str) -> RunGrant:
        """The run's grant; blocking (a tick's runs may be read from the cluster)."""
        if upload_key is None or not upload_key.get_secret_value():
            raise ApiError(
                503, "result uploads are not configured on this gateway (ASSAY_UPLOAD_KEY)", code="uploads_disabled"
            )
        grant = grant_for(
            request.headers.get("authorization", ""), run_id, request.headers, upload_key.get_secret_value(), ticks
        )
        run = services.store.get_run(run_id)
        if run is not None and (run.project, run.kind, run.owner_uid) != (grant.namespace, grant.kind, grant.owner_uid):
            raise ApiError(403, f"run {run_id} belongs to another owner than the upload token's", code="forbidden")
        return grant

    @app.put(PREFIX + "/{run_id}/documents/{name}", include_in_schema=False)
    @document_limit
    async def put_document(run_id: str, name: str, request: Request):
        grant = await run_in_threadpool(authorize, request, run_id)
        headers = request.headers
        sha256 = headers.get(H_SHA256, "").lower()
        if not _SHA256.fullmatch(sha256):
            raise ApiError(400, f"{H_SHA256} must be the body's hex SHA-256", code="invalid_request")
        expected_key = idempotency_key(run_id, name, sha256)
        if H_IDEMPOTENCY_KEY in headers and headers[H_IDEMPOTENCY_KEY] != expected_key:
            raise ApiError(400, f"{H_IDEMPOTENCY_KEY} does not match the run, name and content", code="invalid_request")
        upload = Upload(
            run_id=run_id,
            name=name,
            data=b"",
            kind=grant.kind,
            project=grant.namespace,
            owner_name=grant.owner_name,
            owner_uid=grant.owner_uid,
            shards=_int_header(headers, H_SHARDS, 1),
            shard=_int_header(headers, H_SHARD, None),
            labels=_labels(headers.get(H_LABELS)),
        )
        declared = _int_header(headers, "content-length", None)
        if declared is not None:
            try:  # a known size is checked before the body is read (bodies.py has checked the limit)
                await run_in_threadpool(ingest.check_quota, run_id, name, grant.namespace, declared)
            except QuotaExceeded as exc:
                return refusal(exc)
        # A runner that goes away mid-body stores nothing (bodies.py logs it); its retry starts over.
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
        if declared is not None and len(body) != declared:
            raise ApiError(400, f"received {len(body)} of {declared} bytes", code="incomplete_body")
        upload.data = bytes(body)
        del body
        actual = hashlib.sha256(upload.data).hexdigest()
        if actual != sha256:
            raise ApiError(
                400,
                f"the body's SHA-256 is {actual}, not the declared {sha256}: truncated or corrupted in transit",
                code="checksum_mismatch",
            )
        try:
            accepted = await run_in_threadpool(ingest.accept, upload)
        except REFUSALS as exc:
            return refusal(exc)
        return JSONResponse(
            {
                "runId": run_id,
                "name": name,
                "sha256": accepted.document.sha256,
                "size": accepted.document.size,
                "created": accepted.created,
                "idempotencyKey": expected_key,
                "run": accepted.run.to_dict(),
                "archives": [a.to_dict() for a in accepted.archives],
            },
            status_code=201 if accepted.created else 200,
        )

    @app.put(PREFIX + "/{run_id}/progress/{shard}", include_in_schema=False)
    @body_limit(PROGRESS_MAX_BYTES)
    async def put_progress(run_id: str, shard: int, request: Request):
        grant = await run_in_threadpool(authorize, request, run_id)
        if not 0 <= shard < MAX_SHARDS:
            raise ApiError(400, f"shard must be 0..{MAX_SHARDS - 1}, not {shard}", code="invalid_request")
        body = await request.body()

        def store_progress() -> bool:
            try:
                progress = ShardProgress.model_validate_json(body)
                progress.histogram()  # refuse a histogram the merge could not read
            except ValidationError as exc:
                raise ApiError(
                    400, "not a shard progress report: " + _validation_errors(exc), code="invalid_request"
                ) from None
            except ValueError as exc:
                raise ApiError(400, f"windowHistogram: {exc}", code="invalid_request") from None
            store = services.store
            try:
                if not store.put_progress(run_id, shard, progress.model_dump(mode="json", by_alias=True)):
                    return False
            except ValueError as exc:  # a run id that is not a safe name
                raise ApiError(400, str(exc), code="invalid_request") from None
            sample = progress_sample(store.list_progress(run_id))
            if sample is not None:
                store.add_progress_sample(run_id, sample, min_interval=SAMPLE_SECONDS, keep=MAX_SAMPLES)
            return True

        if not await run_in_threadpool(store_progress):
            raise ApiError(
                409, f"run {run_id} has finished; its final figures replace the live ones", code="run_finished"
            )
        if await run_in_threadpool(abort_requested, grant):
            return JSONResponse({"abort": "aborted on request (spec.abort)"})
        return Response(status_code=204)

    def abort_requested(grant: RunGrant) -> bool:
        """Whether the grant's LoadTest, the same object (uid), has `spec.abort` set."""
        if grant.kind != "LoadTest" or services.kube is None:  # no cluster: nothing to ask
            return False
        try:
            loadtest = services.kube.get(LOADTEST_PLURAL, grant.namespace, grant.owner_name)
        except NotFound:
            return False
        return loadtest["metadata"].get("uid") == grant.owner_uid and bool((loadtest.get("spec") or {}).get("abort"))

    @app.get(PREFIX + "/{run_id}", include_in_schema=False)
    def get_run(run_id: str, request: Request):
        authorize(request, run_id)
        store = services.store
        run = store.get_run(run_id)
        documents = store.list_documents(run_id)
        progress = store.list_progress(run_id)
        if run is None and not documents and not progress:
            raise ApiError(404, f"nothing is stored for run {run_id}", code="not_found")
        return {
            "runId": run_id,
            "run": run.to_dict() if run else None,
            "documents": [d.to_dict() for d in documents],
            "archives": [a.to_dict() for a in store.list_archives(run_id=run_id)],
            "progress": {"shards": [shard_view(p) for p in progress], "merged": merge_progress(progress)}
            if progress
            else None,
        }


REFUSALS = (Invalid, DocumentConflict, RunConflict, QuotaExceeded)
"""The store's reasons to refuse an upload."""


def refusal(exc: Exception) -> JSONResponse:
    """The answer to an upload the store refused, in the default error shape with the details
    a runner acts on: the stored checksum of a conflicting document, the quota's figures."""
    if isinstance(exc, QuotaExceeded):
        return JSONResponse({"error": "quota_exceeded", "message": str(exc), **exc.details()}, status_code=507)
    if isinstance(exc, DocumentConflict):
        return JSONResponse({"error": "conflict", "message": str(exc), "sha256": exc.sha256}, status_code=409)
    if isinstance(exc, RunConflict):
        return JSONResponse({"error": "conflict", "message": str(exc)}, status_code=409)
    return JSONResponse({"error": "invalid_request", "message": str(exc)}, status_code=400)


def _validation_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:5])


def _int_header(headers, name: str, default):
    value = headers.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {value!r}", code="invalid_request") from None


def _labels(value: str | None) -> dict:
    if not value:
        return {}
    labels = json_document(value, H_LABELS)
    if not isinstance(labels, dict):
        raise ApiError(400, f"{H_LABELS} must be a JSON object", code="invalid_request")
    return {str(k): str(v) for k, v in labels.items()}
