"""A step that only adds records reads and writes the days it touches (projections/days.py),
and what it writes equals what the full projection writes, field by field.

The same records in the same batches go through the real step twice: once as it runs, once
with every step made to read everything and project in full. Both stores must hold the same
fields with the same bytes — late rows joining sessions across midnight, a delete spanning
many days, commands between batches included. And a step's reads and writes on the memory
store do not grow with the user's history: only the index and header lists of days do.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from foldkit import NS, MemorySink, random_batches
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import keys, step
from projections.company_step import apply_company_batch
from projections.days import _reach_in_order, reach
from projections.fold import Unreadable, read_rows
from projections.reader import NotFound, Reader
from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import MemoryHashes, MemoryStore
from schemas.codec import validate
from schemas.limits import Limits
from schemas.timefmt import day_of

DAY = 86_400_000
MIN = 60_000
T0 = 1_794_960_000_000  # a UTC midnight
NOW = T0 + 3 * DAY

# Instants bunched around two midnights, so sessions cross days and late rows join them.
instants = st.one_of(
    st.integers(T0 + DAY - 90 * MIN, T0 + DAY + 90 * MIN),
    st.integers(T0 + 2 * DAY - 90 * MIN, T0 + 2 * DAY + 90 * MIN),
    st.integers(T0, T0 + 3 * DAY - 1),
)
contexts = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "page_url": st.sampled_from(["https://a.io/x", "b.io/y"]),
            "country": st.sampled_from(["DE", "FR"]),
        },
    ),
)


@st.composite
def wire(draw: st.DrawFn, eid: str) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["track", "track", "page", "feedback", "content", "identify", "identify", "command"]
        )
    )
    user = draw(st.sampled_from(["u", "v"]))
    if kind == "command":
        return {
            "type": "command",
            "app_id": "a",
            "user_id": user,
            "command_id": eid,
            "command": draw(st.sampled_from(["exclude", "include", "reset_content", "delete"])),
            "issued_at": draw(instants),
        }
    rec: dict[str, Any] = {
        "type": kind,
        "app_id": "a",
        "user_id": user,
        "event_id": eid,
        "timestamp": draw(instants),
    }
    ctx = draw(contexts)
    if ctx and kind != "identify":
        rec["context"] = ctx
    if kind == "track":
        rec["name"] = draw(st.sampled_from(["Open", "Save"]))
    elif kind == "page":
        rec["url"] = draw(st.sampled_from(["https://a.io/p", "https://a.io/q"]))
    elif kind == "feedback":
        rec |= {"survey_id": "s", "survey_type": "nps", "score": draw(st.integers(0, 10))}
    elif kind == "content":
        rec |= {
            "content_id": draw(st.sampled_from(["c1", "c2"])),
            "content_type": "flow",
            "action": draw(st.sampled_from(["seen", "started", "step_completed", "completed"])),
            "step": draw(st.integers(1, 3)),
        }
        if draw(st.booleans()):
            rec["content_name"] = draw(st.sampled_from(["Tour", "Setup"]))
    else:
        rec["traits"] = {"name": draw(st.sampled_from(["Ann", "Bo"]))}
        if draw(st.booleans()):
            rec["company"] = {"id": draw(st.sampled_from(["c", "d"])), "name": "C"}
    return rec


def _fold(records: list[dict[str, Any]], batches: list[list[int]], *, whole: bool) -> MemoryStore:
    """The records through the real step (and the company step), in these batches; `whole`:
    every step reads every field and projects in full."""
    store, sink, config = MemoryStore(NS), MemorySink(), FoldConfig()
    positioned = [
        Positioned(validate(r, Limits(), NOW), f"src.{r['type']}", 0, i)
        for i, r in enumerate(records)
    ]
    original = step.request

    def request(*args: Any, **kwargs: Any) -> list[str] | None:
        return None if whole else original(*args, **kwargs)

    step.request = request  # type: ignore[assignment]
    try:
        for batch in batches:
            part = [positioned[i] for i in batch]
            asyncio.run(apply_batch(store, sink, NS, part, now_ms=NOW, config=config))
    finally:
        step.request = original  # type: ignore[assignment]
    asyncio.run(apply_company_batch(store, sink.read(), now_ms=NOW))
    return store


def _hashes(store: MemoryStore) -> dict[str, dict[str, bytes]]:
    """Every user's fields; every company's views (its own bookkeeping of what members
    gave, by version, differs with how the parts came, not what they add up to)."""
    out: dict[str, Any] = {
        k: {f: v for f, v in fields.items() if f != keys.VERSION}
        for k, fields in store.data.items()
        if ":u:" in k
    }
    reader = Reader(MemoryHashes(store), NS)
    for company in ("c", "d"):
        try:
            out[company] = (reader.company("a", company), reader.company_users("a", company))
        except NotFound:
            out[company] = None
    return out


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.integers(0, 10**6), min_size=1, max_size=30).flatmap(
    lambda ids: st.tuples(*(wire(f"e{n}-{i}") for i, n in enumerate(ids)))
), seed=st.integers(0, 2**32))  # fmt: skip
def test_a_step_by_days_writes_what_the_full_projection_writes(
    records: tuple[dict[str, Any], ...], seed: int
) -> None:
    records_ = list(records)
    batches = random_batches(len(records_), random.Random(seed))
    by_days = _hashes(_fold(records_, batches, whole=False))
    in_full = _hashes(_fold(records_, batches, whole=True))
    assert by_days.keys() == in_full.keys()
    for key in by_days:
        assert by_days[key] == in_full[key], key


class _Counting(MemoryStore):
    """Counts the bytes of the fields a step reads and writes."""

    def __init__(self, *namespaces: str) -> None:
        super().__init__(*namespaces)
        self.read_bytes = self.written_bytes = 0

    async def read(self, requests: Any) -> list[dict[str, bytes]]:
        found = await super().read(requests)
        self.read_bytes += sum(len(k) + len(v) for f in found for k, v in f.items())
        return found

    async def commit(self, writes: list[Any]) -> list[bool]:
        self.written_bytes += sum(len(k) + len(v) for w in writes for k, v in w.to_set.items())
        return await super().commit(writes)


def _one_more_event(days: int) -> tuple[int, int, int]:
    """A user with 5 events a day over `days` days; then one more event today. Returns the
    bytes that last step read and wrote, and the size of the user's rows."""
    store = _Counting(NS)
    records = []
    for d in range(days):
        for j in range(5):
            at = NOW - (days - d) * DAY + 9 * 3_600_000 + j * 10 * MIN
            records.append({"type": "track", "app_id": "a", "user_id": "u", "event_id":
                            f"h{d}-{j}", "timestamp": at, "name": "Open"})  # fmt: skip
    positioned = [
        Positioned(validate(r, Limits(), NOW), "src.track", 0, i) for i, r in enumerate(records)
    ]
    sink, config = MemorySink(), FoldConfig()
    for i in range(0, len(positioned), 500):
        asyncio.run(
            apply_batch(store, sink, NS, positioned[i : i + 500], now_ms=NOW, config=config)
        )
    key = keys.user(NS, "a", "u")
    rows = sum(len(v) for f, v in store.data[key].items() if f.startswith(keys.ROWS_PREFIX))
    store.read_bytes = store.written_bytes = 0
    last = {"type": "track", "app_id": "a", "user_id": "u", "event_id": "new",
            "timestamp": NOW - 3_600_000, "name": "Open"}  # fmt: skip
    new = Positioned(validate(last, Limits(), NOW), "src.track", 0, len(positioned))
    asyncio.run(apply_batch(store, sink, NS, [new], now_ms=NOW, config=config))
    return store.read_bytes, store.written_bytes, rows


def test_what_a_step_reads_and_writes_does_not_grow_with_the_history() -> None:
    short_read, short_written, _rows = _one_more_event(days=2)
    long_read, long_written, rows = _one_more_event(days=380)  # 1,900 events
    # Only the index's and the header's lists of days grow: a few dozen bytes a day.
    assert long_read - short_read < 48 * 378, (short_read, long_read)
    assert long_written - short_written < 48 * 378, (short_written, long_written)
    assert long_read < rows / 3  # the rows alone: a step that read the history would read them


def test_a_day_of_rows_of_another_format_is_refused() -> None:
    with pytest.raises(Unreadable):
        read_rows(b"\x93\x01\x02\x03")


@st.composite
def day_spans(draw: st.DrawFn) -> dict[str, list[int]]:
    """Days of a few weeks, each with a first and last time (near midnight often)."""
    out = {}
    for n in draw(st.sets(st.integers(0, 20), max_size=12)):
        start = NOW - 20 * DAY + n * DAY
        first = start + draw(st.sampled_from([0, 60_000, 3_600_000, DAY // 2]))
        last = start + DAY - 1 - draw(st.sampled_from([0, 60_000, 3_600_000, DAY // 2]))
        out[day_of(start)] = [first, max(first, last)]
    return out


@settings(max_examples=300, deadline=None)
@given(days=day_spans(), added=day_spans().filter(bool), gap=st.sampled_from([1, 30, 600]))
def test_the_days_reached_by_calendar_neighbours_are_those_in_order(
    days: dict[str, list[int]], added: dict[str, list[int]], gap: int
) -> None:
    """`reach` with a gap under a day looks at the calendar days before and after only; the
    plain walk over the days in order (any gap) reaches the same."""
    gap_ms = gap * 60_000
    assert reach(days, added, gap_ms) == _reach_in_order(days, added, gap_ms)
