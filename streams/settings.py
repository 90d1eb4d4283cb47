"""Every setting, read from PROFILES_* environment variables when the process starts."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.limits import Limits


def state_dir() -> str:
    """Where a worker keeps Faust's local state by default, wherever it is started from:
    $XDG_STATE_HOME/profile-streams/faust (~/.local/state/profile-streams/faust)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "profile-streams" / "faust")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROFILES_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    # SASL_* needs the mechanism, username and password. SSL and SASL_SSL verify the broker
    # against SSL_CAFILE (else the system's CAs) and present SSL_CERTFILE (+ SSL_KEYFILE) when
    # set, for mutual TLS. streams/kafka.py turns these into aiokafka and Faust options.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None  # PEM bundle of the CAs that signed the broker's cert
    kafka_ssl_certfile: str | None = None  # PEM client certificate (may hold the key too)
    kafka_ssl_keyfile: str | None = None  # PEM private key, unencrypted

    redis_url: str = "redis://127.0.0.1:6379/0"  # rediss://... for TLS
    # The URL names any node of a Redis Cluster (db 0); the client finds the others.
    redis_cluster: bool = False
    redis_username: str | None = None  # an ACL user (README, "Redis access")
    redis_password: SecretStr | None = None
    redis_tls_ca_file: str | None = None  # CA bundle that signed the server's certificate
    redis_tls_cert_file: str | None = None  # client certificate, when the server asks for one
    redis_tls_key_file: str | None = None

    topic_prefix: str = "profiles."
    namespace: str = Field(default="ps", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    partitions: int = Field(default=8, ge=1)
    group_id: str = "profiles-worker"
    datadir: str = Field(default_factory=state_dir)  # the worker's Faust state folder

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
    # How long the worker waits for Redis to answer a call or a pipeline before it retries.
    redis_timeout_seconds: float = Field(default=5.0, gt=0)

    # The explorer (`profiles serve`): where it listens and its bearer tokens,
    # "APP=TOKEN,APP2=TOKEN2,*=TOKEN3" (`*`: every app; explorer/tokens.py).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_tokens: SecretStr | None = None
    # The ingestion API beside it (explorer/ingest.py), absent without write keys:
    # "APP=KEY,APP2=KEY2", one app a key, never a read token. Per key, a bucket of
    # INGEST_BURST records refilled at INGEST_RATE records a second; a body of at most
    # INGEST_MAX_BODY_BYTES; pages of INGEST_ORIGINS ("*", or "https://a.example,...") call it.
    write_keys: SecretStr | None = None
    ingest_rate: float = Field(default=1000, gt=0)
    ingest_burst: int = Field(default=2000, ge=1)
    ingest_max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    ingest_origins: str = "*"
    # How long a request waits for Kafka to take its records before it answers 503.
    ingest_kafka_timeout_seconds: float = Field(default=10.0, gt=0)

    # The worker serves Prometheus metrics at http://<host>:<port>/metrics, on every
    # interface (streams/metrics.py names them); 9464 is the usual port of such exporters.
    # 0: no metrics. A port another process holds (two workers on one host) is one warning
    # in the log, and that worker runs without metrics: give each worker its own port.
    metrics_port: int = Field(default=9464, ge=0, le=65535)

    @field_validator(
        "redis_username",
        "redis_password",
        "redis_tls_ca_file",
        "redis_tls_cert_file",
        "redis_tls_key_file",
        mode="before",
    )
    @classmethod
    def _redis_text(cls, value: object) -> object:
        return None if value == "" else value  # an empty variable leaves the option unset

    @field_validator("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
    @classmethod
    def _tls_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not str(info.data.get("redis_url", "")).startswith("rediss://"):
            raise ValueError("TLS files need a rediss:// PROFILES_REDIS_URL")
        if info.field_name == "redis_tls_key_file" and info.data.get("redis_tls_cert_file") is None:
            raise ValueError("a key file needs PROFILES_REDIS_TLS_CERT_FILE too")
        if not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator(
        "kafka_security_protocol",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _kafka_text(cls, value: object, info: ValidationInfo) -> object:
        if value == "" and info.field_name != "kafka_security_protocol":
            return None  # an empty variable leaves the option unset
        if isinstance(value, str) and info.field_name in (
            "kafka_security_protocol",
            "kafka_sasl_mechanism",
        ):
            return value.upper()
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _kafka_tls_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        # An option the chosen protocol would silently ignore is a misconfiguration: refuse it.
        protocol = self.kafka_security_protocol
        sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
        if sasl and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"PROFILES_KAFKA_SECURITY_PROTOCOL={protocol} needs PROFILES_KAFKA_SASL_MECHANISM, "
                "PROFILES_KAFKA_SASL_USERNAME and PROFILES_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (
            self.kafka_sasl_mechanism or self.kafka_sasl_username or self.kafka_sasl_password
        ):
            raise ValueError(
                "PROFILES_KAFKA_SASL_* need PROFILES_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or "
                f"SASL_SSL, not {protocol}"
            )
        if not tls and (self.kafka_ssl_cafile or self.kafka_ssl_certfile or self.kafka_ssl_keyfile):
            raise ValueError(
                "PROFILES_KAFKA_SSL_* need PROFILES_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, "
                f"not {protocol}"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("PROFILES_KAFKA_SSL_KEYFILE needs PROFILES_KAFKA_SSL_CERTFILE")
        return self

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
