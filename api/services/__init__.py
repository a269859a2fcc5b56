"""Business rules behind the REST API families, shared by their routers.

`loadtests` numbers, describes and copies LoadTests (XTC, Loadmill load tests); `runs` asks
for TestSuite and Monitor runs (Loadmill, VNG, the Runscope trigger); `suites` reads TestSuite
runs back (Loadmill); `loadmill_conf` maps a Loadmill load-test
configuration onto a LoadTestSpec. Routers translate wire formats; nothing here knows one.

Services raise the errors below: they are `ApiError`s, so each family's error renderer shapes
them without a translation layer in every router. Every read-change-write of a Kubernetes
object goes through `update`, the shared optimistic loop.
"""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

from kubernetes.client.rest import ApiException

from assay.crds.contracts import optimistic

from ..errors import ApiError

Obj = TypeVar("Obj")
Change = TypeVar("Change")
Written = TypeVar("Written")


class NotFound(ApiError):
    def __init__(self, message: str):
        super().__init__(404, message, "not_found")


class Conflict(ApiError):
    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(409, message, "conflict", headers={"Retry-After": str(retry_after)} if retry_after else None)


class InvalidInput(ApiError):
    def __init__(self, message: str):
        super().__init__(400, message, "invalid_request")


class TooLarge(ApiError):
    def __init__(self, message: str):
        super().__init__(413, message, "payload_too_large")


class UnsupportedMediaType(ApiError):
    def __init__(self, message: str):
        super().__init__(415, message, "unsupported_media_type")


def api_conflict(exc: BaseException) -> bool:
    """A 409 from the API server; not a family's own Conflict, which carries a 409 too."""
    return isinstance(exc, ApiException) and optimistic.is_conflict(exc)


def update(
    read: Callable[[], Obj],
    compute: Callable[[Obj], Optional[Change]],
    write: Callable[[Obj, Change], Written],
    *,
    exhausted: str,
    retry_after: int | None = None,
) -> Optional[Written]:
    """assay.crds.contracts.optimistic.update, with a Conflict (`exhausted`) for the client
    when the object kept changing through every attempt."""
    try:
        return optimistic.update(read, compute, write, conflict=api_conflict)
    except ApiException as exc:
        if api_conflict(exc):
            raise Conflict(exhausted, retry_after=retry_after) from None
        raise
