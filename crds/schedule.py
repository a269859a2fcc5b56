"""Schedule: when to run a Monitor or TestSuite; the operator turns it into a CronJob."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Literal, Optional

from pydantic import StringConstraints

from .common import AssayModel, Conditions, Resource, Rule, StatusModel
from .schema import CrdKind, PrinterColumn

# The Runscope intervals and the cron schedule each one runs on.
INTERVALS: dict[str, str] = {
    "1m": "* * * * *",
    "5m": "*/5 * * * *",
    "15m": "*/15 * * * *",
    "30m": "*/30 * * * *",
    "1h": "0 * * * *",
    "6h": "0 */6 * * *",
    "1d": "0 0 * * *",
}


# Intervals of n minutes (n divides 60) and of n hours (n divides 24), for anchoring.
_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "30m": 30}
_HOURS = {"1h": 1, "6h": 6, "1d": 24}


def anchored_cron(interval: str, anchor: datetime) -> str:
    """The cron schedule (UTC) of `interval` counted from `anchor`, so that the first run
    after a change comes one full interval later; a cron expression is returned as given.

    `5m` anchored at 10:07 runs at minutes 2, 7, 12, ... (`2-59/5 * * * *`); `6h` at 10:07
    runs at 04:07, 10:07, 16:07 and 22:07."""
    anchor = anchor.astimezone(timezone.utc) if anchor.tzinfo else anchor
    minute, hour = anchor.minute, anchor.hour
    if interval == "1m":
        return "* * * * *"
    if interval in _MINUTES:
        step = _MINUTES[interval]
        return f"{minute % step}-59/{step} * * * *"
    if interval == "1h":
        return f"{minute} * * * *"
    if interval == "6h":
        return f"{minute} {hour % 6}-23/6 * * *"
    if interval == "1d":
        return f"{minute} {hour} * * *"
    return interval


def interval_seconds(interval: str) -> int | None:
    """The length of a Runscope interval; None for a cron expression."""
    if interval in _MINUTES:
        return _MINUTES[interval] * 60
    if interval in _HOURS:
        return _HOURS[interval] * 3600
    return None


def _cron_field(value: str) -> str:
    item = rf"(\*|({value})(-({value}))?)(/[0-9]{{1,2}})?"
    return rf"{item}(,{item})*"


_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
# A 5-field cron expression as the CronJob controller parses it, with each field's value range
# spelled out so that `99 * * * *` fails at apply time and not later on the CronJob. RE2 (the
# API server) and Python's re both accept this syntax.
CRON_PATTERN = (
    r"(?i)^("
    r"@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|"
    + r"\s+".join(
        [
            _cron_field(r"[0-5]?[0-9]"),
            _cron_field(r"[01]?[0-9]|2[0-3]"),
            r"(\?|" + _cron_field(r"0?[1-9]|[12][0-9]|3[01]") + ")",
            _cron_field(rf"0?[1-9]|1[0-2]|{_MONTHS}"),
            r"(\?|" + _cron_field(rf"[0-7]|{_DAYS}") + ")",
        ]
    )
    + r")$"
)
_CRON = re.compile(CRON_PATTERN)


def is_valid_interval(interval: str) -> bool:
    return interval in INTERVALS or _CRON.fullmatch(interval) is not None


def _cel_string(text: str) -> str:
    # A CEL raw string cannot hold its own quote; the pattern has none.
    assert "'" not in text
    return f"r'{text}'"


class ScheduleTarget(AssayModel):
    kind: Literal["Monitor", "TestSuite"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    """Name of the Monitor or TestSuite, in the Schedule's namespace."""


class ScheduleSpec(AssayModel):
    """What runs, how often and in which environment."""

    target: ScheduleTarget
    interval: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    """One of 1m 5m 15m 30m 1h 6h 1d, or a 5-field cron expression such as `*/10 8-18 * * MON-FRI`."""
    environment: Optional[Annotated[str, StringConstraints(max_length=128)]] = None
    """The Monitor environment to run in; the Monitor's default when unset."""
    note: str = ""
    suspend: bool = False
    """Stop scheduling runs without deleting the schedule."""

    validation_rules = (
        Rule(
            cel=f"self.interval in [{', '.join(repr(i) for i in INTERVALS)}]"
            f" || self.interval.matches({_cel_string(CRON_PATTERN)})",
            check=lambda s: is_valid_interval(s.interval),
            message="spec.interval must be one of 1m, 5m, 15m, 30m, 1h, 6h, 1d or a 5-field cron expression",
            field_path=".interval",
        ),
        Rule(
            cel="!has(self.environment) || self.target.kind == 'Monitor'",
            check=lambda s: s.environment is None or s.target.kind == "Monitor",
            message="environment applies only to a Monitor target",
            field_path=".environment",
            reason="FieldValueForbidden",
        ),
    )

    def cron_schedule(self, anchor: Optional[datetime] = None) -> str:
        """The CronJob schedule for `interval`; anchored at `anchor` when given."""
        if anchor is not None:
            return anchored_cron(self.interval, anchor)
        return INTERVALS.get(self.interval, self.interval)


class ScheduleStatus(StatusModel):
    cron_job_name: Optional[str] = None
    """The CronJob that runs the target (the first one when its environment has several
    regions); Schedules with the same timing and region share one."""
    cron_jobs: list[str] = []
    """Every CronJob the target runs from, one per region or remote agent."""
    cron_schedule: Optional[str] = None
    """The schedule the CronJob runs on (UTC)."""
    anchor_time: Optional[datetime] = None
    """When the interval started counting: the Schedule's creation or its last change."""
    last_schedule_time: Optional[datetime] = None
    next_run_time: Optional[datetime] = None
    observed_generation: Optional[int] = None
    conditions: Conditions = []


class Schedule(Resource):
    """Schedule runs a Monitor or TestSuite at a Runscope interval (1m to 1d) or on a cron
    expression, in a chosen environment. It becomes a CronJob."""

    kind: Literal["Schedule"] = "Schedule"
    spec: ScheduleSpec
    status: ScheduleStatus = ScheduleStatus()


CRD = CrdKind(
    resource=Schedule,
    spec=ScheduleSpec,
    status=ScheduleStatus,
    plural="schedules",
    singular="schedule",
    short_names=("sched",),
    printer_columns=(
        PrinterColumn("Target", "string", ".spec.target.name"),
        PrinterColumn("Kind", "string", ".spec.target.kind", priority=1),
        PrinterColumn("Interval", "string", ".spec.interval"),
        PrinterColumn("Suspend", "boolean", ".spec.suspend"),
        PrinterColumn("Last", "date", ".status.lastScheduleTime"),
    ),
)
