"""The operator's configuration: one settings object, read from ASSAY_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSAY_")

    runner_image: str = "assay/runner:0.1.0"
    runner_image_pull_policy: str = "IfNotPresent"
    runner_cpu_request: str = "250m"
    runner_memory_request: str = "256Mi"
    runner_memory_limit: str = "1Gi"
    runner_service_account: str | None = None
    # Seconds the Job controller waits before it fails a run that has not finished; a guard
    # against a hung target, not a test duration (that is the spec's).
    run_deadline_seconds: int = 6 * 3600


@lru_cache
def get_settings() -> OperatorSettings:
    return OperatorSettings()
