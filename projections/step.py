"""One user step: fence, fold, write, then tell the companies and move the sets — for many
users in few round trips.

Order matters for exactly-once (DESIGN.md §3). The user's atomic write goes first; what
follows from it — its company contributions, its users-index entries, its segment member
moves — is sent after, from what was written, at the version written. So nothing ever
leaves a step that did not commit: a zombie whose write is refused sends nothing. A worker
killed between the write and the sends has not acked its batch: the records come again,
find themselves under the fence, and the step re-sends the stored truth at the stored
version (`restate`) — contributions are whole, not differences, and the company and member
sets take a version only if it is not older than what they hold, so a re-send is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from projections import keys
from projections.company import Contribution, needed_fields, plan_company
from projections.fold import (
    UserState,
    apply,
    changes,
    contributions,
    decode_field,
    digest,
    encode_field,
    encode_fields,
    project,
    project_added,
)
from projections.membership import company_change_ops, company_properties, reevaluate
from projections.registry import (
    MEMBERSHIP,
    NONE,
    Membership,
    Registry,
    company_profile,
    membership,
    membership_fields,
    membership_moves,
    registry_of,
    stored_membership,
    user_profile,
)
from projections.store import IndexOp, MemberMove, Store, Write, version_of
from schemas.models import Record


class Contended(Exception):
    """Entities kept changing under this writer (another writer on them: a rebalance's
    overlap); nothing of the batch is lost, it is to be tried again."""


@dataclass(frozen=True)
class Positioned:
    """A decoded record and where it was read from."""

    record: Record
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class FoldConfig:
    gap_ms: int = 30 * 60_000
    retention_days: int = 400
    since_ms: int | None = None  # the namespace's event-time floor (replay --since)


class Sink(Protocol):
    async def send(self, deltas: list[Contribution]) -> None:
        """Deliver company contributions durably (awaited before the user step is written)."""
        ...


class DirectSink:
    """Applies contributions to their companies at once, without a topic (used by replay).

    Safe for the same reason as the topic: a contribution replaces a member's row only with
    an equal or newer user-step version."""

    def __init__(self, store: Store, clock: Callable[[], int] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: int(time.time() * 1000))

    async def send(self, deltas: list[Contribution]) -> None:
        await apply_company_batch(self._store, deltas, now_ms=self._clock())


@dataclass
class StepPlan:
    """What a step writes: the stored fields `old` become `new` (segment membership is
    added to `new` once the registry and company properties are known), and what it sends
    once written."""

    old: dict[str, bytes] = field(default_factory=dict)
    new: dict[str, bytes] = field(default_factory=dict)
    projected: dict[str, Any] = field(default_factory=dict)
    deltas: list[Contribution] = field(default_factory=list)
    index: list[IndexOp] = field(default_factory=list)
    write: bool = True  # False: re-send the stored truth only (restate)
    repair: bool = False  # records came again: assert every set of the entity too
    membership: tuple[Membership, Membership] = (NONE, NONE)  # (stored, new)


def _index_ops(
    namespace: str,
    app_id: str,
    user_id: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> list[IndexOp]:
    """Move the user's users-index entries from the old header's to the new header's."""
    before = {} if old is None else keys.index_members(old, user_id)
    after = {} if new is None else keys.index_members(new, user_id)
    bucket = keys.index_bucket(user_id)
    ops = []
    for sort in keys.INDEX_KINDS:
        b, a = before.get(sort), after.get(sort)
        if b is not None or a is not None:  # re-added even if unchanged: repairs a crash
            key = keys.users_index(namespace, app_id, sort, bucket)
            ops.append(IndexOp(key, b if b != a else None, a))
    return ops


def _deltas(
    namespace: str,
    app_id: str,
    user_id: str,
    version: int,
    parts: dict[str, list[Any]],
    sent: dict[str, str],
    resend: bool,
) -> tuple[list[Contribution], dict[str, str]]:
    digests = {company: digest(part) for company, part in parts.items()}
    out = []
    for company in sorted(set(parts) | set(sent)):
        if not resend and sent.get(company) == digests.get(company):
            continue
        facts, member, days = parts.get(company, [None, None, {}])
        out.append(Contribution(app_id, company, user_id, version, facts, member, days, namespace))
    return out, digests


def plan(
    stored: dict[str, bytes],
    items: list[Positioned],
    *,
    now_ms: int,
    config: FoldConfig,
    namespace: str = "ps",
) -> StepPlan:
    """Pure: what folding `items` into the stored user writes and sends.

    Records at or below the stored fence of their topic-partition were applied by an earlier
    step (a redelivery after a crash, or another writer that won a race); the new fences go
    out with the state. When some were applied already, the step that applied them may have
    died before its sends: this one re-sends every contribution and asserts every set.
    """
    fences = {k: int(v) for k, v in stored.items() if k.startswith(keys.FENCE_PREFIX)}
    fresh = [p for p in items if p.offset > fences.get(keys.fence_field(p.topic, p.partition), -1)]
    app_id, user_id = items[0].record.app_id, items[0].record.user_id
    if not fresh:
        return restate(stored, app_id, user_id, config=config, namespace=namespace)
    again = len(fresh) < len(items)
    state = UserState.from_bytes(stored.get(keys.STATE))
    new_state = apply(
        state,
        [p.record for p in fresh],
        now_ms=now_ms,
        retention_days=config.retention_days,
        since_ms=config.since_ms,
    )
    added = project_added(state, new_state, stored, config.gap_ms)
    if added is None:
        projected = project(new_state, config.gap_ms)
        new = encode_fields(projected)
    else:
        projected, new = added
    sent = decode_field(stored[keys.CONTRIBUTED]) if keys.CONTRIBUTED in stored else {}
    deltas, digests = _deltas(
        namespace,
        app_id,
        user_id,
        version_of(stored) + 1,
        contributions(new_state, projected),
        sent,
        resend=again,
    )
    old_header = decode_field(stored[keys.HEADER]) if keys.HEADER in stored else None
    index = _index_ops(namespace, app_id, user_id, old_header, projected.get(keys.HEADER))
    new[keys.STATE] = new_state.to_bytes()
    if digests:
        new[keys.CONTRIBUTED] = encode_field(digests)
    for p in fresh:
        name = keys.fence_field(p.topic, p.partition)
        fences[name] = max(fences.get(name, -1), p.offset)
    new.update({name: str(offset).encode() for name, offset in fences.items()})
    old = {k: v for k, v in stored.items() if k != keys.VERSION}
    return StepPlan(old, new, projected, deltas, index, repair=again)


def restate(
    stored: dict[str, bytes],
    app_id: str,
    user_id: str,
    *,
    config: FoldConfig,
    namespace: str = "ps",
) -> StepPlan:
    """Pure: re-send what the stored user contributes, at its stored version (no write):
    its contributions to every company it named, its users-index entries, and (added by the
    step) its place in every member set."""
    state = UserState.from_bytes(stored.get(keys.STATE))
    projected = project(state, config.gap_ms)
    sent = decode_field(stored[keys.CONTRIBUTED]) if keys.CONTRIBUTED in stored else {}
    deltas, _ = _deltas(
        namespace,
        app_id,
        user_id,
        version_of(stored),
        contributions(state, projected),
        sent,
        resend=True,
    )
    header = projected.get(keys.HEADER)
    index = _index_ops(namespace, app_id, user_id, None, header)
    return StepPlan(
        old=stored, projected=projected, deltas=deltas, index=index, write=False, repair=True
    )


async def apply_batch(
    store: Store,
    sink: Sink,
    namespace: str,
    items: list[Positioned],
    *,
    now_ms: int,
    config: FoldConfig,
    max_attempts: int = 20,
) -> int:
    """Fold a batch into every user it touches; returns how many users were written.

    Raises `Contended` when some users kept changing under this writer, after sending what
    the others' steps wrote: the batch is to be tried again, not acked."""
    by_user: dict[str, list[Positioned]] = {}
    for p in items:
        r = p.record
        by_user.setdefault(keys.user(namespace, r.app_id, r.user_id), []).append(p)
    registry_key = keys.segment_registry(namespace)
    pending = list(by_user)
    written: list[str] = []
    for _ in range(max_attempts):
        if not pending:
            break
        registry_fields, *stored = await store.load([registry_key, *pending])
        registry = registry_of(registry_fields)
        steps = {
            key: (
                plan(fields, by_user[key], now_ms=now_ms, config=config, namespace=namespace),
                fields,
            )
            for key, fields in zip(pending, stored, strict=True)
        }
        companies = await _company_properties(store, namespace, registry, steps, by_user)
        writes = []
        for key, (step, fields) in steps.items():
            first = by_user[key][0].record
            _user_membership(registry, first, step, companies.get(first.app_id, {}), now_ms)
            if step.write:
                to_set, to_delete = changes(step.old, step.new)
                writes.append(Write(key, version_of(fields), to_set, to_delete))
        results = await store.commit(writes)
        refused = {w.key for w, ok in zip(writes, results, strict=True) if not ok}
        done = [w.key for w, ok in zip(writes, results, strict=True) if ok]
        written += done
        # Sent from what was written, at the version written; a refused step sends nothing.
        deltas: list[Contribution] = []
        index: list[IndexOp] = []
        moves: list[MemberMove] = []
        for key, (step, fields) in steps.items():
            if key in refused:
                continue
            first = by_user[key][0].record
            deltas += step.deltas
            index += step.index
            m, due = _user_moves(namespace, registry, first, step, version_of(fields) + step.write)
            moves += m
            index += due
        if deltas:
            await sink.send(deltas)
        await store.index(index)
        await store.place(moves)
        pending = [k for k in pending if k in refused]
        if done and await store.version(registry_key) != registry.generation:
            await _again(store, namespace, [by_user[k][0].record for k in done], now_ms)
    if pending:
        raise Contended(f"{len(pending)} users kept changing under this writer")
    return len(written)


async def _company_properties(
    store: Store,
    namespace: str,
    registry: Registry,
    steps: dict[str, tuple[StepPlan, dict[str, bytes]]],
    by_user: dict[str, list[Positioned]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """app -> company -> properties, for the companies of users whose segments read them."""
    wanted: dict[str, set[str]] = {}
    for key, (step, _fields) in steps.items():
        app_id = by_user[key][0].record.app_id
        header = step.projected.get(keys.HEADER)
        if header and header["company_id"] is not None and registry.reads_companies(app_id):
            wanted.setdefault(app_id, set()).add(header["company_id"])
    return {
        app_id: await company_properties(store, namespace, app_id, ids)
        for app_id, ids in wanted.items()
    }


def _user_membership(
    registry: Registry,
    first: Record,
    step: StepPlan,
    companies: dict[str, dict[str, Any]],
    now_ms: int,
) -> None:
    """Evaluate the user's segments on the profile the step folded and add the membership to
    its new fields (a restate repeats the stored one)."""
    old = stored_membership(step.old)
    new = old
    if step.write:
        segments = registry.of(first.app_id, "user")
        header = step.projected.get(keys.HEADER)
        new = NONE
        if header is not None and segments:
            profile = user_profile(
                header, step.projected, companies.get(header["company_id"] or "")
            )
            new = membership(segments, profile, now_ms)
        step.new.update(membership_fields(new))
    step.membership = (old, new)


def _user_moves(
    namespace: str, registry: Registry, first: Record, step: StepPlan, version: int
) -> tuple[list[MemberMove], list[IndexOp]]:
    old, new = step.membership
    every = [s.id for s in registry.of(first.app_id, "user")] if step.repair else None
    return membership_moves(
        namespace, first.app_id, "user", first.user_id, version, old, new, every, exact=False
    )


async def _again(store: Store, namespace: str, firsts: list[Record], now_ms: int) -> None:
    """Users written with definitions that changed meanwhile: evaluate them again."""
    by_app: dict[str, list[str]] = {}
    for r in firsts:
        by_app.setdefault(r.app_id, []).append(r.user_id)
    for app_id, user_ids in by_app.items():
        await reevaluate(store, namespace, app_id, "user", user_ids, now_ms=now_ms)


async def apply_company_batch(
    store: Store, items: list[Contribution], *, now_ms: int, max_attempts: int = 20
) -> int:
    """Apply contributions to every company they name (in their namespace); returns how many
    companies were written. Raises `Contended` as `apply_batch` does."""
    by_company: dict[str, list[Contribution]] = {}
    for c in items:
        by_company.setdefault(keys.company(c.namespace, c.app_id, c.company_id), []).append(c)
    pending = list(by_company)
    total = 0
    for _ in range(max_attempts):
        if not pending:
            break
        namespaces = sorted({by_company[k][0].namespace for k in pending})
        registries = {
            ns: registry_of(f)
            for ns, f in zip(
                namespaces,
                await store.load([keys.segment_registry(ns) for ns in namespaces]),
                strict=True,
            )
        }
        stored = await store.load_without(
            pending, keys.MEMBER_DAYS_PREFIX, [needed_fields(by_company[k]) for k in pending]
        )
        writes, steps = [], {}
        for key, fields in zip(pending, stored, strict=True):
            first = by_company[key][0]
            registry = registries[first.namespace]
            step = _company_step(first, registry, fields, by_company[key], now_ms)
            steps[key] = (step, fields)
            if step.write:
                to_set, to_delete = changes(step.old, step.new)
                writes.append(Write(key, version_of(fields), to_set, to_delete))
        results = await store.commit(writes)
        refused = {w.key for w, ok in zip(writes, results, strict=True) if not ok}
        written: dict[str, list[str]] = {}
        for w, ok in zip(writes, results, strict=True):
            if ok:
                written.setdefault(by_company[w.key][0].namespace, []).append(w.key)
                total += 1
        index: list[IndexOp] = []
        moves: list[MemberMove] = []
        for key, (step, fields) in steps.items():
            if key not in refused:
                first = by_company[key][0]
                m, i = _company_moves(first, registries[first.namespace], step, fields, now_ms)
                moves += m
                index += i
        await store.index(index)
        await store.place(moves)
        pending = [k for k in pending if k in refused]
        for ns, company_keys in written.items():
            if await store.version(keys.segment_registry(ns)) != registries[ns].generation:
                await _companies_again(store, ns, [by_company[k][0] for k in company_keys], now_ms)
    if pending:
        raise Contended(f"{len(pending)} companies kept changing under this writer")
    return total


def _company_step(
    first: Contribution,
    registry: Registry,
    fields: dict[str, bytes],
    items: list[Contribution],
    now_ms: int,
) -> StepPlan:
    """The company's step: its new fields with its segment membership, or, when every
    contribution came again (its step may have died before its moves), a repair of the
    stored one."""
    fences = {k: int(v) for k, v in fields.items() if k.startswith(keys.FENCE_PREFIX)}
    again = any(
        c.topic and c.offset <= fences.get(keys.fence_field(c.topic, c.partition), -1)
        for c in items
    )
    old_membership = stored_membership(fields)
    planned = plan_company(fields, items)
    if planned is None:
        return StepPlan(
            old=fields, write=False, repair=again, membership=(old_membership, old_membership)
        )
    old, new, projected = planned
    segments = registry.of(first.app_id, "company")
    header = projected.get(keys.HEADER)
    m = NONE
    if header is not None and segments:
        m = membership(segments, company_profile(header, projected), now_ms)
    for name in MEMBERSHIP:
        new.pop(name, None)
    new.update(membership_fields(m))
    return StepPlan(old, new, projected, repair=again, membership=(old_membership, m))


def _company_moves(
    first: Contribution,
    registry: Registry,
    step: StepPlan,
    fields: dict[str, bytes],
    now_ms: int,
) -> tuple[list[MemberMove], list[IndexOp]]:
    """After the company's write: its companies-index entry, its member sets, and its members
    due at once when its properties changed (a repair: whatever they were)."""
    ns, app_id, company_id = first.namespace, first.app_id, first.company_id
    old_header = decode_field(fields[keys.HEADER]) if keys.HEADER in fields else None
    if step.write:
        header = step.projected.get(keys.HEADER)
        members = [row[0] for row in step.projected.get(keys.COMPANY_USERS, [])]
    else:
        header = old_header
        members = [row[0] for row in decode_field(fields.get(keys.COMPANY_USERS) or b"\x90")]
    before = None if step.repair else old_header
    listed = keys.id_member(company_id)
    index_key = keys.companies_index(ns, app_id, keys.index_bucket(company_id))
    old, new = step.membership
    every = [s.id for s in registry.of(app_id, "company")] if step.repair else None
    moves, due = membership_moves(
        ns,
        app_id,
        "company",
        company_id,
        version_of(fields) + step.write,
        old,
        new,
        every,
        exact=False,
    )
    return moves, [
        IndexOp(index_key, listed if header is None else None, None if header is None else listed),
        *company_change_ops(ns, app_id, registry, before, header, members, now_ms),
        *due,
    ]


async def _companies_again(
    store: Store, namespace: str, firsts: list[Contribution], now_ms: int
) -> None:
    by_app: dict[str, list[str]] = {}
    for c in firsts:
        by_app.setdefault(c.app_id, []).append(c.company_id)
    for app_id, company_ids in by_app.items():
        await reevaluate(store, namespace, app_id, "company", company_ids, now_ms=now_ms)
