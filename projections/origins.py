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

    def merged(self) -> list[str]:
        """The ids whose records this one holds now, sorted."""
        return sorted(o for o, (_g, w) in self.origins.items() if o != OWN and w is not None)


def origin_of(row: list[Any], width: int) -> str:
    return row[width] if len(row) > width else OWN


def _settle(held: Held, floor: int) -> None:
    """Erase what deletes and the floor take, from the union and every origin's part: the
    union's deletes erase in every origin."""
    erase(held.state, floor)
    _settle_writers(held, floor)


def _settle_writers(held: Held, floor: int) -> None:
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


# ---- in a step ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A message of the merge protocol for one id (`user_id`): `root` (`other` is the id its
    records count for), `join` or `drop` (`other` is the origin), at version `g`; or `erase`:
    a delete of an id connected to this one (`record`, a delete command for this id), which
    it folds as its own."""

    kind: str
    app_id: str
    user_id: str
    other: str
    g: int
    record: Command | None = None

    @property
    def type(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Mail:
    """What a step sends once written: `join`, `drop`, `add` (with `records`) to the id `to`
    from `origin`; or to the app's link graph (`to` None) a `link` or a `delete` (`records`)."""

    kind: str
    app_id: str
    to: str | None
    origin: str
    g: int
    records: tuple[Record, ...] = ()


def _writers_list(w: UserState) -> list[Any]:
    return [w.commands, w.traits, w.company, w.facts, w.auto, w.identified]


def _writers(parts: list[Any]) -> UserState:
    """From the stored index, which is shared (fold._index): dicts of its own."""
    commands, traits, company, facts, auto, identified = parts
    return UserState({}, dict(commands), dict(traits), company, dict(facts), dict(auto), identified)


def encode_held(held: Held) -> list[Any] | None:
    """The index's `identity` part (None for an id that never took part in a merge)."""
    if not held.origins and held.root is None and held.left is None:
        return None
    origins = {
        o: [g, None if w is None else _writers_list(w)]
        for o, (g, w) in sorted(held.origins.items())
    }
    return [origins, held.root, held.left]


def held_of(state: UserState, identity: list[Any] | None) -> Held:
    if identity is None:
        return Held(state)
    origins, root, left = identity
    return Held(
        state,
        {o: [g, None if w is None else _writers(w)] for o, (g, w) in origins.items()},
        root,
        left,
    )


def with_own(
    identity: list[Any], commands: dict[str, list[Any]], records: list[Any], floor: int
) -> list[Any]:
    """The index's identity part once a by-days step added a root's own `records` (events,
    no commands) to its union: its own last writers take them too, and every origin's are
    erased as the union's were (`commands`: the union's)."""
    held = held_of(UserState(commands=commands), identity)
    own = held.origins.get(OWN)
    writers = own[1] if own is not None else None
    if writers is not None:
        for r in records:
            if isinstance(r, Identify):
                merge_identify(writers, r)
            else:
                merge_context(writers.auto, r)
    _settle_writers(held, floor)
    encoded = encode_held(held)
    assert encoded is not None
    return encoded


def merged_ids(identity: list[Any] | None) -> list[str]:
    """The ids a root holds the records of, from the index's identity part."""
    return [] if identity is None else held_of(UserState(), identity).merged()


def is_link(record: Any) -> bool:
    """An alias, or an unmerge command: a link for the app's graph, never data of an id."""
    return isinstance(record, Alias) or (
        isinstance(record, Command) and record.command == "unmerge"
    )


def merge_step(
    held: Held,
    me: str,
    items: list[tuple[Any, str, int]],
    joined: dict[str, Held],
    *,
    now_ms: int,
    retention_days: int,
    since_ms: int | None = None,
) -> None:
    """Fold a step's items — (record or Note, origin, g): own records (origin ""), records
    added by an origin, notes — into `held`. `joined` holds the state of every origin a join
    names, as read now."""
    window = {"now_ms": now_ms, "retention_days": retention_days, "since_ms": since_ms}
    own = [r for r, o, _g in items if not o and not isinstance(r, Note) and not is_link(r)]
    own += [r.record for r, _o, _g in items if isinstance(r, Note) and r.record is not None]
    fold_in(held, own, OWN, 0, **window)  # type: ignore[arg-type]
    added: dict[tuple[str, int], list[Record]] = {}
    for r, o, g in items:
        if o and not isinstance(r, Note):
            added.setdefault((o, g), []).append(r)
    for (origin, g), records in sorted(added.items()):
        fold_in(held, records, origin, g, **window)  # type: ignore[arg-type]
    floor = oldest(now_ms, retention_days, since_ms)
    for r, _o, _g in items:
        if not isinstance(r, Note):
            continue
        if r.kind == "join":
            join(held, r.other, r.g, own_part(joined[r.other]), floor=floor)
        elif r.kind == "drop":
            drop(held, r.other, r.g)
        elif r.kind == "root" and r.g > held.g():
            old = held.root_id(me)
            held.root = [r.other, r.g]
            if old not in (me, r.other):
                held.left = [old, r.g]
    _settle(held, floor)  # a drop's recomputed union too


def mail(held: Held, app_id: str, me: str, items: list[tuple[Any, str, int]]) -> list[Mail]:
    """What a step sends from what it wrote (`held`) and its items, fresh or come again — a
    repeat changes nothing where it arrives: links and deletes of its source records to the
    app's graph; for a root note at the version in force, the drop to the root last left (at
    the version it was left) and the join to the root taken; for an id merged into another,
    its source records to that root."""
    out: list[Mail] = []
    root, g = held.root_id(me), held.g()
    for r, o, _g in items:
        if o or isinstance(r, Note):
            if isinstance(r, Note) and r.kind == "root" and r.g == g:
                if held.left is not None:  # at its own version: a newer join there wins
                    out.append(Mail("drop", app_id, held.left[0], me, held.left[1]))
                if root != me:
                    out.append(Mail("join", app_id, root, me, g))
            continue
        if is_link(r):
            out.append(Mail("link", app_id, None, me, 0, (r,)))
        elif isinstance(r, Command) and r.command == "delete":
            out.append(Mail("delete", app_id, None, me, 0, (r,)))
    own = tuple(r for r, o, _g in items if not o and not isinstance(r, Note) and not is_link(r))
    if root != me and own:
        out.append(Mail("add", app_id, root, me, g, own))
    return [m for i, m in enumerate(out) if m not in out[:i]]  # records are not hashable
