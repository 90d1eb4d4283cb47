"""Redis clients built from the settings: the one place the URL, ACL user, password, TLS
files and cluster mode turn into clients (sync for readers and the CLI, asyncio for the worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import hiredis
import redis
import redis.asyncio as aioredis
import redis.asyncio.client
import redis.asyncio.cluster
import redis.cluster

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


def sync_client(settings: Settings) -> Any:
    """redis.Redis, or redis.cluster.RedisCluster with PROFILES_REDIS_CLUSTER."""
    if settings.redis_cluster:
        return redis.cluster.RedisCluster.from_url(settings.redis_url, **options(settings))
    return redis.Redis.from_url(settings.redis_url, **options(settings))


class _Packing:
    """redis-py's asyncio connections pack every command in Python; hiredis packs it in C
    (about a tenth of the worker's CPU for a step of a few events)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "SCRIPT LOAD": two words
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class _Connection(_Packing, aioredis.Connection):
    pass


class _SSLConnection(_Packing, aioredis.SSLConnection):
    pass


@asynccontextmanager
async def _bounded(seconds: float) -> AsyncIterator[None]:
    """A call's deadline, failing as redis-py's own (a TimeoutError the worker retries). A
    connection cut short mid-reply is closed by redis-py, never reused."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise redis.exceptions.TimeoutError(f"no answer from Redis in {seconds:g} s") from exc


class _Pipeline(aioredis.client.Pipeline):
    timeout_seconds: float

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        async with _bounded(self.timeout_seconds):
            return await super().execute(raise_on_error)


class _Redis(aioredis.Redis):
    """One deadline per call or pipeline (PROFILES_REDIS_TIMEOUT_SECONDS), where redis-py sets
    a timer for every reply (about a twentieth of the worker's CPU for a step of one event)."""

    timeout_seconds: float

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        async with _bounded(self.timeout_seconds):
            return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Any:
        pipe = _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.timeout_seconds = self.timeout_seconds
        return pipe


def async_client(settings: Settings) -> Any:
    """redis.asyncio.Redis, or redis.asyncio.cluster.RedisCluster with PROFILES_REDIS_CLUSTER.
    (A cluster client finds its nodes on first use; RedisStore initializes it before it sends
    concurrent calls, which an uninitialized one does not survive.)"""
    if settings.redis_cluster:
        return aioredis.cluster.RedisCluster.from_url(settings.redis_url, **options(settings))
    pool = aioredis.ConnectionPool.from_url(
        settings.redis_url, socket_timeout=None, **options(settings)
    )
    tls = issubclass(pool.connection_class, aioredis.SSLConnection)
    pool.connection_class = _SSLConnection if tls else _Connection
    client = cast(_Redis, _Redis.from_pool(pool))
    client.timeout_seconds = settings.redis_timeout_seconds
    return client
