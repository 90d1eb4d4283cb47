"""One company step: fence, fold the members' contributions, write, then settle its segments —
for many companies in few round trips.

A step reads each company's head (header, last writers, the rows of the members it changes),
then those members' figures of the days their contributions name and the sums of those
days — and, only when a member takes back an extreme or a last writer, every member's row
(projections/company.py). The users tab moves in the same atomic write as the hash. What
follows (the companies index, segment member sets, members due when the properties change)
is sent after the write, as for users (step.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from projections import keys
from projections.company import (
    CompanyPlan,
    Contribution,
    Recompute,
    first_reads,
    fresh,
    plan_company,
    second_reads,
)
from projections.fold import decode_field
from projections.membership import Folded, company_change_ops, profile_fields, settle
from projections.registry import (
    Registry,
    registry_of,
    segment_needs,
)
from projections.step import Contended
from projections.store import IndexOp, Store, Write, version_of


class DirectSink:
    """Applies contributions to their companies at once, without a topic (used by replay).

    Safe for the same reason as the topic: a member's row and days take a contribution only
    if its user-step version is not older than theirs."""

    def __init__(self, store: Store, clock: Callable[[], int] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: int(time.time() * 1000))

    async def send(self, deltas: list[Contribution]) -> None:
        await apply_company_batch(self._store, deltas, now_ms=self._clock())


async def apply_company_batch(
    store: Store, items: list[Contribution], *, now_ms: int, max_attempts: int = 20
) -> int:
    """Apply contributions to every company they name (in their namespace); returns how many
    companies were written. Raises `Contended` as `step.apply_batch` does."""
    by_company: dict[str, list[Contribution]] = {}
    for c in items:
        by_company.setdefault(keys.company(c.namespace, c.app_id, c.company_id), []).append(c)
    pending = list(by_company)
    every: set[str] = set()  # companies whose header is derived from every member's row
    total = 0
    for _ in range(max_attempts):
        if not pending:
            break
        namespaces = sorted({by_company[k][0].namespace for k in pending})
        found = await store.read(
            [(keys.segment_registry(ns), None) for ns in namespaces]
            + [(k, first_reads(by_company[k])) for k in pending]
        )
        registries = {ns: registry_of(f) for ns, f in zip(namespaces, found, strict=False)}
        heads = dict(zip(pending, found[len(namespaces) :], strict=True))
        news = {k: fresh(heads[k], by_company[k]) for k in pending}
        wanted = []
        for k in pending:
            first = by_company[k][0]
            needs = segment_needs(registries[first.namespace], first.app_id, now_ms, "company")
            window = [n for n in profile_fields(needs, now_ms) if n.startswith(keys.DAY_PREFIX)]
            wanted.append((k, second_reads(heads[k], news[k]) + window))
        read = dict(zip(pending, await store.read(wanted), strict=True))
        whole = [(k, names) for k, names in wanted if k in every]
        if whole:  # every field but other members' days: their rows, for the header
            found = await store.load_without(
                [k for k, _n in whole], keys.MEMBER_DAYS_PREFIX, [n for _k, n in whole]
            )
            read.update(zip([k for k, _n in whole], found, strict=True))
        plans: dict[str, CompanyPlan | None] = {}
        for k in pending:
            stored = {**heads[k], **read[k]}
            try:
                plans[k] = plan_company(stored, news[k], every_member=k in every)
            except Recompute:
                every.add(k)  # planned again next round, with every member's row
        writes = []
        for k, plan in plans.items():
            if plan is None:
                continue
            first = by_company[k][0]
            _fences(plan, heads[k], news[k])
            tab = (
                keys.company_users(first.namespace, first.app_id, first.company_id),
                plan.users_tab,
            )
            writes.append(Write(k, version_of(heads[k]), plan.to_set, plan.to_delete, tab))
        results = await store.commit(writes)
        refused = {w.key for w, ok in zip(writes, results, strict=True) if not ok}
        total += sum(results)
        index: list[IndexOp] = []
        folded: dict[str, list[Folded]] = {}
        for k, plan in plans.items():
            if k in refused:
                continue
            first = by_company[k][0]
            again = len(news[k]) < len(by_company[k])
            f, i = await _after(
                store, first, registries[first.namespace], plan, heads[k], read[k], again, now_ms
            )
            folded.setdefault(first.namespace, []).append(f)
            index += i
        await store.index(index)
        for ns, entities in folded.items():
            await settle(store, ns, registries[ns], entities, now_ms=now_ms)
        pending = [k for k in pending if k in refused or k not in plans]
    if pending:
        raise Contended(f"{len(pending)} companies kept changing under this writer")
    return total


def _fences(plan: CompanyPlan, head: dict[str, bytes], news: list[Contribution]) -> None:
    fences = {k: int(v) for k, v in head.items() if k.startswith(keys.FENCE_PREFIX)}
    for c in news:
        if c.topic:
            name = keys.fence_field(c.topic, c.partition)
            fences[name] = max(fences.get(name, -1), c.offset)
    plan.to_set.update({n: str(o).encode() for n, o in fences.items()})


async def _after(
    store: Store,
    first: Contribution,
    registry: Registry,
    plan: CompanyPlan | None,
    head: dict[str, bytes],
    read: dict[str, bytes],
    again: bool,
    now_ms: int,
) -> tuple[Folded, list[IndexOp]]:
    """After the company's write (or, when every contribution came again, after reading it):
    the company as written, for `settle`; its companies-index entries, and its members due at
    once when its properties changed (a repair: whatever they were)."""
    ns, app_id, company_id = first.namespace, first.app_id, first.company_id
    old_header = decode_field(head[keys.HEADER]) if keys.HEADER in head else None
    stored = {**head, **read}
    figures = {
        n[len(keys.DAY_PREFIX) :]: decode_field(v)
        for n, v in stored.items()
        if n.startswith(keys.DAY_PREFIX)
    }
    if plan is None:
        header, version = old_header, version_of(head)
    else:
        header, version = plan.header, version_of(head) + 1
        figures.update(plan.figures)
        for name in plan.to_delete:
            if name.startswith(keys.DAY_PREFIX):
                figures.pop(name[len(keys.DAY_PREFIX) :], None)
    key = keys.company(ns, app_id, company_id)
    folded = Folded(key, app_id, "company", company_id, version, stored, header, figures, [], again)
    ops = _index_ops(ns, app_id, company_id, old_header, header)
    before = None if again else old_header
    if registry.reads_companies(app_id) and _properties(before) != _properties(header):
        members = await store.ranked(keys.company_users(ns, app_id, company_id))
        ops += company_change_ops(ns, app_id, registry, before, header, members, now_ms)
    return folded, ops


def _index_ops(
    ns: str, app_id: str, company_id: str, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> list[IndexOp]:
    """The company's entries in the companies indexes: the new header's, every time (a step
    that comes again repairs what a crash before them left), the old header's that differ
    taken out; without a header, none (its `id` entry out even when the old header is gone)."""
    before = {} if old is None else keys.company_index_members(old, company_id)
    after = {} if new is None else keys.company_index_members(new, company_id)
    if new is None:
        before.setdefault("id", keys.id_member(company_id))
    bucket = keys.index_bucket(company_id)
    ops = []
    for sort in keys.COMPANY_SORTS:
        b, a = before.get(sort), after.get(sort)
        if b is not None or a is not None:
            key = keys.companies_index(ns, app_id, bucket, sort)
            ops.append(IndexOp(key, None if b == a else b, a))
    return ops


def _properties(header: dict[str, Any] | None) -> Any:
    return None if header is None else header["properties"]
