"""LoadTest status reconstructed from a Job and its pods."""

import json

from assay.crds.contracts.summary import ShardSummary
from assay.operator.runstatus import loadtest_status


def pod(index, phase, message=None, exit_code=0, finished="2026-01-01T00:00:10Z"):
    status = {"phase": phase}
    if message is not None or phase in ("Succeeded", "Failed"):
        status["containerStatuses"] = [
            {
                "name": "runner",
                "state": {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": finished}},
            }
        ]
    return {"metadata": {"annotations": {"batch.kubernetes.io/job-completion-index": str(index)}}, "status": status}


def summary(shard, requests, failures=0, lo=1.0, hi=9.0, total=None):
    return json.dumps(
        {
            "shard": shard,
            "requests": requests,
            "failures": failures,
            "min_ms": lo,
            "max_ms": hi,
            "total_ms": total if total is not None else requests * 5.0,
        }
    )


def job(conditions=(), **status):
    return {"status": {"conditions": [{"type": t, "status": "True", **extra} for t, extra in conditions], **status}}


def test_no_job_yet_is_pending():
    assert loadtest_status(None, [], 2)["phase"] == "Pending"


def test_running_while_a_pod_runs():
    status = loadtest_status(job(active=2, startTime="2026-01-01T00:00:00Z"), [pod(0, "Running")], 2)
    assert status["phase"] == "Running"
    assert status["shards"] == {"total": 2, "active": 2, "succeeded": 0, "failed": 0}
    assert "result" not in status
    assert status["conditions"][0]["status"] == "False"
    assert status["conditions"][0]["reason"] == "Running"


def test_complete_job_merges_shard_summaries_exactly():
    pods = [
        pod(0, "Succeeded", summary(0, 30, lo=2.0, hi=8.0, total=120.0)),
        pod(1, "Succeeded", summary(1, 10, lo=1.0, hi=20.0, total=80.0)),
    ]
    status = loadtest_status(job([("Complete", {})], succeeded=2, completionTime="2026-01-01T00:01:00Z"), pods, 2)
    assert status["phase"] == "Succeeded" and status["result"] == "Passed"
    assert status["summary"] == {"requests": 40, "failures": 0, "minMs": 1.0, "avgMs": 5.0, "maxMs": 20.0}
    assert status["completionTime"] == "2026-01-01T00:01:00Z"
    assert status["conditions"] == [
        {
            "type": "Complete",
            "status": "True",
            "reason": "Passed",
            "message": "run finished",
            "lastTransitionTime": "2026-01-01T00:01:00Z",
        }
    ]


def test_status_is_reconstructable_from_the_same_world():
    world = (
        job([("Complete", {})], succeeded=1, startTime="2026-01-01T00:00:00Z", completionTime="2026-01-01T00:00:09Z"),
        [pod(0, "Succeeded", summary(0, 3))],
        1,
    )
    assert loadtest_status(*world, generation=2) == loadtest_status(*world, generation=2)
    assert loadtest_status(*world, generation=2)["conditions"][0]["observedGeneration"] == 2


def test_failed_requests_fail_the_result_not_the_phase():
    pods = [pod(0, "Succeeded", summary(0, 10, failures=3))]
    status = loadtest_status(job([("Complete", {})], succeeded=1), pods, 1)
    assert (status["phase"], status["result"]) == ("Succeeded", "Failed")
    assert status["message"] == "3 of 10 requests failed"


def test_failed_job_reports_its_reason_and_a_crashed_shard():
    pods = [pod(0, "Succeeded", summary(0, 5)), pod(1, "Failed", "Traceback ...", exit_code=1)]
    status = loadtest_status(
        job(
            [("Failed", {"reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"})],
            failed=1,
        ),
        pods,
        2,
    )
    assert (status["phase"], status["result"]) == ("Failed", "Failed")
    assert status["message"].startswith("BackoffLimitExceeded")
    assert status["summary"]["requests"] == 5


def test_latest_pod_per_index_wins():
    old = pod(0, "Failed", summary(0, 1), finished="2026-01-01T00:00:01Z")
    new = pod(0, "Succeeded", summary(0, 7), finished="2026-01-01T00:00:05Z")
    status = loadtest_status(job([("Complete", {})]), [new, old], 1)
    assert status["summary"]["requests"] == 7


def test_written_status_fits_the_status_model():
    from assay.crds import LoadTestStatus

    pods = [pod(0, "Succeeded", summary(0, 4)), pod(1, "Failed", "boom", exit_code=1)]
    status = loadtest_status(
        job([("Failed", {"reason": "BackoffLimitExceeded"})], failed=1, startTime="2026-01-01T00:00:00Z"),
        pods,
        2,
        generation=1,
    )
    parsed = LoadTestStatus.model_validate(status)
    assert parsed.to_k8s()["summary"]["requests"] == 4
    assert parsed.phase == "Failed" and parsed.conditions[0].reason == "Failed"


def shard_with_latencies(shard, latencies_ms, failures=0):
    """A shard summary as the runner writes it: from a real histogram of the latencies."""
    from assay.crds.contracts.histogram import Histogram, layout

    hist = Histogram(layout(1, 60_000_000, 3))
    for ms in latencies_ms:
        hist.record(int(ms * 1000))
    s = ShardSummary(
        shard=shard,
        requests=len(latencies_ms),
        failures=failures,
        min_ms=min(latencies_ms),
        max_ms=max(latencies_ms),
        total_ms=sum(latencies_ms),
        started_at=0.0,
        finished_at=10.0,
    )
    s.set_histogram(hist, 2)
    return s.to_message()


def test_p95_comes_from_merged_histograms_not_averaged_percentiles():
    # Shard 0 is fast, shard 1 slow: the average of their p95s (~105 ms) is not the run's p95.
    fast = [10.0] * 95 + [11.0] * 5
    slow = [200.0] * 100
    pods = [pod(0, "Succeeded", shard_with_latencies(0, fast)), pod(1, "Succeeded", shard_with_latencies(1, slow))]
    status = loadtest_status(job([("Complete", {})], succeeded=2), pods, 2)
    assert 198 <= status["summary"]["p95Ms"] <= 202


def test_failed_criteria_fail_the_result_and_are_named():
    pods = [pod(0, "Succeeded", shard_with_latencies(0, [50.0] * 90 + [900.0] * 10))]
    status = loadtest_status(job([("Complete", {})], succeeded=1), pods, 1, criteria=["p95 < 300ms", "error_rate < 1%"])
    assert status["result"] == "Failed"
    assert status["failedCriteria"] == ["p95 < 300ms"]
    assert status["message"].startswith("criteria failed: p95 < 300ms (observed 9")
    passing = loadtest_status(job([("Complete", {})], succeeded=1), pods, 1, criteria=["p95 < 1s"])
    assert passing["result"] == "Passed" and "failedCriteria" not in passing


def test_an_aborted_shard_aborts_the_run():
    aborted = json.dumps(
        {
            "shard": 0,
            "requests": 40,
            "failures": 30,
            "total_ms": 40.0,
            "aborted": True,
            "abort_reason": "error rate 75% over 10 s passed the 20% limit",
        }
    )
    status = loadtest_status(job([("Complete", {})], succeeded=1), [pod(0, "Succeeded", aborted)], 1)
    assert status["result"] == "Aborted"
    assert "error rate 75%" in status["message"]
