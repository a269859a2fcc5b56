"""Business rules behind the REST API families, shared by their routers.

`loadtests` numbers, describes and copies LoadTests (XTC, Loadmill load tests); `suites` asks
for TestSuite runs and reads them back (Loadmill); `loadmill_conf` maps a Loadmill load-test
configuration onto a LoadTestSpec. Routers translate wire formats; nothing here knows one.

Services raise the errors below: they are `ApiError`s, so each family's error renderer shapes
them without a translation layer in every router.
"""

from __future__ import annotations

from ..errors import ApiError


class NotFound(ApiError):
    def __init__(self, message: str):
        super().__init__(404, message, "not_found")


class Conflict(ApiError):
    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(409, message, "conflict",
                         headers={"Retry-After": str(retry_after)} if retry_after else None)


class InvalidInput(ApiError):
    def __init__(self, message: str):
        super().__init__(400, message, "invalid_request")


class TooLarge(ApiError):
    def __init__(self, message: str):
        super().__init__(413, message, "payload_too_large")


class UnsupportedMediaType(ApiError):
    def __init__(self, message: str):
        super().__init__(415, message, "unsupported_media_type")
