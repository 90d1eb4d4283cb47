"""The reader library downstream services import: §4 shapes straight from Redis.

from projections.reader import Reader
reader = Reader.from_url("redis://127.0.0.1:6379/0", namespace="ps")
reader.user("app-1", "user-42", frm="2026-11-01", to="2026-11-28")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import redis

from projections import keys, views
from projections.fold import decode_field
from projections.namespaces import Resolver


class NotFound(LookupError):
    """The user or company does not exist (or was deleted)."""


class Hashes(Protocol):
    """What the reader needs of its store: redis.Redis and store.MemoryHashes both fit."""

    def hget(self, name: str, key: str) -> Any: ...

    def hmget(self, name: str, keys: list[str]) -> Any: ...

    def get(self, name: str) -> Any: ...

    def zrangebylex(self, name: str, min: str, max: str, start: int, num: int) -> Any: ...

    def pipeline(self, transaction: bool = ...) -> Any: ...


class Reader:
    """Reads the views of the logical namespace `namespace` (following replay flips)."""

    def __init__(self, client: Hashes, namespace: str = "ps") -> None:
        self._r = client
        self._resolver = Resolver(client, namespace)

    @property
    def namespace(self) -> str:
        """The physical namespace read now."""
        return self._resolver.current()

    @classmethod
    def from_url(
        cls, url: str, namespace: str = "ps", password: str | None = None, **options: Any
    ) -> Reader:
        """`options` go to redis-py as they are: `username=` (an ACL user), and for a
        rediss:// URL `ssl_ca_certs=`, `ssl_certfile=`, `ssl_keyfile=`."""
        return cls(redis.Redis.from_url(url, password=password, **options), namespace)

    def _read(
        self, key: str, missing: str, names: Callable[[dict[str, Any]], list[str]]
    ) -> tuple[dict[str, Any], list[Any]]:
        """The header and the fields it names, both from one version of the entity.

        The header says which fields to read; a write between the two reads is noticed (the
        header changed) and the read is done again, so a view is never half old, half new.
        The header comes back with the entity's `segments` (member segment ids) added."""
        raw = self._r.hget(key, keys.HEADER)
        while True:
            if raw is None:
                raise NotFound(missing)
            header = decode_field(raw)
            wanted = names(header)
            pipe = self._r.pipeline(transaction=True)
            pipe.hget(key, keys.HEADER)
            pipe.hmget(key, wanted or [keys.HEADER])
            pipe.hget(key, keys.SEGMENTS)
            again, values, segments = pipe.execute()
            if again == raw:
                header["segments"] = decode_field(segments) if segments is not None else []
                return header, [decode_field(v) for v in values if v is not None] if wanted else []
            raw = again

    def _user(
        self, app_id: str, user_id: str, names: Callable[[dict[str, Any]], list[str]]
    ) -> tuple[dict[str, Any], list[Any]]:
        key = keys.user(self.namespace, app_id, user_id)
        return self._read(key, f"user {user_id!r} of app {app_id!r} not found", names)

    def user(
        self,
        app_id: str,
        user_id: str,
        *,
        frm: str | None = None,
        to: str | None = None,
        search: str | None = None,
    ) -> dict[str, Any]:
        header, figures = self._user(app_id, user_id, _days(keys.DAY_PREFIX, frm, to))
        company = self._company_name(app_id, header["company_id"])
        if company is not None:
            header = {**header, "company_name": company}
        return views.user(app_id, user_id, header, views.overview(figures, frm, to, search))

    def _company_name(self, app_id: str, company_id: str | None) -> str | None:
        """The company's own name (last writer over every identify naming it), if known yet."""
        if company_id is None:
            return None
        raw = self._r.hget(keys.company(self.namespace, app_id, company_id), keys.HEADER)
        return None if raw is None else decode_field(raw)["name"]

    def sessions(
        self,
        app_id: str,
        user_id: str,
        *,
        frm: str | None = None,
        to: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        _header, day_lists = self._user(app_id, user_id, _days(keys.SESSIONS_PREFIX, frm, to))
        return views.sessions(day_lists, limit)

    def sentiment(
        self, app_id: str, user_id: str, *, frm: str | None = None, to: str | None = None
    ) -> list[dict[str, Any]]:
        _header, rows = self._user(app_id, user_id, lambda _h: [keys.FEEDBACK])
        return views.sentiment(rows[0] if rows else [], frm, to)

    def engagement(self, app_id: str, user_id: str) -> list[dict[str, Any]]:
        _header, rows = self._user(app_id, user_id, lambda _h: [keys.ENGAGEMENT])
        return views.engagement(rows[0] if rows else [])

    # ---- companies ---------------------------------------------------------------------------

    def _company(
        self, app_id: str, company_id: str, names: Callable[[dict[str, Any]], list[str]]
    ) -> tuple[dict[str, Any], list[Any]]:
        key = keys.company(self.namespace, app_id, company_id)
        return self._read(key, f"company {company_id!r} of app {app_id!r} not found", names)

    def company(
        self,
        app_id: str,
        company_id: str,
        *,
        frm: str | None = None,
        to: str | None = None,
        search: str | None = None,
    ) -> dict[str, Any]:
        header, figures = self._company(app_id, company_id, _days(keys.DAY_PREFIX, frm, to))
        return views.company(app_id, company_id, header, views.overview(figures, frm, to, search))

    def company_users(self, app_id: str, company_id: str) -> list[dict[str, Any]]:
        _header, rows = self._company(app_id, company_id, lambda _h: [keys.COMPANY_USERS])
        return views.company_users(rows[0] if rows else [])

    # ---- the app's users -------------------------------------------------------------------

    def users(
        self, app_id: str, *, sort: str = "last_seen", limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the app's users, newest first; returns (rows, cursor of the next page).

        The index is a hint written before each user step; an entry is only listed when the
        user's header agrees with it, so a crash between the two never shows a stale row.
        """
        if sort not in keys.INDEX_SORTS:
            raise ValueError(f"sort is one of {', '.join(keys.INDEX_SORTS)}")
        rows: list[dict[str, Any]] = []
        after = cursor
        while len(rows) < limit:
            members = self._index_page(app_id, sort, after, limit - len(rows))
            if not members:
                return rows, None
            headers = self._headers(app_id, [keys.index_user(m) for m in members])
            names = self._company_names(app_id, {h["company_id"] for _u, h in headers if h})
            for member, (user_id, header) in zip(members, headers, strict=True):
                if header is not None and keys.index_members(header, user_id)[sort] == member:
                    name = names.get(header["company_id"])
                    if name is not None:
                        header = {**header, "company_name": name}
                    rows.append(views.users_row(user_id, header))
            after = members[-1]
        return rows, after

    def count_users(self, app_id: str) -> int:
        """About how many users the app has (index entries; exact unless a step crashed)."""
        pipe = self._r.pipeline(transaction=False)
        for bucket in range(keys.INDEX_BUCKETS):
            pipe.zcard(keys.users_index(self.namespace, app_id, "id", bucket))
        return int(sum(pipe.execute()))

    def _company_names(self, app_id: str, company_ids: set[str | None]) -> dict[str, str]:
        wanted = sorted(c for c in company_ids if c is not None)
        pipe = self._r.pipeline(transaction=False)
        for company_id in wanted:
            pipe.hget(keys.company(self.namespace, app_id, company_id), keys.HEADER)
        found = zip(wanted, pipe.execute(), strict=True) if wanted else []
        return {
            c: decode_field(raw)["name"]
            for c, raw in found
            if raw is not None and decode_field(raw)["name"] is not None
        }

    # ---- segments ------------------------------------------------------------------------------

    def segment_members(
        self,
        app_id: str,
        segment_id: str,
        *,
        scope: str = "user",
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of a segment's member ids in id order; returns (ids, cursor of the next
        page). The member sets are a hint: an id is listed only when the entity's own `sg`
        field names the segment."""
        ns = self.namespace
        rows: list[str] = []
        after = cursor
        while len(rows) < limit:
            members = self._page(
                lambda b: keys.segment_members(ns, app_id, segment_id, b), after, limit - len(rows)
            )
            if not members:
                return rows, None
            ids = [keys.index_user(m) for m in members]
            pipe = self._r.pipeline(transaction=False)
            for entity_id in ids:
                pipe.hget(keys.entity(ns, app_id, scope, entity_id), keys.SEGMENTS)
            for entity_id, raw in zip(ids, pipe.execute(), strict=True):
                if raw is not None and segment_id in decode_field(raw):
                    rows.append(entity_id)
            after = members[-1]
        return rows, after

    def count_members(self, app_id: str, segment_id: str) -> int:
        """How many members a segment has (set entries; exact unless a step crashed)."""
        pipe = self._r.pipeline(transaction=False)
        for bucket in range(keys.INDEX_BUCKETS):
            pipe.zcard(keys.segment_members(self.namespace, app_id, segment_id, bucket))
        return int(sum(pipe.execute()))

    def _index_page(self, app_id: str, sort: str, after: str | None, count: int) -> list[str]:
        ns = self.namespace
        return self._page(lambda b: keys.users_index(ns, app_id, sort, b), after, count)

    def _page(self, key_of: Callable[[int], str], after: str | None, count: int) -> list[str]:
        """The first `count` members after `after` of the 16 buckets together, lexically."""
        low = "-" if after is None else "(" + after
        pipe = self._r.pipeline(transaction=False)
        for bucket in range(keys.INDEX_BUCKETS):
            pipe.zrangebylex(key_of(bucket), low, "+", 0, count)
        merged = [
            m.decode() if isinstance(m, bytes) else m for found in pipe.execute() for m in found
        ]
        return sorted(merged)[:count]

    def _headers(self, app_id: str, user_ids: list[str]) -> list[tuple[str, dict[str, Any] | None]]:
        pipe = self._r.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hget(keys.user(self.namespace, app_id, user_id), keys.HEADER)
        return [
            (user_id, None if raw is None else decode_field(raw))
            for user_id, raw in zip(user_ids, pipe.execute(), strict=True)
        ]


def _days(prefix: str, frm: str | None, to: str | None) -> Callable[[dict[str, Any]], list[str]]:
    """The fields of the header's days within the period."""
    return lambda header: [prefix + d for d in views.days_in(header["days"], frm, to)]
