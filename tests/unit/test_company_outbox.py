"""Company contributions leave a user step only from what it wrote (issue 17, point 4).

Two ways a contribution of a write that never committed used to stay in a company until the
user's part changed again, each reproduced through the real step on the memory store: a
zombie (a worker that lost its partitions but not its batch) that reads the version its
successor also read, and a worker killed between its sends and its write whose records come
again with a later record behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from foldkit import NS, MemorySink

from projections import keys
from projections.company_step import apply_company_batch
from projections.fold import decode_field
from projections.reader import NotFound, Reader
from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import MemoryHashes, MemoryStore
from schemas.codec import validate
from schemas.limits import Limits

NOW = 1_795_000_000_000
DAY = 86_400_000


class _Killed(Exception):
    pass


class _Writer(MemoryStore):
    """A writer on a shared store that dies at its first commit. With `meanwhile` (another
    writer's whole step), it is a zombie that read the version its successor reads too: the
    successor runs as soon as the zombie sends or writes anything, so whatever the zombie
    sends lands after the successor's."""

    def __init__(self, shared: MemoryStore, sink: MemorySink, meanwhile: Any = None) -> None:
        super().__init__()
        self.data, self.sets, self.placed = shared.data, shared.sets, shared.placed
        self._meanwhile, self._sink = meanwhile, sink

    async def _successor(self) -> None:
        if self._meanwhile is not None:
            run, self._meanwhile = self._meanwhile, None
            await run()

    async def send(self, deltas: list[Any]) -> None:  # the zombie's sink
        await self._successor()
        await self._sink.send(deltas)

    async def commit(self, writes: list[Any]) -> list[bool]:
        await self._successor()
        raise _Killed


def _record(offset: int, **fields: Any) -> Positioned:
    body = {"app_id": "app", "user_id": "u", "event_id": f"e{offset}", **fields}
    body.setdefault("timestamp", NOW - DAY + offset * 60_000)
    return Positioned(validate(body, Limits(), NOW), f"src.{body['type']}", 0, offset)


def _identify(offset: int, company: str) -> Positioned:
    return _record(offset, type="identify", traits={}, company={"id": company})


def _track(offset: int) -> Positioned:
    return _record(offset, type="track", name="Report Created")


async def _step(store: MemoryStore, sink: MemorySink, batch: list[Positioned]) -> None:
    await apply_batch(store, sink, NS, batch, now_ms=NOW, config=FoldConfig())


def _companies(store: MemoryStore, sink: MemorySink) -> Reader:
    """The company agent reads every contribution the user side produced, in log order."""
    asyncio.run(apply_company_batch(store, sink.read(), now_ms=NOW))
    return Reader(MemoryHashes(store), NS)


def _members(reader: Reader, company: str) -> tuple[int, list[str]]:
    view = reader.company("app", company)
    return view["users_count"], [row["user_id"] for row in reader.company_users("app", company)]


def test_a_zombie_that_read_the_same_version_sends_nothing_of_its_step() -> None:
    """U is in A. A zombie folds a track event for U; before it writes, its successor folds
    the same event and an identify that moves U to B, and commits. The zombie dies at its
    write. A must not count U (it did, with the zombie's delta sent before its write)."""
    store, sink = MemoryStore(NS), MemorySink()
    asyncio.run(_step(store, sink, [_identify(0, "A")]))
    successor = [_track(1), _identify(2, "B")]
    zombie = _Writer(store, sink, meanwhile=lambda: _step(store, sink, successor))
    with contextlib.suppress(_Killed):
        asyncio.run(apply_batch(zombie, zombie, NS, [_track(1)], now_ms=NOW, config=FoldConfig()))
    reader = _companies(store, sink)
    assert reader.user("app", "u")["company_id"] == "B"
    assert _members(reader, "A") == (0, [])
    assert _members(reader, "B") == (1, ["u"])


def test_a_worker_killed_at_its_write_leaves_no_contribution_behind() -> None:
    """U is in A. A worker folds an identify that moves U to B and is killed at its write.
    The records come again with a later identify that moves U back to A: A must count U (it
    held the dead attempt's "U left", which the redelivered step, seeing nothing changed for
    A, never sent again)."""
    store, sink = MemoryStore(NS), MemorySink()
    asyncio.run(_step(store, sink, [_identify(0, "A"), _track(1)]))
    with contextlib.suppress(_Killed):
        asyncio.run(_step(_Writer(store, sink), sink, [_identify(2, "B")]))
    asyncio.run(_step(store, sink, [_identify(2, "B"), _identify(3, "A")]))
    reader = _companies(store, sink)
    assert reader.user("app", "u")["company_id"] == "A"
    assert _members(reader, "A") == (1, ["u"])
    assert reader.company("app", "A")["overview"]["total_events"] == 1
    assert _members(reader, "B") == (0, [])


class _DiesAfterWrite(MemoryStore):
    """A writer that commits, then dies before anything it would send."""

    def __init__(self, shared: MemoryStore) -> None:
        super().__init__()
        self.data, self.sets, self.placed = shared.data, shared.sets, shared.placed

    async def commit(self, writes: list[Any]) -> list[bool]:
        await super().commit(writes)
        raise _Killed


def test_a_worker_killed_after_its_write_is_made_good_by_the_redelivery() -> None:
    """The write commits (U moves to B) and the worker dies before sending. The redelivered
    records are all under the fence: the step re-sends what the stored user contributes."""
    store, sink = MemoryStore(NS), MemorySink()
    asyncio.run(_step(store, sink, [_identify(0, "A"), _track(1)]))
    with contextlib.suppress(_Killed):
        asyncio.run(_step(_DiesAfterWrite(store), sink, [_identify(2, "B")]))
    asyncio.run(_step(store, sink, [_identify(2, "B")]))
    reader = _companies(store, sink)
    assert _members(reader, "A") == (0, [])
    assert _members(reader, "B") == (1, ["u"])
    assert reader.company("app", "B")["overview"]["total_events"] == 1


def _delete(offset: int) -> Positioned:
    return _record(
        offset,
        type="command",
        command="delete",
        command_id=f"c{offset}",
        issued_at=NOW - DAY + offset * 60_000,
    )


def test_a_delete_written_before_a_death_still_takes_the_user_out() -> None:
    """U is in A. A delete erases every record of U, so U no longer names A; the write
    commits and the worker dies before sending. The redelivered step re-sends what the stored
    user contributes, which names no company: A must still hear that U left (it counted U
    forever when the stored digests forgot A at the write)."""
    store, sink = MemoryStore(NS), MemorySink()
    asyncio.run(_step(store, sink, [_identify(0, "A"), _track(1)]))
    with contextlib.suppress(_Killed):
        asyncio.run(_step(_DiesAfterWrite(store), sink, [_delete(2)]))
    asyncio.run(_step(store, sink, [_delete(2)]))
    reader = _companies(store, sink)
    assert _gone(reader, "A")  # no identify names A any more, and no member is left in it


def test_a_left_company_is_forgotten_once_its_news_went_out() -> None:
    """After U left A (a delete) and that step's sends went out, a later step of U no longer
    keeps A among the companies it sent to: the stored digests hold nothing of erased data."""
    store, sink = MemoryStore(NS), MemorySink()
    asyncio.run(_step(store, sink, [_identify(0, "A"), _track(1)]))
    asyncio.run(_step(store, sink, [_delete(2)]))
    asyncio.run(_step(store, sink, [_track(3)]))
    stored = asyncio.run(store.read([(keys.user(NS, "app", "u"), None)]))[0]
    assert decode_field(stored[keys.CONTRIBUTED]) == {}
    assert _gone(_companies(store, sink), "A")


def _gone(reader: Reader, company: str) -> bool:
    try:
        reader.company("app", company)
    except NotFound:
        return True
    return False
