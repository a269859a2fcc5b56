"""Running one Monitor or TestSuite in a pod and uploading its result: the one path of a
requested run (`python -m assay.runner monitor|testsuite`) and of every member of a schedule
tick (`python -m assay.runner batch`), which differ only in where the run's options come
from and in how they report (a requested run's summary, a tick's compact outcomes).

The result documents, uploaded in this order when the operator wired a gateway (the last one
finishes the run at the gateway):

    Monitor     monitor-steps.json, monitor-result.json (Runscope shape);
                `-<i>` before `.json` for location i of several
    TestSuite   suite-run.json (Loadmill shape)

A run's termination message is a small JSON summary the operator turns into the resource's
status (operator/runhistory.py reads exactly these keys): `summary_message`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from assay.crds.runs import verdict
from assay.crds.contracts.runner_settings import RunnerSettings

from .upload import RETRY_FOR_SECONDS, UploadClient, UploadError

MESSAGE_TEXT_CHARS = 500


def log(message: str) -> None:
    print(f"assay-runner: {message}", file=sys.stderr, flush=True)


def write_termination_message(settings: RunnerSettings, text: str) -> None:
    if settings.termination_log:
        Path(settings.termination_log).write_text(text)


def summary_message(summary: dict) -> str:
    """A run's summary as JSON within the termination message's 4096 bytes."""
    summary = {k: v for k, v in summary.items() if v is not None}
    for key in ("error", "upload_error"):
        if isinstance(summary.get(key), str) and len(summary[key]) > MESSAGE_TEXT_CHARS:
            summary[key] = summary[key][: MESSAGE_TEXT_CHARS - 1] + "…"
    return json.dumps(summary, separators=(",", ":"), ensure_ascii=False)


class Uploader:
    """Uploads the documents of one run when the operator wired a gateway (ASSAY_GATEWAY_URL,
    ASSAY_UPLOAD_TOKEN) and the run has an id; `meta` is what the upload headers say besides
    the kind and shard (project, owner_name, owner_uid, shards, tick)."""

    def __init__(
        self,
        settings: RunnerSettings,
        run_id: Optional[str],
        meta: Mapping[str, Any],
        *,
        retry_for: float = RETRY_FOR_SECONDS,
    ):
        self.client = (
            UploadClient(
                settings.gateway_url,
                run_id,
                settings.upload_token,
                retry_for=retry_for,
                log=lambda message: log(f"{run_id}: {message}"),
            )
            if settings.uploads and run_id
            else None
        )
        self.meta = dict(meta)

    def upload(self, kind: str, shard: int, name: str, data: bytes) -> Optional[str]:
        """Store one document; the error when it could not be stored, else None."""
        if self.client is None:
            return None
        try:
            self.client.upload(kind, shard, name, data, self.meta)
        except UploadError as exc:
            return str(exc)
        print(f"assay-runner: uploaded {name} to {self.client.gateway_url}", flush=True)
        return None


def document_name(base: str, kind: str, index: int, locations: int) -> str:
    """A result document's name: a Monitor run in several locations has one per location."""
    return f"{base}.json" if kind == "TestSuite" or locations == 1 else f"{base}-{index}.json"


def mean_response_time_ms(result) -> Optional[int]:
    """The mean response time of the run's sent requests (not subtests or pauses), for the
    Monitor's status and metrics."""
    times = [
        step.response_time_ms
        for step in result.requests
        if step.step_type == "request" and step.detail is not None and step.response_time_ms is not None
    ]
    return round(sum(times) / len(times)) if times else None


def text_params(values) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (values or {}).items()}


class DefinitionError(ValueError):
    """The manifest is not a runnable Monitor or TestSuite."""


class CannotRun(ValueError):
    """The definition is valid but this run of it is not: an unknown environment, no flow selected."""


@dataclass
class Execution:
    """A finished run of one Monitor or TestSuite."""

    kind: str
    passed: bool
    """Monitor: passed without a run error; TestSuite: every flow passed."""
    response_time_ms: Optional[int]
    started_at: Optional[float]
    finished_at: Optional[float]
    summary: dict
    """The requested run's termination summary (assay.operator.runhistory reads it), without
    `upload_error`."""
    upload_error: Optional[str] = None
    result: Any = field(default=None, repr=False)


async def execute(
    kind: str,
    manifest: dict,
    *,
    run_id: Optional[str],
    settings: RunnerSettings,
    uploader: Uploader,
    options: Mapping[str, Any],
    subtests: list[dict] = (),
    index: int = 0,
    locations: int = 1,
    on_progress: Optional[Callable[[dict], None]] = None,
) -> Execution:
    """Run a Monitor (with the Monitors its subtests name) or a TestSuite, and upload its
    result documents. `manifest` and `subtests` have their secret values filled in; `options`
    are a run request's options (Monitor: environment, params; TestSuite: forceAllFlows,
    overrideParameters, additionalDescription, labels, pool); `index` of `locations` is the Monitor run's
    location. Raises DefinitionError or CannotRun when the run cannot start."""
    if kind == "TestSuite":
        execution, documents = await _suite(manifest, run_id, options, on_progress)
    else:
        execution, documents = await _monitor(manifest, subtests, run_id, settings, options)

    def upload() -> list[Optional[str]]:
        return [
            uploader.upload(
                kind, index, document_name(base, kind, index, locations), json.dumps(document, sort_keys=True).encode()
            )
            for base, document in documents
        ]

    # In a thread: the client waits between retries, and a tick's other members run meanwhile.
    execution.upload_error = "; ".join(filter(None, await asyncio.to_thread(upload))) or None
    return execution


async def _monitor(
    manifest: dict, subtests: list[dict], run_id: Optional[str], settings: RunnerSettings, options: Mapping[str, Any]
) -> tuple[Execution, list]:
    from .apitest.monitor import UnknownEnvironment, run_monitor
    from .apitest.validate import parse_monitor

    try:
        monitor = parse_monitor(manifest)
        others = [parse_monitor(m) for m in subtests]
    except ValueError as exc:
        raise DefinitionError(str(exc)) from exc
    by_key = {key: m for m in [monitor, *others] for key in (m.metadata.name, m.metadata.uid) if key}

    def resolve(target: str):
        if target not in by_key:
            raise LookupError(f"no Monitor {target!r} in this namespace")
        return by_key[target]

    try:
        result = await run_monitor(
            monitor,
            environment=options.get("environment"),
            params=text_params(options.get("params")),
            resolve_monitor=resolve,
            run_id=run_id,
        )
    except UnknownEnvironment as exc:
        raise CannotRun(str(exc)) from exc
    result.region, result.agent = settings.region, settings.agent
    response_time_ms = mean_response_time_ms(result)
    summary = {
        "region": settings.region,
        "agent": settings.agent,
        "result": verdict(result.passed and not result.error),
        "environment": result.environment_name,
        "requests_executed": result.requests_executed,
        "response_time_ms": response_time_ms,
        "assertions_passed": result.assertions_passed,
        "assertions_failed": result.assertions_failed,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "error": result.error,
    }
    execution = Execution(
        "Monitor",
        result.passed and not result.error,
        response_time_ms,
        result.started_at,
        result.finished_at,
        summary,
        result=result,
    )
    return execution, [("monitor-steps", result.step_details()), ("monitor-result", result.to_runscope())]


async def _suite(
    manifest: dict, run_id: Optional[str], options: Mapping[str, Any], on_progress: Optional[Callable[[dict], None]]
) -> tuple[Execution, list]:
    from pydantic import ValidationError

    from assay.crds import TestSuite

    from .apitest.suite import run_suite

    try:
        suite = TestSuite.model_validate(manifest)
    except ValidationError as exc:
        raise DefinitionError(str(exc)) from exc
    try:
        result = await run_suite(
            suite,
            force_all_flows=bool(options.get("forceAllFlows")),
            labels=[str(label) for label in options.get("labels") or []] or None,
            pool=str(options["pool"]) if options.get("pool") is not None else None,
            override_parameters=text_params(options.get("overrideParameters")),
            additional_description=str(options.get("additionalDescription") or ""),
            run_id=run_id,
            on_progress=on_progress,
        )
    except ValueError as exc:  # SuiteInputError: nothing selected, an unusable parameter pool
        raise CannotRun(str(exc)) from exc
    started = result.start_time / 1000 if result.start_time is not None else None
    finished = result.end_time / 1000 if result.end_time is not None else None
    done = result.finished_flow_runs
    summary = {
        "result": verdict(result.passed),
        "progress": result.progress,
        "success_rate": round(result.success_rate, 2),
        "flow_runs": len(result.flow_runs),
        "passed": sum(1 for f in done if f.passed),
        "failed": sum(1 for f in done if not f.passed),
        "started_at": started,
        "finished_at": finished,
    }
    return Execution("TestSuite", result.passed, None, started, finished, summary, result=result), [
        ("suite-run", result.to_loadmill())
    ]
