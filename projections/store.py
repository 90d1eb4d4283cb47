"""Where projections live: a small protocol, a Redis implementation and an in-memory one.

A write is conditional on the entity's version (`_v`) read before the fold ran; it sets and
deletes fields and bumps the version in one atomic step (a Lua script on one slot), so a
stale writer — a zombie after a rebalance — can never overwrite a newer step. The same step
checks the namespace's marker in the entity's slot (`mark`): a Redis, or one master of a
cluster, that came back empty has lost it, and the write is refused (`Lost`) instead of
building a view from the records of one batch.

Segment member sets move only forward in each entity's versions (`place`), so moves may
arrive in any order, late or twice, and a set holds exactly the members whose latest placed
version is inside.
"""

from __future__ import annotations

import asyncio
import binascii
import fnmatch
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.crc import key_slot

from projections import keys

_APPLY = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
local v = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if v ~= tonumber(ARGV[2]) then return -1 end
local nset = tonumber(ARGV[3])
local ndel = tonumber(ARGV[4])
local i = 5
-- in chunks: Lua's unpack takes a few thousand values at most
local args = {}
for j = i, i + 2 * nset - 1 do
  args[#args + 1] = ARGV[j]
  if #args == 1000 then redis.call('HSET', KEYS[1], unpack(args)); args = {} end
end
if #args > 0 then redis.call('HSET', KEYS[1], unpack(args)) end
i = i + 2 * nset
local dels = {}
for j = i, i + ndel - 1 do
  dels[#dels + 1] = ARGV[j]
  if #dels == 1000 then redis.call('HDEL', KEYS[1], unpack(dels)); dels = {} end
end
if #dels > 0 then redis.call('HDEL', KEYS[1], unpack(dels)) end
i = i + ndel
-- sorted set moves on KEYS[3] (same slot): member, score ('' takes it out)
for j = i, #ARGV, 2 do
  if ARGV[j + 1] == '' then
    redis.call('ZREM', KEYS[3], ARGV[j])
  else
    redis.call('ZADD', KEYS[3], ARGV[j + 1], ARGV[j])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], v + 1)
return v + 1
"""

# One entity in or out of one member set, as of a version: only if no newer one was placed.
# KEYS: the member set, its version hash (one slot); ARGV: member, version, 1 inside / 0 out.
_PLACE = """
local placed = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
local mine = tonumber(ARGV[2])
if mine < placed then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
"""

# Every field of a hash except those starting with ARGV[1], plus the named ones among those.
_LOAD_WITHOUT = """
local out = {}
local skip = ARGV[1]
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, #skip) ~= skip then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
for j = 2, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[j])
  if value then
    out[#out + 1] = ARGV[j]
    out[#out + 1] = value
  end
end
return out
"""


# Concurrent script calls on a cluster: below redis-py's default of 100 connections a node.
_CLUSTER_CALLS = 100


@dataclass(frozen=True)
class Write:
    key: str
    expected_version: int
    to_set: dict[str, bytes]
    to_delete: list[str]
    # a sorted set beside the entity (same hash tag), moved in the same atomic step:
    # (its key, {member: score, or None to take it out})
    beside: tuple[str, dict[str, float | None]] | None = None


class Lost(Exception):
    """The namespace's marker is gone from the slot of a write: Redis (or one master of a
    cluster) lost its data, or the namespace was removed after a replay's flip."""

    def __init__(self, namespace: str) -> None:
        super().__init__(f"the marker of namespace {namespace!r} is gone")
        self.namespace = namespace


def namespace_of(key: str) -> str:
    """The physical namespace of a projection key (namespaces hold no ':')."""
    return key.split(":", 1)[0]


@dataclass(frozen=True)
class MemberMove:
    """One entity in (`inside`) or out of one segment's member set, as of one of its versions;
    a set takes it only if it placed no newer version of that entity."""

    key: str  # the member set
    versions: str  # the set's version hash, in the same slot
    member: str
    version: int
    inside: bool


@dataclass(frozen=True)
class IndexOp:
    """Move one entry in one sorted set (remove and/or add with a score): the users and
    companies indexes and due times."""

    key: str
    remove: str | None
    add: str | None
    score: float = 0.0
    earlier_only: bool = False  # an existing entry keeps its score unless this one is lower


def version_of(fields: dict[str, bytes]) -> int:
    raw = fields.get(keys.VERSION)
    return int(raw) if raw else 0


class Store(Protocol):
    async def load(self, entity_keys: list[str]) -> list[dict[str, bytes]]:
        """Every field of each entity hash ({} where it does not exist), one round trip."""
        ...

    async def load_without(
        self, entity_keys: list[str], skip: str, wanted: list[list[str]]
    ) -> list[dict[str, bytes]]:
        """Like load, but without the fields whose names start with `skip`, except the
        `wanted` ones of each entity; one round trip."""
        ...

    async def read(
        self, requests: Sequence[tuple[str, list[str] | None]]
    ) -> list[dict[str, bytes]]:
        """Per (key, field names): those fields that exist (None: every field); one round
        trip."""
        ...

    async def commit(self, writes: list[Write]) -> list[bool]:
        """Apply each write if its entity is still at the expected version; one round trip.
        Raises `Lost` when a write's namespace has lost its marker in the write's slot."""
        ...

    async def mark(self, namespace: str) -> None:
        """Put the namespace's marker in every slot (before its first write)."""
        ...

    async def marked(self, namespace: str) -> bool:
        """Whether the namespace's marker is in every slot."""
        ...

    async def unmark(self, namespace: str) -> None:
        """Take the namespace's markers away: from now on every write to it is refused."""
        ...

    async def place(self, moves: list[MemberMove]) -> None:
        """Apply member set moves, each only if its set placed no newer version of the entity."""
        ...

    async def index(self, ops: list[IndexOp]) -> None:
        """Apply sorted-set moves (idempotent); one round trip."""
        ...

    async def version(self, key: str) -> int:
        """The entity's `_v` (0 when it does not exist)."""
        ...

    async def versions(self, entity_keys: list[str]) -> list[int]:
        """Each entity's `_v`; one round trip."""
        ...

    async def due(self, set_keys: list[str], until: float, limit: int) -> list[list[str]]:
        """Per sorted set, up to `limit` members with a score <= until, lowest first."""
        ...

    async def range(self, key: str, after: str | None, limit: int) -> list[str]:
        """Up to `limit` members of a score-0 sorted set after `after`, in lexical order."""
        ...

    async def ranked(self, key: str) -> list[str]:
        """Every member of a sorted set, in its order."""
        ...

    def scan(self, pattern: str) -> AsyncIterator[str]:
        """Every key matching a glob pattern."""
        ...

    async def headers(self, entity_keys: list[str]) -> list[bytes | None]:
        """The `h` field of each entity hash, one round trip."""
        ...

    async def put(self, key: str, fields: dict[str, bytes]) -> None:
        """Set hash fields without a version check (progress notes)."""
        ...

    async def drop(self, drop_keys: list[str]) -> None:
        """Delete whole keys."""
        ...


class RedisStore:
    """Standalone Redis or Redis Cluster (redis.asyncio clients); every write is one slot: the
    entity hash, its slot's marker and (companies) the users tab share a hash tag."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._apply = client.register_script(_APPLY)
        self._place = client.register_script(_PLACE)
        self._load_without = client.register_script(_LOAD_WITHOUT)
        # A cluster pipeline refuses scripts: there, the calls go out concurrently instead.
        self._cluster = isinstance(client, AsyncRedisCluster)

    def _marker(self, key: str) -> str:
        """The marker a write of `key` checks: one per slot on a cluster (a master that lost
        its data lost the markers of its slots), one for the whole of a standalone Redis."""
        tag = _slot_tags()[key_slot(key.encode())] if self._cluster else "0"
        return keys.marker(namespace_of(key), tag)

    async def _run(self, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """One script call per (keys, args), in one round trip (concurrent calls on a cluster)."""
        if self._cluster:
            await self._client.initialize()  # a no-op once it knows the nodes
            out: list[Any] = []
            # redis-py fails a call rather than wait when a node's connections are all busy
            for i in range(0, len(calls), _CLUSTER_CALLS):
                chunk = calls[i : i + _CLUSTER_CALLS]
                out += await asyncio.gather(*(script(keys=k, args=a) for k, a in chunk))
            return out
        pipe = self._client.pipeline(transaction=False)
        for call_keys, args in calls:
            await script(keys=call_keys, args=args, client=pipe)
        return list(await pipe.execute())

    async def load(self, entity_keys: list[str]) -> list[dict[str, bytes]]:
        if not entity_keys:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key in entity_keys:
            pipe.hgetall(key)
        rows = await pipe.execute()
        return [{k.decode(): v for k, v in row.items()} for row in rows]

    async def read(
        self, requests: Sequence[tuple[str, list[str] | None]]
    ) -> list[dict[str, bytes]]:
        if not requests:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key, names in requests:
            if names is None:
                pipe.hgetall(key)
            elif names:
                pipe.hmget(key, names)
            else:
                pipe.exists(key)  # nothing wanted: keeps the answers in step
        out = []
        for (_key, names), found in zip(requests, await pipe.execute(), strict=True):
            if names is None:
                out.append({k.decode(): v for k, v in found.items()})
            elif names:
                out.append({n: v for n, v in zip(names, found, strict=True) if v is not None})
            else:
                out.append({})
        return out

    async def load_without(
        self, entity_keys: list[str], skip: str, wanted: list[list[str]]
    ) -> list[dict[str, bytes]]:
        if not entity_keys:
            return []
        calls = [([k], [skip, *names]) for k, names in zip(entity_keys, wanted, strict=True)]
        out = []
        for flat in await self._run(self._load_without, calls):
            out.append({flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)})
        return out

    async def commit(self, writes: list[Write]) -> list[bool]:
        if not writes:
            return []
        calls = []
        for w in writes:
            args: list[Any] = [keys.VERSION, w.expected_version, len(w.to_set), len(w.to_delete)]
            for name, value in w.to_set.items():
                args += [name, value]
            args += w.to_delete
            call_keys = [w.key, self._marker(w.key)]
            if w.beside is not None:
                call_keys.append(w.beside[0])
                for member, score in w.beside[1].items():
                    args += [member, "" if score is None else repr(score)]
            calls.append((call_keys, args))
        results = await self._run(self._apply, calls)
        for w, r in zip(writes, results, strict=True):
            if r == -2:
                raise Lost(namespace_of(w.key))
        return [r != -1 for r in results]

    async def mark(self, namespace: str) -> None:
        tags = _slot_tags() if self._cluster else ["0"]
        pipe = self._client.pipeline(transaction=False)
        for tag in sorted(set(tags)):
            pipe.set(keys.marker(namespace, tag), b"1")
        await pipe.execute()

    async def unmark(self, namespace: str) -> None:
        tags = sorted(set(_slot_tags())) if self._cluster else ["0"]
        await self.drop([keys.marker(namespace, tag) for tag in tags])

    async def marked(self, namespace: str) -> bool:
        tags = _slot_tags() if self._cluster else ["0"]
        pipe = self._client.pipeline(transaction=False)
        for tag in tags:
            pipe.exists(keys.marker(namespace, tag))
        return all(await pipe.execute())

    async def place(self, moves: list[MemberMove]) -> None:
        if moves:
            calls = [([m.key, m.versions], [m.member, m.version, int(m.inside)]) for m in moves]
            await self._run(self._place, calls)

    async def index(self, ops: list[IndexOp]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for op in ops:
            if op.remove is not None:
                pipe.zrem(op.key, op.remove)
            if op.add is not None:
                pipe.zadd(op.key, {op.add: op.score}, lt=op.earlier_only)
        await pipe.execute()

    async def version(self, key: str) -> int:
        raw = await self._client.hget(key, keys.VERSION)
        return int(raw) if raw else 0

    async def versions(self, entity_keys: list[str]) -> list[int]:
        pipe = self._client.pipeline(transaction=False)
        for key in entity_keys:
            pipe.hget(key, keys.VERSION)
        return [int(raw) if raw else 0 for raw in await pipe.execute()]

    async def due(self, set_keys: list[str], until: float, limit: int) -> list[list[str]]:
        pipe = self._client.pipeline(transaction=False)
        for key in set_keys:
            pipe.zrangebyscore(key, "-inf", until, start=0, num=limit)
        return [[m.decode() for m in found] for found in await pipe.execute()]

    async def ranked(self, key: str) -> list[str]:
        return [m.decode() for m in await self._client.zrange(key, 0, -1)]

    async def range(self, key: str, after: str | None, limit: int) -> list[str]:
        low = "-" if after is None else "(" + after
        return [m.decode() for m in await self._client.zrangebylex(key, low, "+", 0, limit)]

    async def scan(self, pattern: str) -> AsyncIterator[str]:
        async for key in self._client.scan_iter(match=pattern, count=1000):
            yield key.decode()

    async def headers(self, entity_keys: list[str]) -> list[bytes | None]:
        if not entity_keys:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key in entity_keys:
            pipe.hget(key, keys.HEADER)
        return list(await pipe.execute())

    async def put(self, key: str, fields: dict[str, bytes]) -> None:
        await self._client.hset(key, mapping=fields)

    async def drop(self, drop_keys: list[str]) -> None:
        for i in range(0, len(drop_keys), 1000):  # a cluster client splits it by slot
            await self._client.unlink(*drop_keys[i : i + 1000])


class MemoryStore:
    """The same contract in a dict, for unit tests of the fold and the step."""

    def __init__(self, *namespaces: str) -> None:
        """A store whose `namespaces` are marked already (as `mark` would)."""
        self.data: dict[str, dict[str, bytes]] = {}
        self.sets: dict[str, dict[str, float]] = {}
        self.placed: dict[str, dict[str, int]] = {}  # member set versions
        for namespace in namespaces:
            self.data[keys.marker(namespace, "0")] = {"m": b"1"}

    async def load(self, entity_keys: list[str]) -> list[dict[str, bytes]]:
        return [dict(self.data.get(k, {})) for k in entity_keys]

    async def read(
        self, requests: Sequence[tuple[str, list[str] | None]]
    ) -> list[dict[str, bytes]]:
        out = []
        for key, names in requests:
            fields = self.data.get(key, {})
            if names is None:
                out.append(dict(fields))
            else:
                out.append({n: fields[n] for n in names if n in fields})
        return out

    async def load_without(
        self, entity_keys: list[str], skip: str, wanted: list[list[str]]
    ) -> list[dict[str, bytes]]:
        out = []
        for key, names in zip(entity_keys, wanted, strict=True):
            fields = self.data.get(key, {})
            out.append({k: v for k, v in fields.items() if not k.startswith(skip) or k in names})
        return out

    async def commit(self, writes: list[Write]) -> list[bool]:
        out = []
        for w in writes:
            if keys.marker(namespace_of(w.key), "0") not in self.data:
                raise Lost(namespace_of(w.key))
            current = self.data.setdefault(w.key, {})
            version = version_of(current)
            if version != w.expected_version:
                out.append(False)
                continue
            current.update(w.to_set)
            for name in w.to_delete:
                current.pop(name, None)
            if w.beside is not None:
                members = self.sets.setdefault(w.beside[0], {})
                for member, score in w.beside[1].items():
                    if score is None:
                        members.pop(member, None)
                    else:
                        members[member] = score
            current[keys.VERSION] = str(version + 1).encode()
            out.append(True)
        return out

    async def mark(self, namespace: str) -> None:
        self.data[keys.marker(namespace, "0")] = {"m": b"1"}

    async def marked(self, namespace: str) -> bool:
        return keys.marker(namespace, "0") in self.data

    async def unmark(self, namespace: str) -> None:
        self.data.pop(keys.marker(namespace, "0"), None)

    async def place(self, moves: list[MemberMove]) -> None:
        for m in moves:
            placed = self.placed.setdefault(m.versions, {})
            if m.version < placed.get(m.member, -1):
                continue
            placed[m.member] = m.version
            members = self.sets.setdefault(m.key, {})
            if m.inside:
                members[m.member] = 0.0
            else:
                members.pop(m.member, None)

    async def index(self, ops: list[IndexOp]) -> None:
        for op in ops:
            members = self.sets.setdefault(op.key, {})
            if op.remove is not None:
                members.pop(op.remove, None)
            if op.add is not None:
                if op.earlier_only and members.get(op.add, op.score) < op.score:
                    continue
                members[op.add] = op.score

    async def version(self, key: str) -> int:
        return version_of(self.data.get(key, {}))

    async def versions(self, entity_keys: list[str]) -> list[int]:
        return [version_of(self.data.get(k, {})) for k in entity_keys]

    async def due(self, set_keys: list[str], until: float, limit: int) -> list[list[str]]:
        out = []
        for key in set_keys:
            found = sorted((s, m) for m, s in self.sets.get(key, {}).items() if s <= until)
            out.append([m for _s, m in found[:limit]])
        return out

    async def range(self, key: str, after: str | None, limit: int) -> list[str]:
        members = sorted(m for m in self.sets.get(key, {}) if after is None or m > after)
        return members[:limit]

    async def ranked(self, key: str) -> list[str]:
        found = self.sets.get(key, {}).items()
        return [m for m, _s in sorted(found, key=lambda kv: (kv[1], kv[0].encode()))]

    async def scan(self, pattern: str) -> AsyncIterator[str]:
        for key in [k for k in self.data if fnmatch.fnmatchcase(k, pattern)]:
            yield key

    async def headers(self, entity_keys: list[str]) -> list[bytes | None]:
        return [self.data.get(k, {}).get(keys.HEADER) for k in entity_keys]

    async def put(self, key: str, fields: dict[str, bytes]) -> None:
        self.data.setdefault(key, {}).update(fields)

    async def drop(self, drop_keys: list[str]) -> None:
        for key in drop_keys:
            self.data.pop(key, None)
            self.sets.pop(key, None)
            self.placed.pop(key, None)


_SLOTS = 16384
_tags: list[str] = []


def _slot_tags() -> list[str]:
    """A hash tag in each of Redis Cluster's 16,384 slots (the first decimal number that lands
    there; the same on every machine), found once per process."""
    if not _tags:
        found: dict[int, str] = {}
        i = 0
        while len(found) < _SLOTS:
            found.setdefault(binascii.crc_hqx(str(i).encode(), 0) % _SLOTS, str(i))
            i += 1
        _tags.extend(found[slot] for slot in range(_SLOTS))
    return _tags


class MemoryHashes:
    """Read access to a MemoryStore in the shape of redis.Redis (hget/hmget), for the reader."""

    def __init__(self, store: MemoryStore) -> None:
        self._data = store.data
        self._sets = store.sets

    def hget(self, name: str, key: str) -> bytes | None:
        return self._data.get(name, {}).get(key)

    def get(self, name: str) -> bytes | None:
        return None  # no namespace pointer in memory: the logical namespace is the physical one

    def hmget(self, name: str, keys: list[str]) -> list[bytes | None]:
        fields = self._data.get(name, {})
        return [fields.get(k) for k in keys]

    def hgetall(self, name: str) -> dict[bytes, bytes]:
        return {k.encode(): v for k, v in self._data.get(name, {}).items()}

    def pipeline(self, transaction: bool = False) -> _MemoryPipeline:
        return _MemoryPipeline(self)

    def scan_iter(self, match: str, count: int = 0) -> Iterator[str]:
        return (k for k in [*self._data, *self._sets] if fnmatch.fnmatchcase(k, match))

    def zrange(self, name: str, start: int, end: int) -> list[bytes]:
        """Redis's ZRANGE by index: score, then member order."""
        members = sorted(self._sets.get(name, {}).items(), key=lambda kv: (kv[1], kv[0].encode()))
        found = [m.encode() for m, _score in members]
        return found[start:] if end == -1 else found[start : end + 1]

    def zrangebylex(self, name: str, min: str, max: str, start: int, num: int) -> list[str]:
        """Redis's ZRANGEBYLEX bounds: `-`, `+`, `[inclusive`, `(exclusive`."""

        def above(m: str) -> bool:
            return min == "-" or (m >= min[1:] if min[0] == "[" else m > min[1:])

        def below(m: str) -> bool:
            return max == "+" or (m <= max[1:] if max[0] == "[" else m < max[1:])

        members = sorted(m for m in self._sets.get(name, ()) if above(m) and below(m))
        return members[start : start + num]


class _MemoryPipeline:
    """Queues reader calls and answers them together, like a redis-py pipeline."""

    def __init__(self, hashes: MemoryHashes) -> None:
        self._hashes = hashes
        self._calls: list[Any] = []

    def hget(self, name: str, key: str) -> None:
        self._calls.append(lambda: self._hashes.hget(name, key))

    def hmget(self, name: str, keys: list[str]) -> None:
        self._calls.append(lambda: self._hashes.hmget(name, keys))

    def hgetall(self, name: str) -> None:
        self._calls.append(lambda: self._hashes.hgetall(name))

    def zcard(self, name: str) -> None:
        self._calls.append(lambda: len(self._hashes._sets.get(name, ())))

    def zrangebylex(self, name: str, min: str, max: str, start: int, num: int) -> None:
        self._calls.append(lambda: self._hashes.zrangebylex(name, min, max, start, num))

    def execute(self) -> list[Any]:
        return [call() for call in self._calls]
