"""Runscope JSON <-> Monitor spec: the pure mapping the Runscope routers rely on."""

from __future__ import annotations

import json

import pytest

from assay.api.services import InvalidInput
from assay.api.services import runscope_mapping as mapping
from assay.api.services.runscope_tests import same_id, trigger_id_for
from assay.crds.monitor import MonitorSpec, inherit_environment
from assay.crds.runrequest import MonitorRunRequest
from assay.operator.monitorruns import plan_run, with_parent_environments

DOCUMENT_REQUEST_STEP = {
    "step_type": "request",
    "method": "POST",
    "url": "https://yourapihere.com/example/path",
    "body": '{ "hello": "world" }',
    "assertions": [{"source": "response_status", "comparison": "equal_number", "value": 200}],
    "variables": [{"name": "source_ip", "property": "origin", "source": "response_json"}],
    "auth": {"username": "authBasicUsername", "auth_type": "basic", "password": "authBasicPassword"},
    "headers": {"Content-Type": ["application/json"], "Accept": "*/*"},
    "scripts": ['log("post");'],
    "before_scripts": ['log("pre");'],
    "skipped": False,
    "note": "get example data",
}


def test_request_step_from_the_document_round_trips_with_an_assigned_id():
    step = mapping.step_from_runscope(DOCUMENT_REQUEST_STEP)
    assert step["stepType"] == "request" and step["beforeScripts"] == ['log("pre");']
    assert step["headers"] == {"Content-Type": ["application/json"], "Accept": ["*/*"]}
    assert len(step["id"]) == 36
    back = mapping.step_to_runscope(step)
    for key, value in DOCUMENT_REQUEST_STEP.items():
        expected = {"Content-Type": ["application/json"], "Accept": ["*/*"]} if key == "headers" else value
        assert back[key] == expected, key
    assert back["id"] == step["id"]


def test_legacy_spellings_and_empty_auth_are_normalised():
    step = mapping.step_from_runscope(
        {
            "url": "https://x.example/",
            "auth": {},
            "body": None,
            "assertions": [{"source": "status_code", "comparison": "is_equal", "value": 200}],
            "variables": [{"name": "v", "source": "json", "property": "a"}],
        }
    )
    assert step["stepType"] == "request" and "auth" not in step
    assert step["assertions"] == [{"source": "response_status", "comparison": "equal", "value": 200}]
    assert step["variables"][0]["source"] == "response_json"


def test_every_step_type_of_the_document_maps():
    pause = mapping.step_from_runscope({"step_type": "pause", "duration": 5})
    condition = mapping.step_from_runscope(
        {
            "step_type": "condition",
            "left_value": "{{user_id}}",
            "comparison": "equal",
            "right_value": "12345",
            "steps": [
                {
                    "step_type": "request",
                    "method": "GET",
                    "url": "https://yourapihere.com/",
                    "assertions": [{"comparison": "equal_number", "source": "response_status", "value": 200}],
                }
            ],
        }
    )
    ghost = mapping.step_from_runscope(
        {
            "step_type": "ghost-inspector",
            "integration_id": "c6f2",
            "suite_id": "55c3",
            "test_id": "55c4",
            "is_custom_start_url": False,
            "start_url": "http://example.com",
        }
    )
    subtest = mapping.step_from_runscope(
        {
            "step_type": "subtest",
            "test_uuid": "c6f2aa66",
            "environment_uuid": "d6f2aa66",
            "bucket_key": "fd1qy7w2l7ka",
            "params": [{"name": "foo", "value": "{{bar}}"}],
        }
    )
    assert pause["duration"] == 5
    assert condition["steps"][0]["id"] and condition["steps"][0]["id"] != condition["id"]
    assert ghost["testId"] == "55c4" and subtest["params"] == [{"name": "foo", "value": "{{bar}}"}]
    MonitorSpec.model_validate({"steps": [pause, condition, ghost, subtest]})


@pytest.mark.parametrize(
    "bad",
    [
        {"step_type": "pause", "duration": 500},
        {"step_type": "teleport"},
        {"step_type": "request"},
        {"step_type": "request", "url": "https://x/", "unknown_field": 1},
        {
            "step_type": "condition",
            "left_value": "a",
            "comparison": "equal",
            "right_value": "b",
            "steps": [{"step_type": "condition", "left_value": "a", "comparison": "equal"}],
        },
        ["not", "an", "object"],
    ],
)
def test_invalid_steps_are_refused_with_the_field_named(bad):
    with pytest.raises(InvalidInput) as exc:
        mapping.step_from_runscope(bad)
    assert exc.value.status == 400 and exc.value.message


def test_environment_from_the_document_round_trips():
    doc = {
        "auth": {"password": "p", "username": "u", "auth_type": "basic"},
        "emails": {
            "notify_all": False,
            "notify_on": "all",
            "notify_threshold": None,
            "recipients": [{"email": "grace@example.com", "name": "Grace Hopper", "id": "4ee1"}],
        },
        "initial_variables": {"my_variable": "some value", "count": 3},
        "integrations": [
            {"description": "Pagerduty Account", "integration_type": "pagerduty", "id": "53776d9a"},
            {"integration_type": "slack", "id": "s-1", "url": "https://hooks.slack.example/T0/B0/x"},
        ],
        "name": "Remote Settings",
        "parent_environment_id": None,
        "preserve_cookies": False,
        "regions": ["us1", "jp1"],
        "retry_on_failure": False,
        "stop_on_failure": False,
        "remote_agents": [{"name": "agent-1", "uuid": "141d"}],
        "script": "log(1);",
        "verify_ssl": True,
        "client_certificate": "",
        "webhooks": None,
        "test_id": None,
        "script_library": ["1a3e"],
    }
    env = mapping.environment_from_runscope(doc)
    assert env["initialVariables"] == {"my_variable": "some value", "count": "3"} and env["id"]
    out = mapping.environment_to_runscope(env, "test-1")
    assert out["test_id"] == "test-1" and out["regions"] == ["us1", "jp1"] and out["auth"]["username"] == "u"
    assert out["emails"]["recipients"][0]["email"] == "grace@example.com" and out["id"] == env["id"]
    # As the document shows an integration; where the operator sends runs only when set.
    assert out["integrations"] == [
        {"description": "Pagerduty Account", "integration_type": "pagerduty", "id": "53776d9a"},
        {"description": None, "integration_type": "slack", "id": "s-1", "url": "https://hooks.slack.example/T0/B0/x"},
    ]


def test_a_new_test_gets_a_default_environment_and_put_keeps_what_is_omitted():
    spec = mapping.test_spec_from_runscope({"name": "Sample Name", "description": "My test description"})
    assert spec["displayName"] == "Sample Name" and spec["environments"][0]["name"] == "Test Settings"
    assert mapping.default_environment_id(spec) == spec["environments"][0]["id"]
    # Shown as the document shows a new test's environment, but not stored: the operator
    # would otherwise weigh every run of every test for e-mail.
    assert "emails" not in spec["environments"][0]
    shown = mapping.environment_to_runscope(spec["environments"][0], "test-1")
    assert shown["emails"] == {"notify_all": False, "notify_on": "all", "notify_threshold": 1, "recipients": []}
    changed = mapping.modified_spec(spec, {"description": "new"})
    assert changed["displayName"] == "Sample Name" and changed["description"] == "new"
    with pytest.raises(InvalidInput):
        mapping.modified_spec(spec, {"default_environment_id": "nope"})
    with pytest.raises(InvalidInput):
        mapping.test_spec_from_runscope({"description": "no name"})


def test_reorder_needs_every_id_once_and_keeps_embedded_steps_in_their_condition():
    a = mapping.step_from_runscope({"url": "https://a/"})
    cond = mapping.step_from_runscope(
        {
            "step_type": "condition",
            "left_value": "1",
            "comparison": "equal",
            "right_value": "1",
            "steps": [{"url": "https://b/"}, {"url": "https://c/"}],
        }
    )
    b, c = (s["id"] for s in cond["steps"])
    out = mapping.reordered_steps([a, cond], [{"id": cond["id"], "steps": [c, b]}, a["id"]])
    assert [s["id"] for s in out] == [cond["id"], a["id"]] and [s["id"] for s in out[0]["steps"]] == [c, b]
    for bad in (
        [a["id"]],
        [a["id"], a["id"], cond["id"]],
        [a["id"], cond["id"], "x"],
        [a["id"], {"id": cond["id"], "steps": [b]}],
        "not a list",
    ):
        with pytest.raises(InvalidInput):
            mapping.reordered_steps([a, cond], bad)


def test_schedules_take_runscope_intervals_and_an_environment_of_the_test():
    spec = mapping.test_spec_from_runscope({"name": "t"})
    env_id = spec["environments"][0]["id"]
    assert mapping.schedule_spec_from_runscope(
        {"environment_id": env_id, "interval": "1m", "note": "n"}, "t-1", spec
    ) == {"target": {"kind": "Monitor", "name": "t-1"}, "interval": "1m", "environment": env_id, "note": "n"}
    for bad in (
        {"environment_id": env_id, "interval": "2m"},
        {"environment_id": env_id, "interval": "2.0m"},
        {"environment_id": env_id, "interval": ["1m"]},
        {"environment_id": "other", "interval": "1h"},
        {},
    ):
        with pytest.raises(InvalidInput):
            mapping.schedule_spec_from_runscope(bad, "t-1", spec)


@pytest.mark.parametrize(
    "given, stored, shown",
    [
        ("1m", "1m", "1.0m"),
        ("5m", "5m", "5.0m"),
        ("15m", "15m", "15.0m"),
        ("30m", "30m", "30.0m"),
        ("1h", "1h", "1.0h"),
        ("6h", "6h", "6.0h"),
        ("1d", "1d", "1.0d"),
        ("1.0h", "1h", "1.0h"),
        ("6.0h", "6h", "6.0h"),
        ("1.0d", "1d", "1.0d"),
        ("30.0m", "30m", "30.0m"),
    ],
)
def test_schedule_intervals_are_read_back_as_the_live_api_writes_them_and_taken_in_either_form(given, stored, shown):
    spec = mapping.test_spec_from_runscope({"name": "t"})
    env_id = spec["environments"][0]["id"]
    schedule_spec = mapping.schedule_spec_from_runscope({"environment_id": env_id, "interval": given}, "t-1", spec)
    assert schedule_spec["interval"] == stored
    assert mapping.schedule_to_runscope({"spec": schedule_spec, "metadata": {"uid": "s1"}})["interval"] == shown


def test_a_cron_interval_written_with_kubectl_reads_back_as_written():
    schedule = {"spec": {"interval": "*/10 * * * *", "environment": "e1"}, "metadata": {"uid": "s1"}}
    assert mapping.schedule_to_runscope(schedule)["interval"] == "*/10 * * * *"


def test_a_last_run_carries_its_id_under_both_names():
    run = {"runId": "shop-1", "result": "Passed", "startTime": "2026-01-01T00:00:00Z"}
    last = mapping.last_run_to_runscope({"lastRun": run}, {}, "team-a", "t-1", "http://gw")
    assert last["id"] == last["test_run_id"] == "shop-1"


def test_trigger_ids_are_keyed_and_per_monitor():
    one = trigger_id_for(b"key", "uid-1")
    assert one == trigger_id_for(b"key", "uid-1") and one != trigger_id_for(b"key", "uid-2")
    assert one != trigger_id_for(b"other", "uid-1") and len(one) == 36
    assert same_id(one, trigger_id_for(b"key", "uid-1")) and not same_id(one, "%\u008e")


def test_a_test_environment_inherits_its_shared_parent_when_the_run_is_planned():
    parent = {
        "name": "Shared",
        "id": "p1",
        "initialVariables": {"base": "http://shared", "token": "t"},
        "regions": ["us1"],
        "headers": {"X-A": ["1"]},
    }
    child = {
        "name": "Mine",
        "id": "c1",
        "parentEnvironmentId": "p1",
        "initialVariables": {"base": "http://mine"},
        "regions": [],
    }
    merged = inherit_environment(child, parent)
    assert merged["initialVariables"] == {"base": "http://mine", "token": "t"}
    assert merged["regions"] == ["us1"] and merged["headers"] == {"X-A": ["1"]} and merged["name"] == "Mine"
    owner = {
        "metadata": {"name": "m", "uid": "u", "namespace": "n"},
        "spec": {"steps": [], "environments": [child], "defaultEnvironment": "Mine"},
    }
    shared = {"data": {"p1": json.dumps(parent)}}
    plan = plan_run(with_parent_environments(owner, shared), MonitorRunRequest(id="r1", environment="c1"))
    assert [loc.name for loc in plan.locations] == ["us1"]
    assert with_parent_environments(owner, None)["spec"]["environments"][0]["regions"] == []


def test_a_schedule_is_owned_by_its_monitor():
    monitor = {"apiVersion": "assay.dev/v1alpha1", "metadata": {"name": "ping-1a2b3c", "uid": "uid-1"}}
    spec = {"target": {"kind": "Monitor", "name": "ping-1a2b3c"}, "interval": "1m", "environment": "e1", "note": ""}
    manifest = mapping.schedule_manifest("ping-1a2b3c-9f8e7d", monitor, spec)
    assert manifest["kind"] == "Schedule" and manifest["spec"] == spec
    assert manifest["metadata"]["ownerReferences"] == [
        {"apiVersion": "assay.dev/v1alpha1", "kind": "Monitor", "name": "ping-1a2b3c", "uid": "uid-1"}
    ]
    assert mapping.schedule_to_runscope({**manifest, "metadata": {**manifest["metadata"], "uid": "s1"}}) == {
        "environment_id": "e1",
        "interval": "1.0m",
        "note": "",
        "id": "s1",
    }


def test_steps_and_environments_written_without_ids_get_them():
    spec = {
        "steps": [
            {
                "stepType": "condition",
                "leftValue": "1",
                "comparison": "equal",
                "rightValue": "1",
                "steps": [{"stepType": "pause", "duration": 1}],
            },
            {"stepType": "pause", "duration": 2, "id": "keep"},
        ],
        "environments": [{"name": "local"}],
    }
    out = mapping.with_ids(spec)
    assert out["steps"][0]["id"] and out["steps"][0]["steps"][0]["id"] and out["steps"][1]["id"] == "keep"
    assert out["environments"][0]["id"] and "id" not in spec["environments"][0]
    mapping.validated_spec(out)
