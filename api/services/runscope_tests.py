"""Runscope tests as Monitors: a test id is the Monitor's metadata.uid."""

from __future__ import annotations

from typing import Optional

PLURAL = "monitors"


def monitor_by_test_id(kube, namespace: str, test_id: str) -> Optional[dict]:
    """The Monitor in `namespace` whose uid is `test_id`; None when there is none.

    Custom resources cannot be selected by uid on the server, so this lists the namespace's
    Monitors; a bucket holds tens of tests, not thousands."""
    for monitor in kube.list(PLURAL, namespace):
        if monitor.get("metadata", {}).get("uid") == test_id:
            return monitor
    return None
