"""The terminal report, progress lines and JUnit XML of a real run."""

import asyncio
import io
import xml.etree.ElementTree as ET

import pytest

from assay.crds import Monitor
from assay.runner.apitest.monitor import run_monitor
from assay.runner.apitest.report import ProgressPrinter, format_run, format_suite, junit_xml
from tests.support.http_targets import HttpTarget


@pytest.fixture(scope="module")
def mixed_run():
    """A run with a pass, a failed assertion, an unmet condition and a skipped step."""
    with HttpTarget() as target:
        monitor = Monitor.model_validate(
            {
                "metadata": {"name": "report-me"},
                "spec": {
                    "environments": [{"name": "local", "initialVariables": {"base": target.url}}],
                    "steps": [
                        {
                            "stepType": "request",
                            "url": "{{base}}/json",
                            "assertions": [{"source": "response_status", "comparison": "equal_number", "value": 200}],
                        },
                        {
                            "stepType": "request",
                            "url": "{{base}}/json",
                            "note": "count check",
                            "assertions": [
                                {
                                    "source": "response_json",
                                    "property": "data.count",
                                    "comparison": "equal_number",
                                    "value": 3,
                                }
                            ],
                        },
                        {
                            "stepType": "condition",
                            "leftValue": "a",
                            "comparison": "equal",
                            "rightValue": "b",
                            "steps": [{"stepType": "request", "url": "{{base}}/text"}],
                        },
                        {"stepType": "request", "url": "{{base}}/text", "skipped": True},
                    ],
                },
            }
        )
        out = io.StringIO()
        result = asyncio.run(run_monitor(monitor, on_progress=ProgressPrinter(out)))
        yield result, out.getvalue()


def test_the_report_has_a_line_per_step_failures_and_totals(mixed_run):
    result, _ = mixed_run
    lines = format_run(result).splitlines()
    assert lines[0].startswith("Running report-me in environment local")
    assert lines[1].startswith("✓ steps[0]") and "GET http://127.0.0.1:" in lines[1] and "→ 200 in" in lines[1]
    assert lines[2].startswith("✗ steps[1]") and "count check" in lines[2]
    assert lines[3].strip() == "assertion json data.count equals_number 3: expected 2 to equal 3 (actual '2')"
    assert lines[4].startswith("○ steps[2]") and "condition not met" in lines[4]
    assert lines[5].startswith("    – steps[2].steps[0]") and "condition not met" in lines[5]
    assert lines[6].startswith("– steps[3]") and "skipped in the test definition" in lines[6]
    assert lines[-1].startswith(
        "FAIL  report-me (local): 5 steps, 1 passed, 1 failed, 2 skipped, "
        "1 conditions not met · assertions 1/2 · requests 2 ·"
    )


def test_progress_prints_the_same_lines_as_the_steps_finish(mixed_run):
    result, printed = mixed_run
    report = format_run(result).splitlines()
    progress = printed.splitlines()
    assert progress[0] == report[0]
    assert [line for line in progress if line.lstrip().startswith(("✓", "✗", "–", "○"))] == [
        line for line in report if line.lstrip().startswith(("✓", "✗", "–", "○"))
    ]
    assert progress[-1].startswith("FAIL  report-me")


def test_junit_has_one_testcase_per_step_with_failures_and_skips(mixed_run):
    result, _ = mixed_run
    suite = ET.fromstring(junit_xml(result))
    assert suite.tag == "testsuite" and suite.get("name") == "report-me"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "5",
        "1",
        "0",
        "3",
    )
    cases = suite.findall("testcase")
    assert [c.get("name").split()[0] for c in cases] == [
        "steps[0]",
        "steps[1]",
        "steps[2]",
        "steps[2].steps[0]",
        "steps[3]",
    ]
    failure = cases[1].find("failure")
    assert "expected 2 to equal 3" in failure.get("message") and failure.get("type") == "request"
    assert cases[0].find("failure") is None and cases[3].find("skipped") is not None
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["result"] == "fail" and properties["environment"] == "local"


def test_suite_summaries_print_flow_lines_and_totals():
    text = format_suite(
        {
            "id": "r1",
            "description": "checkout",
            "status": "FAILED",
            "progress": "2/2",
            "successRate": "50%",
            "avgResTime": "12 ms",
            "testSuiteFlowRuns": [
                {"description": "login", "status": "PASSED", "numOfRequests": 2, "duration": "10 ms"},
                {"description": "pay", "status": "FAILED", "numOfRequests": 1, "duration": "14 ms"},
            ],
        }
    )
    assert text.splitlines() == [
        "✓ login  PASSED  (2 requests, 10 ms)",
        "✗ pay  FAILED  (1 requests, 14 ms)",
        "",
        "FAILED  checkout: flows 2/2 · success rate 50% · avg flow duration 12 ms",
    ]
