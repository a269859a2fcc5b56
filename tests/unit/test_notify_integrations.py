"""What a Monitor environment's integrations get after a run (Slack, Microsoft Teams, PagerDuty
Events v2, a generic webhook), posted to a real loopback receiver through the egress policy,
and how secret values and unusable integrations are handled."""

from __future__ import annotations

import logging

import pytest

from assay.crds.monitor import Environment, Integration
from assay.operator import integrations
from assay.operator.notify import has_notifications, has_something_to_send, result_payload
from assay.operator.webhooks import post_result
from assay.runner.egress import EgressPolicy
from tests.support.receivers import WebhookReceiver

OWNER = {"metadata": {"name": "health", "namespace": "team-a", "uid": "u-1"}, "spec": {"displayName": "Health"}}
LOOPBACK = EgressPolicy.parse(allow="127.0.0.1")
LOG = logging.getLogger("t")


def entry(result: str) -> dict:
    return {
        "runId": f"health-{result.lower()}",
        "phase": "Succeeded",
        "result": result,
        "environment": "world",
        "regions": ["us1"],
        "startTime": "2026-11-23T10:00:00Z",
        "completionTime": "2026-11-23T10:00:05Z",
        "responseTimeMs": 42,
    }


ENV = Environment(name="world", id="env-world")
FAILED = result_payload(
    OWNER, entry("Failed"), ENV, {"requests_executed": 1, "assertions_passed": 0, "assertions_failed": 1}
)
PASSED = result_payload(
    OWNER, entry("Passed"), ENV, {"requests_executed": 1, "assertions_passed": 1, "assertions_failed": 0}
)


def no_secrets(name: str, key: str):
    raise AssertionError(f"read Secret {name}/{key} for an inline value")


def sent(integration: Integration, run: dict, read_secret=no_secrets, policy=LOOPBACK) -> tuple[bool, list]:
    """Deliver one run to a fresh loopback receiver; (delivered, [(path, body)])."""
    with WebhookReceiver() as receiver:
        if integration.url:
            integration = integration.model_copy(update={"url": integration.url.replace("RECEIVER", receiver.url)})
        going = integrations.delivery(integration, run, read_secret)
        delivered = post_result(going.url, going.body, timeout=2, attempts=1, logger=LOG, policy=policy)
        return delivered, [(path, body) for path, body, _ in receiver.posts]


def test_slack_gets_an_incoming_webhook_message_coloured_by_the_verdict():
    hook = Integration(id="s", integration_type="slack", url="RECEIVER/services/T0/B0/token")
    delivered, [(path, body)] = sent(hook, FAILED)
    assert delivered and path == "/services/T0/B0/token"
    assert body["text"] == "Health failed in world"
    [attachment] = body["attachments"]
    assert attachment["color"] == "#D00000" and attachment["fallback"] == body["text"]
    assert attachment["title"] == "Health" and attachment["ts"] == int(FAILED["finished_at"])
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields["Result"] == "fail" and fields["Run"] == "health-failed" and fields["Bucket"] == "team-a"
    assert fields["Assertions"] == "0 passed, 1 failed" and fields["Response time"] == "42 ms (mean)"
    assert all(f["short"] is True for f in attachment["fields"])
    assert sent(hook, PASSED)[1][0][1]["attachments"][0]["color"] == "#2EB886"


def test_microsoft_teams_gets_a_message_card():
    hook = Integration(id="t", integration_type="microsoft_teams", url="RECEIVER/webhookb2/abc/IncomingWebhook/def")
    delivered, [(path, body)] = sent(hook, PASSED)
    assert delivered and path == "/webhookb2/abc/IncomingWebhook/def"
    assert body["@type"] == "MessageCard" and body["@context"] == "https://schema.org/extensions"
    assert body["summary"] == body["title"] == "Health passed in world" and body["themeColor"] == "2EB886"
    [section] = body["sections"]
    assert section["activityTitle"] == "Health"
    assert {"name": "Environment", "value": "world"} in section["facts"]


def test_pagerduty_triggers_on_a_failure_and_resolves_on_the_pass_with_the_same_dedup_key():
    key = {"routingKeyFrom": {"secretKeyRef": {"name": "pd", "key": "routing-key"}}}
    hook = Integration.model_validate({"id": "p", "integrationType": "pagerduty", "url": "RECEIVER/v2/enqueue", **key})
    secrets = {("pd", "routing-key"): "R0UTING"}
    delivered, [(path, trigger)] = sent(hook, FAILED, lambda name, k: secrets.get((name, k)))
    assert delivered and path == "/v2/enqueue"
    assert trigger["routing_key"] == "R0UTING" and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "assay/team-a/u-1/env-world"
    details = trigger["payload"]
    assert details["summary"] == "Health failed in world" and details["severity"] == "error"
    assert details["source"] == "team-a/health" and details["component"] == "Health"
    assert details["timestamp"] == "2026-11-23T10:00:05+00:00"
    assert details["custom_details"]["Run"] == "health-failed"
    _, [(_, resolve)] = sent(hook, PASSED, lambda name, k: secrets.get((name, k)))
    assert resolve == {"routing_key": "R0UTING", "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    # Without a url, PagerDuty's own Events API endpoint.
    default = integrations.delivery(
        Integration(id="p", integration_type="pagerduty", routing_key="k"), FAILED, no_secrets
    )
    assert default.url == "https://events.pagerduty.com/v2/enqueue"


def test_a_generic_webhook_gets_the_environment_webhooks_body():
    hook = Integration(id="w", integration_type="webhook", url="RECEIVER/hook")
    delivered, [(path, body)] = sent(hook, FAILED)
    assert delivered and path == "/hook" and body == FAILED


def test_the_egress_policy_holds_for_integrations():
    hook = Integration(id="s", integration_type="slack", url="RECEIVER/services/x")
    delivered, posts = sent(hook, FAILED, policy=EgressPolicy())
    assert not delivered and posts == []


def test_an_integration_without_its_value_is_unusable_and_says_which_without_the_value():
    with pytest.raises(integrations.Unusable, match="no url"):
        integrations.delivery(Integration(id="s", integration_type="slack"), FAILED, no_secrets)
    with pytest.raises(integrations.Unusable, match="no routingKey"):
        integrations.delivery(Integration(id="p", integration_type="pagerduty"), FAILED, no_secrets)
    missing = Integration.model_validate(
        {"id": "s", "integrationType": "slack", "urlFrom": {"secretKeyRef": {"name": "gone", "key": "url"}}}
    )
    with pytest.raises(integrations.Unusable, match="key 'url' of Secret 'gone'"):
        integrations.delivery(missing, FAILED, lambda name, key: None)


def test_integrations_make_a_run_something_to_send_but_only_the_types_that_notify():
    def owner(kind: str) -> dict:
        env = {"name": "world", "integrations": [{"id": "i", "integrationType": kind, "url": "http://x/"}]}
        return {**OWNER, "spec": {"environments": [env]}, "status": {"history": [entry("Passed")]}}

    for kind in ("slack", "microsoft_teams", "pagerduty", "webhook"):
        assert has_something_to_send(owner(kind), "health-passed", mail_enabled=False), kind
    assert not has_something_to_send(owner("ghost_inspector"), "health-passed", mail_enabled=False)
    assert has_notifications(owner("slack")["spec"])
    with pytest.raises(ValueError):  # one of url and urlFrom
        Integration.model_validate(
            {"id": "s", "url": "http://x/", "urlFrom": {"secretKeyRef": {"name": "a", "key": "b"}}}
        )
