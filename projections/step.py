"""One user step: fence, fold and write a batch of records for many users in two round trips."""

from __future__ import annotations

from dataclasses import dataclass

from projections import keys
from projections.fold import UserState, apply, changes, encode_fields, project
from projections.store import Store, Write, version_of
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


def plan(
    stored: dict[str, bytes], items: list[Positioned], *, now_ms: int, config: FoldConfig
) -> tuple[dict[str, bytes], list[str]] | None:
    """Pure: the writes that fold `items` into the stored user, or None if all were applied.

    Records at or below the stored fence of their topic-partition were applied by an earlier
    step (redelivery after a crash) and are skipped; the new fences go out with the state.
    """
    fences = {k: int(v) for k, v in stored.items() if k.startswith(keys.FENCE_PREFIX)}
    fresh = [p for p in items if p.offset > fences.get(keys.fence_field(p.topic, p.partition), -1)]
    if not fresh:
        return None
    state = UserState.from_bytes(stored.get(keys.STATE))
    new_state = apply(
        state, [p.record for p in fresh], now_ms=now_ms, retention_days=config.retention_days
    )
    new = encode_fields(project(new_state, config.gap_ms))
    new[keys.STATE] = new_state.to_bytes()
    for p in fresh:
        name = keys.fence_field(p.topic, p.partition)
        fences[name] = max(fences.get(name, -1), p.offset)
    new.update({name: str(offset).encode() for name, offset in fences.items()})
    old = {k: v for k, v in stored.items() if k != keys.VERSION}
    return changes(old, new)


async def apply_batch(
    store: Store,
    namespace: str,
    items: list[Positioned],
    *,
    now_ms: int,
    config: FoldConfig,
    max_attempts: int = 20,
) -> int:
    """Fold a batch into every user it touches; returns how many users were written.

    A write that lost a race (another writer moved the version) is planned again from what
    is stored now, so concurrent writers never lose each other's records.
    """
    by_user: dict[str, list[Positioned]] = {}
    for p in items:
        r = p.record
        by_user.setdefault(keys.user(namespace, r.app_id, r.user_id), []).append(p)
    pending = list(by_user)
    written = 0
    for _ in range(max_attempts):
        if not pending:
            return written
        stored = await store.load(pending)
        writes = []
        for key, fields in zip(pending, stored, strict=True):
            step = plan(fields, by_user[key], now_ms=now_ms, config=config)
            if step is not None:
                writes.append(Write(key, version_of(fields), step[0], step[1]))
        results = await store.commit(writes)
        written += sum(results)
        pending = [w.key for w, ok in zip(writes, results, strict=True) if not ok]
    raise RuntimeError(f"{len(pending)} users kept changing under this writer; giving up")
