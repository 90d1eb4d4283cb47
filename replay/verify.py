"""`profiles replay --verify`: rebuild into a scratch namespace and list every difference."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from projections import keys, namespaces
from projections.reader import NotFound, Reader
from replay.flip import forget_group, remove_namespace
from replay.rebuild import rebuild
from streams.settings import Settings


@dataclass(frozen=True)
class Difference:
    entity: str  # "user APP ID" or "company APP ID"
    field: str
    live: Any
    rebuilt: Any


def _apps(client: redis.Redis, namespace: str) -> set[str]:
    apps = set()
    for key in client.scan_iter(match=f"{namespace}:*:ix:id:*", count=1000):
        apps.add(keys.unescape(key.decode().split(":")[1]))
    return apps


def _companies(client: redis.Redis, namespace: str, app_id: str) -> set[str]:
    found = set()
    for key in client.scan_iter(match=keys.company_pattern(namespace, app_id), count=1000):
        text = key.decode()
        found.add(keys.unescape(text[text.index("{") + 1 : -1]))
    return found


def _all_users(reader: Reader, app_id: str) -> set[str]:
    users: set[str] = set()
    cursor = None
    while True:
        rows, cursor = reader.users(app_id, sort="id", limit=1000, cursor=cursor)
        users.update(r["user_id"] for r in rows)
        if cursor is None:
            return users


def _views(reader: Reader, kind: str, app_id: str, entity_id: str) -> dict[str, Any] | None:
    try:
        if kind == "user":
            profile = reader.user(app_id, entity_id)
            return {
                **profile,
                "sessions": reader.sessions(app_id, entity_id),
                "sentiment": reader.sentiment(app_id, entity_id),
                "engagement": reader.engagement(app_id, entity_id),
            }
        return {
            **reader.company(app_id, entity_id),
            "users": reader.company_users(app_id, entity_id),
        }
    except NotFound:
        return None


def differences(client: redis.Redis, live_ns: str, rebuilt_ns: str) -> Iterator[Difference]:
    """Every field where two physical namespaces disagree, entity by entity."""
    live, rebuilt = Reader(client, live_ns), Reader(client, rebuilt_ns)
    for app_id in sorted(_apps(client, live_ns) | _apps(client, rebuilt_ns)):
        entities = [
            ("user", u) for u in sorted(_all_users(live, app_id) | _all_users(rebuilt, app_id))
        ]
        entities += [
            ("company", c)
            for c in sorted(
                _companies(client, live_ns, app_id) | _companies(client, rebuilt_ns, app_id)
            )
        ]
        for kind, entity_id in entities:
            a, b = _views(live, kind, app_id, entity_id), _views(rebuilt, kind, app_id, entity_id)
            name = f"{kind} {app_id} {entity_id}"
            if a is None or b is None:
                if a != b:
                    yield Difference(name, "exists", a is not None, b is not None)
                continue
            for field in sorted(set(a) | set(b)):
                if a.get(field) != b.get(field):
                    yield Difference(name, field, a.get(field), b.get(field))


async def verify(settings: Settings, client: Any, sync_client: redis.Redis) -> list[Difference]:
    """Rebuild from the beginning into a scratch namespace, compare with the live one, clean up."""
    scratch = f"{settings.namespace}-verify-{uuid.uuid4().hex[:8]}"
    live_ns = (await namespaces.read(client, settings.namespace)).current
    meta = await namespaces.read_meta(client, live_ns)
    group = f"{settings.group_id}-verify-{scratch}"
    try:
        since = None if meta is None else meta.since
        await rebuild(settings, client, scratch, group=group, since_ms=since)
        return list(differences(sync_client, live_ns, scratch))
    finally:
        await remove_namespace(client, scratch)
        await forget_group(settings, group)
