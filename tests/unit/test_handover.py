"""The flip of a replay, on the memory store (issue 17, point 1).

A replay builds the new namespace from the log with its own reads while the live worker
writes only the old one; at the flip the live worker may be behind the rebuild or ahead of
it on each partition. After the flip two writers go on in the new namespace, interleaved
any way: the live worker (`streams.handover`: records the rebuild applied are skipped,
records only the old namespace got are read again and applied first) and the replay's
catch-up (the rest of the log in order, then the entries still there advanced). Whatever
the positions and the interleaving, the new namespace ends equal to the batch reference
over every record — also on a partition the live worker gets nothing more for.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from typing import Any

import reference as ref
from foldkit import views
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fold_properties import NOW, PERIODS, USERS, record_sets, reference_views

from projections import keys
from projections.company_step import DirectSink
from projections.reader import Reader
from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import MemoryHashes, MemoryStore
from schemas.codec import validate
from schemas.limits import Limits
from streams.handover import Handover, plan

OLD, NEW = "o", "n"


def test_plan_skips_what_the_rebuild_applied_and_fills_what_it_did_not() -> None:
    covered = {"t:0": 10, "t:1": 10, "t:2": 10}
    spans = {("t", 0): (4, 7), ("t", 1): (8, 15), ("t", 2): (14, 20), ("t", 3): (0, 5)}
    fills, skip, done = plan(covered, spans)
    assert fills == {"t:2": (10, 14)}  # the live worker was ahead: read [10, 14) again
    assert skip == {("t", 0): 10, ("t", 1): 10}  # behind or across: below 10 is there
    assert sorted(done) == ["t:1", "t:2"]  # t:0 is not past 10 yet; t:3 has no entry


class _Hashes:
    """The handover hash as the worker's async Redis client sees it."""

    def __init__(self, data: dict[str, int]) -> None:
        self.data = dict(data)

    async def hgetall(self, _key: str) -> dict[bytes, bytes]:
        return {k.encode(): str(v).encode() for k, v in self.data.items()}

    async def hmget(self, _key: str, names: list[str]) -> list[bytes | None]:
        return [str(self.data[n]).encode() if n in self.data else None for n in names]

    async def hdel(self, _key: str, *names: str) -> None:
        for n in names:
            self.data.pop(n, None)


class _LogHandover(Handover):
    """Reads a gap from the in-memory log instead of Kafka."""

    def __init__(self, store: MemoryStore, log: dict[str, list[Positioned]], hashes: _Hashes):
        super().__init__(None, hashes, store, DirectSink(store, lambda: NOW))  # type: ignore[arg-type]
        self._log = log

    async def _fill(
        self, namespace: str, name: str, start: int, end: int, config: FoldConfig
    ) -> None:
        part = self._log[name][start:end]
        await apply_batch(self._store, self._sink, namespace, part, now_ms=NOW, config=config)


@st.composite
def flips(draw: st.DrawFn) -> dict[str, Any]:
    records = draw(record_sets())
    seed = draw(st.integers(0, 2**32))
    return {"records": records, "seed": seed}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flips())
def test_a_flip_with_the_live_worker_anywhere_gives_the_batch_answer(case: dict[str, Any]) -> None:
    rng = random.Random(case["seed"])
    records = case["records"] + [dict(r) for r in case["records"] if rng.random() < 0.2]
    rng.shuffle(records)
    log: dict[str, list[Positioned]] = {}  # "topic:partition" -> its records by offset
    for r in records:
        topic, partition = f"src.{r['type']}", zlib.crc32(r["user_id"].encode()) % 2
        name = f"{topic}:{partition}"
        offset = len(log.setdefault(name, []))
        log[name].append(Positioned(validate(r, Limits(), NOW), topic, partition, offset))
    store = MemoryStore(OLD, NEW)
    sink, config = DirectSink(store, lambda: NOW), FoldConfig()
    live = {name: rng.randint(0, len(part)) for name, part in log.items()}  # flip positions
    rebuilt = {name: rng.randint(0, len(part)) for name, part in log.items()}

    def batches(upto: dict[str, int], start: dict[str, int]) -> list[list[Positioned]]:
        """The records of [start, upto) of every partition, in batches mixing partitions."""
        left = {n: log[n][start[n] : upto[n]] for n in log}
        out = []
        while any(left.values()):
            batch = []
            for n in left:
                take = rng.randint(0, 3)
                batch += left[n][:take]
                left[n] = left[n][take:]
            if batch:
                out.append(batch)
        return out

    async def go() -> None:
        zero = dict.fromkeys(log, 0)
        for batch in batches(live, zero):  # the live worker, before the flip: old namespace
            await apply_batch(store, sink, OLD, batch, now_ms=NOW, config=config)
        for batch in batches(rebuilt, zero):  # the rebuild, on its own
            await apply_batch(store, sink, NEW, batch, now_ms=NOW, config=config)
        hashes = _Hashes(rebuilt)
        handover = _LogHandover(store, log, hashes)
        ends = {n: len(p) for n, p in log.items()}
        # after the flip: the live worker from its committed offsets (a little behind where
        # it was: a redelivery), and the replay's catch-up from where the rebuild stopped
        committed = {n: rng.randint(0, live[n]) for n in log}
        steps = [("live", b) for b in batches(ends, committed)]
        catching = [("catch", b) for b in batches(ends, rebuilt)] + [("advance", [])]
        while steps or catching:
            side = steps if not catching or (steps and rng.random() < 0.5) else catching
            kind, batch = side.pop(0)
            if kind == "live":
                there = await handover.before(NEW, batch, config)
                batch = [p for p in batch if p.offset >= there.get((p.topic, p.partition), 0)]
            if kind == "advance":
                for name, end in ends.items():
                    if name in hashes.data:
                        hashes.data[name] = max(hashes.data[name], end)
            else:
                await apply_batch(store, sink, NEW, batch, now_ms=NOW, config=config)

    asyncio.run(go())
    reader = Reader(MemoryHashes(store), NEW)
    for user in USERS:
        for period in PERIODS:
            assert views(reader, "app", user, **dict(period)) == reference_views(
                case["records"], user, **dict(period)
            ), (user, period)
    for company in ("c1", "c2"):
        got = (
            reader.company("app", company)
            if store.data.get(keys.company(NEW, "app", company), {}).get(keys.HEADER)
            else None
        )
        assert got == ref.company_view(case["records"], "app", company, now_ms=NOW), company
