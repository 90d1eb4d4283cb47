"""`profiles replay`: rebuild into a fresh namespace while the live worker serves, then flip.

The rebuild is a second pipeline: its own consumer group, its own namespace, its own fences;
the live worker goes on writing only the current namespace. Once the rebuild has caught up
with the log, it leaves the offsets it read to (the handover) and the pointer flips: readers
and the live worker move to the new namespace at once, and the live worker applies there
what it took in beyond those offsets before its next batch (streams/handover.py). The old
namespace stays `retired` for a grace period, then goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from projections import keys, namespaces
from projections.namespaces import Pointer
from projections.store import RedisStore
from replay.rebuild import Progress, catch_up, rebuild
from streams.kafka import committed_offsets, delete_groups
from streams.settings import Settings

# Readers re-read the pointer every 0.5 s and a live batch takes well under this: after a
# flip, nothing reads or writes the old namespace once this has passed.
GRACE_SECONDS = 5.0


class ReplayError(Exception):
    """A replay that cannot start or go on; the message says why and what to do."""


@dataclass
class ReplayResult:
    previous: str
    current: str
    progress: Progress
    removed_keys: int


def next_namespace(base: str, current: str) -> str:
    match = re.fullmatch(re.escape(base) + r"-(\d+)", current)
    return f"{base}-{int(match.group(1)) + 1 if match else 1}"


def replay_group(settings: Settings, target: str) -> str:
    return f"{settings.group_id}-replay-{target}"


async def is_empty(client: Any, namespace: str) -> bool:
    async for _key in client.scan_iter(match=keys.namespace_pattern(namespace), count=1000):
        return False
    return True


async def remove_namespace(client: Any, namespace: str) -> int:
    removed = 0
    batch: list[Any] = []
    async for key in client.scan_iter(match=keys.namespace_pattern(namespace), count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            removed += await client.unlink(*batch)
            batch.clear()
    if batch:
        removed += await client.unlink(*batch)
    return removed


async def start_or_resume(client: Any, settings: Settings, wanted: str | None) -> Pointer:
    """Point the live writers at a next namespace (or find the replay already under way)."""
    base = settings.namespace
    pointer = await namespaces.read(client, base)
    if pointer.next is not None:
        if wanted is not None and wanted != pointer.next:
            raise ReplayError(
                f"a replay into {pointer.next!r} is under way; run `profiles "
                f"replay` without --namespace to finish it"
            )
        return pointer
    target = wanted or next_namespace(base, pointer.current)
    if target == pointer.current or not re.fullmatch(r"[A-Za-z0-9_-]{1,48}", target):
        raise ReplayError(f"{target!r} cannot be the new namespace")
    if not await is_empty(client, target):
        raise ReplayError(f"namespace {target!r} already holds keys; choose another")
    # A group of this name can be left by a replay whose pointer Redis lost since: resumed, it
    # would skip every record it had read, and the flip would show empty views.
    group = replay_group(settings, target)
    await forget_group(settings, group)
    if await committed_offsets(settings, group):
        raise ReplayError(f"consumer group {group!r} of an earlier replay is still in use")
    return await _set(client, base, pointer, Pointer(pointer.current, target))


async def _set(client: Any, base: str, seen: Pointer, new: Pointer) -> Pointer:
    """Write the pointer, only if nobody moved it since it was `seen`."""
    async with client.pipeline(transaction=True) as pipe:
        await pipe.watch(keys.pointer(base))
        if await namespaces.read(pipe, base) != seen:
            raise ReplayError("the namespace pointer changed under this replay; run it again")
        pipe.multi()
        pipe.set(keys.pointer(base), new.encode())
        await pipe.execute()
    return new


async def replay(
    settings: Settings, client: Any, *, since_ms: int | None = None, namespace: str | None = None
) -> ReplayResult:
    """Rebuild, flip every reader and the live worker to the rebuilt namespace, remove the
    old one. A replay stopped after its flip is finished, not started again."""
    found = await namespaces.read(client, settings.namespace)
    if found.retired is not None:
        progress = await finish_flip(settings, client, found)
        return ReplayResult(found.retired, found.current, progress, progress.removed)
    pointer = await start_or_resume(client, settings, namespace)
    assert pointer.next is not None
    group = replay_group(settings, pointer.next)
    if since_ms is None:  # a resumed replay keeps the floor it was started with
        meta = await namespaces.read_meta(client, pointer.next)
        since_ms = None if meta is None else meta.since
    built = await rebuild(
        settings, client, pointer.next, group=group, since_ms=since_ms, handover=True
    )
    base = settings.namespace
    flipped = await _set(client, base, pointer, Pointer(pointer.next, retired=pointer.current))
    print(f"flipped readers and the live worker to {pointer.next!r}", file=sys.stderr)
    progress = await finish_flip(settings, client, flipped)
    built.done += progress.done
    built.skipped += progress.skipped
    return ReplayResult(pointer.current, pointer.next, built, progress.removed)


async def finish_flip(settings: Settings, client: Any, flipped: Pointer) -> Progress:
    """The flip's second half. Close the retired namespace to writes (its markers go: a live
    batch still writing it is refused, and done again in the new one), then fold into the new
    one what arrived since the rebuild stopped — now past all the live worker ever applied to
    the old one — then, after a grace period for readers, remove the old one."""
    assert flipped.retired is not None
    current, retired = flipped.current, flipped.retired
    group = replay_group(settings, current)
    await RedisStore(client).unmark(retired)
    meta = await namespaces.read_meta(client, current)
    since_ms = None if meta is None else meta.since
    progress = await catch_up(settings, client, current, group=group, since_ms=since_ms)
    await asyncio.sleep(GRACE_SECONDS)
    progress.removed = await remove_namespace(client, retired)
    await _set(client, settings.namespace, flipped, Pointer(current))
    await forget_group(settings, group)
    return progress


async def forget_group(settings: Settings, group: str) -> None:
    """Delete a finished replay's consumer group (only bookkeeping: it holds no data)."""
    with contextlib.suppress(KafkaError):
        await delete_groups(settings, [group])
