"""The merge protocol of projections/origins.py, run as ids on separate partitions would run
it: each id folds its own records, the link graph sends each id its root, and joins, adds and
drops travel between ids in any order, late and again. Once every message is delivered, each
root's union is the state of folding the records the batch reference gives it (docs/design.md
§7), and every merged id is hidden."""

from __future__ import annotations

import random
from typing import Any

import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import identity
from projections.fold import UserState, apply, oldest
from projections.origins import OWN, Held, drop, fold_in, join, own_part
from schemas.codec import validate
from schemas.limits import Limits

NOW = 1_795_000_000_000
BASE = NOW - 3 * 86_400_000
RETENTION = 400
IDS = ["a", "b", "c", "d"]


@st.composite
def record_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 25))):
        who = draw(st.sampled_from(IDS))
        at = BASE + draw(st.integers(0, 40)) * 3_600_000
        kind = draw(st.sampled_from(["track", "track", "identify", "alias", "alias", "command"]))
        common = {"app_id": "app", "user_id": who}
        if kind == "track":
            rec = {**common, "type": "track", "event_id": f"e{i}", "timestamp": at, "name": "N"}
            if draw(st.booleans()):
                rec["context"] = {"browser": draw(st.sampled_from(["Chrome", "Firefox"]))}
        elif kind == "identify":
            rec = {**common, "type": "identify", "event_id": f"e{i}", "timestamp": at}
            rec["traits"] = {"plan": draw(st.sampled_from(["A", "B"]))}
            if draw(st.booleans()):
                rec["company"] = {"id": draw(st.sampled_from(["c1", "c2"]))}
        elif kind == "alias":
            target = draw(st.sampled_from([x for x in IDS if x != who]))
            rec = {
                "type": "alias",
                "app_id": "app",
                "user_id": target,
                "previous_id": who,
                "event_id": f"e{i}",
                "timestamp": at,
            }
        else:
            rec = {
                **common,
                "type": "command",
                "command": draw(st.sampled_from(["exclude", "include", "delete", "unmerge"])),
                "command_id": f"c{i}",
                "issued_at": at,
            }
        out.append(rec)
    return out


def link_of(rec: dict[str, Any]) -> identity.Link | None:
    if rec["type"] == "alias":
        return identity.Link(rec["previous_id"], rec["timestamp"], rec["event_id"], rec["user_id"])
    if rec["type"] == "command" and rec["command"] == "unmerge":
        return identity.Link(rec["user_id"], rec["issued_at"], rec["command_id"], None)
    return None


class World:
    """Ids, the app's link graph, and the messages in flight between them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.held = {x: Held() for x in IDS}
        self.links: set[identity.Link] = set()
        self.deletes: dict[str, tuple[str, dict[str, Any]]] = {}  # command id -> (id, record)
        self.g = 0
        self.flight: list[tuple[Any, ...]] = []
        self.floor = oldest(NOW, RETENTION, None)

    def send(self, *message: Any) -> None:
        self.flight.append(message)

    def graph(self, link: identity.Link | None, delete: dict[str, Any] | None) -> None:
        """The link graph's agent: a link or a delete in, every id's root and every delete's
        reach out (all of them: a redelivery re-sends what a crash may have lost)."""
        if link is not None:
            self.links.add(link)
        if delete is not None:
            self.deletes[delete["command_id"]] = (delete["user_id"], delete)
        self.g += 1
        found = identity.roots(self.links)
        for x in IDS:
            self.send("root", x, found.get(x, x), self.g)
        groups = identity.components(self.links)
        for who, record in self.deletes.values():
            for y in IDS:
                if y != who and who in groups and groups.get(y) == groups[who]:
                    self.send("records", y, [validate({**record, "user_id": y}, Limits(), NOW)])

    def deliver(self, message: tuple[Any, ...]) -> None:
        kind, to, *rest = message
        if kind == "graph":
            self.graph(to, *rest)
            return
        held = self.held[to]
        if kind == "records":  # an id's own records, from its partition
            (records,) = rest
            fold_in(held, records, OWN, 0, now_ms=NOW, retention_days=RETENTION)
            if held.root_id(to) != to:
                self.send("add", held.root_id(to), to, held.g(), records)
        elif kind == "root":
            root, g = rest
            if g <= held.g():
                return
            old = held.root_id(to)
            held.root = [root, g]
            if old not in (to, root):
                held.left = [old, g]
                self.send("drop", old, to, g)
            if root != to:
                self.send("join", root, to, g)
        elif kind == "join":
            origin, g = rest
            join(held, origin, g, own_part(self.held[origin]), floor=self.floor)
        elif kind == "add":
            origin, g, records = rest
            fold_in(held, records, origin, g, now_ms=NOW, retention_days=RETENTION)
        elif kind == "drop":
            origin, g = rest
            drop(held, origin, g)

    def run(self, again: float) -> None:
        while self.flight:
            i = self.rng.randrange(len(self.flight))
            message = self.flight[i] if self.rng.random() < again else self.flight.pop(i)
            self.deliver(message)


@settings(max_examples=300, deadline=None)
@given(records=record_sets(), seed=st.integers(0, 2**32), again=st.sampled_from([0.0, 0.2]))
def test_every_root_holds_what_the_reference_gives_it(
    records: list[dict[str, Any]], seed: int, again: float
) -> None:
    world = World(random.Random(seed))
    for rec in records:
        link = link_of(rec)
        if link is not None:
            world.send("graph", link, None)
            continue
        record = validate(rec, Limits(), NOW)
        world.send("records", rec["user_id"], [record])
        if rec["type"] == "command" and rec["command"] == "delete":
            world.send("graph", None, rec)
    world.run(again)

    expected = ref.surviving_records(records, now_ms=NOW, retention_days=RETENTION)
    for x in IDS:
        held = world.held[x]
        root = ref.root_of([r for r in records if link_of(r)], "app", x)
        assert held.root_id(x) == root
        if root != x:
            continue  # hidden: its records count for its root
        want = apply(
            UserState(),
            [validate(r, Limits(), NOW) for r in expected.get(("app", x), [])],
            now_ms=NOW,
            retention_days=RETENTION,
        )
        got = held.state
        assert {k: r[:8] for k, r in got.interactions.items()} == want.interactions
        assert (got.traits, got.company, got.facts, got.auto, got.identified) == (
            want.traits,
            want.company,
            want.facts,
            want.auto,
            want.identified,
        )

        def toggles(commands: dict[str, list[Any]]) -> dict[str, list[Any]]:
            return {k: c[:2] for k, c in commands.items() if c[1] != "delete"}

        assert toggles(got.commands) == toggles(want.commands)
