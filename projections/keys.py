"""The Redis key schema: the one place where projection keys are spelled.

Every key is `{namespace}:{app_id}:...` so a Redis ACL `~{namespace}:{app_id}:*` scopes a
reader to one app. All keys of one entity share one hash tag, so every multi-key step on an
entity stays in one Redis Cluster slot. Ids are percent-escaped: an id can never contain
`:`, `{`, `}`, `*`, `?`, `[`, `]`, `%`, `\\`, spaces or control characters once escaped, so
no id can reach another entity's keys or widen an ACL pattern.

User hash `{ns}:{app}:u:{<user>}` fields (values msgpack):
  h            header: LWW fields, first/last seen, totals, flags, the list of days
  d:YYYY-MM-DD per-day figures {e: track events, s: sessions started, ms: session ms,
               n: {event name: count}, p: {page key: count}}
  s:YYYY-MM-DD sessions started that day [[start, end, [[at, type, name, page], ...]], ...]
  fb           feedback responses, oldest first (each with its event id last)
  en           engagement items, in read order
  r:YYYY-MM-DD the fold's state: that day's interaction rows {event id: compact row}
  _x           the fold's state: the index of the rest (fold.Index: per day with rows its
               first and last time, the commands, the last writers, the engagement keys)
  _f:T:P       fence: last applied offset of source topic T, partition P
  _co          {company_id: digest} of what this user last sent to each company ("gone" for
               one it left, until a later step knows that news went out)
  sg           the ids of the segments the user is a member of, sorted (absent: none)
  _du          when that membership may next change with time alone (epoch ms; absent: never)
  _v           version, bumped by every write (optimistic concurrency)
  mi           for an id merged into another (docs/design.md §7): that root's id, in place of
               every view field (its own records stay in `_x` and `r:`, which also hold, for a
               root, the records of the ids merged into it: projections/origins.py)

Company hash `{ns}:{app}:c:{<company>}` fields (values msgpack):
  h            header: name, sign-up, properties (LWW over the identifies naming it),
               first/last seen, total sessions, users count (non-excluded members), days;
               under `_` the counts it moves by differences
  d:YYYY-MM-DD per-day figures summed over the non-excluded current members
  m:<user>     a member's latest contribution [version, facts, users-tab row, the days it
               counts, the version below which it counts no other day]
  md:<user>:<day> that member's figures of one day [version, figures or None (gone)]; a step
               reads only the days its contributions name
  _fw          the last writer across members of each fact: {"name" | "created_at" |
               "t:<trait>": [ts, event id, user, value]}
  _ag          what the header is made of: members naming it, members and sessions counted,
               first and last seen, the days with sums (kept while it has no header)
  sg, _du      the ids of the company-scope segments it is a member of, as for users
  _f:T:P, _v   fence and version, as for users
Company users tab `{ns}:{app}:cu:{<company>}` (same hash tag): every current member, score
  minus its last seen (never seen: 1e15), so the set's order is the tab's: last seen first,
  then user id. A member's change moves one entry.

Users index `{ns}:{app}:ix:{sort}:{bucket}` (sorted sets of score 0, 16 buckets by user):
  sort `last_seen` / `signed_up`: members `<inverted time, 14 digits>:<user as UTF-8 hex>`, so their
  lexicographic order is newest first, nulls last, then user id; sort `id`: `0:<user>`, the
  stable order exports resume in; `name` / `email`: `<case-folded text as UTF-8 hex>-<user>`,
  for prefix search (absent when the user has none). A hint for listing: the header is the
  truth.

Companies index `{ns}:{app}:ix:co:{bucket}`: `0:<company>` for every company with a header
  (16 buckets by company), in id order; `{ns}:{app}:ix:co:{sort}:{bucket}` for the other
  orders of the companies list: `last_seen` as for users, `users` `<10^10-1 minus users
  count, 10 digits>:<company as UTF-8 hex>` (most members first), `name`
  `<case-folded name, or the id when it has none, as UTF-8 hex>-<company>` (A to Z, and
  prefix search). A hint for listing, as above.

Segments (issue 6):
  `{ns}:{app}:ig:{<app>}`           hash: the app's identity links (§7): `l:<id>` the aliases and
                                    unmerges of a previous id, `a:<id>` the ids an alias ever joined
                                    to it, `d:<id>` its deletes; `_v` numbers the changes (`g`)
  `{ns}::segments`                  hash: <segment id> -> {offset, definition}; `_v` is the
                                    registry's generation, `_f:segments:0` the topic fence.
                                    The empty app part keeps it out of every app's ACL pattern.
  `{ns}::segments:progress`         hash: <segment id> -> {offset, ready, done, total}
  `{ns}:{app}:sg:{<segment>:<bucket>}` members, as `id` index entries (16 buckets by entity
                                    id), exact: each entry is placed as of an entity version
  `{ns}:{app}:sv:{<segment>:<bucket>}` hash: member -> the entity version last placed (in or
                                    out) in that set; same hash tag, so one script moves both
  `{ns}:{app}:due:{u|c}:{bucket}`   when to evaluate an entity again (score: epoch ms), for
                                    rules that change with the clock or with a company.

Namespace bookkeeping (no app part, so no reader's pattern reaches them):
  `{ns}::mark:{<tag>}`              the namespace's marker: one for a standalone Redis, one in
                                    each slot of a cluster; every write checks the one of its
                                    slot, so a Redis or master that came back empty is noticed
  `{ns}::meta`                      hash: `format` (the state format the namespace was written
                                    in), `since` (its event-time floor, replay --since)
  `{ns}::handover`                  hash: source `topic:partition` -> the offset a replay's
                                    rebuild read it to; the live worker fills what it applied
                                    beyond that elsewhere, then removes the entry
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

ROWS_PREFIX = "r:"
INDEX = "_x"
VERSION = "_v"
FENCE_PREFIX = "_f:"
HEADER = "h"
FEEDBACK = "fb"
ENGAGEMENT = "en"
DAY_PREFIX = "d:"
SESSIONS_PREFIX = "s:"
MEMBER_PREFIX = "m:"
MEMBER_DAYS_PREFIX = "md:"
FACT_WINNERS = "_fw"
COMPANY_COUNTS = "_ag"
CONTRIBUTED = "_co"
SEGMENTS = "sg"
DUE = "_du"  # when the membership may next change with time alone (epoch ms)
MERGED_INTO = "mi"  # the id a merged id's records count for (it has no header of its own)


def pointer(base: str) -> str:
    """Which physical namespace a logical one (PROFILES_NAMESPACE) points at: replay flips it.

    Outside every namespace's key space (`ps.pointer` is not under `ps:` or `ps-2:`)."""
    return f"{base}.pointer"


def namespace_pattern(namespace: str) -> str:
    """SCAN pattern for every key of one physical namespace."""
    return f"{namespace}:*"


def app_pattern(namespace: str, app_id: str) -> str:
    """Pattern for every key of one app in one physical namespace (a reader's ACL, acl.py)."""
    return f"{namespace}:{escape(app_id)}:*"


@lru_cache(maxsize=65536)  # ids repeat in every batch
def escape(part: str) -> str:
    """Percent-escape an id so it is one inert key segment."""
    return quote(part, safe="@._-~+=,")


def unescape(part: str) -> str:
    return unquote(part)


def user(namespace: str, app_id: str, user_id: str) -> str:
    return f"{namespace}:{escape(app_id)}:u:{{{escape(user_id)}}}"


def identity_graph(namespace: str, app_id: str) -> str:
    """The app's identity links (docs/design.md §7): one hash per app, written by the one
    writer of the app's identity partition (projections/identity_step.py)."""
    return f"{namespace}:{escape(app_id)}:ig:{{{escape(app_id)}}}"


def company(namespace: str, app_id: str, company_id: str) -> str:
    return f"{namespace}:{escape(app_id)}:c:{{{escape(company_id)}}}"


def company_users(namespace: str, app_id: str, company_id: str) -> str:
    """The company's users tab (a sorted set beside its hash, in the same slot)."""
    return f"{namespace}:{escape(app_id)}:cu:{{{escape(company_id)}}}"


def company_pattern(namespace: str, app_id: str) -> str:
    return f"{namespace}:{escape(app_id)}:c:{{*}}"


INDEX_SORTS = ("last_seen", "signed_up", "id")
_SORT_FIELDS = {"last_seen": "last_seen_at", "signed_up": "signed_up_at"}
SEARCH_FIELDS = ("name", "email")  # prefix search, case-insensitive (search_member)
INDEX_KINDS = INDEX_SORTS + SEARCH_FIELDS
INDEX_BUCKETS = 16
_NEVER = 10**14 - 1


def users_index(namespace: str, app_id: str, sort: str, bucket: int) -> str:
    return f"{namespace}:{escape(app_id)}:ix:{sort}:{bucket}"


def index_bucket(user_id: str) -> int:
    return zlib.crc32(user_id.encode("utf-8", "surrogatepass")) % INDEX_BUCKETS


def index_member(ms: int | None, user_id: str) -> str:
    """Lexicographic order of these strings = time newest first, nulls last, then user id."""
    inverted = _NEVER if ms is None else 10**13 - ms
    return f"{inverted:014d}:{_ordered(user_id)}"


def _ordered(user_id: str) -> str:
    # Hex of the UTF-8 bytes: inert in a key, and its byte order is the ids' code point order.
    return user_id.encode().hex()


def index_user(member: str) -> str:
    """The user (or company) of an index entry: the hex after its last separator."""
    return bytes.fromhex(member[max(member.rfind(":"), member.rfind("-")) + 1 :]).decode()


def index_members(header: dict[str, Any], user_id: str) -> dict[str, str]:
    """The entry a user with this header has in each users index ("id" is a stable order;
    "name" and "email" only when the user has one)."""
    out = {sort: index_member(header[name], user_id) for sort, name in _SORT_FIELDS.items()}
    out["id"] = id_member(user_id)
    for name in SEARCH_FIELDS:
        if isinstance(header.get(name), str) and header[name]:
            out[name] = search_member(header[name], user_id)
    return out


def search_key(text: str) -> str:
    """What a name or email is searched by: its case-folded UTF-8 as hex (a prefix of the text
    is a prefix of this)."""
    return text.casefold().encode("utf-8", "surrogatepass").hex()


def search_member(text: str, user_id: str) -> str:
    """A user's entry in the `name` / `email` index, in the folded text's order then the
    user's: `-` sorts below every hex digit, so "bo" comes before "bob"."""
    return f"{search_key(text)}-{_ordered(user_id)}"


def id_member(user_id: str) -> str:
    """The user's entry in the `id` index, also the export cursor that resumes after it."""
    return f"0:{_ordered(user_id)}"


def apps_pattern(namespace: str) -> str:
    """SCAN pattern of one users-index key per app (bucket 0 of every app's `id` index is
    not enough: it may be empty) — matched keys give their app by `app_of`."""
    return f"{namespace}:*:ix:id:*"


def app_of(namespace: str, key: str) -> str:
    return unescape(key[len(namespace) + 1 :].split(":", 1)[0])


COMPANY_SORTS = ("last_seen", "users", "name", "id")  # the companies list's orders
_MOST_USERS = 10**10 - 1


def companies_index(namespace: str, app_id: str, bucket: int, sort: str = "id") -> str:
    """The app's companies that exist (a header) in one of COMPANY_SORTS, 16 buckets by
    company (the `id` one keeps its name of before the other orders)."""
    kind = "co" if sort == "id" else f"co:{sort}"
    return f"{namespace}:{escape(app_id)}:ix:{kind}:{bucket}"


def company_index_members(header: dict[str, Any], company_id: str) -> dict[str, str]:
    """The entry a company with this header has in each companies index: last seen newest
    first, most users first, name A to Z (its id when it has none: what the list shows)."""
    count = min(max(int(header["users_count"]), 0), _MOST_USERS)
    return {
        "last_seen": index_member(header["last_seen_at"], company_id),
        "users": f"{_MOST_USERS - count:010d}:{_ordered(company_id)}",
        "name": search_member(header["name"] or company_id, company_id),
        "id": id_member(company_id),
    }


def user_pattern(namespace: str, app_id: str) -> str:
    """SCAN pattern for every user hash of an app."""
    return f"{namespace}:{escape(app_id)}:u:{{*}}"


def user_id_of(namespace: str, app_id: str, key: str) -> str:
    prefix = f"{namespace}:{escape(app_id)}:u:{{"
    return unescape(key[len(prefix) : -1])


def fence_field(topic: str, partition: int) -> str:
    return f"{FENCE_PREFIX}{topic}:{partition}"


# ---- segments ----------------------------------------------------------------------------------

SCOPE_LETTERS = {"user": "u", "company": "c"}


def entity(namespace: str, app_id: str, scope: str, entity_id: str) -> str:
    """The hash of a user or a company."""
    return (user if scope == "user" else company)(namespace, app_id, entity_id)


def entity_id_of(namespace: str, app_id: str, scope: str, key: str) -> str:
    prefix = f"{namespace}:{escape(app_id)}:{SCOPE_LETTERS[scope]}:{{"
    return unescape(key[len(prefix) : -1])


def entity_pattern(namespace: str, app_id: str, scope: str) -> str:
    return (user_pattern if scope == "user" else company_pattern)(namespace, app_id)


def segment_registry(namespace: str) -> str:
    return f"{namespace}::segments"


def segment_progress(namespace: str) -> str:
    return f"{namespace}::segments:progress"


def segment_members(namespace: str, app_id: str, segment_id: str, bucket: int) -> str:
    return f"{namespace}:{escape(app_id)}:sg:{{{escape(segment_id)}:{bucket}}}"


def segment_versions(namespace: str, app_id: str, segment_id: str, bucket: int) -> str:
    """The entity versions placed in a member set (same hash tag as `segment_members`)."""
    return f"{namespace}:{escape(app_id)}:sv:{{{escape(segment_id)}:{bucket}}}"


def marker(namespace: str, tag: str) -> str:
    return f"{namespace}::mark:{{{tag}}}"


def meta(namespace: str) -> str:
    return f"{namespace}::meta"


def handover(namespace: str) -> str:
    return f"{namespace}::handover"


def due(namespace: str, app_id: str, scope: str, bucket: int) -> str:
    return f"{namespace}:{escape(app_id)}:due:{SCOPE_LETTERS[scope]}:{bucket}"
