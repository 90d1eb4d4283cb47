"""Redis connection options from PROFILES_ settings: user, password and TLS files."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from streams.redis_clients import options, sync_client
from streams.settings import Settings


def test_plain_url_passes_no_options() -> None:
    assert options(Settings(redis_url="redis://127.0.0.1:6379/0")) == {}
    empty = Settings(redis_username="", redis_password="", redis_tls_ca_file="")  # type: ignore[arg-type]
    assert options(empty) == {}, "an empty variable leaves the option unset"


def test_user_and_password() -> None:
    cfg = Settings(redis_username="ps-worker", redis_password="pw")  # type: ignore[arg-type]
    assert options(cfg) == {"username": "ps-worker", "password": "pw"}
    kwargs = sync_client(cfg).connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("ps-worker", "pw")


def test_tls_files_go_with_rediss(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for f in (ca, cert, key):
        f.write_text("x")
    cfg = Settings(
        redis_url="rediss://redis.example:6380/0",
        redis_tls_ca_file=str(ca),
        redis_tls_cert_file=str(cert),
        redis_tls_key_file=str(key),
    )
    assert options(cfg) == {
        "ssl_ca_certs": str(ca),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
    }
    pool = sync_client(cfg).connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    only_ca = Settings(redis_url="rediss://h:6380", redis_tls_ca_file=str(ca))
    assert options(only_ca) == {"ssl_ca_certs": str(ca)}


def test_tls_settings_are_refused_when_they_cannot_apply(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ValidationError, match="rediss://"):
        Settings(redis_url="redis://127.0.0.1:6379/0", redis_tls_ca_file=str(ca))
    with pytest.raises(ValidationError, match="no such file"):
        Settings(redis_url="rediss://h:6380", redis_tls_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError, match="CERT_FILE"):
        Settings(redis_url="rediss://h:6380", redis_tls_key_file=str(ca))
