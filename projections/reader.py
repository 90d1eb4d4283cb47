"""The reader library downstream services import: §4 shapes straight from Redis.

from projections.reader import Reader
reader = Reader.from_url("redis://127.0.0.1:6379/0", namespace="ps")
reader.user("app-1", "user-42", frm="2026-11-01", to="2026-11-28")
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from projections import keys, views
from projections.fold import decode_field


class NotFound(LookupError):
    """The user or company does not exist (or was deleted)."""


class Hashes(Protocol):
    """What the reader needs of its store: redis.Redis and store.MemoryHashes both fit."""

    def hget(self, name: str, key: str) -> Any: ...

    def hmget(self, name: str, keys: list[str]) -> Any: ...


class Reader:
    def __init__(self, client: Hashes, namespace: str = "ps") -> None:
        self._r = client
        self.namespace = namespace

    @classmethod
    def from_url(cls, url: str, namespace: str = "ps", password: str | None = None) -> Reader:
        return cls(redis.Redis.from_url(url, password=password), namespace)

    def _header(self, app_id: str, user_id: str) -> tuple[str, dict[str, Any]]:
        key = keys.user(self.namespace, app_id, user_id)
        raw = self._r.hget(key, keys.HEADER)
        if raw is None:
            raise NotFound(f"user {user_id!r} of app {app_id!r} not found")
        return key, decode_field(raw)

    def _fields(self, key: str, names: list[str]) -> list[Any]:
        if not names:
            return []
        return [decode_field(v) for v in self._r.hmget(key, names) if v is not None]

    def user(
        self,
        app_id: str,
        user_id: str,
        *,
        frm: str | None = None,
        to: str | None = None,
        search: str | None = None,
    ) -> dict[str, Any]:
        key, header = self._header(app_id, user_id)
        days = views.days_in(header["days"], frm, to)
        figures = self._fields(key, [keys.DAY_PREFIX + d for d in days])
        return views.user(app_id, user_id, header, views.overview(figures, frm, to, search))

    def sessions(
        self,
        app_id: str,
        user_id: str,
        *,
        frm: str | None = None,
        to: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        key, header = self._header(app_id, user_id)
        days = views.days_in(header["days"], frm, to)
        return views.sessions(self._fields(key, [keys.SESSIONS_PREFIX + d for d in days]), limit)

    def sentiment(
        self, app_id: str, user_id: str, *, frm: str | None = None, to: str | None = None
    ) -> list[dict[str, Any]]:
        key, _header = self._header(app_id, user_id)
        rows = self._fields(key, [keys.FEEDBACK])
        return views.sentiment(rows[0] if rows else [], frm, to)

    def engagement(self, app_id: str, user_id: str) -> list[dict[str, Any]]:
        key, _header = self._header(app_id, user_id)
        rows = self._fields(key, [keys.ENGAGEMENT])
        return views.engagement(rows[0] if rows else [])
