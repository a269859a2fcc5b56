"""The index of Monitor results: what the result list, the metrics and the request counts read
instead of the documents.

A Monitor run stores its result as `monitor-result.json`, or as one `monitor-result-<i>.json`
per location when it ran in several. Each such document that is a JSON object has one row in
`monitor_results`, written in the same transaction as the document's own row, holding the
document without its steps (what a list item shows) and the few figures metrics and counts
need. A list is then one indexed query with a LIMIT, whatever the history behind it.

A row is `listed` while its run is recorded as a Monitor run of the same project and test and
the document's name fits the run's locations (`monitor-result.json` for one, `-<i>.json` with
i below the count for several): exactly the documents the run's results are made of.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from .backends import upsert

RESULT_NAME = re.compile(r"^monitor-result(?:-(\d{1,5}))?\.json$")
STEPS_KEY = "requests"


def json_object(data: bytes | None) -> dict | None:
    """A stored document as a JSON object; None when it is missing or not one."""
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def response_time_ms(doc: dict) -> float | None:
    """The mean response time of the result's requests (the sum of each request's timings);
    None without timed requests."""
    steps = doc.get(STEPS_KEY)
    times = []
    for step in steps if isinstance(steps, list) else []:
        timings = step.get("timings") if isinstance(step, dict) else None
        if isinstance(timings, dict):
            try:
                times.append(sum(float(v or 0) for v in timings.values()))
            except (TypeError, ValueError):
                continue
    return sum(times) / len(times) if times else None


class ResultFigures(NamedTuple):
    """What metrics read of a result (the columns of the same names)."""

    started_at: float | None
    result: str | None
    environment_id: str | None
    region: str | None
    response_time_ms: float | None


@dataclass(frozen=True)
class MonitorResultRecord:
    run_id: str
    name: str
    project: str
    owner_uid: str
    """The Monitor's uid: the Runscope test id."""
    location: int | None
    """i of `monitor-result-<i>.json`; None for a run's only `monitor-result.json`."""
    started_at: float | None
    """The document's own start, when it has a number there."""
    result: str | None
    environment_id: str | None
    region: str | None
    requests_executed: int
    response_time_ms: float | None
    header_json: str
    """The document without its steps, as JSON; parsed only when shown (`header`)."""

    @property
    def header(self) -> dict:
        return json.loads(self.header_json)

    @property
    def figures(self) -> ResultFigures:
        return ResultFigures(*(getattr(self, name) for name in ResultFigures._fields))

    @classmethod
    def of(cls, run_id: str, name: str, project: str, owner_uid: str, data: bytes) -> MonitorResultRecord | None:
        """The row of the document `name` with bytes `data`; None when it is no Monitor result."""
        match = RESULT_NAME.match(name)
        doc = json_object(data) if match else None
        if doc is None:
            return None
        location = int(match.group(1)) if match.group(1) is not None else None
        return cls.from_document(doc, run_id=run_id, name=name, project=project, owner_uid=owner_uid, location=location)

    @classmethod
    def from_document(
        cls,
        doc: dict,
        *,
        run_id: str = "",
        name: str = "monitor-result.json",
        project: str = "",
        owner_uid: str = "",
        location: int | None = None,
    ) -> MonitorResultRecord:
        return cls(
            run_id=run_id,
            name=name,
            project=project,
            owner_uid=owner_uid,
            location=location,
            started_at=_number(doc.get("started_at")),
            result=_text(doc.get("result")),
            environment_id=_text(doc.get("environment_id")),
            region=_text(doc.get("region")),
            requests_executed=_count(doc.get("requests_executed")),
            response_time_ms=response_time_ms(doc),
            header_json=json.dumps({key: value for key, value in doc.items() if key != STEPS_KEY}),
        )

    def row(self) -> tuple:
        return (
            self.run_id,
            self.name,
            self.project,
            self.owner_uid,
            self.location,
            self.started_at,
            self.result,
            self.environment_id,
            self.region,
            self.requests_executed,
            self.response_time_ms,
            self.header_json,
        )


INSERT = upsert(
    "monitor_results",
    (
        "run_id",
        "name",
        "project",
        "owner_uid",
        "location",
        "started_at",
        "result",
        "environment_id",
        "region",
        "requests_executed",
        "response_time_ms",
        "header",
        "listed",
        "listed_at",
        "run_created_at",
    ),
    ("run_id", "name"),
    values=["?"] * 12 + ["0", "0", "0"],
)
"""A new row is listed by RELIST, once its run is recorded."""

RELIST = """
UPDATE monitor_results SET
    listed = CASE WHEN r.shards <= 1 THEN CASE WHEN monitor_results.location IS NULL THEN 1 ELSE 0 END
                  WHEN monitor_results.location IS NOT NULL AND monitor_results.location < r.shards THEN 1
                  ELSE 0 END,
    listed_at = COALESCE(monitor_results.started_at, r.started_at, r.created_at),
    run_created_at = r.created_at
FROM runs AS r
WHERE r.run_id = monitor_results.run_id AND r.kind = 'Monitor' AND r.project = {plus}monitor_results.project
  AND r.owner_uid = {plus}monitor_results.owner_uid
"""
"""Brings rows in line with their run: whether they are listed, when a result without a start
of its own counts as started (its run's start, else the run's creation), and the run's
creation, which orders results that started at the same time. Callers add a condition on
`monitor_results.run_id`; `{plus}` is the database's planner hint (backends.py): SQLite's unary
`+` keeps it from reaching the rows through a test's whole history (monitor_results_by_test)
instead of by run id."""


def record_from_row(row) -> MonitorResultRecord:
    return MonitorResultRecord(
        run_id=row["run_id"],
        name=row["name"],
        project=row["project"],
        owner_uid=row["owner_uid"],
        location=row["location"],
        started_at=row["started_at"],
        result=row["result"],
        environment_id=row["environment_id"],
        region=row["region"],
        requests_executed=row["requests_executed"],
        response_time_ms=row["response_time_ms"],
        header_json=row["header"],
    )
