"""scripts/services is idempotent: a second `up` leaves the running services alone."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from pipelinekit import ROOT

pytestmark = pytest.mark.integration


async def kafka_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


def test_up_twice_is_harmless(pipeline: Any) -> None:
    settings = pipeline.settings
    client = redis.Redis.from_url(settings.redis_url)
    client.set(f"{settings.namespace}:marker", b"kept")
    before = asyncio.run(kafka_topics(settings.kafka_bootstrap))

    again = subprocess.run(
        [str(ROOT / "scripts" / "services"), "up"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    for service in ("redis", "kafka"):
        line = next(x for x in again.stdout.splitlines() if f"{service}:" in x)
        assert "nothing to do" in line or "leaving it alone" in line, line

    assert client.get(f"{settings.namespace}:marker") == b"kept"  # same Redis, data intact
    assert set(before) <= set(asyncio.run(kafka_topics(settings.kafka_bootstrap)))
    client.delete(f"{settings.namespace}:marker")


def test_the_store_writes_and_loads_more_fields_than_lua_can_unpack(pipeline: Any) -> None:
    # A company step on a big company can set thousands of fields and read thousands of
    # members' `md:` fields at once; Lua's unpack stops at a few thousand values.
    from projections.store import RedisStore, Write

    async def run() -> tuple[list[bool], dict[str, bytes], list[bool], int]:
        client = aioredis.Redis.from_url(pipeline.settings.redis_url)
        store, key = RedisStore(client), f"{pipeline.settings.namespace}:a:c:{{big}}"
        await store.mark(pipeline.settings.namespace)
        fields = {f"md:{i}": str(i).encode() for i in range(6000)} | {"h": b"header"}
        first = await store.commit([Write(key, 0, fields, [])])
        wanted = [f"md:{i}" for i in range(0, 6000, 2)] + ["md:absent"]
        [loaded] = await store.load_without([key], "md:", [wanted])
        second = await store.commit([Write(key, 1, {}, [f"md:{i}" for i in range(5000)])])
        left = await client.hlen(key)
        await client.aclose()
        return first, loaded, second, left

    first, loaded, second, left = asyncio.run(run())
    assert first == [True] and second == [True]
    assert loaded == {"h": b"header", "_v": b"1"} | {
        f"md:{i}": str(i).encode() for i in range(0, 6000, 2)
    }
    assert left == 1000 + 2  # md:5000..5999, h, _v
