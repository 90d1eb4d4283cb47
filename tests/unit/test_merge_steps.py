"""Identity merge (docs/design.md §7) through the real steps and the real reader, in memory:
user steps and the app's link graph step run as partitions would run them, their messages
travel in any order, batched anyhow and again, and every view equals the batch reference —
including aliases that arrive before, between and long after the records they join, chains,
several ids into one, re-aliases, cycles, unmerges, and deletes across merges."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import reference as ref
from foldkit import NS, MemorySink, views
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fold_properties import (
    BASE,
    NOW,
    PERIODS,
    USERS,
    company_views,
    record_sets,
    reference_company,
    reference_views,
)

from projections.company_step import apply_company_batch
from projections.identity import Link
from projections.identity_step import GraphItem, apply_graph_batch
from projections.origins import Mail, Note
from projections.reader import NotFound, Reader
from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import MemoryHashes, MemoryStore
from schemas.codec import validate
from schemas.limits import Limits


@st.composite
def links(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        previous = draw(st.sampled_from(USERS))
        at = BASE + draw(st.integers(0, 4)) * 43_200_000
        if draw(st.integers(0, 3)) == 0:
            out.append(
                {
                    "type": "command",
                    "command": "unmerge",
                    "command_id": f"un{i}",
                    "issued_at": at,
                    "app_id": "app",
                    "user_id": previous,
                }
            )
        else:
            target = draw(st.sampled_from([u for u in USERS if u != previous]))
            out.append(
                {
                    "type": "alias",
                    "event_id": f"al{i}",
                    "timestamp": at,
                    "app_id": "app",
                    "user_id": target,
                    "previous_id": previous,
                }
            )
    return out


class Partitions:
    """The user topics (sources and merge messages) and the graph topic, as queues."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.store = MemoryStore(NS)
        self.deltas = MemorySink()
        self.users: list[Positioned] = []
        self.graph: list[GraphItem] = []
        self.offset = 0

    def _at(self) -> int:
        self.offset += 1
        return self.offset

    async def send(self, mails: list[Mail]) -> None:  # the user steps' mailer
        for m in mails:
            if m.to is None:
                (record,) = m.records
                if m.kind == "link":
                    self.graph.append(GraphItem(m.app_id, m.origin, link=link_of(record)))
                else:
                    self.graph.append(GraphItem(m.app_id, m.origin, delete=record))  # type: ignore[arg-type]
            elif m.kind == "add":
                for r in m.records:
                    moved = r.model_copy(update={"user_id": m.to})
                    self.users.append(Positioned(moved, "merges", 0, self._at(), m.origin, m.g))
            else:
                note = Note(m.kind, m.app_id, m.to, m.origin, m.g)
                self.users.append(Positioned(note, "merges", 0, self._at()))

    def take(self, queue: list[Any]) -> list[Any]:
        n = self.rng.randint(1, len(queue))
        picked = [queue.pop(self.rng.randrange(len(queue))) for _ in range(n)]
        if self.rng.random() < 0.2:  # a crash before the commit: some come again later
            queue += picked[: self.rng.randint(1, n)]
        return picked

    def run(self) -> None:
        config = FoldConfig()
        while self.users or self.graph:
            if self.graph and (not self.users or self.rng.random() < 0.4):
                notes = asyncio.run(apply_graph_batch(self.store, NS, self.take(self.graph)))
                self.users += [Positioned(n, "merges", 0, self._at()) for n in notes]
            else:
                batch = self.take(self.users)
                asyncio.run(
                    apply_batch(
                        self.store, self.deltas, NS, batch, now_ms=NOW, config=config, mailer=self
                    )
                )
        for i in range(len(self.deltas.log)):  # the company agent, one message at a time
            asyncio.run(apply_company_batch(self.store, self.deltas.read([i]), now_ms=NOW))


def link_of(record: Any) -> Link:
    if record.type == "alias":
        return Link(record.previous_id, record.timestamp, record.event_id, record.user_id)
    return Link(record.user_id, record.issued_at, record.command_id, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=record_sets(), joins=links(), seed=st.integers(0, 2**32))
def test_merges_in_any_order_give_the_batch_answer(
    data: list[dict[str, Any]], joins: list[dict[str, Any]], seed: int
) -> None:
    rng = random.Random(seed)
    records = data + joins
    world = Partitions(rng)
    delivered = list(enumerate(records))
    rng.shuffle(delivered)
    # each record on a partition of its own: delivered in any order, yet Kafka's (per
    # partition) never broken; a record delivered again finds its fence
    world.users = [
        Positioned(validate(r, Limits(), NOW), f"src.{r['type']}", i, i) for i, r in delivered
    ]
    world.offset = len(records)
    world.run()

    reader = Reader(MemoryHashes(world.store), NS)
    for user in USERS:
        root = ref.merged_into(records, "app", user)
        if root is not None:
            try:
                reader.user("app", user)
                raise AssertionError(f"{user} was merged into {root} but has a profile")
            except NotFound as exc:
                assert f"merged into {root!r}" in str(exc)
        for period in PERIODS:
            assert views(reader, "app", user, **dict(period)) == reference_views(
                records, user, **dict(period)
            ), (user, period)
    for company in ("c1", "c2"):
        assert company_views(reader, company) == reference_company(records, company), company
    listed = (
        reader.users("app", sort="last_seen", limit=100)[0]
        if ref.users_list(records, "app", now_ms=NOW)
        else []
    )
    assert listed == ref.users_list(records, "app", now_ms=NOW, sort="last_seen")
