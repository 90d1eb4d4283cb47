"""What the worker checks before it consumes: Redis still holds what its offsets stand for."""

from __future__ import annotations

import logging

from projections import keys, namespaces
from streams.kafka import committed_offsets
from streams.redis_clients import async_client
from streams.settings import Settings

log = logging.getLogger("profiles.worker")


async def claim_projections(settings: Settings) -> None:
    """Write the namespace pointer, or raise `ProjectionsLost` when Redis has lost the views.

    A fresh consumer group starts from the first record, so an empty Redis is right for it.
    A group with committed offsets skips the records before them: when Redis holds neither
    the pointer nor any key of the namespace, those records' effects are gone."""
    client = async_client(settings)
    base = settings.namespace
    try:
        if await client.exists(keys.pointer(base)):
            return
        if await committed_offsets(settings, settings.group_id):
            # Written by a version without the pointer: its keys are there, claim them.
            async for _ in client.scan_iter(match=f"{base}:*", count=1000):
                log.warning("namespace %r has keys but no pointer: writing the pointer", base)
                break
            else:
                raise namespaces.ProjectionsLost(base)
        await namespaces.claim(client, base)
    finally:
        await client.aclose()
