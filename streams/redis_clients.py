"""Redis clients built from the settings: the one place the URL, ACL user, password and TLS
files turn into connection options (sync for readers and the CLI, asyncio for the worker)."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from streams.settings import Settings


def options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `Redis.from_url(settings.redis_url, ...)`.

    Credentials written into the URL itself (redis://user:pass@host) take precedence, as in
    redis-py. TLS options only go with a rediss:// URL (the settings refuse them otherwise)."""
    out: dict[str, Any] = {}
    if settings.redis_username is not None:
        out["username"] = settings.redis_username
    if settings.redis_password is not None:
        out["password"] = settings.redis_password.get_secret_value()
    if settings.redis_url.startswith("rediss://"):
        tls = {
            "ssl_ca_certs": settings.redis_tls_ca_file,
            "ssl_certfile": settings.redis_tls_cert_file,
            "ssl_keyfile": settings.redis_tls_key_file,
        }
        out.update({name: value for name, value in tls.items() if value is not None})
    return out


def sync_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, **options(settings))


def async_client(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.redis_url, **options(settings))
