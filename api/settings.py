"""The gateway's configuration: one settings object, read from ASSAY_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSAY_")

    store_dir: Path = Path("/var/lib/assay")
    """The persistent volume: result files and archives live here unless objects_url names a
    bucket (then it holds local copies and scratch space only), and the SQLite index unless
    database_url names a PostgreSQL one."""
    database_url: SecretStr | None = None
    """postgresql://user@host:port/database[?schema=name&sslmode=...]: the store's index in
    PostgreSQL 14+, which several gateway replicas share (api/store/backends.py); its schema is
    migrated at start-up. The password may be in the URL or in PGPASSWORD. Unset: SQLite in
    store_dir, for one replica."""
    objects_url: str | None = None
    """s3://bucket[/prefix][?endpoint=https://host:port&region=name]: result documents and
    archives in S3-compatible object storage (api/store/objects.py), with the credentials in
    AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or boto3's other sources). Unset: files in
    store_dir."""
    public_url: str = "http://127.0.0.1:8000"
    """How clients reach the gateway; used in links the APIs return (trigger URLs, result URLs)."""
    token_signing_key: SecretStr | None = None
    """HMAC key for access tokens (JWT, HS256). Replicas must share it; without one a random
    key is generated at start-up, which is fine for a single replica and tests."""
    upload_key: SecretStr | None = None
    """Shared with the operator: upload tokens carry an HMAC under it (assay.crds.contracts.upload,
    assay.crds.contracts.tick)."""
    token_ttl_seconds: int = 3600
    authorization_code_ttl_seconds: int = 60
    upload_max_bytes: int = 256 * 1024 * 1024
    """The largest single result document a runner may upload."""
    upload_run_max_bytes: int = Field(1024**3, ge=0)
    """Bytes of documents one run may store (api/store/quota.py); 0: no limit."""
    upload_run_max_documents: int = Field(10_000, ge=0)
    """Documents one run may store: a load test stores one per shard; 0: no limit."""
    upload_namespace_max_bytes: int = Field(4 * 1024**3, ge=0)
    """Bytes of documents the runs of one namespace may store together; 0: no limit."""
    upload_namespace_max_documents: int = Field(100_000, ge=0)
    """Documents the runs of one namespace may store together; 0: no limit."""
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
    exposed_url: str | None = None
    """Where VNG exposed URLs are served, e.g. `https://exposed.assay.example.com`: a host name of
    its own, so that what a tenant's target answers can never run as the gateway's page. Unset,
    they are served under public_url, sandboxed (see api/routers/vng_exposed.py)."""
    outbound_per_tenant: int = 4
    """Fetches of tenant-chosen URLs (VNG forwarder, openAPIinspector) one project may have in flight."""
    outbound_deadline_seconds: float = 30.0
    """The total time one such fetch may take, answer included."""
    egress_allow: str = ""
    egress_deny: str = ""
    """The egress policy for URLs tenants chose (assay.runner.egress): extra ranges to allow, to deny."""
    log_format: Literal["json", "text"] = "json"
    kubeconfig: Path | None = None
    """Out-of-cluster only; in a pod the service account is used."""
    watch_cache: bool = True
    """LoadTest lists and statuses are read from a cache a watch keeps current (kube.WatchCache);
    false reads the API server on every call."""


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
