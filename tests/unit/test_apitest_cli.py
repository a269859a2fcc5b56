"""`python -m assay.runner run FILE.yaml` end to end, as a subprocess against a loopback server:
exit codes 0 (pass), 1 (fail) and 2 (bad definition), progress output, JUnit files."""

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from assay.runner.apitest.validate import parse_monitor, validate_monitor
from tests.support.http_targets import HttpTarget

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def target():
    with HttpTarget() as target:
        yield target


def cli(tmp_path, manifest: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(manifest))
    return subprocess.run(
        [sys.executable, "-m", "assay.runner", "run", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


MONITOR = """\
    apiVersion: assay.dev/v1alpha1
    kind: Monitor
    metadata: {{name: cli-check}}
    spec:
      defaultEnvironment: local
      environments:
        - name: local
          initialVariables: {{base: "{url}", expected: "2"}}
      steps:
        - stepType: request
          url: "{{{{base}}}}/json"
          variables: [{{name: first, source: response_json, property: "data.items[0].name"}}]
          assertions:
            - {{source: response_status, comparison: equal_number, value: 200}}
            - {{source: response_json, property: data.count, comparison: equal_number, value: "{{{{expected}}}}"}}
        - stepType: subtest
          monitor: helper
          params: [{{name: who, value: "{{{{first}}}}"}}]
          variables: [{{name: echoed, source: response_json, property: variables.echoed}}]
        - stepType: request
          url: "{{{{base}}}}/echo?got={{{{echoed}}}}"
          assertions:
            - {{source: response_json, property: "query.got[0]", comparison: equal, value: first}}
    ---
    apiVersion: assay.dev/v1alpha1
    kind: Monitor
    metadata: {{name: helper}}
    spec:
      environments: [{{name: e, initialVariables: {{base: "{url}"}}}}]
      steps:
        - stepType: request
          url: "{{{{base}}}}/echo?who={{{{who}}}}"
          variables: [{{name: echoed, source: response_json, property: "query.who[0]"}}]
"""


def test_a_passing_monitor_exits_0_and_writes_junit(tmp_path, target):
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    done = cli(tmp_path, MONITOR.format(url=target.url), "--junit", str(junit))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Running cli-check in environment local")
    assert [line[:11] for line in lines[1:4]] == ["✓ steps[0] ", "✓ steps[1] ", "✓ steps[2] "]
    assert lines[-1].startswith("PASS  cli-check (local): 3 steps, 3 passed")
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "0" and len(suite.findall("testcase")) == 3


def test_a_failing_monitor_exits_1_and_says_why(tmp_path, target):
    junit = tmp_path / "junit.xml"
    done = cli(tmp_path, MONITOR.format(url=target.url), "--var", "expected=5", "--junit", str(junit))
    assert done.returncode == 1
    assert "✗ steps[0]" in done.stdout and "expected 2 to equal 5" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("FAIL  cli-check")
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and "expected 2 to equal 5" in failure.get("message")


def test_an_unreachable_target_exits_1(tmp_path):
    done = cli(
        tmp_path,
        """\
        kind: Monitor
        metadata: {name: down}
        spec:
          steps: [{stepType: request, url: "http://127.0.0.1:9/"}]
    """,
    )
    assert done.returncode == 1 and "connection refused" in done.stdout


@pytest.mark.parametrize(
    "manifest,args,message",
    [
        (
            """\
        kind: Monitor
        metadata: {name: m}
        spec:
          steps: [{stepType: request, url: "http://x/"}, {stepType: request, method: GET}]
     """,
            (),
            "m: spec.steps[1].url: Field required",
        ),
        (
            """\
        kind: Monitor
        metadata: {name: m}
        spec:
          steps: [{stepType: teleport}]
     """,
            (),
            "spec.steps[0].stepType: unknown stepType 'teleport'",
        ),
        (
            """\
        kind: Monitor
        metadata: {name: m}
        spec:
          steps: [{stepType: request, url: "http://x/{{id"}]
     """,
            (),
            "m: spec.steps[0].url: unclosed '{{'",
        ),
        (
            """\
        kind: Monitor
        metadata: {name: m}
        spec:
          steps:
            - stepType: request
              url: "http://x/"
              assertions: [{source: response_status, comparison: has_key, value: a}]
     """,
            (),
            "spec.steps[0].assertions[0].comparison: has_key, has_value and is_null need source response_json",
        ),
        (
            """\
        kind: Monitor
        metadata: {name: m}
        spec:
          steps: [{stepType: subtest, monitor: elsewhere}]
     """,
            (),
            "m: spec.steps[0].monitor: no Monitor 'elsewhere' in",
        ),
        (
            """\
        kind: Monitor
        metadata: {name: m}
        spec:
          environments: [{name: local}]
          steps: [{stepType: request, url: "http://x/"}]
     """,
            ("--env", "prod"),
            "--env: monitor 'm' has no environment 'prod' (has: local)",
        ),
        ("kind: Monitor\nspec: [\n", (), "manifest.yaml"),
        (
            """\
        kind: Schedule
        spec: {}
     """,
            (),
            "kind 'Schedule' cannot be run here",
        ),
    ],
)
def test_a_bad_definition_exits_2_naming_the_field(tmp_path, manifest, args, message):
    done = cli(tmp_path, manifest, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and done.stdout == ""


def test_a_bad_var_argument_is_a_usage_error(tmp_path, target):
    done = cli(tmp_path, MONITOR.format(url=target.url), "--var", "novalue")
    assert done.returncode == 2 and "expected NAME=VALUE" in done.stderr


def test_a_testsuite_is_run_by_the_suite_runner(tmp_path, target):
    junit = tmp_path / "suite.xml"
    done = cli(
        tmp_path,
        f"""\
        apiVersion: assay.dev/v1alpha1
        kind: TestSuite
        metadata: {{name: smoke-suite}}
        spec:
          description: smoke
          parameters: {{base: "{target.url}"}}
          flows:
            - name: read
              requests:
                - url: "{{{{base}}}}/json"
                  assertions: [{{source: response_json, property: status, comparison: equal, value: "{{{{want}}}}"}}]
    """,
        "--var",
        "want=ok",
        "--junit",
        str(junit),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ read  PASSED" in done.stdout and done.stdout.splitlines()[-1].startswith("PASSED  smoke")
    assert ET.parse(junit).getroot().get("tests") == "1"
    failing = cli(tmp_path, (tmp_path / "manifest.yaml").read_text(), "--var", "want=bad")
    assert failing.returncode == 1 and "✗ read  FAILED" in failing.stdout


def test_a_loadtest_manifest_still_goes_to_the_load_engine(tmp_path, target):
    target.clear()
    done = cli(
        tmp_path,
        f"""\
        kind: LoadTest
        metadata: {{name: lt}}
        spec:
          shards: 2
          baseUrl: "{target.url}"
          load: {{users: 2, iterations: 2}}
          flows: [{{name: f, requests: [{{url: /json}}]}}]
    """,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(target.received("/json")) == 4  # 2 users x 2 iterations, over both shards


def test_the_example_monitor_is_a_valid_definition():
    monitor = parse_monitor(yaml.safe_load((REPO / "examples" / "monitor.yaml").read_text()))
    assert validate_monitor(monitor) == []
