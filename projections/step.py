"""One user step: fence, fold, tell the companies, then write — for many users in few round trips.

Order matters for exactly-once (DESIGN.md §3): the company contributions and the users-index
entries of a step go out *before* the user's atomic write. A crash in between leaves the user
unwritten, so the records are folded again after the restart and their contributions sent
again with the same version, which the company side takes as the same step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from projections import keys
from projections.company import Contribution, plan_company
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

    def __init__(self, store: Store) -> None:
        self._store = store

    async def send(self, deltas: list[Contribution]) -> None:
        await apply_company_batch(self._store, deltas)


@dataclass
class StepPlan:
    to_set: dict[str, bytes] = field(default_factory=dict)
    to_delete: list[str] = field(default_factory=list)
    deltas: list[Contribution] = field(default_factory=list)
    index: list[IndexOp] = field(default_factory=list)


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
    for sort in keys.INDEX_SORTS:
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
    projected = project(new_state, config.gap_ms)
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
    new = encode_fields(projected)
    new[keys.STATE] = new_state.to_bytes()
    if digests:
        new[keys.CONTRIBUTED] = encode_field(digests)
    for p in fresh:
        name = keys.fence_field(p.topic, p.partition)
        fences[name] = max(fences.get(name, -1), p.offset)
    new.update({name: str(offset).encode() for name, offset in fences.items()})
    old = {k: v for k, v in stored.items() if k != keys.VERSION}
    to_set, to_delete = changes(old, new)
    return StepPlan(to_set, to_delete, deltas, index)


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
    return StepPlan(deltas=deltas, index=_index_ops(namespace, app_id, user_id, None, header))


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
    pending = list(by_user)
    lost: set[str] = set()
    written = 0
    for _ in range(max_attempts):
        if not pending:
            return written
        stored = await store.load(pending)
        writes, deltas, index = [], [], []
        for key, fields in zip(pending, stored, strict=True):
            step = plan(fields, by_user[key], now_ms=now_ms, config=config, namespace=namespace)
            if step is None and key in lost:
                first = by_user[key][0].record
                step = restate(
                    fields, first.app_id, first.user_id, config=config, namespace=namespace
                )
            if step is None:
                continue
            deltas += step.deltas
            index += step.index
            if step.to_set or step.to_delete:
                writes.append(Write(key, version_of(fields), step.to_set, step.to_delete))
        if deltas:
            await sink.send(deltas)
        if index:
            await store.index(index)
        results = await store.commit(writes)
        written += sum(results)
        pending = [w.key for w, ok in zip(writes, results, strict=True) if not ok]
        lost.update(pending)
    raise RuntimeError(f"{len(pending)} users kept changing under this writer; giving up")


async def apply_company_batch(
    store: Store, items: list[Contribution], *, max_attempts: int = 20
) -> int:
    """Apply contributions to every company they name (in their namespace); returns how many
    companies were written."""
    by_company: dict[str, list[Contribution]] = {}
    for c in items:
        by_company.setdefault(keys.company(c.namespace, c.app_id, c.company_id), []).append(c)
    pending = list(by_company)
    written = 0
    for _ in range(max_attempts):
        if not pending:
            return written
        stored = await store.load(pending)
        writes = []
        for key, fields in zip(pending, stored, strict=True):
            step = plan_company(fields, by_company[key])
            if step is not None:
                writes.append(Write(key, version_of(fields), step[0], step[1]))
        results = await store.commit(writes)
        written += sum(results)
        pending = [w.key for w, ok in zip(writes, results, strict=True) if not ok]
    raise RuntimeError(f"{len(pending)} companies kept changing under this writer; giving up")
