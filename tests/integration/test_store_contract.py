"""One contract, every backend: the in-memory store, standalone Redis and a 3-master Redis
Cluster give the same answers to the same store calls (projections/store.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.asyncio.cluster

from projections import keys
from projections.store import IndexOp, Lost, MemberMove, MemoryStore, RedisStore, Store, Write

pytestmark = pytest.mark.integration

BACKENDS = ["memory", "redis", "cluster"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def contract(body: Callable[[Store, str], Awaitable[None]]) -> Callable[..., None]:
    """Run `body(store, namespace)` on the backend, on a fresh namespace, then clean up."""

    def test(backend: str, request: pytest.FixtureRequest) -> None:
        async def go() -> None:
            ns = f"k{uuid.uuid4().hex[:8]}"
            if backend == "memory":
                await body(MemoryStore(ns), ns)
                return
            if backend == "redis":
                client: Any = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
            else:
                client = redis.asyncio.cluster.RedisCluster.from_url(
                    request.getfixturevalue("cluster_url")
                )
            store = RedisStore(client)
            try:
                await store.mark(ns)
                await body(store, ns)
            finally:
                found = [k async for k in store.scan(f"{ns}:*")]
                await store.drop(found)
                await client.aclose()

        asyncio.run(go())

    test.__name__ = body.__name__
    test.__doc__ = body.__doc__
    return test


async def collect(items: AsyncIterator[str]) -> list[str]:
    return [i async for i in items]


async def projection_keys(store: Store, ns: str) -> list[str]:
    """Every key of the namespace but its markers."""
    return [k async for k in store.scan(f"{ns}:*") if not k.startswith(f"{ns}::mark:")]


def users(ns: str, n: int) -> list[str]:
    # ids that land in every slot of a cluster, including ones that need escaping
    return [keys.user(ns, "app", f"u{i}:{{x}}*") for i in range(n)]


async def _versions(store: Store, ns: str) -> None:
    """A write applies only at the expected version and bumps it; a stale one changes nothing."""
    a, b = users(ns, 2)
    assert await store.load([a, b]) == [{}, {}]
    assert await store.version(a) == 0
    assert await store.commit([Write(a, 0, {"h": b"1", "x": b"y"}, []), Write(b, 0, {}, [])])
    assert await store.version(a) == 1 and await store.version(b) == 1
    assert await store.commit(
        [Write(a, 0, {"h": b"stale"}, ["x"]), Write(b, 1, {"z": b""}, [])]
    ) == [
        False,
        True,
    ]
    [fa, fb] = await store.load([a, b])
    assert fa == {"h": b"1", "x": b"y", "_v": b"1"}
    assert fb == {"z": b"", "_v": b"2"}
    assert await store.commit([Write(a, 1, {"h": b"2"}, ["x", "absent"])]) == [True]
    assert await store.load([a]) == [{"h": b"2", "_v": b"2"}]
    assert await store.headers([a, b, users(ns, 3)[2]]) == [b"2", None, None]


async def _many_keys_and_fields(store: Store, ns: str) -> None:
    """Hundreds of entities in one call, thousands of fields in one write, partial loads."""
    many = users(ns, 300)
    fields = {f"md:{i}": str(i).encode() for i in range(5000)} | {"h": b"h"}
    ok = await store.commit(
        [Write(k, 0, fields if k == many[0] else {"h": b"h"}, []) for k in many]
    )
    assert ok == [True] * 300
    wanted = [[f"md:{i}" for i in range(0, 5000, 7)] + ["md:none"]] + [[]] * 299
    loaded = await store.load_without(many, "md:", wanted)
    assert loaded[0] == {"h": b"h", "_v": b"1"} | {
        f"md:{i}": str(i).encode() for i in range(0, 5000, 7)
    }
    assert loaded[1:] == [{"h": b"h", "_v": b"1"}] * 299
    assert sorted(await collect(store.scan(keys.user_pattern(ns, "app")))) == sorted(many)


async def _sorted_sets(store: Store, ns: str) -> None:
    """Index moves are idempotent; `earlier_only` never postpones; due and range read them."""
    due = [keys.due(ns, "app", "user", b) for b in range(3)]
    await store.index(
        [
            IndexOp(due[0], None, "a", 50),
            IndexOp(due[0], None, "b", 10),
            IndexOp(due[1], None, "c", 30),
            IndexOp(due[0], None, "a", 80, earlier_only=True),  # later: ignored
            IndexOp(due[1], None, "c", 20, earlier_only=True),  # earlier: taken
            IndexOp(due[1], None, "d", 90, earlier_only=True),  # new: added
        ]
    )
    assert await store.due(due, until=60, limit=10) == [["b", "a"], ["c"], []]
    assert await store.due(due, until=100, limit=1) == [["b"], ["c"], []]
    await store.index([IndexOp(due[0], "a", None), IndexOp(due[0], "a", None)])
    assert await store.due(due, until=100, limit=10) == [["b"], ["c", "d"], []]

    ix = keys.users_index(ns, "app", "id", 0)
    await store.index([IndexOp(ix, None, m) for m in ("0:c", "0:a", "0:b")])
    await store.index([IndexOp(ix, "0:c", "0:d")])
    assert await store.range(ix, None, 10) == ["0:a", "0:b", "0:d"]
    assert await store.range(ix, "0:a", 1) == ["0:b"]
    assert await store.range(ix, "0:d", 10) == []


async def _put_scan_drop(store: Store, ns: str) -> None:
    """put writes without a version; scan finds by pattern; drop removes whole keys."""
    company = keys.company(ns, "app", "c:1")
    await store.put(company, {"note": b"1"})
    await store.put(company, {"other": b"2"})
    assert await store.load([company]) == [{"note": b"1", "other": b"2"}]
    a = users(ns, 1)[0]
    await store.commit([Write(a, 0, {"h": b"x"}, [])])
    assert await collect(store.scan(keys.company_pattern(ns, "app"))) == [company]
    assert sorted(await projection_keys(store, ns)) == sorted([a, company])
    await store.drop([company, a, keys.user(ns, "app", "never")])
    assert await projection_keys(store, ns) == []


async def _concurrent_writers(store: Store, ns: str) -> None:
    """Two writers race on the same versions: exactly one wins each entity."""
    keys_ = users(ns, 50)
    first, second = await asyncio.gather(
        store.commit([Write(k, 0, {"w": b"1"}, []) for k in keys_]),
        store.commit([Write(k, 0, {"w": b"2"}, []) for k in keys_]),
    )
    assert all(x != y for x, y in zip(first, second, strict=True))
    loaded = await store.load(keys_)
    assert all(f["_v"] == b"1" for f in loaded)
    assert [f["w"] for f in loaded] == [b"1" if won else b"2" for won in first]


async def _markers(store: Store, ns: str) -> None:
    """A write checks the namespace's marker in its own slot: in a namespace never marked, or
    one whose markers are gone (a Redis that came back empty), it is refused with `Lost`, and
    nothing is written."""
    a = users(ns, 30)
    assert await store.marked(ns)
    assert all(await store.commit([Write(k, 0, {"h": b"1"}, []) for k in a]))
    other = f"{ns}x"
    assert not await store.marked(other)
    with pytest.raises(Lost) as lost:
        await store.commit([Write(keys.user(other, "app", "u"), 0, {"h": b"1"}, [])])
    assert lost.value.namespace == other
    assert await store.load([keys.user(other, "app", "u")]) == [{}]
    await store.drop([k async for k in store.scan(keys.marker(ns, "*"))])
    assert not await store.marked(ns)
    with pytest.raises(Lost):
        await store.commit([Write(k, 1, {"h": b"2"}, []) for k in a])
    await store.mark(ns)
    assert await store.marked(ns)
    assert all(await store.commit([Write(k, 1, {"h": b"2"}, []) for k in a]))


async def _member_moves(store: Store, ns: str) -> None:
    """A member set takes a move only if it placed no newer version of that entity: moves of
    different writers in any order end with the latest version's decision."""

    def move(entity: str, version: int, inside: bool, segment: str = "s") -> MemberMove:
        set_key = keys.segment_members(ns, "app", segment, 3)
        return MemberMove(
            set_key, keys.segment_versions(ns, "app", segment, 3), entity, version, inside
        )

    members = keys.segment_members(ns, "app", "s", 3)
    await store.place([move("0:a", 2, True), move("0:b", 1, True), move("0:c", 5, False)])
    await store.place([move("0:a", 1, False), move("0:b", 1, True), move("0:c", 4, True)])
    assert await store.range(members, None, 10) == ["0:a", "0:b"]  # stale moves changed nothing
    await store.place([move("0:a", 3, False), move("0:c", 5, True), move("0:b", 2, False)])
    assert await store.range(members, None, 10) == ["0:c"]
    await store.place([move("0:a", 2, True), move("0:d", 0, True, segment="t")])
    assert await store.range(members, None, 10) == ["0:c"]
    assert await store.range(keys.segment_members(ns, "app", "t", 3), None, 10) == ["0:d"]


test_markers = contract(_markers)
test_member_moves = contract(_member_moves)
test_versions = contract(_versions)
test_many_keys_and_fields = contract(_many_keys_and_fields)
test_sorted_sets = contract(_sorted_sets)
test_put_scan_drop = contract(_put_scan_drop)
test_concurrent_writers = contract(_concurrent_writers)
