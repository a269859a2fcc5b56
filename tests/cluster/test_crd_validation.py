"""The generated CRDs on the real API server: examples are accepted, bad objects are rejected
with an error that names the offending field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from assay.crds import KINDS_BY_NAME

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

FLOWS = """
flows:
  - name: browse
    requests:
      - url: http://127.0.0.1:8080/products
"""


def manifest(kind: str, name: str, *spec_parts: str) -> str:
    """A manifest whose spec is the parts, each dedented on its own, one after the other."""
    spec = "\n".join(textwrap.dedent(part).strip("\n") for part in spec_parts)
    return (
        f"apiVersion: assay.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
        + textwrap.indent(spec, "  ")
        + "\n"
    )


def apply(cluster, namespace: str, text: str, check: bool = False):
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=check)


INVALID = [
    pytest.param(
        manifest("Monitor", "pause-zero", "steps:\n  - stepType: pause\n    duration: 0"),
        ["spec.steps[0].duration", "greater than or equal to 1"],
        id="pause-duration-0",
    ),
    pytest.param(
        manifest("Monitor", "pause-long", "steps:\n  - stepType: pause\n    duration: 121"),
        ["spec.steps[0].duration", "less than or equal to 120"],
        id="pause-duration-121",
    ),
    pytest.param(
        manifest("Monitor", "no-url", "steps:\n  - stepType: request\n    method: GET"),
        ["spec.steps[0].url", "Required value", "url is required when stepType is request"],
        id="request-step-without-url",
    ),
    pytest.param(
        manifest(
            "Monitor",
            "bad-comparison",
            """
            steps:
              - stepType: request
                url: http://127.0.0.1:8080/
                assertions:
                  - source: response_status
                    comparison: is_equal
                    value: 200
        """,
        ),
        ["spec.steps[0].assertions[0].comparison", "Unsupported value", "is_equal"],
        id="unknown-assertion-comparison",
    ),
    pytest.param(
        manifest(
            "Monitor",
            "json-only",
            """
            steps:
              - stepType: request
                url: http://127.0.0.1:8080/
                assertions:
                  - source: response_text
                    comparison: has_key
                    value: id
        """,
        ),
        ["spec.steps[0].assertions[0].comparison", "need source response_json"],
        id="has-key-without-response-json",
    ),
    pytest.param(
        manifest(
            "Monitor",
            "inner-no-url",
            """
            steps:
              - stepType: condition
                leftValue: "1"
                comparison: equal
                rightValue: "1"
                steps:
                  - stepType: request
        """,
        ),
        ["spec.steps[0].steps[0].url", "Required value"],
        id="condition-inner-request-without-url",
    ),
    pytest.param(
        manifest("Monitor", "pause-with-url", "steps:\n  - stepType: pause\n    duration: 3\n    url: http://x/"),
        ["spec.steps[0]", "Forbidden", "stepType pause does not take", "url"],
        id="pause-step-with-request-fields",
    ),
    pytest.param(
        manifest(
            "Monitor",
            "basic-no-user",
            """
            steps:
              - stepType: request
                url: http://127.0.0.1:8080/
                auth:
                  authType: basic
                  password: secret
        """,
        ),
        ["spec.steps[0].auth.username", "Required value"],
        id="basic-auth-without-username",
    ),
    pytest.param(
        manifest("Monitor", "bad-default-env", "environments:\n  - name: staging\ndefaultEnvironment: production"),
        ["spec.defaultEnvironment", "must name one of spec.environments"],
        id="default-environment-not-defined",
    ),
    pytest.param(
        manifest("Monitor", "dup-env", "environments:\n  - name: staging\n  - name: staging"),
        ["spec.environments", "environment names must be unique"],
        id="duplicate-environment-names",
    ),
    pytest.param(
        manifest("Schedule", "two-minutes", "target: {kind: Monitor, name: accounts-api}\ninterval: 2m"),
        ["spec.interval", "must be one of 1m, 5m, 15m, 30m, 1h, 6h, 1d or a 5-field cron expression"],
        id="schedule-interval-2m",
    ),
    pytest.param(
        manifest("Schedule", "bad-cron", "target: {kind: Monitor, name: accounts-api}\ninterval: '99 * * * *'"),
        ["spec.interval", "5-field cron expression"],
        id="schedule-cron-minute-out-of-range",
    ),
    pytest.param(
        manifest("Schedule", "suite-env", "target: {kind: TestSuite, name: s}\ninterval: 1h\nenvironment: prod"),
        ["spec.environment", "only to a Monitor target"],
        id="schedule-environment-for-a-testsuite",
    ),
    pytest.param(
        manifest("LoadTest", "no-shards", "shards: 0", FLOWS),
        ["spec.shards", "greater than or equal to 1"],
        id="loadtest-shards-0",
    ),
    pytest.param(
        manifest("LoadTest", "open-no-rate", "load:\n  model: open\n  duration: 1m", FLOWS),
        ["spec.load.arrivalRate", "Required value", "open model needs arrivalRate"],
        id="open-model-without-arrival-rate",
    ),
    pytest.param(
        manifest("LoadTest", "bad-criterion", "criteria: ['p95 < 300']", FLOWS),
        ["spec.criteria[0]"],
        id="loadtest-criterion-without-unit",
    ),
    pytest.param(
        manifest(
            "LoadTest",
            "two-pool-sources",
            """
            parameterPools:
              - name: users
                csv: "a\\n1\\n"
                configMapRef: {name: users, key: users.csv}
        """,
            FLOWS,
        ),
        ["spec.parameterPools[0]", "exactly one of csv or configMapRef"],
        id="parameter-pool-with-two-sources",
    ),
    pytest.param(
        manifest(
            "LoadTest",
            "uniform-without-max",
            """
            flows:
              - name: browse
                think: {distribution: uniform, min: 1s}
                requests:
                  - url: http://127.0.0.1:8080/products
        """,
        ),
        ["spec.flows[0].think.max", "Required value", "a uniform think time needs min and max"],
        id="loadtest-uniform-think-time-without-max",
    ),
    pytest.param(
        manifest(
            "LoadTest",
            "think-min-over-max",
            """
            flows:
              - name: browse
                think: {distribution: normal, mean: 2s, stdDev: 1s, min: 3s, max: 1s}
                requests:
                  - url: http://127.0.0.1:8080/products
        """,
        ),
        ["spec.flows[0].think.max", "min must not be greater than max"],
        id="loadtest-think-time-min-over-max",
    ),
    pytest.param(
        manifest("LoadTest", "many-redirects", "maxRedirects: 51", FLOWS),
        ["spec.maxRedirects", "less than or equal to 50"],
        id="loadtest-too-many-redirects",
    ),
    pytest.param(
        manifest("LoadTest", "pool-mode", "parameterPools: [{name: u, csv: 'a\\n1\\n', mode: shared}]", FLOWS),
        ["spec.parameterPools[0].mode", "Unsupported value"],
        id="loadtest-unknown-pool-mode",
    ),
    pytest.param(
        manifest("LoadTest", "bogus-field", "bogus: 1", FLOWS),
        ['unknown field "spec.bogus"'],
        id="loadtest-unknown-field",
    ),
    pytest.param(
        manifest("TestSuite", "no-flows", "flows: []"),
        ["spec.flows", "should have at least 1 items"],
        id="testsuite-without-flows",
    ),
    pytest.param(
        manifest(
            "ClientCredential", "org-no-org", "displayName: x\nlevel: org\nscopes: [vng]\ngrantTypes: [static_token]"
        ),
        ["spec.organization", "Required value", "organization is required when level is org"],
        id="org-credential-without-organization",
    ),
    pytest.param(
        manifest(
            "ClientCredential",
            "bad-scope",
            "displayName: x\nscopes: [LOADTEST_DELETE]\ngrantTypes: [client_credentials]",
        ),
        ["spec.scopes[0]", "Unsupported value"],
        id="credential-unknown-scope",
    ),
    pytest.param(
        manifest(
            "ClientCredential",
            "code-no-redirect",
            "displayName: x\nscopes: ['api:read']\ngrantTypes: [authorization_code]",
        ),
        ["spec.redirectUris", "must not be empty"],
        id="authorization-code-without-redirect-uris",
    ),
]


@pytest.mark.parametrize("text, fragments", INVALID)
def test_api_server_rejects_invalid_resource_naming_the_field(cluster, namespace, text, fragments):
    result = apply(cluster, namespace, text)
    assert result.returncode != 0, f"accepted:\n{text}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


def test_client_credential_spec_cannot_be_changed(cluster, namespace):
    original = manifest(
        "ClientCredential", "ci", "displayName: CI\nscopes: [LOADTEST_LIST]\ngrantTypes: [client_credentials]"
    )
    apply(cluster, namespace, original, check=True)

    result = apply(cluster, namespace, original.replace("displayName: CI", "displayName: CI pipeline"))

    assert result.returncode != 0
    assert "spec: Invalid value" in result.stderr
    assert "ClientCredential spec is immutable; delete and recreate it" in result.stderr
    # Status stays writable: the operator records the phase after creation.
    cluster.kubectl(
        "patch",
        "clientcredential",
        "ci",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Active"}}),
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_manifest_is_accepted_and_parses_back(cluster, namespace, path):
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))

    for doc in yaml.safe_load_all(path.read_text()):
        kind = KINDS_BY_NAME[doc["kind"]]
        stored = json.loads(
            cluster.kubectl("get", kind.crd_name, doc["metadata"]["name"], "-n", namespace, "-o", "json").stdout
        )
        # What the API server stored (with its defaults) is what the operator will parse.
        kind.resource.model_validate(stored)


def test_api_server_applies_the_model_defaults(cluster, namespace):
    apply(cluster, namespace, manifest("LoadTest", "smoke", FLOWS), check=True)
    apply(
        cluster,
        namespace,
        manifest(
            "Monitor",
            "m",
            """
        steps:
          - stepType: pause
            duration: 1
        environments:
          - name: staging
    """,
        ),
        check=True,
    )

    loadtest = json.loads(cluster.kubectl("get", "loadtest", "smoke", "-n", namespace, "-o", "json").stdout)["spec"]
    assert loadtest["shards"] == 1
    assert loadtest["requestTimeout"] == "30s"
    assert loadtest["load"] == {"model": "closed", "users": 1, "iterations": 1, "rampUp": "0s", "rampDown": "0s"}
    assert loadtest["flows"][0]["requests"][0]["method"] == "GET"

    monitor = json.loads(cluster.kubectl("get", "monitor", "m", "-n", namespace, "-o", "json").stdout)["spec"]
    assert monitor["steps"][0] == {"stepType": "pause", "duration": 1, "skipped": False}  # no request defaults
    assert monitor["environments"][0]["verifySsl"] is True
    assert monitor["trigger"] == {"enabled": True}


def test_minimal_step_of_every_type_is_accepted(cluster, namespace):
    """Variant rules see no defaults of variant-only fields; they must not fail on absent ones."""
    result = apply(
        cluster,
        namespace,
        manifest(
            "Monitor",
            "every-step",
            """
        steps:
          - stepType: request
            url: http://127.0.0.1:8080/
            auth: {authType: oauth_1, consumerKey: k, consumerSecret: s}
          - stepType: pause
            duration: 120
          - stepType: condition
            leftValue: "{{n}}"
            comparison: is_a_number
            steps:
              - stepType: pause
                duration: 1
              - stepType: subtest
                monitor: login
          - stepType: subtest
            testUuid: c6f2aa66-ed7e-4faf-a05d-5da7416da3ee
            params: [{name: foo, value: "{{bar}}"}]
          - stepType: ghost-inspector
            integrationId: c6f2aa66-ed7e-4faf-a05d-5da7416da3ee
            testId: 55c3b3dbfdac93101d808ca6
          - stepType: request
            url: http://127.0.0.1:8080/
            auth: {authType: oauth_2, grantType: client_credentials, clientId: c, accessTokenUrl: http://127.0.0.1:8080/token}
          - stepType: request
            url: http://127.0.0.1:8080/
            auth: {authType: client_certificate}
    """,
        ),
    )
    assert result.returncode == 0, result.stderr


def test_ghost_inspector_custom_start_url_needs_the_url(cluster, namespace):
    result = apply(
        cluster,
        namespace,
        manifest(
            "Monitor",
            "ghost",
            """
        steps:
          - stepType: ghost-inspector
            integrationId: i
            testId: t
            isCustomStartUrl: true
    """,
        ),
    )
    assert result.returncode != 0
    assert "spec.steps[0].startUrl: Required value" in result.stderr


def test_kubectl_lists_every_kind_under_the_assay_category(cluster, namespace):
    for path in EXAMPLES:
        cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    listed = cluster.kubectl("get", "assay", "-n", namespace, "-o", "name").stdout.split()
    assert {name.split("/")[0].split(".")[0] for name in listed} == {
        "loadtest",
        "testsuite",
        "monitor",
        "schedule",
        "clientcredential",
    }
    assert cluster.kubectl("get", "lt,mon,ts,sched,cred", "-n", namespace, "-o", "name").stdout.strip()
