"""Segment membership over a store: one entry point after a write, and definition records.

Whatever writes an entity — its step (users and companies), the backfill of a definition
that is added, changed or removed, the clock (the due sets), a change of a company's
properties (its members become due at once) — calls `settle` after its write, with the
entity as written. `settle` evaluates the entity's segments, writes `sg`/`_du` only if the
entity is still at the version the caller wrote (a newer writer settles it itself), then
sends the member set moves as of the version it wrote (`registry.membership_moves`); the
sets take only moves newer than what they hold, so they end exact whatever the order. A
writer killed between its write and `settle` is redone (its records, contributions or
definition are delivered again), and the redone step asserts the membership.

A writer that used an old registry is caught by reading the registry's generation after
its moves: a definition is always stored before its backfill starts, so an entity written
with stale definitions after the backfill passed it is evaluated again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from projections import keys
from projections.fold import decode_field, encode_field
from projections.registry import (
    MEMBERSHIP,
    NONE,
    Membership,
    Registry,
    SegmentNeeds,
    company_profile,
    membership,
    membership_fields,
    membership_moves,
    plan_definition,
    registry_of,
    segment_needs,
    stored_membership,
    user_profile,
    window_days,
)
from projections.store import IndexOp, Store, Write, version_of
from schemas.segments import Segment

log = logging.getLogger("profiles.segments")

PAGE = 200
Progress = Callable[[int, int], Awaitable[None]]


async def load_registry(store: Store, namespace: str) -> Registry:
    [fields] = await store.load([keys.segment_registry(namespace)])
    return registry_of(fields)


async def company_properties(
    store: Store, namespace: str, app_id: str, company_ids: set[str]
) -> dict[str, dict[str, Any]]:
    """The properties of each named company that exists."""
    wanted = sorted(company_ids)
    raw = await store.headers([keys.company(namespace, app_id, c) for c in wanted])
    return {c: decode_field(h)["properties"] for c, h in zip(wanted, raw, strict=True) if h}


def profile_fields(needs: SegmentNeeds, now_ms: int) -> list[str]:
    """What evaluating an entity's segments reads of it: the header, the engagement items,
    the figures of the days the windows cover, and the membership and version."""
    days = [keys.DAY_PREFIX + d for d in window_days(needs, now_ms)]
    return [keys.HEADER, keys.ENGAGEMENT, *MEMBERSHIP, keys.VERSION, *days]


@dataclass
class Folded:
    """An entity as its writer left it, for `settle`."""

    key: str
    app_id: str
    scope: str  # "user" or "company"
    entity_id: str
    version: int  # the version written (or read, when nothing was written)
    stored: Mapping[str, bytes]  # what the writer read: its stored membership among it
    header: dict[str, Any] | None  # after the write (None: the entity does not exist)
    figures: dict[str, Any] = field(default_factory=dict)  # the days the windows cover
    engagement: list[list[Any]] = field(default_factory=list)  # users
    repair: bool = False  # its records came again: assert every set of its segments


async def settle(
    store: Store,
    namespace: str,
    registry: Registry,
    folded: list[Folded],
    *,
    now_ms: int,
    exact: bool = False,
    also: tuple[str, ...] = (),
    recheck: bool = True,
) -> tuple[set[str], int]:
    """After the entities' writes: evaluate their segments, store the membership of each
    still at the version written, move the member sets and due entries, and (`recheck`)
    evaluate them all again if the definitions changed meanwhile. Returns the keys written
    again since (their newer writer settles them) and how many memberships changed.

    A step passes exact=False: its due entries may only come earlier (`membership_moves`).
    A repaired entity has its place asserted in the sets of every segment of its app, and of
    the segment ids in `also` (a definition just removed)."""
    companies: dict[str, dict[str, dict[str, Any]]] = {}
    wanted: dict[str, set[str]] = {}
    for f in folded:
        h = f.header
        if f.scope == "user" and h and h["company_id"] and registry.reads_companies(f.app_id):
            wanted.setdefault(f.app_id, set()).add(h["company_id"])
    for app_id, ids in wanted.items():
        companies[app_id] = await company_properties(store, namespace, app_id, ids)
    decided = []
    writes = []
    for f in folded:
        segments = registry.of(f.app_id, f.scope)
        new = NONE
        if f.header is not None and segments:
            if f.scope == "company":
                profile = company_profile(f.header, f.figures)
            else:
                company = companies.get(f.app_id, {}).get(f.header["company_id"] or "")
                profile = user_profile(f.header, f.figures, f.engagement, company)
            new = membership(segments, profile, now_ms)
        old = stored_membership(f.stored)
        decided.append((f, old, new))
        if new != old:
            writes.append(_membership_write(f.key, f.version, f.stored, new))
    results = await store.commit(writes)
    refused = {w.key for w, ok in zip(writes, results, strict=True) if not ok}
    written = {w.key for w, ok in zip(writes, results, strict=True) if ok}
    moves, due = [], []
    for f, old, new in decided:
        if f.key in refused:
            continue  # written again since: that writer settles it
        every = None
        if f.repair:
            every = sorted({s.id for s in registry.of(f.app_id, f.scope)} | set(also))
        version = f.version + (f.key in written)
        m, d = membership_moves(
            namespace, f.app_id, f.scope, f.entity_id, version, old, new, every, exact=exact
        )
        moves += m
        due += d
    await store.place(moves)
    await store.index(due)
    registry_key = keys.segment_registry(namespace)
    if recheck and folded and await store.version(registry_key) != registry.generation:
        by_app: dict[tuple[str, str], list[str]] = {}
        for f in folded:
            by_app.setdefault((f.app_id, f.scope), []).append(f.entity_id)
        for (app_id, scope), entity_ids in by_app.items():
            await reevaluate(store, namespace, app_id, scope, entity_ids, now_ms=now_ms)
    return refused, len(written)


async def reevaluate(
    store: Store,
    namespace: str,
    app_id: str,
    scope: str,
    entity_ids: list[str],
    *,
    now_ms: int,
    registry: Registry | None = None,
    also: tuple[str, ...] = (),
    max_attempts: int = 20,
) -> int:
    """Evaluate entities again with the current registry (a backfill, the clock, a changed
    company): read them, then `settle` them as they are stored; returns how many changed.

    Every entity's place in each set of its segments (and `also`) and its due entry are
    asserted, so this also repairs sets a writer killed before its moves left behind."""
    registry_key = keys.segment_registry(namespace)
    pending = sorted(set(entity_ids))
    changed = 0
    for _ in range(max_attempts):
        if not pending:
            return changed
        if registry is None:
            registry = await load_registry(store, namespace)
        entity_keys = [keys.entity(namespace, app_id, scope, e) for e in pending]
        names = profile_fields(segment_needs(registry, app_id, now_ms, scope), now_ms)
        stored = await store.read([(k, names) for k in entity_keys])
        folded = [
            _as_stored(key, app_id, scope, entity_id, fields)
            for entity_id, key, fields in zip(pending, entity_keys, stored, strict=True)
        ]
        refused, n = await settle(
            store, namespace, registry, folded, now_ms=now_ms, exact=True, also=also, recheck=False
        )
        changed += n
        retry = [e for e, k in zip(pending, entity_keys, strict=True) if k in refused]
        if await store.version(registry_key) != registry.generation:
            registry, retry = None, pending  # definitions changed meanwhile: all again
        pending = retry
    raise RuntimeError(f"{len(pending)} entities kept changing under segment evaluation")


def _as_stored(
    key: str, app_id: str, scope: str, entity_id: str, fields: dict[str, bytes]
) -> Folded:
    """A stored entity as `settle` takes it, from the fields `profile_fields` named."""
    header = decode_field(fields[keys.HEADER]) if keys.HEADER in fields else None
    figures = {
        name[len(keys.DAY_PREFIX) :]: decode_field(raw)
        for name, raw in fields.items()
        if name.startswith(keys.DAY_PREFIX)
    }
    engagement = decode_field(fields[keys.ENGAGEMENT]) if keys.ENGAGEMENT in fields else []
    return Folded(
        key, app_id, scope, entity_id, version_of(fields), fields, header, figures, engagement, True
    )


def _membership_write(
    key: str, version: int, fields: Mapping[str, bytes], new: Membership
) -> Write:
    want = membership_fields(new)
    to_set = {k: v for k, v in want.items() if fields.get(k) != v}
    to_delete = [k for k in MEMBERSHIP if k in fields and k not in want]
    return Write(key, version, to_set, to_delete)


async def entity_pages(
    store: Store, namespace: str, app_id: str, scope: str
) -> AsyncIterator[list[str]]:
    """Every entity id of an app and scope, in pages (users from the `id` index)."""
    if scope == "user":
        for bucket in range(keys.INDEX_BUCKETS):
            key = keys.users_index(namespace, app_id, "id", bucket)
            after = None
            while members := await store.range(key, after, PAGE):
                yield [keys.index_user(m) for m in members]
                after = members[-1]
        return
    page: list[str] = []
    async for key in store.scan(keys.entity_pattern(namespace, app_id, scope)):
        page.append(keys.entity_id_of(namespace, app_id, scope, key))
        if len(page) >= PAGE:
            yield page
            page = []
    if page:
        yield page


async def count_entities(store: Store, namespace: str, app_id: str, scope: str) -> int | None:
    if scope != "user":
        return None
    total = 0
    for bucket in range(keys.INDEX_BUCKETS):
        after = None
        while page := await store.range(
            keys.users_index(namespace, app_id, "id", bucket), after, 5000
        ):
            total += len(page)
            after = page[-1]
    return total


async def backfill(
    store: Store,
    namespace: str,
    app_id: str,
    scope: str,
    *,
    now_ms: int,
    also: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> int:
    """Evaluate every entity of an app and scope again; returns how many were evaluated."""
    total = await count_entities(store, namespace, app_id, scope)
    done = 0
    async for page in entity_pages(store, namespace, app_id, scope):
        await reevaluate(store, namespace, app_id, scope, page, now_ms=now_ms, also=also)
        done += len(page)
        if progress is not None:
            await progress(done, max(done, total or 0))
    return done


async def tick(store: Store, namespace: str, *, now_ms: int, limit: int = 1000) -> int:
    """Evaluate every entity whose due time has come; returns how many were evaluated."""
    registry = await load_registry(store, namespace)
    seen = 0
    for app_id, scope in sorted(registry.scopes()):
        due_keys = [keys.due(namespace, app_id, scope, b) for b in range(keys.INDEX_BUCKETS)]
        for members in await store.due(due_keys, now_ms, limit):
            if members:
                ids = [keys.index_user(m) for m in members]
                await reevaluate(
                    store, namespace, app_id, scope, ids, now_ms=now_ms, registry=registry
                )
                seen += len(ids)
    return seen


def company_change_ops(
    namespace: str,
    app_id: str,
    registry: Registry,
    old_header: dict[str, Any] | None,
    new_header: dict[str, Any] | None,
    members: list[str],
    now_ms: int,
) -> list[IndexOp]:
    """When a company's properties change and a user segment of its app reads them, its
    members are due at once (their own steps cannot see another user's identify)."""
    before = None if old_header is None else old_header["properties"]
    after = None if new_header is None else new_header["properties"]
    if before == after or not registry.reads_companies(app_id):
        return []
    return [
        IndexOp(
            keys.due(namespace, app_id, "user", keys.index_bucket(u)),
            None,
            keys.id_member(u),
            float(now_ms),
        )
        for u in members
    ]


# ---- definition records ------------------------------------------------------------------------


async def apply_definition(
    store: Store,
    namespace: str,
    segment_id: str,
    segment: Segment | None,
    offset: int,
    *,
    now_ms: int,
) -> None:
    """Store one `profiles.segments` record (None: removed) and evaluate the profiles it
    bears on, noting progress; safe to run again after a crash at any point."""
    registry_key = keys.segment_registry(namespace)
    progress_key = keys.segment_progress(namespace)
    [notes] = await store.load([progress_key])
    note = decode_field(notes[segment_id]) if segment_id in notes else None
    while True:
        [fields] = await store.load([registry_key])
        planned = plan_definition(fields, segment_id, segment, offset)
        if planned is None:
            if note is None or note["offset"] != offset or note["ready"]:
                return  # applied and evaluated already
            scopes = [tuple(s) for s in note["scopes"]]
            break
        to_set, changed_scopes = planned
        scopes = sorted(changed_scopes)
        note = {"offset": offset, "ready": False, "removed": segment is None, "done": 0}
        note |= {"total": None, "scopes": [list(s) for s in scopes]}
        await store.put(progress_key, {segment_id: encode_field(note)})
        [ok] = await store.commit([Write(registry_key, version_of(fields), to_set, [])])
        if ok:
            break
    done = 0

    async def report(count: int, total: int) -> None:
        await store.put(
            progress_key, {segment_id: encode_field({**note, "done": done + count, "total": total})}
        )

    for app_id, scope in scopes:
        done += await backfill(
            store, namespace, app_id, scope, now_ms=now_ms, also=(segment_id,), progress=report
        )
    if segment is None:
        await store.drop(
            [
                set_key(namespace, app_id, segment_id, b)
                for app_id, _scope in scopes
                for b in range(keys.INDEX_BUCKETS)
                for set_key in (keys.segment_members, keys.segment_versions)
            ]
        )
    final = {**note, "ready": True, "done": done, "total": done}
    await store.put(progress_key, {segment_id: encode_field(final)})
    log.info("segment %s at offset %d: %d profiles evaluated", segment_id, offset, done)
