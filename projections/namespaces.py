"""The namespace pointer: which physical namespace readers read and writers write.

`PROFILES_NAMESPACE` is a logical name (`ps`). Its pointer (keys.pointer) holds
{"current": physical namespace, "next": the one a replay is building, or None}. Without a
pointer, the physical namespace is the logical one; the live worker writes the pointer
before its first record, so a pointer that goes missing later tells it Redis lost the
projections (`read_live`). Live writers write `current` and, while
a replay runs, `next` too; readers read `current`; a replay flips `next` to `current` in one
SET, so every reader moves at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from projections import keys


@dataclass(frozen=True)
class Pointer:
    current: str
    next: str | None = None

    @property
    def targets(self) -> list[str]:
        """The namespaces live writers write to."""
        return [self.current] if self.next is None else [self.current, self.next]

    def encode(self) -> bytes:
        return msgpack.packb({"current": self.current, "next": self.next})


def decode(raw: bytes | None, base: str) -> Pointer:
    if raw is None:
        return Pointer(base)
    value = msgpack.unpackb(raw, raw=False)
    return Pointer(value["current"], value.get("next"))


async def read(client: Any, base: str) -> Pointer:
    """For async writers (redis.asyncio)."""
    return decode(await client.get(keys.pointer(base)), base)


class ProjectionsLost(Exception):
    """The pointer is gone: Redis lost the projections (restarted without persistence, or
    flushed) while Kafka still holds the consumer offsets that stand for them."""

    exit_code = 4  # of `profiles worker`, which stops on it

    def __init__(self, base: str) -> None:
        super().__init__(
            f"Redis has lost the projections of namespace {base!r} (its pointer "
            f"{keys.pointer(base)!r} is gone, but the consumer group has committed offsets); "
            "rebuild them from Kafka with `profiles replay`, then start the worker again"
        )


async def read_live(client: Any, base: str) -> Pointer:
    """For the live worker, which writes the pointer before its first record (`claim`): a
    missing pointer means the projections are gone, and writing on would build wrong views."""
    raw = await client.get(keys.pointer(base))
    if raw is None:
        raise ProjectionsLost(base)
    return decode(raw, base)


async def claim(client: Any, base: str) -> bool:
    """Write the pointer `current = base` unless there is one; True if this call wrote it."""
    return bool(await client.set(keys.pointer(base), Pointer(base).encode(), nx=True))


class Resolver:
    """For readers: the current namespace, re-read at most every `ttl` seconds.

    A replay removes the old namespace only after a grace period longer than `ttl`, so a
    reader never reads a namespace that is gone."""

    def __init__(self, client: Any, base: str, ttl: float = 0.5) -> None:
        self._client = client
        self._base = base
        self._ttl = ttl
        self._at = -1.0
        self._current = base

    def current(self) -> str:
        now = time.monotonic()
        if now - self._at > self._ttl:
            self._current = decode(self._client.get(keys.pointer(self._base)), self._base).current
            self._at = now
        return self._current
