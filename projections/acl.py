"""Redis ACL roles, generated from the key schema (keys.py) so they follow it.

- worker: reads and writes every key of one logical namespace — all its physical
  generations, the segments registry, the namespace pointer — with the commands the worker
  and the operator commands (replay, verify, purge, segments) send, no admin ones.
- reader of one app: read-only commands on that app's keys in every generation, plus a
  read of the namespace pointer (the reader follows replay flips through it). Not the
  segments registry: it holds every app's definitions.

A replay builds `<ns>-<N>` and flips readers to it, so a reader's patterns name the
generations with digit classes, `<ns>-[0-9]:<app>:*` up to GENERATION_DIGITS digits. Never
`<ns>*:<app>:*`: a `*` also matches `:`, so the pattern of an app named like a key part
(`u`, `ix`, `sg`) would match `<ns>:<other app>:u:{...}`. App ids (schemas.models.AppId) and
namespaces hold no glob characters, so no id can widen a pattern. Other physical names
(`profiles replay --namespace NAME`) are added with `also`.

The rules need Redis 7 (`%R~` read-only key patterns).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from pydantic import TypeAdapter, ValidationError

from projections import keys
from schemas.models import AppId

GENERATION_DIGITS = 6

# What the worker sends (store.py and its Lua scripts, membership, namespaces, startup, and
# replay/ for the operator commands). redis-py loads the Lua scripts with SCRIPT LOAD/EXISTS.
WORKER_COMMANDS = (
    "ping",
    "select",
    "get",
    "set",
    "exists",
    "scan",
    "unlink",
    "hget",
    "hmget",
    "hgetall",
    "hset",
    "hdel",
    "zadd",
    "zrem",
    "zcard",
    "zrange",
    "zrangebylex",
    "zrangebyscore",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "evalsha",
    "script|load",
    "script|exists",
)

# What reader.py and namespaces.Resolver send: point reads and MULTI/EXEC for a consistent
# view. No SCAN or KEYS: they would list other apps' key names (and so their user ids).
READER_COMMANDS = (
    "ping",
    "select",
    "get",
    "hget",
    "hmget",
    "zcard",
    "zrange",
    "zrangebylex",
    "multi",
    "exec",
    "discard",
)

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # namespaces: no glob characters, no `:`
_USER = re.compile(r"[A-Za-z0-9._@-]{1,128}")
_APP_ID = TypeAdapter(AppId)


def _namespace(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a namespace ([A-Za-z0-9_-], 1-64)")
    return name


def _app(app_id: str) -> str:
    try:
        return _APP_ID.validate_python(app_id)
    except ValidationError:
        raise ValueError(f"{app_id!r} is not an app id ([A-Za-z0-9._-], 1-64)") from None


def generations(namespace: str, also: Iterable[str] = ()) -> list[str]:
    """Glob patterns of the physical namespaces of a logical one, each matching a whole
    namespace name (no `*`): the logical name itself, `<ns>-<N>`, and `also`."""
    base = _namespace(namespace)
    out = [base] + [f"{base}-{'[0-9]' * n}" for n in range(1, GENERATION_DIGITS + 1)]
    return out + [_namespace(n) for n in also if n not in out]


def worker_rules(namespace: str, also: Iterable[str] = ()) -> list[str]:
    """Key patterns and commands of the worker role (after `reset on` and its password)."""
    base = _namespace(namespace)
    patterns = [
        keys.namespace_pattern(base),  # every app, the segments registry and its progress
        f"{base}-*",  # every generation, `replay --verify`'s scratch namespaces
        keys.pointer(base),
    ]
    patterns += [keys.namespace_pattern(_namespace(n)) for n in also]
    return [f"~{p}" for p in patterns] + [f"+{c}" for c in WORKER_COMMANDS]


def reader_rules(namespace: str, app_id: str, also: Iterable[str] = ()) -> list[str]:
    """Key patterns (read only) and commands of the reader role of one app."""
    app = _app(app_id)
    patterns = [keys.pointer(_namespace(namespace))]
    patterns += [keys.app_pattern(g, app) for g in generations(namespace, also)]
    return [f"%R~{p}" for p in patterns] + [f"+{c}" for c in READER_COMMANDS]


def password_hash(password: str) -> str:
    """The `#<sha256>` rule: the password itself never appears in the printed line."""
    if not password:
        raise ValueError("the password is empty")
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def setuser(user: str, password: str, rules: list[str]) -> str:
    """One `ACL SETUSER` line for redis-cli. `reset` first: running it again replaces the
    user's rules and password instead of adding to them."""
    if not _USER.fullmatch(user) or user == "default":
        raise ValueError(f"{user!r} cannot be the user name of a role")
    return " ".join(["ACL", "SETUSER", user, "reset", "on", password_hash(password), *rules])
