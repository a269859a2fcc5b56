"""What runs when: every Schedule of the namespaces a session reaches, with its next run time,
its last scheduled run and its target's last result, suspended ones marked.

    GET /dashboard/schedules[?namespace=]

The next run time is the operator's (`status.nextRunTime`, assay.operator.tickplan, which
anchors intervals and reads cron expressions); a suspended Schedule has none.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from html import escape
from typing import Annotated, Optional
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query

from ..services.dashboard import moment, run_state
from . import actions
from .context import PageContext
from .page import badge, monitor_url, subpage, suite_run_url, when
from .session import Session

TARGET_PLURAL = {"Monitor": "monitors", "TestSuite": "testsuites"}


class ScheduleList:
    def __init__(self, kube):
        self.kube = kube

    def _listed(self, plural: str, namespaces: list[str]) -> dict[str, list[dict]]:
        wanted, grouped = set(namespaces), defaultdict(list)
        items = self.kube.list(plural, namespaces[0]) if len(namespaces) == 1 else self.kube.list(plural)
        for item in items:
            if (item.get("metadata") or {}).get("namespace") in wanted:
                grouped[item["metadata"]["namespace"]].append(item)
        return grouped

    def of(self, namespaces: list[str]) -> list[dict]:
        """The Schedules of `namespaces`, by namespace and name, each with its target's last run."""
        if not namespaces:
            return []
        targets: dict[tuple[str, str, str], dict] = {}
        for kind, plural in TARGET_PLURAL.items():
            for namespace, items in self._listed(plural, namespaces).items():
                for item in items:
                    targets[(namespace, kind, item["metadata"]["name"])] = item
        out = []
        for namespace, items in sorted(self._listed("schedules", namespaces).items()):
            for schedule in sorted(items, key=lambda s: s["metadata"]["name"]):
                spec, status = schedule.get("spec") or {}, schedule.get("status") or {}
                target = spec.get("target") or {}
                found = targets.get((namespace, target.get("kind"), target.get("name")))
                last = ((found or {}).get("status") or {}).get("lastRun") or {}
                out.append(
                    {
                        "namespace": namespace,
                        "name": schedule["metadata"]["name"],
                        "target": {"kind": target.get("kind"), "name": target.get("name")},
                        "targetExists": found is not None,
                        "interval": spec.get("interval"),
                        "environment": spec.get("environment"),
                        "note": spec.get("note") or "",
                        "suspended": bool(spec.get("suspend")),
                        "nextRunAt": None if spec.get("suspend") else moment(status.get("nextRunTime")),
                        "lastScheduledAt": moment(status.get("lastScheduleTime")),
                        "lastRun": {
                            "runId": last["runId"],
                            "result": run_state(last),
                            "at": moment(last.get("startTime")),
                        }
                        if last.get("runId")
                        else None,
                    }
                )
        return out


def target_link(s: dict) -> str:
    kind, name = s["target"]["kind"], s["target"]["name"] or ""
    if kind == "Monitor" and s["targetExists"]:
        return f'Monitor <a href="{escape(monitor_url(s["namespace"], name))}">{escape(name)}</a>'
    return f"{escape(kind or '')} {escape(name)}"


def last_run(s: dict, now: dt.datetime) -> str:
    run = s["lastRun"]
    if run is None:
        return '<span class="none">none yet</span>'
    kind, ns = s["target"]["kind"], s["namespace"]
    url = (
        f"{monitor_url(ns, s['target']['name'])}/runs/{run['runId']}"
        if kind == "Monitor"
        else suite_run_url(ns, run["runId"])
    )
    return f'<a href="{escape(url)}">{badge(run["result"])}</a> {when(run["at"], now)}'


def schedule_row(s: dict, current: Session, now: dt.datetime) -> str:
    suspended = ' class="suspended"' if s["suspended"] else ""
    note = f'<div class="note">{escape(s["note"])}</div>' if s["note"] else ""
    return (
        f'<tr id="schedule-{escape(quote(s["name"]))}" data-name="{escape(s["namespace"])}/{escape(s["name"])}"'
        f"{suspended}><td>{escape(s['namespace'])}</td><td><strong>{escape(s['name'])}</strong>{note}</td>"
        f'<td>{target_link(s)}</td><td class="mono">{escape(s["interval"] or "")}</td>'
        f"<td>{escape(s['environment'] or '')}</td>"
        f"<td>{badge('suspended') if s['suspended'] else when_ahead(s['nextRunAt'])}</td>"
        f"<td>{when(s['lastScheduledAt'], now)}</td><td>{last_run(s, now)}</td>"
        f"<td>{actions.schedule_button(current, s['namespace'], s['name'], s['suspended'])}</td></tr>"
    )


def schedules_table(schedules: list[dict], current: Session, now: dt.datetime) -> str:
    if not schedules:
        return '<p class="empty">No schedules.</p>'
    rows = "".join(schedule_row(s, current, now) for s in schedules)
    return (
        '<div class="scroll"><table class="schedules"><thead><tr><th scope="col">Namespace</th>'
        '<th scope="col">Schedule</th><th scope="col">Runs</th><th scope="col">Interval</th>'
        '<th scope="col">Environment</th><th scope="col">Next run</th><th scope="col">Last scheduled</th>'
        '<th scope="col">Last result</th><th scope="col"><span class="sr">Actions</span></th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def when_ahead(value: Optional[str]) -> str:
    """A future time, exact (UTC): a relative one would go stale on a page that does not refresh."""
    if not value:
        return '<span class="none">–</span>'
    return f'<time datetime="{escape(value)}">{escape(value.replace("T", " ").replace("Z", " UTC"))}</time>'


def schedules_page(schedules: list[dict], namespace: Optional[str], current: Session, nonce: str) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    shown = escape(namespace) if namespace else "every namespace you reach"
    body = (
        f'<div class="title"><h2>Schedules</h2></div><p class="facts">{shown}</p>'
        f"{schedules_table(schedules, current, now)}"
    )
    return subpage(
        "Schedules",
        current.principal.client_id,
        [("Overview", "/dashboard"), ("Schedules", "/dashboard/schedules")],
        body,
        nonce,
    )


def register(router: APIRouter, ctx: PageContext) -> None:
    listing = ScheduleList(ctx.services.kube)

    @router.get("/dashboard/schedules")
    def page(namespace: Annotated[Optional[str], Query(max_length=63)] = None, current: Session = Depends(ctx.session)):
        shown = [ctx.reachable_namespace(current, namespace)] if namespace else ctx.namespaces(current)
        listed = listing.of(shown)
        return ctx.html(lambda nonce: schedules_page(listed, namespace, current, nonce))
