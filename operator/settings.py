"""The operator's configuration: one settings object, read from ASSAY_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSAY_")

    egress_allow: str = ""
    egress_deny: str = ""
    """The egress policy for URLs tenants chose, e.g. webhooks (assay.runner.egress)."""
    runner_image: str = "assay/runner:0.1.0"
    runner_image_pull_policy: str = "IfNotPresent"
    runner_cpu_request: str = "250m"
    runner_cpu_limit: str = "1"
    """A run pod is throttled past this: a runaway run (scripts, a tick pod of many Monitors)
    slows down on its own node share instead of starving its neighbours."""
    runner_memory_request: str = "256Mi"
    runner_memory_limit: str = "1Gi"
    runner_service_account: str | None = None
    # Seconds the Job controller waits before it fails a run that has not finished; a guard
    # against a hung target, not a test duration (that is the spec's).
    run_deadline_seconds: int = 6 * 3600
    # Result uploads: with both set, every run gets a Secret with its upload token
    # (HMAC(upload_key, run id), which the gateway checks) and the runner uploads its results.
    gateway_url: str | None = None
    """How runner pods reach the gateway, e.g. http://assay-gateway.assay.svc:8000. The
    operator reads a running LoadTest's live progress from the same address."""
    upload_key: SecretStr | None = None
    """Shared with the gateway (its ASSAY_UPLOAD_KEY)."""
    run_job_ttl_seconds: int = Field(3600, ge=60)
    """How long a TestSuite's or Monitor's finished run Job (and its pods) stays: long enough
    for the operator to record it after a restart; the status and the store keep the run."""
    run_history_limit: int = Field(10, ge=1, le=20)
    """Runs kept in a TestSuite's or Monitor's status.history; the store keeps all of them."""

    # Scheduled Monitors run in batches: one tick Job per group of Schedules sharing a cron
    # schedule and a region, each pod running `tick_chunk` of them concurrently.
    tick_chunk: int = Field(64, ge=1, le=80)
    """Members per tick pod; 80 at most so that a pod's per-member results fit its 4096-byte
    termination message."""
    tick_concurrency: int = Field(50, ge=1, le=500)
    """Members one tick pod runs at the same time."""
    tick_deadline_seconds: int = Field(600, ge=30)
    """A tick Job running longer is stopped; with concurrencyPolicy Forbid it would hold back
    the group's next ticks."""
    tick_starting_deadline_seconds: int = Field(50, ge=10)
    """A tick the CronJob controller could not start within this many seconds is skipped."""
    tick_history_limit: int = Field(2, ge=1, le=10)
    """Finished tick Jobs the CronJob keeps (successful and failed each)."""
    status_writers: int = Field(16, ge=1, le=64)
    """Status writes of finished ticks in flight at once, over every namespace's ticks together
    (ticks.py): the bound on what recording a tick asks of the API server at any moment."""

    # Notifications after each Monitor run (notify.py): webhooks and e-mail.
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=120)
    webhook_attempts: int = Field(3, ge=1, le=10)
    """Tries per webhook URL; waits 1 s, 2 s, 4 s, ... between them."""
    notify_catch_up_seconds: int = Field(900, ge=0)
    """After a restart or a handover, runs that finished this recently and are not yet in
    status.notifiedRuns are notified; older ones are left alone."""
    smtp_host: str | None = None
    """No host: no e-mail."""
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "assay@localhost"
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(10.0, gt=0, le=120)
    # Operations.
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (also --metrics-port)."""
    peering_lifetime_seconds: int = Field(10, ge=2, le=300)
    """With --peering: how long a replica's keep-alive counts; a killed leader is replaced
    within about this long."""

    @property
    def runner_resources(self) -> dict:
        """The container resources of every run pod (run Jobs and tick CronJobs)."""
        return {
            "requests": {"cpu": self.runner_cpu_request, "memory": self.runner_memory_request},
            "limits": {"cpu": self.runner_cpu_limit, "memory": self.runner_memory_limit},
        }

    @property
    def uploads_enabled(self) -> bool:
        return bool(self.gateway_url and self.upload_key and self.upload_key.get_secret_value())


@lru_cache
def get_settings() -> OperatorSettings:
    return OperatorSettings()
