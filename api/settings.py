"""The gateway's configuration: one settings object, read from ASSAY_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSAY_")

    store_dir: Path = Path("/var/lib/assay")
    """The persistent volume: result files, archives and the SQLite index live here."""
    public_url: str = "http://127.0.0.1:8000"
    """How clients reach the gateway; used in links the APIs return (trigger URLs, result URLs)."""
    token_signing_key: SecretStr | None = None
    """HMAC key for access tokens (JWT, HS256). Replicas must share it; without one a random
    key is generated at start-up, which is fine for a single replica and tests."""
    upload_key: SecretStr | None = None
    """Shared with the operator: per-run upload tokens are HMAC(upload_key, run id)."""
    token_ttl_seconds: int = 3600
    authorization_code_ttl_seconds: int = 60
    upload_max_bytes: int = 256 * 1024 * 1024
    """The largest single result document a runner may upload."""
    upload_timeout_seconds: float = 600
    """How long a result document's body may take to arrive."""
    body_max_bytes: int = 1024 * 1024
    """The largest request body of any other route, unless the route sets its own (bodies.py)."""
    body_timeout_seconds: float = 30
    """How long a request body may take to arrive, from the route's first read (bodies.py)."""
    retention_days: int = 90
    """Run records, results and archives older than this are deleted; 0 keeps everything."""
    org_label: str = "assay.dev/org"
    """The namespace label that puts a namespace (a project) into an organization."""
    log_format: Literal["json", "text"] = "json"
    kubeconfig: Path | None = None
    """Out-of-cluster only; in a pod the service account is used."""


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
