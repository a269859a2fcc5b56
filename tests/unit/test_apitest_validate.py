"""Definition checks: every problem names its field, as the CLI prints it."""

import pytest

from assay.crds import Monitor
from assay.runner.apitest.validate import parse_monitor, validate_monitor


def monitor(steps, environments=()):
    return Monitor.model_validate(
        {"metadata": {"name": "m"}, "spec": {"steps": steps, "environments": list(environments)}}
    )


@pytest.mark.parametrize(
    "step,problem",
    [
        ({"stepType": "bogus"}, "spec.steps[0].stepType: unknown stepType 'bogus'"),
        ({"url": "http://x"}, "spec.steps[0].stepType: required"),
        ({"stepType": "request"}, "spec.steps[0].url: Field required"),
        (
            {
                "stepType": "request",
                "url": "http://x",
                "assertions": [{"source": "response_time", "comparison": "has_key", "value": "a"}],
            },
            "spec.steps[0].assertions[0].comparison: has_key, has_value and is_null need source response_json",
        ),
        (
            {
                "stepType": "request",
                "url": "http://x",
                "assertions": [{"source": "response_json", "comparison": "equal", "value": "a"}],
            },
            "spec.steps[0].assertions[0].property: property is required",
        ),
        (
            {
                "stepType": "request",
                "url": "http://x",
                "assertions": [{"source": "response_status", "comparison": "equal"}],
            },
            "spec.steps[0].assertions[0].value: value is required",
        ),
        (
            {
                "stepType": "request",
                "url": "http://x",
                "assertions": [{"source": "response_status", "comparison": "looks_like", "value": 1}],
            },
            "spec.steps[0].assertions[0].comparison: Input should be",
        ),
        (
            {"stepType": "condition", "leftValue": "a", "comparison": "equal", "steps": [{"stepType": "request"}]},
            "spec.steps[0].steps[0].url: Field required",
        ),
        ({"stepType": "pause", "duration": 500}, "spec.steps[0].duration: Input should be less than or equal to 120"),
        ({"stepType": "subtest"}, "spec.steps[0].monitor: a subtest needs testUuid or monitor"),
        (
            {"stepType": "request", "url": "http://x", "auth": {"authType": "oauth_2"}},
            "spec.steps[0].auth.accessToken: oauth_2 needs accessToken or grantType",
        ),
    ],
)
def test_model_errors_name_the_field(step, problem):
    with pytest.raises(ValueError) as caught:
        parse_monitor(
            {"metadata": {"name": "m"}, "spec": {"steps": [{"stepType": "request", "url": "http://ok"}, step]}}
        )
    assert problem.replace("spec.steps[0]", "spec.steps[1]", 1) in str(caught.value)


def test_templates_paths_and_urls_are_checked_in_every_field():
    m = monitor(
        [
            {
                "stepType": "request",
                "url": "{{base}/x",
                "headers": {"X-A": ["ok", "{{md5(}}"]},
                "body": "{{",
                "form": {"f": ["{{nope(1)}}"]},
                "auth": {"authType": "basic", "username": "{{u", "password": "p"},
                "assertions": [
                    {"source": "response_json", "property": "a..b", "comparison": "equal", "value": "{{x}"},
                    {"source": "response_xml", "property": "//b[", "comparison": "not_empty"},
                ],
                "variables": [{"name": "v", "source": "response_json", "property": "a["}],
            },
            {"stepType": "request", "url": "example.com/path"},
            {
                "stepType": "condition",
                "leftValue": "{{a",
                "comparison": "equal",
                "rightValue": "{{b",
                "steps": [{"stepType": "request", "url": "{{random_int(x y)}}"}],
            },
            {"stepType": "subtest", "monitor": "c", "params": [{"name": "p", "value": "{{"}]},
            {
                "stepType": "ghost-inspector",
                "integrationId": "g",
                "testId": "t",
                "isCustomStartUrl": True,
                "startUrl": "{{s",
            },
        ],
        environments=[
            {
                "name": "e",
                "initialVariables": {"ts": "{{timestamp(}}"},
                "headers": {"H": ["{{"]},
                "auth": {"authType": "basic", "username": "{{u", "password": "p"},
            }
        ],
    )
    fields = [problem.split(": ")[0] for problem in validate_monitor(m)]
    assert fields == [
        "spec.environments[0].initialVariables.ts",
        "spec.environments[0].headers.H[0]",
        "spec.environments[0].auth.username",
        "spec.steps[0].url",
        "spec.steps[0].headers.X-A[1]",
        "spec.steps[0].body",
        "spec.steps[0].form.f[0]",
        "spec.steps[0].auth.username",
        "spec.steps[0].assertions[0].value",
        "spec.steps[0].assertions[0].property",
        "spec.steps[0].assertions[1].property",
        "spec.steps[0].variables[0].property",
        "spec.steps[1].url",
        "spec.steps[2].leftValue",
        "spec.steps[2].rightValue",
        "spec.steps[2].steps[0].url",
        "spec.steps[3].params[0].value",
        "spec.steps[4].startUrl",
    ]


def test_a_sound_monitor_has_no_problems():
    m = monitor(
        [
            {
                "stepType": "request",
                "url": "{{base}}/x?ts={{timestamp}}",
                "body": '{"a": {"b": "{{c}}"}}',
                "assertions": [
                    {"source": "response_json", "property": "data.items[0]", "comparison": "not_empty"},
                    {"source": "response_xml", "property": "//a/@b", "comparison": "equal", "value": "{{v}}"},
                ],
            },
            {"stepType": "request", "url": "https://example.com"},
        ],
        environments=[{"name": "e", "initialVariables": {"base": "http://h"}}],
    )
    assert validate_monitor(m) == []
