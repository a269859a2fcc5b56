"""Monitor result documents as the runner uploads them, and uploads of them through the
store's write path (what the gateway's ingest endpoint calls)."""

from __future__ import annotations

import json

from assay.api.store import ResultIngest, Upload
from assay.runner.apitest.results import AssertionResult, RunResult, StepDetail, StepResult, Timings


def result_doc(
    *, run_id="health-0123456789", region="us1", result="pass", started=1000.0, wait_ms=40.0, env="env-1", requests=1
) -> dict:
    """A result document as the runner uploads it (RunResult.to_runscope())."""
    steps = []
    for i in range(requests):
        step = StepResult(
            uuid=f"step-{i}",
            step_type="request",
            url=f"http://127.0.0.1:9/ping?n={i}&n=x",
            method="GET",
            detail=StepDetail(uuid=f"step-{i}"),
            timings=Timings(dial_ms=1.0, wait_for_response_ms=wait_ms - 1.0),
            assertions=[
                AssertionResult(
                    result=result,
                    source="status_code",
                    comparison="equals_number",
                    target_value=200,
                    actual_value="200",
                )
            ],
        )
        step.count()
        steps.append(step)
    steps.append(StepResult(uuid="pause-1", step_type="pause"))
    run = RunResult(
        test_run_id=run_id,
        test_id="m-uid",
        bucket_key="shop",
        requests=steps,
        region=region,
        environment_id=env,
        environment_name="Prod",
        started_at=started,
    )
    run.finish()
    run.started_at, run.finished_at = started, started + 1.5
    return run.to_runscope()


def upload(
    ingest: ResultIngest,
    run_id: str,
    name: str,
    doc: dict,
    shards: int,
    *,
    project: str = "shop",
    owner_uid: str = "m-uid",
) -> None:
    ingest.accept(
        Upload(
            run_id=run_id,
            name=name,
            data=json.dumps(doc).encode(),
            kind="Monitor",
            project=project,
            owner_name="health",
            owner_uid=owner_uid,
            shards=shards,
        )
    )
