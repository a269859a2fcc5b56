"""Times as the API server writes them: RFC 3339 in UTC with a `Z`, to the second.

One reader and one writer for every part (operator, gateway, runner), so a time one part
writes into a status or a document reads back the same everywhere. Readers are lenient: a
missing or unreadable time is None, never an exception, since a status may come from an
older version or from a user's `kubectl edit`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

UTC = dt.timezone.utc


def parse_time(value: Any) -> dt.datetime | None:
    """An aware datetime from RFC 3339 text (`Z` or an offset), a datetime or epoch seconds.
    Times without a zone are UTC."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, UTC)
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def epoch(value: Any) -> float | None:
    """Epoch seconds of anything `parse_time` reads."""
    moment = parse_time(value)
    return None if moment is None else moment.timestamp()


def iso(value: Any) -> str | None:
    """Anything `parse_time` reads, as the API server writes times: `2026-12-06T12:00:00Z`."""
    moment = parse_time(value)
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_between(start: Any, end: Any) -> float | None:
    """Seconds from `start` to `end` (never negative); None if either is missing."""
    first, last = parse_time(start), parse_time(end)
    if first is None or last is None:
        return None
    return max(0.0, (last - first).total_seconds())
