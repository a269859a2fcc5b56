"""What the page modules (monitor, suite, schedules, actions) get from the dashboard's router:
the session dependency, the tenancy check and the page renderer, so that each registers its
own routes without reaching into the router."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable

from fastapi import Path, Response

from .session import DashboardSessions, Session

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"

Namespace = Annotated[str, Path(min_length=1, max_length=63, pattern=DNS_LABEL)]
Name = Annotated[str, Path(min_length=1, max_length=253, pattern=DNS_NAME)]
Number = Annotated[int, Path(ge=1, le=2**31 - 1)]
RunId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")]


@dataclass(frozen=True)
class PageContext:
    services: Any
    sessions: DashboardSessions
    session: Callable[..., Session]
    """The FastAPI dependency: the request's session, 401 (sign in) without one."""
    reachable_namespace: Callable[[Session, str], str]
    """The namespace when the session reaches it; 404 exactly like a missing one otherwise."""
    namespaces: Callable[[Session], list[str]]
    html: Callable[..., Response]
    """`html(body_of)`: `body_of(nonce)` as a page under a fresh CSP nonce."""
