"""What happens when a TestSuite's or Monitor's status changes: the one place that learns of
finished runs, whichever path recorded them (a requested run's Jobs, a scheduled batch).

`status_written(kind, owner, before, after, logger)` is called after every successful status
write with the owner as read before the write and the status before and after it. It must
be cheap and must never raise into the caller: a run's outcome is decided before it is called.
"""

from __future__ import annotations

import logging


def status_written(kind: str, owner: dict, before: dict, after: dict, logger: logging.Logger) -> None:
    """Called after a status write; reacts to runs that finished in it."""
