"""Per-app bearer tokens of the explorer: PROFILES_API_TOKENS="APP=TOKEN,APP2=TOKEN2,*=TOKEN3"."""

from __future__ import annotations

import hmac
import secrets

ANY_APP = "*"
MIN_LENGTH = 16


class Tokens:
    """Which apps each token may read and command (`*`: every app)."""

    def __init__(self, spec: str) -> None:
        self._grants: list[tuple[bytes, str]] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            app_id, sep, token = item.partition("=")
            app_id, token = app_id.strip(), token.strip()
            if not sep or not app_id or not token:
                raise ValueError("PROFILES_API_TOKENS is a comma-separated list of APP=TOKEN")
            if len(token) < MIN_LENGTH:
                raise ValueError(
                    f"the token of {app_id!r} is shorter than {MIN_LENGTH} characters; "
                    "`python -c 'import secrets; print(secrets.token_urlsafe())'` makes one"
                )
            self._grants.append((token.encode(), app_id))
        if not self._grants:
            raise ValueError("PROFILES_API_TOKENS names no token")

    @classmethod
    def one_off(cls) -> tuple[Tokens, str]:
        """A single every-app token made up now (when none is configured)."""
        token = secrets.token_urlsafe(24)
        return cls(f"{ANY_APP}={token}"), token

    def apps(self, token: str) -> set[str]:
        """The apps a token grants (empty: an unknown token). Every configured token is
        compared in constant time, so timing tells nothing about which one nearly matched."""
        given = token.encode()
        return {app for known, app in self._grants if hmac.compare_digest(known, given)}

    def grants(self, token: str, app_id: str) -> bool:
        apps = self.apps(token)
        return ANY_APP in apps or app_id in apps
