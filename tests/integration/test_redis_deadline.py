"""The worker's Redis client waits for an answer at most PROFILES_REDIS_TIMEOUT_SECONDS per
call or pipeline (not per reply): a Redis that stops answering (SIGSTOP) is a redis
TimeoutError, which the worker retries; once it answers again, the next calls get their own
replies, never a stale one."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from streams import redis_clients
from streams.guard import transient
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_a_redis_that_stops_answering_times_out_and_the_client_recovers(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis_clients.async_client(
        Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_seconds=0.5)
    )

    async def pipeline(n: int) -> list[bytes | None]:
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            pipe.set(f"k{i}", i)
            pipe.get(f"k{i}")
        return [v for i, v in enumerate(await pipe.execute()) if i % 2]

    async def scenario() -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                await client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer"
                await asyncio.sleep(0.05)
        assert await pipeline(3) == [b"0", b"1", b"2"]
        os.kill(server.pid, signal.SIGSTOP)
        try:
            for call in (lambda: pipeline(50), lambda: client.get("k1")):
                started = time.monotonic()
                with pytest.raises(redis.exceptions.TimeoutError) as failed:
                    await call()
                assert time.monotonic() - started < 3
                assert transient(failed.value)  # the worker retries the batch
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert await pipeline(50) == [str(i).encode() for i in range(50)]
        assert await client.get("k7") == b"7"
        await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        server.terminate()
        server.wait(timeout=10)
