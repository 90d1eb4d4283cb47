"""The page key of a URL (docs/design.md §3): lower-cased host with port, path without
trailing /."""

from __future__ import annotations

import re
from functools import lru_cache

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@lru_cache(maxsize=65536)  # pages repeat: most lookups are hits
def page_key(url: str) -> str:
    rest = _SCHEME.sub("", url, count=1)
    for stop in ("#", "?"):
        rest = rest.split(stop, 1)[0]
    slash = rest.find("/")
    host, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    host = host.rsplit("@", 1)[-1].lower()
    path = path.rstrip("/")
    return host + (path or "/")
