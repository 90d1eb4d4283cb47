"""scripts/services is idempotent: a second `up` leaves the running services alone."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient
from conftest import ROOT

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
