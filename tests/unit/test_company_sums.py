"""A company moves by differences; after any delivery it must equal a rebuild from scratch.

Each user goes through versions (its steps): a member row or none, excluded or not, facts,
and figures for some days. As the user side does (`fold.parts`), each version sends the days
that changed since the one before (None for a day that went) while the user counts in the
company before and after, and every day it counts (`full`) when that changes; now and then a
version is sent again in full (a restate). The messages arrive shuffled, some twice. The
company — its sums, its header, its users tab — must equal the one made from each user's
last version alone, and its users' figures must add up to the sums.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections import keys
from projections.company import Contribution
from projections.company_step import apply_company_batch
from projections.fold import decode_field
from projections.store import MemoryStore

NOW = 1_795_000_000_000
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
KEY = keys.company("ps", "a", "c")
TAB = keys.company_users("ps", "a", "c")

figures = st.fixed_dictionaries(
    {
        "e": st.integers(0, 3),
        "s": st.integers(0, 2),
        "ms": st.integers(0, 5),
        "n": st.dictionaries(st.sampled_from(["x", "y"]), st.integers(1, 3), max_size=2),
        "p": st.dictionaries(st.sampled_from(["p/1", "p/2"]), st.integers(1, 3), max_size=2),
    }
).filter(lambda f: bool(f["e"] or f["s"] or f["p"]))  # what a user's day always carries


@st.composite
def versions(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One user's states, version 1 to n."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        current = draw(st.booleans())
        seen = draw(st.one_of(st.none(), st.integers(1, 50)))
        row = None
        if current:
            row = {
                "name": draw(st.sampled_from([None, "Ann"])),
                "email": None,
                "first_seen_at": seen,
                "last_seen_at": None if seen is None else seen + draw(st.integers(0, 9)),
                "total_sessions": draw(st.integers(0, 3)),
                "excluded": draw(st.booleans()),
            }
        named = draw(st.booleans())
        name = draw(st.sampled_from(["C", "Co", "Corp"]))
        facts = (
            {"name": [draw(st.integers(1, 3)), "e", name], "created_at": None, "traits": {}}
            if named
            else None
        )
        days = draw(st.dictionaries(st.sampled_from(DAYS), figures, max_size=4))
        out.append({"member": row, "facts": facts, "days": days})
    return out


def sent(user: str, history: list[dict[str, Any]], rng: random.Random) -> list[Contribution]:
    """What the user side sends for each version (and sometimes a restate)."""
    out: list[Contribution] = []
    before: dict[str, Any] | None = None
    for version, state in enumerate(history, start=1):
        counts = state["member"] is not None and not state["member"]["excluded"]
        counted = (
            before is not None and before["member"] is not None and not before["member"]["excluded"]
        )
        days = state["days"] if counts else {}
        if counts != counted or rng.random() < 0.2:
            out.append(_part(user, version, state, days, full=True))
        else:
            old = before["days"] if before and counted else {}
            changed = {d: days.get(d) for d in set(old) | set(days) if old.get(d) != days.get(d)}
            out.append(_part(user, version, state, changed, full=False))
        before = state
    return out


def _part(
    user: str, version: int, state: dict[str, Any], days: dict[str, Any], *, full: bool
) -> Contribution:
    return Contribution(
        "a", "c", user, version, state["facts"], state["member"], days, "ps", full=full
    )


def view(store: MemoryStore) -> dict[str, Any]:
    fields = store.data.get(KEY, {})
    out = {k: decode_field(v) for k, v in fields.items() if k.startswith(keys.DAY_PREFIX)}
    out["h"] = decode_field(fields[keys.HEADER]) if keys.HEADER in fields else None
    out["tab"] = sorted(store.sets.get(TAB, {}).items(), key=lambda kv: (kv[1], kv[0]))
    return out


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from("uvw"), versions(), min_size=1), st.randoms())
def test_a_company_after_any_delivery_equals_a_rebuild(
    users: dict[str, list[dict[str, Any]]], rng: random.Random
) -> None:
    messages = [c for user, history in users.items() for c in sent(user, history, rng)]
    shuffled = messages + rng.sample(messages, k=len(messages) // 2)  # stale and repeated
    rng.shuffle(shuffled)
    live = MemoryStore("ps")
    cut = sorted(rng.sample(range(len(shuffled) + 1), k=2))
    for batch in (shuffled[: cut[0]], shuffled[cut[0] : cut[1]], shuffled[cut[1] :]):
        if batch:
            asyncio.run(apply_company_batch(live, batch, now_ms=NOW))

    last = []
    for user, history in users.items():
        state = history[-1]
        counts = state["member"] is not None and not state["member"]["excluded"]
        last.append(_part(user, len(history), state, state["days"] if counts else {}, full=True))
    rebuilt = MemoryStore("ps")
    asyncio.run(apply_company_batch(rebuilt, last, now_ms=NOW))
    assert view(live) == view(rebuilt)

    # the members' stored figures add up to the sums
    added: dict[str, Any] = {}
    for name, raw in live.data.get(KEY, {}).items():
        if name.startswith(keys.MEMBER_DAYS_PREFIX):
            _version, fig = decode_field(raw)
            if fig is not None:
                day = name.rsplit(":", 1)[1]
                acc = added.setdefault(day, {"e": 0, "s": 0, "ms": 0})
                for k in acc:
                    acc[k] += fig[k]
    sums = {k[len(keys.DAY_PREFIX) :]: v for k, v in view(live).items() if k.startswith("d:")}
    assert {d: {k: f[k] for k in ("e", "s", "ms")} for d, f in sums.items()} == added
