"""Runs sent to the integrations a Monitor environment declares (crds.monitor.Integration, as
Runscope's environment JSON lists them in `integrations`), each with the body its service takes:

* slack: an incoming-webhook message: `text` (the run's headline, also what the notification
  shows) and one attachment coloured by the verdict, with the run's figures as fields;
* microsoft_teams: an incoming-webhook (Office 365 connector) MessageCard: `summary`,
  `themeColor`, `title` and the figures as `sections[].facts`;
* pagerduty: an Events API v2 event: a failed run `trigger`s, a passed one `resolve`s, under a
  `dedup_key` of the bucket, test and environment, so the pass after a failure closes its
  alert (a resolve without an open alert is ignored by PagerDuty);
* webhook: the body the environment's `webhooks` get (notify.result_payload).

Every finished run is sent. Delivery is webhooks.post_result's: one JSON POST obeying the
egress policy, with its timeout and retries. `url` and `routingKey` are secret fields (inline
or `...From` a Secret of the Monitor's namespace); an integration whose value cannot be read
is skipped and logged, the others are sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from assay.crds.common import SecretSource
from assay.crds.monitor import NOTIFYING_INTEGRATIONS, Environment, Integration

from .mail import headline

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PASS_COLOUR, FAIL_COLOUR = "2EB886", "D00000"
MAX_PAGERDUTY_SUMMARY = 1024

SecretReader = Callable[[str, str], Optional[str]]
"""(Secret name, key) -> the value, or None when it cannot be read."""


@dataclass(frozen=True)
class Delivery:
    url: str
    body: dict


class Unusable(LookupError):
    """An integration that cannot be sent to; the message says why, without secret values."""


def notifying(env: Environment | None) -> list[Integration]:
    """The environment's integrations the operator sends runs to."""
    return [i for i in env.integrations if i.integration_type in NOTIFYING_INTEGRATIONS] if env else []


def _value(inline: Optional[str], source: Optional[SecretSource], field: str, read_secret: SecretReader) -> str:
    if inline is not None:
        return inline
    if source is None:
        raise Unusable(f"it has no {field}")
    ref = source.secret_key_ref
    value = read_secret(ref.name, ref.key)
    if value is None:
        raise Unusable(f"{field}From: key {ref.key!r} of Secret {ref.name!r} is not available")
    return value


def _colour(run: dict) -> str:
    return PASS_COLOUR if run["result"] == "pass" else FAIL_COLOUR


def facts(run: dict) -> list[tuple[str, str]]:
    """The run's figures, as the chat messages list them."""
    out = [
        ("Result", run["result"]),
        ("Environment", run.get("environment_name") or "-"),
        ("Bucket", run["bucket_key"]),
        ("Run", run["test_run_id"]),
    ]
    if run.get("regions"):
        out.append(("Regions", ", ".join(run["regions"])))
    if run.get("assertions_passed") is not None:
        out.append(("Assertions", f"{run['assertions_passed']} passed, {run.get('assertions_failed') or 0} failed"))
    if run.get("response_time_ms") is not None:
        out.append(("Response time", f"{run['response_time_ms']} ms (mean)"))
    return out


def slack_body(run: dict) -> dict:
    text = headline(run)
    attachment = {
        "fallback": text,
        "color": f"#{_colour(run)}",
        "title": run["test_name"],
        "fields": [{"title": name, "value": value, "short": True} for name, value in facts(run)],
    }
    if run.get("finished_at") is not None:
        attachment["ts"] = int(run["finished_at"])
    return {"text": text, "attachments": [attachment]}


def teams_body(run: dict) -> dict:
    text = headline(run)
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": text,
        "themeColor": _colour(run),
        "title": text,
        "sections": [{"activityTitle": run["test_name"], "facts": [{"name": n, "value": v} for n, v in facts(run)]}],
    }


def pagerduty_body(run: dict, routing_key: str) -> dict:
    environment = run.get("environment_uuid") or run.get("environment_name") or "default"
    dedup_key = f"assay/{run['bucket_key']}/{run['test_id']}/{environment}"
    if run["result"] == "pass":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    details = {
        "summary": headline(run)[:MAX_PAGERDUTY_SUMMARY],
        "source": f"{run['bucket_key']}/{run['assay']['monitor']}",
        "severity": "error",
        "component": run["test_name"],
        "group": run["bucket_key"],
        "class": "api-test",
        "custom_details": dict(facts(run)),
    }
    if run.get("finished_at") is not None:
        details["timestamp"] = dt.datetime.fromtimestamp(run["finished_at"], dt.timezone.utc).isoformat()
    return {"routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup_key, "payload": details}


def delivery(integration: Integration, run: dict, read_secret: SecretReader) -> Delivery:
    """Where and what to POST for one integration; Unusable when a value cannot be read."""
    kind = integration.integration_type
    if kind == "pagerduty":
        key = _value(integration.routing_key, integration.routing_key_from, "routingKey", read_secret)
        url = PAGERDUTY_EVENTS_URL
        if integration.url is not None or integration.url_from is not None:
            url = _value(integration.url, integration.url_from, "url", read_secret)
        return Delivery(url, pagerduty_body(run, key))
    url = _value(integration.url, integration.url_from, "url", read_secret)
    if kind == "slack":
        return Delivery(url, slack_body(run))
    if kind == "microsoft_teams":
        return Delivery(url, teams_body(run))
    return Delivery(url, run)
