"""Settings of care/ that phq.settings.Settings does not have yet (same PHQ_ prefix).

Meant to move into phq/settings.py; until then `CareSettings()` reads them from the environment.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CareSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHQ_", extra="ignore")

    notify_group: str = "phq-notify"  # consumer group of `phq notify` (PHQ_TOPIC_PREFIX is prepended)
    webhook_max_attempts: int = Field(8, ge=1)  # then the alert is logged as failed and skipped
    webhook_backoff_s: float = Field(1.0, ge=0)  # first retry delay; doubles each attempt
    webhook_max_backoff_s: float = Field(60.0, ge=0)
    webhook_timeout_s: float = Field(10.0, gt=0)
