"""What the worker checks before it consumes: Redis still holds what its offsets stand for."""

from __future__ import annotations

import logging

from projections import keys, namespaces
from projections.store import RedisStore
from streams.kafka import committed_offsets
from streams.redis_clients import async_client
from streams.settings import Settings

log = logging.getLogger("profiles.worker")


async def claim_projections(settings: Settings) -> None:
    """Make a fresh namespace (markers, meta, pointer), or check the current one: raise
    `ProjectionsLost` when Redis has lost the views, `OtherFormat` when another version
    wrote them.

    A fresh consumer group starts from the first record, so an empty Redis is right for it.
    A group with committed offsets skips the records before them: when Redis has lost the
    pointer, or the namespace's marker in any slot, those records' effects are gone."""
    client = async_client(settings)
    store = RedisStore(client)
    base = settings.namespace
    try:
        pointer = await namespaces.read(client, base)
        if await client.exists(keys.pointer(base)):
            await namespaces.check_format(client, pointer.current)
            if not await store.marked(pointer.current):
                why = f"the marker of namespace {pointer.current!r} is gone from some slot"
                raise namespaces.ProjectionsLost(base, why)
            return
        if await committed_offsets(settings, settings.group_id):
            raise namespaces.ProjectionsLost(base)
        await store.mark(base)
        await namespaces.write_meta(client, base, namespaces.Meta())
        await namespaces.claim(client, base)
    finally:
        await client.aclose()
