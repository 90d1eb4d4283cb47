"""The reader library downstream services import: §4 shapes straight from Redis.

from projections.reader import Reader
reader = Reader.from_url("redis://127.0.0.1:6379/0", namespace="ps")
reader.user("app-1", "user-42", frm="2026-11-01", to="2026-11-28")
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import redis

from projections import keys, views
from projections.company import member_field
from projections.fold import decode_field
from projections.namespaces import Resolver


class NotFound(LookupError):
    """The app, user or company does not exist (or was deleted)."""


class Hashes(Protocol):
    """What the reader needs of its store: redis.Redis and store.MemoryHashes both fit."""

    def hget(self, name: str, key: str) -> Any: ...

    def hmget(self, name: str, keys: list[str]) -> Any: ...

    def hgetall(self, name: str) -> Any: ...

    def get(self, name: str) -> Any: ...

    def zrangebylex(self, name: str, min: str, max: str, start: int, num: int) -> Any: ...

    def zrange(self, name: str, start: int, end: int) -> Any: ...

    def pipeline(self, transaction: bool = ...) -> Any: ...

    def scan_iter(self, match: str, count: int = ...) -> Any: ...


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
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and the fields it names (those that exist), from one version of the entity.

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
                found = zip(wanted, values, strict=True) if wanted else []
                return header, {name: decode_field(v) for name, v in found if v is not None}
            raw = again

    def _user(
        self, app_id: str, user_id: str, names: Callable[[dict[str, Any]], list[str]]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        key = keys.user(self.namespace, app_id, user_id)
        try:
            return self._read(key, f"user {user_id!r} of app {app_id!r} not found", names)
        except NotFound:
            root = self.merged_into(app_id, user_id)
            if root is None:
                raise
            raise NotFound(f"user {user_id!r} of app {app_id!r} was merged into {root!r}") from None

    def merged_into(self, app_id: str, user_id: str) -> str | None:
        """The id a merged id's records count for (docs/design.md §7); None otherwise."""
        raw = self._r.hget(keys.user(self.namespace, app_id, user_id), keys.MERGED_INTO)
        return None if raw is None else str(decode_field(raw))

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
        overview = views.overview(list(figures.values()), frm, to, search)
        return views.user(app_id, user_id, header, overview)

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
        return views.sessions(list(day_lists.values()), limit)

    def sentiment(
        self, app_id: str, user_id: str, *, frm: str | None = None, to: str | None = None
    ) -> list[dict[str, Any]]:
        _header, fields = self._user(app_id, user_id, lambda _h: [keys.FEEDBACK])
        return views.sentiment(fields.get(keys.FEEDBACK, []), frm, to)

    def engagement(self, app_id: str, user_id: str) -> list[dict[str, Any]]:
        _header, fields = self._user(app_id, user_id, lambda _h: [keys.ENGAGEMENT])
        return views.engagement(fields.get(keys.ENGAGEMENT, []))

    # ---- companies ---------------------------------------------------------------------------

    def _company(
        self, app_id: str, company_id: str, names: Callable[[dict[str, Any]], list[str]]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
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
        overview = views.overview(list(figures.values()), frm, to, search)
        return views.company(app_id, company_id, header, overview)

    def company_users(self, app_id: str, company_id: str) -> list[dict[str, Any]]:
        """Every current member, last seen first: the users tab's order, each member's row."""
        key = keys.company(self.namespace, app_id, company_id)
        if self._r.hget(key, keys.HEADER) is None:
            raise NotFound(f"company {company_id!r} of app {app_id!r} not found")
        tab = keys.company_users(self.namespace, app_id, company_id)
        ids = [m.decode() if isinstance(m, bytes) else m for m in self._r.zrange(tab, 0, -1)]
        if not ids:  # a namespace of format 2 or older, until `profiles replay` rebuilt it
            old = self._r.hget(key, "u")
            if old is not None:
                return views.company_users(decode_field(old))
        found = self._r.hmget(key, [member_field(u) for u in ids]) if ids else []
        rows = []
        for user_id, raw in zip(ids, found, strict=True):
            member = None if raw is None else decode_field(raw)[2]
            if member is not None:
                rows.append(
                    [
                        user_id,
                        member["name"],
                        member["email"],
                        member["last_seen_at"],
                        member["total_sessions"],
                        member["excluded"],
                    ]
                )
        return views.company_users(rows)

    def daily(
        self,
        app_id: str,
        scope: str,
        entity_id: str,
        *,
        frm: str | None = None,
        to: str | None = None,
    ) -> list[dict[str, Any]]:
        """Events and sessions of a user or company per day of the period, zeros included
        (without a bound: from its first to its last day with figures)."""
        read = self._user if scope == "user" else self._company
        header, figures = read(app_id, entity_id, _days(keys.DAY_PREFIX, frm, to))
        days = header["days"]
        first, last = frm or (days[0] if days else None), to or (days[-1] if days else None)
        by_day = {name[len(keys.DAY_PREFIX) :]: f for name, f in figures.items()}
        return views.daily(by_day, first, last)

    def companies(
        self, app_id: str, *, sort: str = "id", limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the app's companies; returns (rows, cursor of the next page). `sort`
        is one of keys.COMPANY_SORTS: `last_seen` newest first (never seen last), `users` most
        first, `name` A to Z (case-folded; the id of a company without one), `id`; then id.

        The indexes are hints: a company is listed only while its header agrees with the
        entry."""
        if sort not in keys.COMPANY_SORTS:
            raise ValueError(f"sort is one of {', '.join(keys.COMPANY_SORTS)}")
        ns = self.namespace
        rows: list[dict[str, Any]] = []
        after = cursor
        while len(rows) < limit:
            members = self._page(
                lambda b: keys.companies_index(ns, app_id, b, sort), after, limit - len(rows)
            )
            if not members:
                return self._known(app_id, rows, cursor), None
            rows += self._company_rows(app_id, sort, members)
            after = members[-1]
        return rows, after

    def find_companies(
        self, app_id: str, prefix: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the companies whose id starts with `prefix` (as written), or whose name
        starts with it (any case; a company without a name: its id); returns (rows, cursor of
        the next page). Each company once: the id matches in id order, then the name matches
        by name."""
        ns = self.namespace

        def key_of(sort: str, bucket: int) -> str:
            return keys.companies_index(ns, app_id, bucket, sort)

        def rows_of(sort: str, members: list[str]) -> list[dict[str, Any]]:
            return self._company_rows(app_id, sort, members, prefix)

        return self._search(app_id, COMPANY_SEARCH, prefix, limit, cursor, key_of, rows_of)

    def _company_rows(
        self, app_id: str, sort: str, members: list[str], prefix: str | None = None
    ) -> list[dict[str, Any]]:
        """The companies-list rows of index entries that their company's header agrees with
        (and, searching `prefix`, that it matches first under this index)."""
        ids = [keys.index_user(m) for m in members]
        pipe = self._r.pipeline(transaction=False)
        for company_id in ids:
            pipe.hget(keys.company(self.namespace, app_id, company_id), keys.HEADER)
        rows = []
        for member, company_id, raw in zip(members, ids, pipe.execute(), strict=True):
            header = None if raw is None else decode_field(raw)
            if header is None or keys.company_index_members(header, company_id)[sort] != member:
                continue
            if prefix is not None and _company_matched(header, company_id, prefix) != sort:
                continue
            rows.append(views.companies_row(company_id, header))
        return rows

    def count_companies(self, app_id: str) -> int:
        """About how many companies the app has (index entries; exact unless a step crashed)."""
        return self._count(lambda b: keys.companies_index(self.namespace, app_id, b))

    # ---- the app's users -------------------------------------------------------------------

    def apps(self) -> list[str]:
        """The apps with users in this namespace, sorted. A SCAN of the whole key space:
        cache it on a big one."""
        ns = self.namespace
        found = {
            keys.app_of(ns, k.decode() if isinstance(k, bytes) else k)
            for k in self._r.scan_iter(match=keys.apps_pattern(ns), count=1000)
        }
        return sorted(found)

    def users(
        self, app_id: str, *, sort: str = "last_seen", limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the app's users, newest first; returns (rows, cursor of the next page).

        The index is a hint written after each user's write; an entry is only listed when the
        user's header agrees with it, so a crash between the two never shows a stale row.
        """
        if sort not in keys.INDEX_SORTS:
            raise ValueError(f"sort is one of {', '.join(keys.INDEX_SORTS)}")
        rows: list[dict[str, Any]] = []
        after = cursor
        while len(rows) < limit:
            members = self._index_page(app_id, sort, after, limit - len(rows))
            if not members:
                return self._known(app_id, rows, cursor), None
            rows += self._rows(app_id, sort, members)
            after = members[-1]
        return rows, after

    def find_users(
        self, app_id: str, prefix: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the users whose id starts with `prefix` (as written), or whose name or
        email starts with it (any case); returns (rows, cursor of the next page).

        A user is listed once, under the first of id, name, email that matches; the id
        matches come first in id order, then the name matches by name, then the email ones."""
        ns = self.namespace

        def key_of(sort: str, bucket: int) -> str:
            return keys.users_index(ns, app_id, sort, bucket)

        def rows_of(sort: str, members: list[str]) -> list[dict[str, Any]]:
            return self._rows(app_id, sort, members, lambda h, u: _matched(h, u, prefix))

        return self._search(app_id, SEARCH_ORDER, prefix, limit, cursor, key_of, rows_of)

    def _search(
        self,
        app_id: str,
        order: tuple[str, ...],
        prefix: str,
        limit: int,
        cursor: str | None,
        key_of: Callable[[str, int], str],
        rows_of: Callable[[str, list[str]], list[dict[str, Any]]],
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A prefix search over the indexes of `order` in turn (`id` entries by the text as
        written, the others by its case-folded form); the cursor says which index and entry
        the next page starts after. `rows_of` keeps the rows an index lists first."""
        if not prefix:
            raise ValueError("the search text is empty")
        stage, after = order[0], None
        if cursor is not None:
            stage, _, after = cursor.partition(":")
            if stage not in order or not after:
                raise ValueError("cursor is not one of this search's")
        rows: list[dict[str, Any]] = []
        for sort in order[order.index(stage) :]:
            start = keys.id_member(prefix) if sort == "id" else keys.search_key(prefix)
            while len(rows) < limit:
                members = self._page(partial(key_of, sort), after, limit - len(rows), start)
                if not members:
                    break
                rows += rows_of(sort, members)
                after = members[-1]
            if len(rows) >= limit:
                return rows, f"{sort}:{after}"
            after = None
        return self._known(app_id, rows, cursor), None

    def _rows(
        self,
        app_id: str,
        sort: str,
        members: list[str],
        matched: Callable[[dict[str, Any], str], str | None] | None = None,
    ) -> list[dict[str, Any]]:
        """The users-list rows of index entries that their user's header agrees with (and,
        searching, that `matched` lists under this index)."""
        headers = self._headers(app_id, [keys.index_user(m) for m in members])
        names = self._company_names(app_id, {h["company_id"] for _u, h in headers if h})
        rows = []
        for member, (user_id, header) in zip(members, headers, strict=True):
            if header is None or keys.index_members(header, user_id).get(sort) != member:
                continue
            if matched is not None and matched(header, user_id) != sort:
                continue
            name = names.get(header["company_id"])
            if name is not None:
                header = {**header, "company_name": name}
            rows.append(views.users_row(user_id, header))
        return rows

    def _known(
        self, app_id: str, rows: list[dict[str, Any]], cursor: str | None
    ) -> list[dict[str, Any]]:
        """The rows of a first page; NotFound when it is empty because the app has no data
        (no user and no company listed), not because nothing matched."""
        empty = not rows and cursor is None
        if empty and not self.count_users(app_id) and not self.count_companies(app_id):
            raise NotFound(f"app {app_id!r} has no users or companies")
        return rows

    def count_users(self, app_id: str) -> int:
        """About how many users the app has (index entries; exact unless a step crashed)."""
        return self._count(lambda b: keys.users_index(self.namespace, app_id, "id", b))

    def _count(self, key_of: Callable[[int], str]) -> int:
        pipe = self._r.pipeline(transaction=False)
        for bucket in range(keys.INDEX_BUCKETS):
            pipe.zcard(key_of(bucket))
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

    def segments(self, app_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Every segment (of one app) by id: {id, app_id, name, scope, members, state,
        evaluated, definition}; `state` is "ready" once every profile was evaluated against
        the stored definition, else "evaluating"."""
        stored = self._r.hgetall(keys.segment_registry(self.namespace))
        notes = self._r.hgetall(keys.segment_progress(self.namespace))
        out = {}
        for name, raw in sorted(stored.items()):
            segment_id = name.decode()
            if segment_id.startswith("_"):  # the registry's generation and fence
                continue
            entry = decode_field(raw)
            d = entry["definition"]
            if d is None or (app_id is not None and d["app_id"] != app_id):  # None: removed
                continue
            note = decode_field(notes[name]) if name in notes else {}
            ready = bool(note.get("ready")) and note.get("offset") == entry["offset"]
            out[segment_id] = {
                "id": segment_id,
                "app_id": d["app_id"],
                "name": d["name"],
                "scope": d["scope"],
                "members": self.count_members(d["app_id"], segment_id),
                "state": "ready" if ready else "evaluating",
                "evaluated": note.get("done", 0),
                "definition": d,
            }
        return out

    def segment_definition(self, segment_id: str) -> dict[str, Any] | None:
        """A segment's stored definition (None: no such segment); one read, no counting."""
        if segment_id.startswith("_"):  # the registry's own fields, not segments
            return None
        raw = self._r.hget(keys.segment_registry(self.namespace), segment_id)
        found = None if raw is None else decode_field(raw)["definition"]
        return None if found is None else dict(found)

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
        return self._count(lambda b: keys.segment_members(self.namespace, app_id, segment_id, b))

    def _index_page(self, app_id: str, sort: str, after: str | None, count: int) -> list[str]:
        ns = self.namespace
        return self._page(lambda b: keys.users_index(ns, app_id, sort, b), after, count)

    def _page(
        self, key_of: Callable[[int], str], after: str | None, count: int, start: str = ""
    ) -> list[str]:
        """The first `count` members after `after` of the 16 buckets together, lexically;
        with `start`, only members that start with it (index members go on in hex digits,
        `:` and `-`, all below `g`)."""
        low = "[" + start if start else "-"
        if after is not None and after >= start:
            low = "(" + after
        high = "(" + start + "g" if start else "+"
        pipe = self._r.pipeline(transaction=False)
        for bucket in range(keys.INDEX_BUCKETS):
            pipe.zrangebylex(key_of(bucket), low, high, 0, count)
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


SEARCH_ORDER = ("id", *keys.SEARCH_FIELDS)
COMPANY_SEARCH = ("id", "name")


def _matched(header: dict[str, Any], user_id: str, prefix: str) -> str | None:
    """The first of id, name, email that starts with the searched text, as find_users says."""
    if user_id.startswith(prefix):
        return "id"
    folded = prefix.casefold()
    for name in keys.SEARCH_FIELDS:
        value = header.get(name)
        if isinstance(value, str) and value.casefold().startswith(folded):
            return name
    return None


def _company_matched(header: dict[str, Any], company_id: str, prefix: str) -> str | None:
    """The first of id, name (the id when it has none) that starts with the searched text."""
    if company_id.startswith(prefix):
        return "id"
    shown = header["name"] or company_id
    return "name" if shown.casefold().startswith(prefix.casefold()) else None


def _days(prefix: str, frm: str | None, to: str | None) -> Callable[[dict[str, Any]], list[str]]:
    """The fields of the header's days within the period."""
    return lambda header: [prefix + d for d in views.days_in(header["days"], frm, to)]
