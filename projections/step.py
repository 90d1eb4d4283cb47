"""One user step: fence, fold, tell the companies, then write — for many users in few round trips.

Order matters for exactly-once (DESIGN.md §3): the company contributions and the users-index
entries of a step go out *before* the user's atomic write. A crash in between leaves the user
unwritten, so the records are folded again after the restart and their contributions sent
again with the same version, which the company side takes as the same step. Segment member
sets are moved around the write (`registry.membership_ops`, `membership.place`): entries
gained before it, every move again after it, then a check that no other writer came between.
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
from projections.membership import company_change_ops, company_properties, place, reevaluate
from projections.registry import (
    MEMBERSHIP,
    NONE,
    Registry,
    company_profile,
    membership,
    membership_fields,
    membership_ops,
    registry_of,
    stored_membership,
    user_profile,
)
from projections.store import IndexOp, Store, Write, version_of
from schemas.models import Record


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
    added to `new` once the registry and company properties are known)."""

    old: dict[str, bytes] = field(default_factory=dict)
    new: dict[str, bytes] = field(default_factory=dict)
    projected: dict[str, Any] = field(default_factory=dict)
    deltas: list[Contribution] = field(default_factory=list)
    index: list[IndexOp] = field(default_factory=list)
    write: bool = True  # False: re-send the stored truth only (restate)


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
) -> StepPlan | None:
    """Pure: what folding `items` into the stored user writes and sends; None if all applied.

    Records at or below the stored fence of their topic-partition were applied by an earlier
    step (redelivery after a crash) and are skipped; the new fences go out with the state.
    """
    fences = {k: int(v) for k, v in stored.items() if k.startswith(keys.FENCE_PREFIX)}
    fresh = [p for p in items if p.offset > fences.get(keys.fence_field(p.topic, p.partition), -1)]
    if not fresh:
        return None
    app_id, user_id = fresh[0].record.app_id, fresh[0].record.user_id
    state = UserState.from_bytes(stored.get(keys.STATE))
    new_state = apply(
        state, [p.record for p in fresh], now_ms=now_ms, retention_days=config.retention_days
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
        resend=False,
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
    return StepPlan(old, new, projected, deltas, index)


def restate(
    stored: dict[str, bytes],
    app_id: str,
    user_id: str,
    *,
    config: FoldConfig,
    namespace: str = "ps",
) -> StepPlan:
    """Pure: re-send what the stored user contributes, at its stored version (no write).

    Used after a lost race: the attempt that lost may have sent contributions the winner
    did not, so the stored truth goes out again and, being later in the log, wins.
    """
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
    return StepPlan(old=stored, projected=projected, deltas=deltas, index=index, write=False)


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
    """Fold a batch into every user it touches; returns how many users were written."""
    by_user: dict[str, list[Positioned]] = {}
    for p in items:
        r = p.record
        by_user.setdefault(keys.user(namespace, r.app_id, r.user_id), []).append(p)
    registry_key = keys.segment_registry(namespace)
    pending = list(by_user)
    lost: set[str] = set()
    written: list[str] = []
    for _ in range(max_attempts):
        if not pending:
            break
        registry_fields, *stored = await store.load([registry_key, *pending])
        registry = registry_of(registry_fields)
        steps: dict[str, tuple[StepPlan, dict[str, bytes]]] = {}
        for key, fields in zip(pending, stored, strict=True):
            step = plan(fields, by_user[key], now_ms=now_ms, config=config, namespace=namespace)
            if step is None and key in lost:
                first = by_user[key][0].record
                step = restate(
                    fields, first.app_id, first.user_id, config=config, namespace=namespace
                )
            if step is not None:
                steps[key] = (step, fields)
        companies = await _company_properties(store, namespace, registry, steps, by_user)
        writes, deltas, index, moves = [], [], [], {}
        for key, (step, fields) in steps.items():
            first = by_user[key][0].record
            app_companies = companies.get(first.app_id, {})
            ahead, moves[key] = _segments(
                namespace, registry, first, step, app_companies, now_ms, key in lost
            )
            deltas += step.deltas
            index += step.index + ahead
            if step.write:
                to_set, to_delete = changes(step.old, step.new)
                if to_set or to_delete:
                    writes.append(Write(key, version_of(fields), to_set, to_delete))
        if deltas:
            await sink.send(deltas)
        if index:
            await store.index(index)
        results = await store.commit(writes)
        done = {w.key for w, ok in zip(writes, results, strict=True) if ok}
        written += done
        pending = [w.key for w, ok in zip(writes, results, strict=True) if not ok]
        lost.update(pending)
        refused = set(pending)
        stale = await place(
            store,
            [
                (key, version_of(fields) + (key in done), moves[key])
                for key, (_step, fields) in steps.items()
                if key not in refused
            ],
        )
        if stale:  # another writer came in between: its moves may have been overtaken
            await _again(store, namespace, [by_user[k][0].record for k in stale], now_ms)
        if written and await store.version(registry_key) != registry.generation:
            await _again(store, namespace, [by_user[k][0].record for k in written], now_ms)
    if pending:
        raise RuntimeError(f"{len(pending)} users kept changing under this writer; giving up")
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


def _segments(
    namespace: str,
    registry: Registry,
    first: Record,
    step: StepPlan,
    companies: dict[str, dict[str, Any]],
    now_ms: int,
    repair: bool,
) -> tuple[list[IndexOp], list[IndexOp]]:
    """Add the user's segment membership to the step's new fields; the set moves it needs,
    before the write and after it (`registry.membership_ops`)."""
    segments = registry.of(first.app_id, "user")
    header = step.projected.get(keys.HEADER)
    new = NONE
    if header is not None and segments:
        profile = user_profile(header, step.projected, companies.get(header["company_id"] or ""))
        new = membership(segments, profile, now_ms)
    old = stored_membership(step.old)
    if step.write:
        step.new.update(membership_fields(new))
    else:
        new = old  # restate: the stored membership is the truth to repeat
    every = [s.id for s in segments] if repair else None
    return membership_ops(
        namespace, first.app_id, "user", first.user_id, old, new, every, exact=False
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
    companies were written."""
    by_company: dict[str, list[Contribution]] = {}
    for c in items:
        by_company.setdefault(keys.company(c.namespace, c.app_id, c.company_id), []).append(c)
    pending = list(by_company)
    written: dict[str, list[str]] = {}
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
        writes, index, moves = [], [], []
        for key, fields in zip(pending, stored, strict=True):
            first = by_company[key][0]
            step = plan_company(fields, by_company[key])
            if step is None:
                continue
            old, new, projected = step
            registry = registries[first.namespace]
            ahead, moved = _company_index(first, registry, fields, new, projected, now_ms)
            index += ahead
            moves.append((key, version_of(fields), moved))
            to_set, to_delete = changes(old, new)
            if to_set or to_delete:
                writes.append(Write(key, version_of(fields), to_set, to_delete))
        if index:
            await store.index(index)
        results = await store.commit(writes)
        done = {w.key for w, ok in zip(writes, results, strict=True) if ok}
        for key in done:
            written.setdefault(by_company[key][0].namespace, []).append(key)
        pending = [w.key for w, ok in zip(writes, results, strict=True) if not ok]
        refused = set(pending)
        stale = await place(
            store, [(k, v + (k in done), m) for k, v, m in moves if k not in refused]
        )
        for ns in sorted({by_company[k][0].namespace for k in stale}):
            again = [by_company[k][0] for k in stale if by_company[k][0].namespace == ns]
            await _companies_again(store, ns, again, now_ms)
        for ns, company_keys in written.items():
            if await store.version(keys.segment_registry(ns)) != registries[ns].generation:
                await _companies_again(store, ns, [by_company[k][0] for k in company_keys], now_ms)
    if pending:
        raise RuntimeError(f"{len(pending)} companies kept changing under this writer; giving up")
    return sum(len(v) for v in written.values())


def _company_index(
    first: Contribution,
    registry: Registry,
    fields: dict[str, bytes],
    new: dict[str, bytes],
    projected: dict[str, Any],
    now_ms: int,
) -> tuple[list[IndexOp], list[IndexOp]]:
    """Add the company's segment membership to `new`; the sorted-set moves before the write
    (the companies index, the members that are due because the company's properties changed,
    the segments it enters) and after it (`registry.membership_ops`)."""
    segments = registry.of(first.app_id, "company")
    header = projected.get(keys.HEADER)
    m = NONE
    if header is not None and segments:
        m = membership(segments, company_profile(header, projected), now_ms)
    for name in MEMBERSHIP:
        new.pop(name, None)
    new.update(membership_fields(m))
    old_header = decode_field(fields[keys.HEADER]) if keys.HEADER in fields else None
    members = [row[0] for row in projected.get(keys.COMPANY_USERS, [])]
    ns, app_id, company_id = first.namespace, first.app_id, first.company_id
    listed = keys.id_member(company_id)
    index_key = keys.companies_index(ns, app_id, keys.index_bucket(company_id))
    ahead, moves = membership_ops(
        ns, app_id, "company", company_id, stored_membership(fields), m, exact=False
    )
    return [
        IndexOp(index_key, listed if header is None else None, None if header is None else listed),
        *company_change_ops(ns, app_id, registry, old_header, header, members, now_ms),
        *ahead,
    ], moves


async def _companies_again(
    store: Store, namespace: str, firsts: list[Contribution], now_ms: int
) -> None:
    by_app: dict[str, list[str]] = {}
    for c in firsts:
        by_app.setdefault(c.app_id, []).append(c.company_id)
    for app_id, company_ids in by_app.items():
        await reevaluate(store, namespace, app_id, "company", company_ids, now_ms=now_ms)
