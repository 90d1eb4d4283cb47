"""The benchmarks' own topics: deleted by prefix when a run ends or a load starts over."""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka import client_options
from streams.settings import Settings


async def delete_topics(cfg: Settings, prefixes: list[str]) -> None:
    """Delete every topic whose name starts with one of `prefixes`, and wait until it is gone."""
    assert all(p.startswith("bench") for p in prefixes)
    admin = AIOKafkaAdminClient(**client_options(cfg))
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        if doomed:
            await admin.delete_topics(doomed)
        deadline = time.monotonic() + 60
        while doomed and time.monotonic() < deadline:
            existing = set(await admin.list_topics())
            doomed = [t for t in doomed if t in existing]
            await asyncio.sleep(0.5 if doomed else 0)
    finally:
        await admin.close()
