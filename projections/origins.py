"""A user's state with the records of the ids merged into it (docs/design.md §7), pure.

The records of an id count for its root. Each id keeps its own records where they arrive (its
partition, its own state); a root also holds, in its *union*, the records of every id merged
into it, each tagged with the id it came from (its *origin*), so that an unmerge can take
them out again. Rows carry the tag; last writers cannot (a removed writer's predecessor is
gone), so while a root holds another origin it keeps every origin's last writers and
commands apart (`Held.origins`, "" for its own) and the union's are their merge.

The messages between ids, each stamped with the version `g` of the app's link graph that
caused it (newer wins, so a late or repeated message changes nothing):
- `root(X, R, g)`: from the app's link graph to X — X's records count for R from now on;
- `join(R, P, g)`: P joined R — R takes P's own part (`own_part`) into its union;
- `add(R, P, g, records)`: P's new records, for R's union;
- `drop(R, P, g)`: P left R — R takes P's part out of its union.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from projections.fold import (
    UserState,
    compact,
    deleted_until,
    erase,
    erased_by_delete,
    merge_command,
    merge_command_row,
    merge_context,
    merge_identify,
    merge_row,
    newer,
    oldest,
)
from schemas.models import Alias, Command, Identify, Record

OWN = ""


def last_writers(state: UserState) -> UserState:
    """The commands and last writers of a state, as a state without rows."""
    return state.copied(rows=False)


def _merge_facts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, "traits": dict(a["traits"])}
    if out["at"] is None or (b["at"] is not None and tuple(b["at"]) > tuple(out["at"])):
        out["at"] = b["at"]
    for name in ("name", "created_at"):
        if b[name] is not None and newer(b[name], out[name]):
            out[name] = b[name]
    for key, triple in b["traits"].items():
        if newer(triple, out["traits"].get(key)):
            out["traits"][key] = triple
    return out


def merge_writers(into: UserState, other: UserState) -> None:
    """Fold the commands and last writers of `other` into `into` (in place; its dicts are
    its own)."""
    for cid, row in other.commands.items():
        merge_command_row(into.commands, cid, row)
    if other.identified is not None and (
        into.identified is None or tuple(other.identified) > tuple(into.identified)
    ):
        into.identified = other.identified
    for key, triple in other.traits.items():
        if newer(triple, into.traits.get(key)):
            into.traits[key] = triple
    if other.company is not None and newer(other.company, into.company):
        into.company = other.company
    for company, facts in other.facts.items():
        mine = into.facts.get(company)
        into.facts[company] = facts if mine is None else _merge_facts(mine, facts)
    for key, triple in other.auto.items():
        if newer(triple, into.auto.get(key)):
            into.auto[key] = triple


@dataclass
class Held:
    """One id's state: the union it projects (when it is its own root), the last writers of
    each origin while it holds another's (origin -> [g, writers]; writers None once the
    origin left at g), its root in force ([id, g], None: itself) and the root it left last
    ([id, g], for a re-sent drop)."""

    state: UserState = field(default_factory=UserState)
    origins: dict[str, list[Any]] = field(default_factory=dict)
    root: list[Any] | None = None
    left: list[Any] | None = None

    def root_id(self, me: str) -> str:
        return me if self.root is None else self.root[0]

    def g(self) -> int:
        return 0 if self.root is None else self.root[1]


def origin_of(row: list[Any], width: int) -> str:
    return row[width] if len(row) > width else OWN


def _settle(held: Held, floor: int) -> None:
    """Erase what deletes and the floor take, from the union and every origin's part: the
    union's deletes erase in every origin."""
    erase(held.state, floor)
    until = deleted_until(held.state.commands)
    for entry in held.origins.values():
        writers = entry[1]
        if writers is None:
            continue
        mine = writers.commands
        writers.commands = held.state.commands
        erase(writers, floor)
        writers.commands = {
            k: c for k, c in mine.items() if not erased_by_delete(c[0], c[1] == "delete", until)
        }


def fold_in(
    held: Held,
    records: list[Record],
    origin: str,
    g: int,
    *,
    now_ms: int,
    retention_days: int,
    since_ms: int | None = None,
) -> bool:
    """Fold records of `origin` (OWN, or an id merged into this one at version g) into the
    union; False when they come from an origin that left at a later version (dropped)."""
    if origin != OWN:
        entry = held.origins.get(origin)
        if entry is not None and (entry[0] > g or (entry[1] is None and entry[0] >= g)):
            return False
        if OWN not in held.origins:
            held.origins[OWN] = [0, last_writers(held.state)]
        if entry is None or entry[1] is None:
            held.origins[origin] = [g, UserState()]
        else:
            entry[0] = g
    writers = held.origins[origin][1] if origin in held.origins else None
    state = held.state
    for record in records:
        if isinstance(record, Command):
            merge_command(state.commands, record)
            if writers is not None:
                merge_command(writers.commands, record)
        elif isinstance(record, Identify):
            merge_identify(state, record)
            if writers is not None:
                merge_identify(writers, record)
        elif not isinstance(record, Alias):  # an alias is a link, never data
            row = compact(record)
            merge_row(state.interactions, record.event_id, row if origin == OWN else [*row, origin])
            merge_context(state.auto, record)
            if writers is not None:
                merge_context(writers.auto, record)
    _settle(held, oldest(now_ms, retention_days, since_ms))
    return True


def _take_out(held: Held, origin: str) -> None:
    state = held.state
    state.interactions = {k: r for k, r in state.interactions.items() if origin_of(r, 8) != origin}
    held.origins.pop(origin, None)
    union = UserState()
    for entry in held.origins.values():
        if entry[1] is not None:
            merge_writers(union, entry[1])
    state.commands, state.traits, state.company = union.commands, union.traits, union.company
    state.facts, state.auto, state.identified = union.facts, union.auto, union.identified


def _taken_out(held: Held, origin: str, g: int) -> bool:
    """Take `origin` out of the union for news of version g; False when the union holds
    newer news of it (the message is stale)."""
    entry = held.origins.get(origin)
    if entry is not None and entry[0] > g:
        return False
    if OWN not in held.origins:
        held.origins[OWN] = [0, last_writers(held.state)]
    _take_out(held, origin)
    return True


def drop(held: Held, origin: str, g: int) -> bool:
    """`origin` left this id at version g: its rows, commands and writers go."""
    if not _taken_out(held, origin, g):
        return False
    held.origins[origin] = [g, None]
    return True


def own_part(held: Held) -> tuple[dict[str, list[Any]], UserState]:
    """What this id's own records gave it (what a root it joins takes): its rows, and its
    commands and last writers."""
    rows = {k: r for k, r in held.state.interactions.items() if len(r) == 8}
    own = held.origins.get(OWN)
    writers = own[1] if own is not None else last_writers(held.state)
    return rows, writers


def join(
    held: Held,
    origin: str,
    g: int,
    part: tuple[dict[str, list[Any]], UserState],
    *,
    floor: int,
) -> bool:
    """`origin` joined this id at version g: its part (`own_part` of its state) replaces
    whatever this id held of it."""
    if not _taken_out(held, origin, g):
        return False
    rows, writers = part
    mine = last_writers(writers)
    held.origins[origin] = [g, mine]
    state = held.state
    for eid, row in rows.items():
        merge_row(state.interactions, eid, [*row, origin])
    merge_writers(state, mine)
    _settle(held, floor)
    return True
