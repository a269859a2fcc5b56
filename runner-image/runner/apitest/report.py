"""Reading a run in a terminal, and in CI: progress lines, the final report, JUnit XML.

    ✓ steps[0]  GET http://api/users → 200 in 12.3 ms
    ✗ steps[1]  POST http://api/users → 500 in 8.1 ms
        assertion status_code equals_number: expected 201, got 500
    – steps[2]  GET http://api/users/{{id}}  (skipped: stop on failure)

    FAIL  m1 (staging): 3 steps, 1 passed, 1 failed, 1 skipped · assertions 1/2 · requests 2 · 0.04 s

`ProgressPrinter` is an `on_progress` callback that prints each step as it finishes;
`format_run` gives the same text after the fact.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any, Mapping, Optional, TextIO

from .monitor import ProgressEvent
from .results import RunResult, StepResult

MARKS = {"pass": "✓", "fail": "✗", "skipped": "–", "not_run": "○"}


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def step_line(step: StepResult) -> str:
    """One line for a step: mark, where it is, what it did, and its outcome."""
    indent = "    " if step.parent_uuid else ""
    status = step.status
    text = f"{indent}{MARKS[status]} {step.path:<10} {step.name}"
    if status == "skipped":
        return f"{text}  (skipped: {step.skip_reason})"
    if status == "not_run":
        return f"{text}  (condition not met, nested steps not run)"
    if step.status_code is not None:
        text += f" → {step.status_code} in {_ms(step.response_time_ms)}"
    elif step.step_type == "condition":
        text += "  (condition met)"
    elif step.step_type in ("pause", "subtest"):
        text += f"  ({step.duration_ms / 1000:.2f} s)"
    return text


def failure_lines(step: StepResult, indent: str = "        ") -> list[str]:
    """Why a step failed: its error, then each failed variable, assertion and script."""
    lines = []
    if step.error:
        lines.append(f"{indent}error: {step.error}")
    for v in step.variables:
        if not v.passed and step.error and (v.error or "").startswith("no response"):
            lines.append(f"{indent}variable {v.name}: not extracted: no response")
        elif not v.passed:
            lines.append(f"{indent}variable {v.name} ({v.source} {v.property or ''}): {v.error}".replace(" )", ")"))
    for a in step.assertions:
        if not a.passed:
            target = "" if a.target_value is None else f" {a.target_value!r}"
            prop = f" {a.property}" if a.property else ""
            why = a.error or "failed"
            if step.error and why.startswith("no response"):
                why = "not checked: no response"
            actual = "" if a.actual_value is None else f" (actual {_clip(a.actual_value)!r})"
            lines.append(f"{indent}assertion {a.source}{prop} {a.comparison}{target}: {why}{actual}")
    for index, s in enumerate(step.scripts):
        if not s.passed:
            lines.append(f"{indent}script {index + 1}: {s.error}")
    if step.subtest is not None and not step.subtest.passed:
        for inner in step.subtest.requests:
            if inner.failed:
                lines.append(f"{indent}in subtest: {step_line(inner).strip()}")
                lines.extend(failure_lines(inner, indent + "    "))
    return lines


def totals_line(result: RunResult) -> str:
    steps = [s for s in result.requests]
    count = {status: sum(1 for s in steps if s.status == status) for status in MARKS}
    name = result.test_name or result.test_id or "monitor"
    env = f" ({result.environment_name})" if result.environment_name else ""
    verdict = {"pass": "PASS", "fail": "FAIL"}.get(result.result, result.result.upper())
    parts = [f"{len(steps)} steps", f"{count['pass']} passed", f"{count['fail']} failed", f"{count['skipped']} skipped"]
    if count["not_run"]:
        parts.append(f"{count['not_run']} conditions not met")
    return (
        f"{verdict}  {name}{env}: {', '.join(parts)} · assertions {result.assertions_passed}/"
        f"{result.assertions_defined} · requests {result.requests_executed} · {result.duration_s:.2f} s"
    )


def run_header(result: RunResult) -> str:
    env = f" in environment {result.environment_name}" if result.environment_name else ""
    return f"Running {result.test_name or result.test_id or 'monitor'}{env} (run {result.test_run_id})"


def _run_level_lines(result: RunResult) -> list[str]:
    lines = []
    if result.environment_script is not None and not result.environment_script.passed:
        lines.append(f"✗ environment script: {result.environment_script.error}")
    elif result.error:
        lines.append(f"✗ {result.error}")
    return lines


def format_run(result: RunResult) -> str:
    """The whole report: a line per step, failures under their step, then the totals."""
    lines = [run_header(result), *_run_level_lines(result)]
    for step in result.requests:
        lines.append(step_line(step))
        if step.failed:
            lines.extend(failure_lines(step))
    lines.append("")
    lines.append(totals_line(result))
    return "\n".join(lines)


class ProgressPrinter:
    """An `on_progress` callback printing each step when it finishes, then the totals."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "run_started":
            self._print(run_header(event.run))
            for line in _run_level_lines(event.run):
                self._print(line)
        elif event.kind == "step_finished" and event.step is not None:
            self._print(step_line(event.step))
            if event.step.failed:
                for line in failure_lines(event.step):
                    self._print(line)
        elif event.kind == "run_finished":
            self._print("")
            self._print(totals_line(event.run))


# --- JUnit ----------------------------------------------------------------------------------


def junit_xml(result: RunResult) -> str:
    """One <testsuite> for the run, one <testcase> per step (nested steps included)."""
    name = result.test_name or result.test_id or "monitor"
    steps = result.requests
    suite = ET.Element(
        "testsuite",
        {
            "name": name,
            "tests": str(len(steps)),
            "failures": str(sum(1 for s in steps if s.failed and not s.error)),
            "errors": str(sum(1 for s in steps if s.failed and s.error) + (1 if result.error else 0)),
            "skipped": str(sum(1 for s in steps if s.status in ("skipped", "not_run"))),
            "time": f"{result.duration_s:.3f}",
            "timestamp": datetime.fromtimestamp(result.started_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("test_run_id", result.test_run_id),
        ("test_id", result.test_id),
        ("environment", result.environment_name),
        ("result", result.result),
    ):
        if value:
            ET.SubElement(properties, "property", {"name": key, "value": str(value)})
    if result.error:
        case = ET.SubElement(suite, "testcase", {"classname": name, "name": "environment", "time": "0"})
        ET.SubElement(case, "error", {"message": result.error, "type": "environment"})
    for step in steps:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": name,
                "name": f"{step.path} {step.name}",
                "time": f"{step.duration_ms / 1000:.3f}",
            },
        )
        if step.status == "skipped":
            ET.SubElement(case, "skipped", {"message": step.skip_reason or "skipped"})
        elif step.status == "not_run":
            ET.SubElement(case, "skipped", {"message": "condition not met"})
        elif step.failed:
            details = "\n".join(line.strip() for line in failure_lines(step))
            first = details.splitlines()[0] if details else "step failed"
            kind = "error" if step.error else "failure"
            element = ET.SubElement(case, kind, {"message": first, "type": step.step_type})
            element.text = details
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


# --- TestSuite runs -------------------------------------------------------------------------


def format_suite(summary: Mapping[str, Any], *, flows: bool = True) -> str:
    """Lines for a Loadmill-shaped suite run (`SuiteRunResult.to_loadmill()`): one per flow
    run unless `flows` is false (when progress already printed them), then the totals."""
    lines = []
    for flow in (summary.get("testSuiteFlowRuns", []) or []) if flows else []:
        status = flow.get("status", "")
        mark = {"PASSED": "✓", "FAILED": "✗"}.get(status, "–")
        extras = [
            f"{flow['numOfRequests']} requests" if flow.get("numOfRequests") is not None else "",
            str(flow.get("duration") or ""),
        ]
        extras = [e for e in extras if e]
        lines.append(
            f"{mark} {flow.get('description') or flow.get('id', '')}  {status}"
            + (f"  ({', '.join(extras)})" if extras else "")
        )
    if lines:
        lines.append("")
    lines.append(
        f"{summary.get('status', '?')}  {summary.get('description') or summary.get('id', 'suite')}: "
        f"flows {summary.get('progress', '-')} · success rate {summary.get('successRate', '-')} · "
        f"avg flow duration {summary.get('avgResTime', '-')}"
    )
    return "\n".join(lines)


def suite_junit_xml(suite_name: str, cases: list[Any]) -> str:
    """JUnit for a suite run from its `junit_cases()`: one testcase per flow run."""
    suite = _junit_suite(suite_name, cases)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def suites_junit_xml(name: str, suites: list[tuple[str, list[Any]]]) -> str:
    """JUnit for several suite runs (a test plan's): a <testsuites> of suite_junit_xml's suites."""
    root = ET.Element("testsuites", {"name": name})
    for suite_name, cases in suites:
        root.append(_junit_suite(suite_name, cases))
    counts = [(len(cases), sum(1 for c in cases if c.failure), sum(c.time for c in cases)) for _, cases in suites]
    root.set("tests", str(sum(c[0] for c in counts)))
    root.set("failures", str(sum(c[1] for c in counts)))
    root.set("time", f"{sum(c[2] for c in counts):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_suite(suite_name: str, cases: list[Any]) -> ET.Element:
    suite = ET.Element(
        "testsuite",
        {
            "name": suite_name,
            "tests": str(len(cases)),
            "failures": str(sum(1 for c in cases if c.failure)),
            "errors": "0",
            "skipped": "0",
            "time": f"{sum(c.time for c in cases):.3f}",
        },
    )
    for c in cases:
        case = ET.SubElement(suite, "testcase", {"classname": c.classname, "name": c.name, "time": f"{c.time:.3f}"})
        if c.failure:
            ET.SubElement(case, "failure", {"message": c.failure, "type": "flow"}).text = c.details
        elif c.details:
            ET.SubElement(case, "system-out").text = c.details
    return suite
