"""One user step: fence, fold, write, send what follows from the write (company contributions,
users-index entries), then settle segment membership (`membership.settle`) — for many users
in few round trips.

A step reads what it touches: each user's head (header, index, fences), then the fields of
the days its records reach (projections/days.py) — or every field, for a command or an
erasure, which may touch every day.

Order matters for exactly-once (docs/design.md §3). The user's atomic write goes first; what
follows from it — its company contributions, its users-index entries, its segment member
moves — is sent after, from what was written, at the version written. So nothing ever
leaves a step that did not commit: a zombie whose write is refused sends nothing. A worker
killed between the write and the sends has not acked its batch: the records come again,
find themselves under the fence, and the step re-sends the stored truth at the stored
version (`restate`). A contribution states absolute figures (of the days it names, or of
every day), never differences, and companies and member sets take a version only if it is
not older than what they hold, so a re-send is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from projections import keys
from projections.company import Contribution
from projections.days import project_days, reach, reads, spans
from projections.fold import (
    Event,
    Index,
    Part,
    UserState,
    apply,
    changes,
    decode_field,
    deleted_until,
    digest,
    encode_field,
    encode_fields,
    oldest,
    parts,
    project,
    rows_field,
    state_fields,
    stored_state,
)
from projections.membership import Folded, settle
from projections.origins import Held, Mail, Note, encode_held, held_of, is_link, mail, merge_step
from projections.registry import DUE, MEMBERSHIP, SegmentNeeds, registry_of, segment_needs
from projections.store import IndexOp, Store, Write, version_of
from schemas.models import Alias, Command, Record
from schemas.timefmt import day_of


class Contended(Exception):
    """Entities kept changing under this writer (another writer on them: a rebalance's
    overlap); nothing of the batch is lost, it is to be tried again."""


@dataclass(frozen=True)
class Positioned:
    """A decoded record and where it was read from; or a message of the merge protocol
    (docs/design.md §7, projections/origins.py): a `Note`, or a record added by the id
    `origin` merged into this one at version `g` (its user_id is this one's)."""

    record: Record | Note
    topic: str
    partition: int
    offset: int
    origin: str = ""
    g: int = 0

    @property
    def internal(self) -> bool:
        """A merge message: never under a fence (a repeat changes nothing where it lands)."""
        return bool(self.origin) or isinstance(self.record, Note)


class Mailer(Protocol):
    async def send(self, mails: list[Mail]) -> None:
        """Deliver merge messages durably (after the user's write, before the batch is acked)."""
        ...


@dataclass(frozen=True)
class FoldConfig:
    gap_ms: int = 30 * 60_000
    retention_days: int = 400
    since_ms: int | None = None  # the namespace's event-time floor (replay --since)


# The stored digest of a company the user left, until the news surely went out (`_deltas`).
GONE = "gone"


class Sink(Protocol):
    async def send(self, deltas: list[Contribution]) -> None:
        """Deliver company contributions durably (awaited after the user's write, before the
        batch is acked)."""
        ...


@dataclass
class StepPlan:
    """What a step writes (`to_set`, `to_delete`), and what it sends once written."""

    stored: dict[str, bytes]  # the fields read (every field of the user, in full and restate)
    to_set: dict[str, bytes] = field(default_factory=dict)
    to_delete: list[str] = field(default_factory=list)
    header: dict[str, Any] | None = None  # the user's header after the step
    figures: dict[str, Any] = field(default_factory=dict)  # day -> the figures it knows
    engagement: list[list[Any]] = field(default_factory=list)
    deltas: list[Contribution] = field(default_factory=list)
    index: list[IndexOp] = field(default_factory=list)
    mail: list[Mail] = field(default_factory=list)  # merge messages (origins.py)
    write: bool = True  # False: re-send the stored truth only (restate)
    repair: bool = False  # records came again: assert every set of the entity too
    given: dict[str, Part] = field(default_factory=dict)  # company -> the user's part in it


# What every step reads of a user first (with the fences of its records' partitions).
HEAD = [keys.HEADER, keys.INDEX, keys.CONTRIBUTED, keys.SEGMENTS, DUE, keys.VERSION]


def _index_ops(
    namespace: str,
    app_id: str,
    user_id: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> list[IndexOp]:
    """Move the user's users-index entries from the old header's to the new header's (all of
    the new one's when there is no old one: a restate repairs what a crash left)."""
    before = {} if old is None else keys.index_members(old, user_id)
    after = {} if new is None else keys.index_members(new, user_id)
    bucket = keys.index_bucket(user_id)
    ops = []
    for sort in keys.INDEX_KINDS:
        b, a = before.get(sort), after.get(sort)
        if b != a:
            ops.append(IndexOp(keys.users_index(namespace, app_id, sort, bucket), b, a))
    return ops


def _deltas(
    namespace: str,
    app_id: str,
    user_id: str,
    version: int,
    given: dict[str, Part],
    sent: dict[str, str],
    resend: bool,
) -> tuple[list[Contribution], dict[str, str]]:
    """The contributions to send: each company's part whose facts or row changed since it was
    last sent, or that carries days (all, with `resend`); and the digests to store with the
    write, from which a redelivery re-sends (`restate`).

    A company the user leaves with nothing left to say (a delete erased what named it) keeps
    a GONE digest: a step that dies after its write and before its sends would otherwise
    leave no trace of it, and the redelivery would never tell it the user left. A GONE entry
    is dropped by the next step whose records did not come again: the step that wrote it
    had its batch acked, so its sends went out."""
    digests = {c: digest([p.facts, p.member]) for c, p in given.items() if p.facts or p.member}
    for company, was in sent.items():
        if company not in digests and (was != GONE or resend):
            digests[company] = GONE
    out = []
    for company in sorted(set(given) | set(sent)):
        part = given.get(company, Part(None, None, {}, True))
        if company not in given and sent[company] == GONE and not resend:
            continue  # told already, by an acked batch
        if resend or part.days or part.full or sent.get(company) != digests.get(company):
            full = part.full or resend
            days = part.days
            out.append(
                Contribution(
                    app_id,
                    company,
                    user_id,
                    version,
                    part.facts,
                    part.member,
                    days,
                    namespace,
                    full=full,
                )
            )
    return out, digests


def _fences(items: list[Positioned]) -> list[str]:
    return sorted({keys.fence_field(p.topic, p.partition) for p in items if not p.internal})


def _fresh(stored: dict[str, bytes], items: list[Positioned]) -> list[Positioned]:
    """The records above the stored fence of their topic-partition (the others were applied
    by an earlier step: a redelivery after a crash, or another writer that won a race)."""
    fences = {k: int(v) for k, v in stored.items() if k.startswith(keys.FENCE_PREFIX)}
    return [
        p
        for p in items
        if p.internal or p.offset > fences.get(keys.fence_field(p.topic, p.partition), -1)
    ]


def _new_fences(stored: dict[str, bytes], fresh: list[Positioned]) -> dict[str, bytes]:
    fences = {k: int(v) for k, v in stored.items() if k.startswith(keys.FENCE_PREFIX)}
    out = {}
    for p in fresh:
        if p.internal:
            continue
        name = keys.fence_field(p.topic, p.partition)
        fences[name] = max(fences.get(name, -1), p.offset)
        out[name] = str(fences[name]).encode()
    return out


@dataclass
class Prepared:
    """What a step knows of a user after its head, shared by `request` and `plan`."""

    fresh: list[Positioned]  # the records not under their partition's fence
    index: Index
    old_header: dict[str, Any] | None
    floor: int  # the event-time floor: retention, or the namespace's --since
    records: list[Event]  # the fresh events kept (not erased as they arrive)
    reached: list[str]  # the days those records reach (`days.reach`)


def prepare(
    head: dict[str, bytes], items: list[Positioned], *, now_ms: int, config: FoldConfig
) -> Prepared:
    """Pure: the parts of a step's head that `request` and `plan` both need, read once."""
    fresh = _fresh(head, items)
    index = Index.from_bytes(head.get(keys.INDEX))
    old_header = decode_field(head[keys.HEADER]) if keys.HEADER in head else None
    floor = oldest(now_ms, config.retention_days, config.since_ms)
    records = _kept(index, fresh, floor)
    reached = reach(index.days, spans(records), config.gap_ms)
    return Prepared(fresh, index, old_header, floor, records, reached)


def likely(items: list[Positioned]) -> list[str]:
    """The fields a step adding `items` most likely reads besides its head (the rows, sessions
    and figures of their days, the lists their kinds add to), asked for with the head so that
    a step of a few events reads once; `request` names what else it needs."""
    names: list[str] = []
    for p in items:
        r = p.record
        if isinstance(r, Command | Note | Alias) or p.origin:
            return []  # read in full
        if r.type == "identify":
            continue
        d = day_of(r.timestamp)
        names += (rows_field(d), keys.SESSIONS_PREFIX + d, keys.DAY_PREFIX + d)
        if r.type == "feedback":
            names.append(keys.FEEDBACK)
        elif r.type == "content":
            names.append(keys.ENGAGEMENT)
    return list(dict.fromkeys(names))


def request(
    head: dict[str, bytes],
    items: list[Positioned],
    prepared: Prepared,
    *,
    needs: SegmentNeeds,
    full: bool,
) -> list[str] | None:
    """Pure: after the head (HEAD and fences), which fields the step reads next — None for
    every field: for records that came again (what followed from their step is re-sent
    whole), a command, an erasure by the retention, or when told to (`full`: a row under an
    existing id differed)."""
    p = prepared
    if full or len(p.fresh) < len(items) or any(isinstance(f.record, Command) for f in p.fresh):
        return None
    if any(merging(f) for f in p.fresh) or _merged_away(p.index, owner(items[0].record)):
        return None  # a merge's step reads the whole state (projections/origins.py)
    if p.index.days and min(span[0] for span in p.index.days.values()) < p.floor:
        return None
    names = reads(p.index, p.old_header, p.records, p.reached, window_start=needs.window_start)
    if needs.engagement and keys.ENGAGEMENT not in names:
        names.append(keys.ENGAGEMENT)
    return names


def _kept(index: Index, fresh: list[Positioned], floor: int) -> list[Event]:
    """The records not erased as they arrive (by the floor, or by a delete after them);
    commands never come here (they are folded in full), nor aliases (links, not data)."""
    until = deleted_until(index.commands)
    return [
        p.record
        for p in fresh
        if not isinstance(p.record, Command | Alias | Note)
        and p.record.timestamp >= floor
        and (until is None or p.record.timestamp > until)
    ]


def plan(
    head: dict[str, bytes],
    stored: dict[str, bytes],
    items: list[Positioned],
    prepared: Prepared,
    *,
    every: bool,
    now_ms: int,
    config: FoldConfig,
    namespace: str = "ps",
    joined: dict[str, Held] | None = None,
) -> StepPlan | None:
    """Pure: what folding `items` into the user writes and sends, from its head and the
    fields `request` named (`every`: it named None, and `stored` holds every field); None
    when a row under an existing id differs (then the step is planned again, `every`)."""
    fresh = prepared.fresh
    app_id, user_id = items[0].record.app_id, owner(items[0].record)
    if not fresh:
        return restate(stored, app_id, user_id, config=config, namespace=namespace, items=items)
    old_header = prepared.old_header
    if every:
        step = _in_full(
            stored,
            fresh,
            old_header,
            now_ms=now_ms,
            config=config,
            me=(app_id, user_id),
            items=items,
            joined=joined or {},
        )
    else:
        found = _by_days(head, stored, prepared, config)
        if found is None:
            return None
        step = found
    sent = decode_field(head[keys.CONTRIBUTED]) if keys.CONTRIBUTED in head else {}
    again = len(fresh) < len(items)
    step.deltas, digests = _deltas(
        namespace, app_id, user_id, version_of(head) + 1, step.given, sent, resend=again
    )
    step.repair = again
    # records that came again: the step that applied them may have died before its index
    # moves, so every entry of the new header is put again (a stale one is never listed)
    step.index = _index_ops(namespace, app_id, user_id, None if again else old_header, step.header)
    if digests != sent:
        step.to_set[keys.CONTRIBUTED] = encode_field(digests)
    step.to_set.update(_new_fences(head, fresh))
    return step


def owner(record: Record | Note) -> str:
    """The id whose state a record is folded in: its user's; an alias's previous id's (where
    its key put it, docs/design.md §7)."""
    return record.previous_id if isinstance(record, Alias) else record.user_id


def _merged_away(index: Index, me: str) -> bool:
    """Whether the user is merged into another (it then keeps its own records only)."""
    root = None if index.identity is None else index.identity[1]
    return root is not None and root[0] != me


def merging(p: Positioned) -> bool:
    """Part of a merge (docs/design.md §7): a merge message, or a link."""
    return p.internal or is_link(p.record)


def _view(
    state: UserState, held: Held | None, me: str, gap_ms: int
) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, dict[str, Any]]]:
    """The projected fields, engagement keys and company facts of a state: for an id merged
    into another, no view and no facts of its own, only the id its records count for."""
    if held is not None and held.root_id(me) != me:
        return {keys.MERGED_INTO: held.root_id(me)}, {}, {}
    projected, engagement_keys = project(state, gap_ms)
    merged = [] if held is None else held.merged()
    if merged and keys.HEADER in projected:
        projected[keys.HEADER]["merged_ids"] = merged
    return projected, engagement_keys, state.facts


def _in_full(
    stored: dict[str, bytes],
    fresh: list[Positioned],
    old_header: dict[str, Any] | None,
    *,
    now_ms: int,
    config: FoldConfig,
    me: tuple[str, str],
    items: list[Positioned],
    joined: dict[str, Held],
) -> StepPlan:
    """The step from every stored field: the state is read whole, folded and projected."""
    state, index = stored_state(stored)
    held: Held | None = None
    mails: list[Mail] = []
    if index.identity is None and not any(merging(p) for p in items):
        new_state = apply(
            state,
            [p.record for p in fresh],  # type: ignore[misc]
            now_ms=now_ms,
            retention_days=config.retention_days,
            since_ms=config.since_ms,
        )
    else:
        held = held_of(state, index.identity)
        merge_step(
            held,
            me[1],
            [(p.record, p.origin, p.g) for p in fresh],
            joined,
            now_ms=now_ms,
            retention_days=config.retention_days,
            since_ms=config.since_ms,
        )
        new_state = held.state
    # a delete goes to the app's link graph even without a merge yet: a later alias may join
    # its id to others, which it then reaches
    mails = mail(held or Held(new_state), me[0], me[1], [(p.record, p.origin, p.g) for p in items])
    projected, engagement_keys, new_facts = _view(new_state, held, me[1], config.gap_ms)
    new = encode_fields(projected) | state_fields(
        new_state, engagement_keys, None if held is None else encode_held(held)
    )
    for name, value in stored.items():  # written apart: fences, sent digests, membership
        if name.startswith(keys.FENCE_PREFIX) or name in (keys.CONTRIBUTED, *MEMBERSHIP):
            new[name] = value
    to_set, to_delete = changes({k: v for k, v in stored.items() if k != keys.VERSION}, new)
    h = projected.get(keys.HEADER)
    figures = {d: projected[keys.DAY_PREFIX + d] for d in (h["days"] if h else [])}
    given = parts(index.facts, new_facts, old_header, h, figures, [], full=True)
    return StepPlan(
        stored,
        to_set,
        to_delete,
        h,
        figures,
        projected.get(keys.ENGAGEMENT, []),
        given=given,
        mail=mails,
    )


def _by_days(
    head: dict[str, bytes], stored: dict[str, bytes], p: Prepared, config: FoldConfig
) -> StepPlan | None:
    """The step from the fields of the days it touches (projections/days.py)."""
    projected = project_days(
        p.index, p.old_header, stored, p.records, config.gap_ms, p.floor, p.reached
    )
    if projected is None:
        return None
    given = parts(
        p.index.facts,
        projected.index.facts,
        p.old_header,
        projected.header,
        projected.figures,
        projected.changed,
        full=False,
    )
    return StepPlan(
        head,
        projected.to_set,
        projected.to_delete,
        projected.header,
        projected.figures,
        projected.engagement or [],
        given=given,
    )


def restate(
    stored: dict[str, bytes],
    app_id: str,
    user_id: str,
    *,
    config: FoldConfig,
    namespace: str = "ps",
    items: list[Positioned] | None = None,
) -> StepPlan:
    """Pure: re-send what the stored user contributes, at its stored version (no write):
    every part of it to every company it named or sent to, its users-index entries, (added
    by the step) its place in every member set, and what its merges send (`items`)."""
    state, index = stored_state(stored)
    held = None if index.identity is None else held_of(state, index.identity)
    projected, _keys, facts = _view(state, held, user_id, config.gap_ms)
    h = projected.get(keys.HEADER)
    figures = {d: projected[keys.DAY_PREFIX + d] for d in (h["days"] if h else [])}
    given = parts(index.facts, facts, None, h, figures, [], full=True)
    mails = []
    if items:
        mails = mail(
            held or Held(state), app_id, user_id, [(p.record, p.origin, p.g) for p in items]
        )
    sent = decode_field(stored[keys.CONTRIBUTED]) if keys.CONTRIBUTED in stored else {}
    deltas, _ = _deltas(namespace, app_id, user_id, version_of(stored), given, sent, resend=True)
    return StepPlan(
        stored,
        header=h,
        figures=figures,
        engagement=projected.get(keys.ENGAGEMENT, []),
        deltas=deltas,
        index=_index_ops(namespace, app_id, user_id, None, h),
        mail=mails,
        write=False,
        repair=True,
    )


async def _joined(store: Store, namespace: str, items: list[Positioned]) -> dict[str, Held]:
    """The state, as read now, of every id a join among the items names."""
    wanted = sorted(
        {
            (p.record.app_id, p.record.other)
            for p in items
            if isinstance(p.record, Note) and p.record.kind == "join"
        }
    )
    if not wanted:
        return {}
    found = await store.read([(keys.user(namespace, app, o), None) for app, o in wanted])
    out = {}
    for (_app, origin), fields in zip(wanted, found, strict=True):
        state, index = stored_state(fields)
        out[origin] = held_of(state, index.identity)
    return out


async def apply_batch(
    store: Store,
    sink: Sink,
    namespace: str,
    items: list[Positioned],
    *,
    now_ms: int,
    config: FoldConfig,
    max_attempts: int = 20,
    mailer: Mailer | None = None,
) -> int:
    """Fold a batch into every user it touches; returns how many users were written.

    At most two reads per attempt for the whole batch: every user's head with the fields its
    records most likely need (`likely`), then what else each step needs of it, if anything.
    Raises `Contended` when some users kept changing under this writer, after sending what
    the others' steps wrote: the batch is to be tried again, not acked."""
    by_user: dict[str, list[Positioned]] = {}
    for p in items:
        r = p.record
        by_user.setdefault(keys.user(namespace, r.app_id, owner(r)), []).append(p)
    registry_key = keys.segment_registry(namespace)
    pending = list(by_user)
    in_full: set[str] = set()
    written: list[str] = []
    for _ in range(max_attempts):
        if not pending:
            break
        head_names = {k: HEAD + _fences(by_user[k]) for k in pending}
        guessed = {k: [] if k in in_full else likely(by_user[k]) for k in pending}
        found = await store.read(
            [(registry_key, None), *((k, head_names[k] + guessed[k]) for k in pending)]
        )
        registry = registry_of(found[0])
        heads, early = {}, {}
        for k, fields in zip(pending, found[1:], strict=True):
            heads[k] = {n: fields[n] for n in head_names[k] if n in fields}
            early[k] = {n: fields[n] for n in guessed[k] if n in fields}
        prepared = {k: prepare(heads[k], by_user[k], now_ms=now_ms, config=config) for k in pending}
        names = {
            k: request(
                heads[k],
                by_user[k],
                prepared[k],
                needs=segment_needs(registry, by_user[k][0].record.app_id, now_ms),
                full=k in in_full,
            )
            for k in pending
        }
        # What the first read did not ask for: every field, or the names it missed.
        asked = {k: set(guessed[k]) for k in pending}
        rest = {
            k: wanted if wanted is None else [n for n in wanted if n not in asked[k]]
            for k, wanted in names.items()
        }
        rest = {k: wanted for k, wanted in rest.items() if wanted is None or wanted}
        later = dict(zip(rest, await store.read(list(rest.items())), strict=True))
        joined = await _joined(store, namespace, [p for k in pending for p in by_user[k]])
        steps: dict[str, StepPlan] = {}
        for key, wanted in names.items():
            if wanted is None:
                fields = later[key]
            else:
                fields = {n: early[key][n] for n in wanted if n in early[key]}
                fields.update(later.get(key, {}))
            step = plan(
                heads[key],
                fields,
                by_user[key],
                prepared[key],
                every=wanted is None,
                now_ms=now_ms,
                config=config,
                namespace=namespace,
                joined=joined,
            )
            if step is None:
                in_full.add(key)  # planned again next round, from every field
            else:
                steps[key] = step
        writes = [
            Write(key, version_of(heads[key]), step.to_set, step.to_delete)
            for key, step in steps.items()
            if step.write
        ]
        results = await store.commit(writes)
        refused = {w.key for w, ok in zip(writes, results, strict=True) if not ok}
        written += [w.key for w, ok in zip(writes, results, strict=True) if ok]
        # Sent from what was written, at the version written; a refused step sends nothing.
        deltas: list[Contribution] = []
        index: list[IndexOp] = []
        folded: list[Folded] = []
        mails: list[Mail] = []
        for key, step in steps.items():
            if key in refused:
                continue
            first = by_user[key][0].record
            mails += step.mail
            deltas += step.deltas
            index += step.index
            folded.append(
                Folded(
                    key,
                    first.app_id,
                    "user",
                    owner(first),
                    version_of(heads[key]) + step.write,
                    step.stored,
                    step.header,
                    step.figures,
                    step.engagement,
                    step.repair,
                )
            )
        if deltas:
            await sink.send(deltas)
        if mailer is not None and mails:
            await mailer.send(mails)
        elif any(m.kind != "delete" for m in mails):
            # without one (tests of the fold alone), only deletes go nowhere: they matter
            # once an alias joins their id to another
            raise RuntimeError("a merge step needs a mailer (docs/design.md §7)")
        await store.index(index)
        await settle(store, namespace, registry, folded, now_ms=now_ms)
        pending = [k for k in pending if k in refused or k not in steps]
    if pending:
        raise Contended(f"{len(pending)} users kept changing under this writer")
    return len(written)
