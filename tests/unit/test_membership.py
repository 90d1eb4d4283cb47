"""Live segment membership equals a batch evaluation of every definition (issue 6).

Records go through the real step in random batches with redeliveries (some after a writer
died between its set moves and its write), company deltas through the wire codec;
definitions are added before, between and after the batches, some changed or removed; the
clock moves (an injected `now`) and the due clock ticks. At the end, every user's and
company's `segments`, every segment's members and count equal the naive evaluator over the
batch reference, at the final instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from foldkit import NS, MemorySink, random_batches, users_page
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import fit_scope, segment_member, segment_subjects, users_list
from test_fold_properties import NAMES, NOW, URLS, record_sets

from projections import keys
from projections.company_step import DirectSink, apply_company_batch
from projections.membership import apply_definition, reevaluate, tick
from projections.reader import Reader
from projections.step import FoldConfig, Positioned, apply_batch
from projections.store import MemoryHashes, MemoryStore
from schemas.codec import validate
from schemas.limits import Limits
from schemas.segments import parse_segment

DAY = 86_400_000
PAGES = ["app.example.com/", "app.example.com/Settings", "app.example.com/reports"]
TRAIT_KEYS = ["plan", "name", "country", "tier", "missing"]
VALUES: list[Any] = ["A", "B", "GB", 3, 2.5, True, "gold", "silver"]


def _property(draw: st.DrawFn) -> dict[str, Any]:
    source = draw(st.sampled_from(["properties", "auto_properties", "company_properties"]))
    key = draw(
        st.sampled_from(
            TRAIT_KEYS if source != "auto_properties" else ["country", "browser", "page_url"]
        )
    )
    op = draw(
        st.sampled_from(["eq", "neq", "contains", "starts_with", "gt", "lte", "exists", "in"])
    )
    c: dict[str, Any] = {"kind": "property", "source": source, "key": key, "operator": op}
    if op == "in":
        c["value"] = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=3))
    elif op in ("contains", "starts_with"):
        c["value"] = draw(st.sampled_from(["A", "G", "Chr", "gol", "https"]))
    elif op != "exists":
        c["value"] = draw(st.sampled_from(VALUES))
    return c


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["property", "time", "number", "event", "page", "content", "x"]))
    if kind == "property":
        return _property(draw)
    if kind == "time":
        bound = draw(st.sampled_from(["within_days", "before_days"]))
        field = draw(st.sampled_from(["last_seen_at", "signed_up_at", "first_seen_at"]))
        return {"kind": "time", "field": field, bound: draw(st.integers(0, 9))}
    if kind == "number":
        field = draw(st.sampled_from(["total_sessions", "nps_latest"]))
        op = draw(st.sampled_from(["gt", "gte", "lt", "lte", "eq", "neq"]))
        return {"kind": "number", "field": field, "operator": op, "value": draw(st.integers(0, 6))}
    if kind == "event":
        c = {"kind": "event", "name": draw(st.sampled_from(NAMES)), "days": draw(st.integers(1, 9))}
        if draw(st.booleans()):
            c["at_least"] = draw(st.integers(0, 3))
        else:
            c["at_most"] = draw(st.integers(0, 3))
        return c
    if kind == "page":
        return {
            "kind": "page",
            "page": draw(st.sampled_from(PAGES)),
            "days": draw(st.integers(1, 9)),
        }
    if kind == "content":
        status = draw(st.sampled_from(["not_started", "seen", "in_progress", "completed"]))
        return {
            "kind": "content",
            "content_id": draw(st.sampled_from(["f1", "f2"])),
            "status": status,
        }
    return {"kind": "excluded", "value": draw(st.booleans())}


@st.composite
def definitions(draw: st.DrawFn, segment_id: str) -> dict[str, Any]:
    leaves = st.lists(conditions(), min_size=1, max_size=3)
    inner = st.fixed_dictionaries({"op": st.sampled_from(["and", "or"]), "conditions": leaves})
    items = draw(st.lists(conditions() | inner, min_size=1, max_size=3))
    return fit_scope(
        {
            "id": segment_id,
            "app_id": "app",
            "name": segment_id,
            "scope": draw(st.sampled_from(["user", "company", "company"])),
            "rule": {"op": draw(st.sampled_from(["and", "or"])), "conditions": items},
        }
    )


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    records = draw(record_sets())
    for r in records:  # companies with traits, so company properties mean something
        if r["type"] == "identify" and "company" in r and draw(st.booleans()):
            r["company"]["traits"] = {"tier": draw(st.sampled_from(["gold", "silver", 3]))}
    ids = [f"s{i}" for i in range(draw(st.integers(1, 4)))]
    ops: list[tuple[str, str, Any]] = [("add", i, draw(definitions(i))) for i in ids]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.sampled_from(ids))
        change = draw(st.sampled_from(["change", "remove"]))
        ops.append((change, i, draw(definitions(i)) if change == "change" else None))
    return {
        "records": records,
        "ops": ops,
        "seed": draw(st.integers(0, 2**32)),
        "before": draw(st.integers(0, len(ops))),  # how many definition ops precede the data
        "end": NOW + draw(st.integers(0, 12 * DAY)),
        "deaths": draw(st.booleans()),  # writers die just before or just after their write
    }


class _Crash(Exception):
    pass


def _share(view: MemoryStore, data: MemoryStore) -> None:
    view.data, view.sets, view.placed = data.data, data.sets, data.placed


class _CrashingStore(MemoryStore):
    """Dies at the n-th commit (as a worker killed in the middle of a backfill), before it
    or, `after` it, once it is written and before anything it sends."""

    def __init__(self, data: MemoryStore, at: int, after: bool = False) -> None:
        super().__init__()
        _share(self, data)
        self._left, self._after = at, after

    async def commit(self, writes: list[Any]) -> list[bool]:
        self._left -= 1
        if self._left < 0:
            if self._after:
                await super().commit(writes)
            raise _Crash
        return await super().commit(writes)


def _run(scenario: dict[str, Any]) -> tuple[MemoryStore, dict[str, dict[str, Any]], int]:
    rng = random.Random(scenario["seed"])
    records, ops, end = scenario["records"], scenario["ops"], scenario["end"]
    store, sink = MemoryStore(NS), MemorySink()
    config = FoldConfig()
    positioned = [
        Positioned(validate(r, Limits(), NOW), f"src.{r['type']}", 0, i)
        for i, r in enumerate(records)
    ]
    batches = random_batches(len(records), rng)
    # definition ops land before the data, between batches, or after it, in order
    slots = sorted(rng.randint(0, len(batches)) for _ in ops[scenario["before"] :])
    at = [0] * scenario["before"] + slots
    clock = NOW
    live: dict[str, dict[str, Any]] = {}
    applied = 0

    async def define(upto: int) -> None:
        nonlocal applied
        while applied < len(ops) and at[applied] <= upto:
            _op, segment_id, definition = ops[applied]
            segment = None if definition is None else parse_segment(definition)
            if segment is None:
                live.pop(segment_id, None)
            else:
                live[segment_id] = definition
            await apply_definition(store, NS, segment_id, segment, applied, now_ms=clock)
            applied += 1

    async def go() -> None:
        nonlocal clock
        delivered = 0
        for n, batch in enumerate(batches):
            await define(n)
            if scenario.get("deaths") and rng.random() < 0.3:  # killed before or after a write
                # at its user write, or at the membership write that settles it
                dying = _CrashingStore(store, at=rng.randint(0, 1), after=rng.random() < 0.5)
                with contextlib.suppress(_Crash):
                    part = [positioned[i] for i in batch[: rng.randint(1, len(batch))]]
                    await apply_batch(dying, sink, NS, part, now_ms=clock, config=config)
            await apply_batch(
                store, sink, NS, [positioned[i] for i in batch], now_ms=clock, config=config
            )
            # the company agent: what was produced so far, in log order, split anywhere
            fresh = list(range(delivered, len(sink.log)))
            for part in random_batches(len(fresh), rng) if fresh else []:
                await apply_company_batch(store, sink.read([fresh[i] for i in part]), now_ms=clock)
            delivered = len(sink.log)
            clock = min(end, clock + rng.choice([0, 1, 3_600_000, DAY // 2, DAY]))
            await tick(store, NS, now_ms=clock)
        await define(len(batches))
        clock = end
        await tick(store, NS, now_ms=end)

    asyncio.run(go())
    return store, live, end


def _members(reader: Reader, segment_id: str, scope: str) -> list[str]:
    found, cursor = [], None
    while True:
        page, cursor = reader.segment_members(
            "app", segment_id, scope=scope, limit=3, cursor=cursor
        )
        found += page
        if cursor is None:
            return found


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_live_membership_equals_the_batch_evaluation(scenario: dict[str, Any]) -> None:
    store, live, end = _run(scenario)
    subjects = segment_subjects(scenario["records"], "app", now_ms=NOW)
    full = {sid: parse_segment(d).model_dump() for sid, d in live.items()}
    expected: dict[tuple[str, str], list[str]] = {
        subject: sorted(
            sid
            for sid, d in live.items()
            if d["scope"] == subject[0] and segment_member(full[sid], raw, end)
        )
        for subject, raw in subjects.items()
    }
    reader = Reader(MemoryHashes(store), NS)
    for sort in ("last_seen", "signed_up"):  # dead writers leave no user out of the list
        listed, _cursor = users_page(reader, scenario["records"], "app", NOW, sort=sort, limit=1000)
        assert listed == users_list(scenario["records"], "app", now_ms=NOW, sort=sort), sort
    for (scope, entity_id), ids in expected.items():
        view = (reader.user if scope == "user" else reader.company)("app", entity_id)
        assert view["segments"] == ids, (scope, entity_id)
    for sid, d in live.items():
        members = sorted(e for (scope, e), ids in expected.items() if sid in ids)
        assert _members(reader, sid, d["scope"]) == members, sid
        assert reader.count_members("app", sid) == len(members), sid
    # removed segments leave nothing behind; no entity names a segment that is gone
    for key, members in store.sets.items():
        if ":sg:" in key and members:  # (Redis drops an empty set; the dict keeps it)
            assert key.split(":sg:{")[1].split(":")[0] in live, key
    assert all(set(ids) <= set(live) for (_scope, _e), ids in expected.items())


def test_time_rules_follow_the_clock_without_new_events() -> None:
    """A user seen 'within 2 days' leaves the segment when the clock passes, with no record."""
    seen = {
        "type": "track",
        "app_id": "app",
        "user_id": "u",
        "event_id": "e1",
        "timestamp": NOW - DAY,
        "name": NAMES[0],
        "context": {"page_url": URLS[0]},
    }
    rule = {
        "op": "and",
        "conditions": [{"kind": "time", "field": "last_seen_at", "within_days": 2}],
    }
    definition = {"id": "recent", "app_id": "app", "name": "Recent", "scope": "user", "rule": rule}
    scenario = {
        "records": [seen],
        "ops": [("add", "recent", definition)],
        "seed": 1,
        "before": 1,
        "end": NOW + DAY,
    }
    store, _live, _end = _run(scenario)
    reader = Reader(MemoryHashes(store), NS)
    assert reader.user("app", "u")["segments"] == ["recent"]
    asyncio.run(tick(store, NS, now_ms=NOW + DAY + 1))
    assert reader.user("app", "u")["segments"] == []
    assert reader.count_members("app", "recent") == 0


def test_a_company_change_by_another_user_moves_its_members() -> None:
    """Users of a segment on their company's properties follow that company, whoever changed
    it: here the company comes from A's own identify, then B's later identify changes it."""

    def identify(user: str, at: int, tier: str) -> dict[str, Any]:
        return {
            "type": "identify",
            "app_id": "app",
            "user_id": user,
            "event_id": f"i-{user}",
            "timestamp": at,
            "traits": {},
            "company": {"id": "c1", "traits": {"tier": tier}},
        }

    rule = {
        "op": "and",
        "conditions": [
            {
                "kind": "property",
                "source": "company_properties",
                "key": "tier",
                "operator": "eq",
                "value": "gold",
            }
        ],
    }
    definition = {"id": "gold", "app_id": "app", "name": "Gold", "scope": "user", "rule": rule}
    a, b = identify("a", NOW - 2 * DAY, "gold"), identify("b", NOW - DAY, "silver")
    seen = {}
    for records in ([a], [a, b]):
        scenario = {
            "records": records,
            "ops": [("add", "gold", definition)],
            "seed": 3,
            "before": 1,
            "end": NOW,
        }
        store, _live, _end = _run(scenario)
        reader = Reader(MemoryHashes(store), NS)
        seen[len(records)] = [reader.user("app", u)["segments"] for u in ("a", "b")[: len(records)]]
    assert seen == {1: [["gold"]], 2: [[], []]}


def test_a_backfill_killed_midway_is_finished_by_the_redelivered_record() -> None:
    records = [
        {
            "type": "track",
            "app_id": "app",
            "user_id": f"u{i:03d}",
            "event_id": f"e{i}-{j}",
            "timestamp": NOW - DAY + (i * 7 + j) * 1000,
            "name": NAMES[j % 2],
        }
        for i in range(450)  # more than two backfill pages
        for j in range(1 + i % 3)
    ]
    rule = {
        "op": "and",
        "conditions": [{"kind": "event", "name": NAMES[0], "at_least": 2, "days": 2}],
    }
    definition = {"id": "twice", "app_id": "app", "name": "Twice", "scope": "user", "rule": rule}
    store, _live, _end = _run({"records": records, "ops": [], "seed": 5, "before": 0, "end": NOW})
    segment = parse_segment(definition)
    crashing = _CrashingStore(store, at=2)  # the registry write, one page, then death
    with contextlib.suppress(_Crash):
        asyncio.run(apply_definition(crashing, NS, "twice", segment, 7, now_ms=NOW))
    reader = Reader(MemoryHashes(store), NS)
    raw_progress = store.data[keys.segment_progress(NS)]["twice"]
    assert reader.count_members("app", "twice") < 150  # stopped midway, not ready
    assert b"ready" in raw_progress
    asyncio.run(apply_definition(store, NS, "twice", segment, 7, now_ms=NOW))  # redelivery
    want = sorted(f"u{i:03d}" for i in range(450) if 1 + i % 3 >= 3)
    assert _members(reader, "twice", "user") == want
    assert reader.count_members("app", "twice") == len(want) == 150


def test_a_company_made_in_the_same_batch_is_not_postponed_by_its_members_time_rules() -> None:
    """One replay batch holds a user and the identify that creates its company. The user is
    evaluated before the company exists; the company step makes it due at once, and the
    user's own due time (a week away, from a time rule) must not push that back."""
    store = MemoryStore(NS)
    gold = {"kind": "property", "source": "company_properties", "key": "tier",
            "operator": "eq", "value": "gold"}  # fmt: skip
    recent = {"kind": "time", "field": "last_seen_at", "within_days": 7}
    for offset, (sid, condition) in enumerate((("gold", gold), ("recent", recent))):
        definition = {"id": sid, "app_id": "app", "name": sid, "scope": "user",
                      "rule": {"op": "and", "conditions": [condition]}}  # fmt: skip
        asyncio.run(apply_definition(store, NS, sid, parse_segment(definition), offset, now_ms=NOW))
    common = {"app_id": "app", "user_id": "a", "timestamp": NOW - DAY}
    records = [
        {**common, "type": "identify", "event_id": "i", "traits": {},
         "company": {"id": "c1", "traits": {"tier": "gold"}}},
        {**common, "type": "track", "event_id": "t", "name": NAMES[0]},
    ]  # fmt: skip
    batch = [
        Positioned(validate(r, Limits(), NOW), f"src.{r['type']}", 0, i)
        for i, r in enumerate(records)
    ]
    sink = DirectSink(store, clock=lambda: NOW)
    asyncio.run(apply_batch(store, sink, NS, batch, now_ms=NOW, config=FoldConfig()))
    asyncio.run(tick(store, NS, now_ms=NOW))
    assert Reader(MemoryHashes(store), NS).user("app", "a")["segments"] == ["gold", "recent"]


class _Racing(MemoryStore):
    """Shares a store; another writer's whole step runs just before its n-th set moves."""

    def __init__(self, data: MemoryStore, at: int, meanwhile: Any) -> None:
        super().__init__()
        _share(self, data)
        self._left, self._meanwhile = at, meanwhile

    async def place(self, moves: list[Any]) -> None:
        self._left -= 1
        if self._left == 0:
            await self._meanwhile()
        await super().place(moves)


def _nps_app() -> tuple[MemoryStore, Any]:
    """A store with a `promoters` segment, and a feedback step on user `a` ((i, score), …)."""
    store = MemoryStore(NS)
    nps = {"kind": "number", "field": "nps_latest", "operator": "gte", "value": 8}
    promoters = {"id": "promoters", "app_id": "app", "name": "Promoters", "scope": "user",
                 "rule": {"op": "and", "conditions": [nps]}}  # fmt: skip
    asyncio.run(apply_definition(store, NS, "promoters", parse_segment(promoters), 0, now_ms=NOW))

    async def answer(on: MemoryStore, *answers: tuple[int, int]) -> None:
        batch = []
        for i, score in answers:
            record = {"type": "feedback", "app_id": "app", "user_id": "a", "event_id": f"f{i}",
                      "timestamp": NOW - DAY + i * 1000, "survey_id": "nps",
                      "survey_type": "nps", "score": score}  # fmt: skip
            batch.append(Positioned(validate(record, Limits(), NOW), "src.feedback", 0, i))
        await apply_batch(on, DirectSink(on), NS, batch, now_ms=NOW, config=FoldConfig())

    return store, answer


def _promoters(store: MemoryStore) -> tuple[list[str], list[str], int]:
    reader = Reader(MemoryHashes(store), NS)
    return (
        reader.user("app", "a")["segments"],
        _members(reader, "promoters", "user"),
        reader.count_members("app", "promoters"),
    )


def test_an_evaluation_overtaken_by_a_step_does_not_take_the_member_out() -> None:
    """A backfill reads a detractor; before its set moves land, a step folds a promoter
    answer and puts the user in. The backfill's late `out` must not stand."""
    store, answer = _nps_app()
    asyncio.run(answer(store, (0, 3)))
    racing = _Racing(store, at=1, meanwhile=lambda: answer(store, (1, 9)))
    asyncio.run(reevaluate(racing, NS, "app", "user", ["a"], now_ms=NOW))
    assert _promoters(store) == (["promoters"], ["a"], 1)


def test_a_step_overtaken_after_its_write_does_not_take_the_member_out() -> None:
    """A step writes a detractor answer; before its moves after the write land, another
    writer (a zombie's successor) folds a newer promoter answer. The last word is the
    newest version's."""
    store, answer = _nps_app()
    asyncio.run(answer(store, (0, 9)))
    racing = _Racing(store, at=1, meanwhile=lambda: answer(store, (2, 10)))
    asyncio.run(answer(racing, (1, 3)))
    assert _promoters(store) == (["promoters"], ["a"], 1)


def test_a_writer_killed_before_its_write_leaves_no_member_missing() -> None:
    """A worker folds a detractor's answer and dies before its write. The records come again
    with a newer promoter answer behind them: the stored profile was, and stays, a promoter,
    so the step changes nothing in `sg`. The set must hold the user (CI found it missing when
    a step moved the sets before its write, removals too, and only where `sg` changed)."""
    store, answer = _nps_app()
    asyncio.run(answer(store, (0, 9)))
    with contextlib.suppress(_Crash):
        asyncio.run(answer(_CrashingStore(store, at=0), (1, 3)))
    asyncio.run(answer(store, (1, 3), (2, 10)))  # the redelivery, with what came after
    assert _promoters(store) == (["promoters"], ["a"], 1)
