"""Fold records through the real step and read them back through the real reader, in memory."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import reference

from projections.company import Contribution
from projections.company_step import DirectSink, apply_company_batch
from projections.reader import NotFound, Reader
from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import MemoryHashes, MemoryStore
from schemas.codec import validate
from schemas.limits import Limits
from streams.deltas import by_company, decode_delta, encode_delta

NS = "t"


class MemorySink:
    """The company-deltas topic as a list of messages (one per company and batch, as the
    worker sends them): offsets in the order the user side produced."""

    def __init__(self) -> None:
        self.log: list[list[Contribution]] = []

    async def send(self, deltas: list[Contribution]) -> None:
        for parts in by_company(deltas):
            # through the wire codec, as the company agent reads them
            self.log.append(decode_delta(encode_delta(parts), "deltas", 0, len(self.log)))

    def read(self, offsets: list[int] | None = None) -> list[Contribution]:
        """The contributions of these messages (all), as the company agent gets them."""
        chosen = range(len(self.log)) if offsets is None else offsets
        return [c for i in chosen for c in self.log[i]]


def fold(
    records: list[dict[str, Any]],
    *,
    now_ms: int,
    batches: list[list[int]] | None = None,
    config: FoldConfig | None = None,
    rng: random.Random | None = None,
    direct: bool = False,
) -> Reader:
    """Validate and apply records in the given batches (lists of indexes) to a fresh store.

    Each record gets its own offset on one partition per type, as Kafka would give it; a
    batch index repeated means the record is delivered again at the same offset.
    """
    config = config or FoldConfig()
    store = MemoryStore(NS)
    sink: MemorySink | DirectSink = DirectSink(store, lambda: now_ms) if direct else MemorySink()
    positioned = [
        Positioned(validate(r, Limits(), now_ms), f"src.{r['type']}", 0, i)
        for i, r in enumerate(records)
    ]
    for batch in batches or [list(range(len(records)))]:
        asyncio.run(
            apply_batch(
                store, sink, NS, [positioned[i] for i in batch], now_ms=now_ms, config=config
            )
        )
    if isinstance(sink, MemorySink):
        # The company agent reads the deltas in log order, batched and redelivered as any topic.
        log = sink.log
        delta_batches = random_batches(len(log), rng) if rng else [list(range(len(log)))]
        for batch in delta_batches:
            asyncio.run(apply_company_batch(store, sink.read(batch), now_ms=now_ms))
    return Reader(MemoryHashes(store), NS)


def views(reader: Reader, app: str, user: str, **period: Any) -> dict[str, Any] | None:
    search = period.pop("search", None)
    try:
        return {
            "user": reader.user(app, user, search=search, **period),
            "sessions": reader.sessions(app, user, **period),
            "sentiment": reader.sentiment(app, user, **period),
            "engagement": reader.engagement(app, user),
        }
    except NotFound:
        return None


def random_batches(n: int, rng: random.Random, redeliver: float = 0.2) -> list[list[int]]:
    """A delivery of n records: Kafka order per partition is kept by offset, but batches are
    split anywhere and some prefixes are delivered again (a crash before the commit)."""
    order = list(range(n))
    batches: list[list[int]] = []
    i = 0
    while i < n:
        size = rng.randint(1, max(1, n // 3))
        batches.append(order[i : i + size])
        if rng.random() < redeliver:
            start = rng.randint(0, i)
            batches.append(order[start : i + size])
        i += size
    return batches


def users_page(
    reader: Reader, records: list[dict[str, Any]], app: str, now_ms: int, **page: Any
) -> Any:
    """`reader.users(app, **page)`; its NotFound only for an app the reference has no user
    and no company of (tests/unit/test_search.py checks it is raised then)."""
    try:
        return reader.users(app, **page)
    except NotFound:
        assert not reference.users_list(records, app, now_ms=now_ms)
        assert not reference.company_ids(records, now_ms=now_ms)
        return [], None
