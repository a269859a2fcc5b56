"""Schemathesis (the `st` CLI) against an API family's OpenAPI document on the real gateway."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "unsupported_method",
    "ignored_auth",
)
SEED = os.environ.get("ASSAY_SCHEMATHESIS_SEED", "20240101")
"""Fixed, so a run is repeatable; another seed explores other cases."""
TIME_FACTOR = float(os.environ.get("ASSAY_SCHEMATHESIS_TIME_FACTOR", "1"))
"""Scales every run's time budget, for a deeper run than the test suite's."""


@dataclass
class FuzzRun:
    returncode: int
    output: str
    cases: dict

    @property
    def server_errors(self) -> list[str]:
        """The CLI's report lines for server errors, for the assertion message."""
        return [line for line in self.output.splitlines() if "Server error" in line]


def run_schemathesis(
    document_url: str,
    tmp_path: Path,
    *,
    headers: dict[str, str],
    parameters: dict[str, str],
    max_examples: int,
    max_time: int,
    exclude_path_regex: str | None = None,
    checks: tuple[str, ...] = CHECKS,
) -> FuzzRun:
    """One bounded run: `max_examples` per operation, `max_time` seconds (× TIME_FACTOR) in all.
    `parameters` fixes path parameters (e.g. `path.org`) so cases reach existing things instead
    of stopping at 404.
    The whole CLI output is kept in `schemathesis-output.txt` in `tmp_path`."""
    max_time = max(1, int(max_time * TIME_FACTOR))
    config = tmp_path / "schemathesis.toml"
    config.write_text("[parameters]\n" + "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in parameters.items()))
    report = tmp_path / "schemathesis.ndjson"
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(config),
        "run",
        document_url,
        "--checks",
        ",".join(checks),
        "--max-examples",
        str(max_examples),
        "--max-time",
        str(max_time),
        "--workers",
        "1",
        "--no-color",
        "--seed",
        SEED,
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    if exclude_path_regex:
        command += ["--exclude-path-regex", exclude_path_regex]
    result = subprocess.run(command, capture_output=True, text=True, timeout=max_time + 300, cwd=tmp_path)
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis-output.txt").write_text(output)
    cases = count_cases(output)
    (tmp_path / "schemathesis-cases.json").write_text(json.dumps(cases))
    print(output[-6000:])
    print(f"schemathesis: {cases}")
    return FuzzRun(result.returncode, output, cases)


def count_cases(output: str) -> dict:
    """Test cases tried and operations tested, from the CLI's summary."""
    generated = re.search(r"(\d[\d,]*) generated", output)
    operations = re.search(r"Tested:\s+(\d+)", output)
    return {
        "total": int(generated.group(1).replace(",", "")) if generated else 0,
        "operations": int(operations.group(1)) if operations else 0,
    }


def assert_no_failures(run: FuzzRun) -> None:
    """Cases were tried, and none failed a check: no server error, every answer as documented."""
    assert run.cases["total"] > 0, run.output[-6000:]
    assert run.returncode == 0, "\n".join(run.server_errors) + "\n" + run.output[-6000:]
