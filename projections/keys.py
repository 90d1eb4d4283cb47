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
  fb           feedback responses, oldest first
  en           engagement items, in read order
  _st          the fold's state (the user's surviving records, compact)
  _f:T:P       fence: last applied offset of source topic T, partition P
  _v           version, bumped by every write (optimistic concurrency)
"""

from __future__ import annotations

from urllib.parse import quote, unquote

STATE = "_st"
VERSION = "_v"
FENCE_PREFIX = "_f:"
HEADER = "h"
FEEDBACK = "fb"
ENGAGEMENT = "en"
DAY_PREFIX = "d:"
SESSIONS_PREFIX = "s:"


def escape(part: str) -> str:
    """Percent-escape an id so it is one inert key segment."""
    return quote(part, safe="@._-~+=,")


def unescape(part: str) -> str:
    return unquote(part)


def user(namespace: str, app_id: str, user_id: str) -> str:
    return f"{namespace}:{escape(app_id)}:u:{{{escape(user_id)}}}"


def user_pattern(namespace: str, app_id: str) -> str:
    """SCAN pattern for every user hash of an app."""
    return f"{namespace}:{escape(app_id)}:u:{{*}}"


def user_id_of(namespace: str, app_id: str, key: str) -> str:
    prefix = f"{namespace}:{escape(app_id)}:u:{{"
    return unescape(key[len(prefix) : -1])


def fence_field(topic: str, partition: int) -> str:
    return f"{FENCE_PREFIX}{topic}:{partition}"
