"""The namespace pointer: which physical namespace readers read and writers write.

`PROFILES_NAMESPACE` is a logical name (`ps`). Its pointer (keys.pointer) holds
{"current": physical namespace, "next": the one a replay is building, or None, "retired":
the one a replay flipped away from, until it is removed}. Without a pointer, the physical
namespace is the logical one; the live worker writes the pointer before its first record,
so a pointer that goes missing later tells it Redis lost the projections (`read_live`).
Live writers write `current` only (segment definitions also go to `next`); readers read
`current`; a replay builds `next` on its own and flips it to `current` in one SET, so
every reader moves at once.

Each physical namespace has a meta hash (keys.meta): the state format it was written in —
a worker writes only its own format, so a namespace of another one is rebuilt with
`profiles replay` — and its event-time floor (`replay --since`): the records before it are
left out of its views, by every writer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from projections import keys

# The state format of every projection this code writes; bumped when stored entities,
# member sets or bookkeeping keys change shape. 1: no meta hash (before issue 17); 2: the
# whole state in one field; 3: split by day (issue 18); 4: the companies indexes by last
# seen, users and name (issue 20).
FORMAT = 4


@dataclass(frozen=True)
class Pointer:
    current: str
    next: str | None = None
    retired: str | None = None

    @property
    def targets(self) -> list[str]:
        """The namespaces live writers write to."""
        return [self.current] if self.next is None else [self.current, self.next]

    def encode(self) -> bytes:
        return msgpack.packb({"current": self.current, "next": self.next, "retired": self.retired})


def decode(raw: bytes | None, base: str) -> Pointer:
    if raw is None:
        return Pointer(base)
    value = msgpack.unpackb(raw, raw=False)
    return Pointer(value["current"], value.get("next"), value.get("retired"))


@dataclass(frozen=True)
class Meta:
    format: int = FORMAT
    since: int | None = None  # event-time floor in epoch ms (replay --since)

    def encode(self) -> dict[str, bytes]:
        out = {"format": str(self.format).encode()}
        if self.since is not None:
            out["since"] = str(self.since).encode()
        return out


async def read_meta(client: Any, namespace: str) -> Meta | None:
    """The namespace's meta (None: a namespace without one, written before formats existed)."""
    raw = await client.hgetall(keys.meta(namespace))
    if not raw:
        return None
    fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    since = fields.get("since")
    return Meta(int(fields["format"]), None if since is None else int(since))


async def write_meta(client: Any, namespace: str, meta: Meta) -> None:
    await client.hset(keys.meta(namespace), mapping=meta.encode())


class OtherFormat(Exception):
    """The namespace was written in another state format than this code's."""

    exit_code = 6  # of `profiles worker`, which stops on it

    def __init__(self, namespace: str, found: int | None) -> None:
        written = "an older version (format 1)" if found is None else f"format {found}"
        super().__init__(
            f"namespace {namespace!r} was written by {written}; this version writes format "
            f"{FORMAT}: rebuild it with `profiles replay` (readers keep the old views until "
            "its flip), then start the worker again"
        )


async def check_format(client: Any, namespace: str) -> Meta:
    """The namespace's meta, or `OtherFormat`."""
    meta = await read_meta(client, namespace)
    if meta is None or meta.format != FORMAT:
        raise OtherFormat(namespace, None if meta is None else meta.format)
    return meta


async def read(client: Any, base: str) -> Pointer:
    """For async writers (redis.asyncio)."""
    return decode(await client.get(keys.pointer(base)), base)


class ProjectionsLost(Exception):
    """Redis lost the projections (restarted without persistence, or flushed; on a cluster,
    perhaps one master only) while Kafka still holds the consumer offsets that stand for
    them: the pointer is gone, or a namespace's marker in some slot."""

    exit_code = 4  # of `profiles worker`, which stops on it

    def __init__(self, base: str, why: str | None = None) -> None:
        why = why or (
            f"its pointer {keys.pointer(base)!r} is gone, but the consumer group has "
            "committed offsets"
        )
        super().__init__(
            f"Redis has lost the projections of namespace {base!r} ({why}); rebuild them "
            "from Kafka with `profiles replay`, then start the worker again"
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
