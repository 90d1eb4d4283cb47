"""Every setting, read from PROFILES_* environment variables when the process starts."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.limits import Limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROFILES_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str | None = None  # e.g. SCRAM-SHA-256
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None

    topic_prefix: str = "profiles."
    namespace: str = Field(default="ps", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    partitions: int = Field(default=8, ge=1)
    group_id: str = "profiles-worker"
    datadir: str = ".services/faust"

    session_gap_minutes: float = Field(default=30, gt=0)
    retention_days: int = Field(default=400, ge=1)
    max_keys: int = 256
    max_string_bytes: int = 8 * 1024
    max_record_bytes: int = 64 * 1024
    max_future_hours: int = 24

    # A killed worker's partitions move to the others after this long without a heartbeat.
    consumer_session_timeout_seconds: float = Field(default=10, ge=6)
    batch_size: int = Field(default=2000, ge=1)
    # Company steps and replay: a company step costs O(its members) whatever the number of
    # contributions it applies, so these batches are bigger.
    bulk_batch_size: int = Field(default=10_000, ge=1)
    batch_seconds: float = Field(default=0.2, gt=0)
    # How often the leader worker evaluates profiles whose segment rules depend on the clock.
    segment_tick_seconds: float = Field(default=1.0, gt=0)

    @cached_property
    def limits(self) -> Limits:
        return Limits(
            max_keys=self.max_keys,
            max_string_bytes=self.max_string_bytes,
            max_record_bytes=self.max_record_bytes,
            max_future_hours=self.max_future_hours,
            retention_days=self.retention_days,
        )

    @property
    def gap_ms(self) -> int:
        return int(self.session_gap_minutes * 60_000)
