"""Deterministic demo data: wire records (docs/design.md §2) of a product-analytics SaaS's users."""

from __future__ import annotations

import gc
import heapq
import json
import os
import random
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import IO, Any

Record = dict[str, Any]

SEC_MS = 1_000
MIN_MS = 60 * SEC_MS
HOUR_MS = 60 * MIN_MS
DAY_MS = 24 * HOUR_MS
SESSION_GAP_MS = 30 * MIN_MS  # the default session gap; some gaps hit it exactly or by 1 ms

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# ---------------------------------------------------------------------------------------------
# Catalogues
# ---------------------------------------------------------------------------------------------

# (app_id, host, brand)
_APPS = [
    ("acme-app", "app.acme.io", "Acme"),
    ("globex.web", "web.globex.com", "Globex"),
    ("initech_portal", "portal.initech.net", "Initech"),
    ("umbrella-hq", "hq.umbrella.co", "Umbrella"),
    ("hooli.cloud", "cloud.hooli.dev", "Hooli"),
    ("stark-ops", "ops.stark.industries", "Stark"),
]

_FIRST = [
    "Anna", "Ben", "Chloé", "Dmitri", "Eva", "Fatima", "Giulia", "Hiro", "Inés", "Jörg",
    "Kwame", "Lena", "Mateo", "Noor", "Olivia", "Pavel", "Quinn", "Rosa", "Sven", "Tanvi",
    "Uma", "Viktor", "Wei", "Xavier", "Yara", "Zoë", "Amélie", "Bjørn", "Ciarán", "Şule",
]  # fmt: skip
_LAST = [
    "Andersson", "Brown", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hoffmann",
    "Ivanova", "Jensen", "Kowalski", "Lindqvist", "Müller", "Nakamura", "O'Brien", "Patel",
    "Rossi", "Schmidt", "Tanaka", "Ueda", "van Dijk", "Wang", "Yılmaz", "Zhang", "Nguyễn",
]  # fmt: skip
_COMPANY_BASE = [
    "Northwind", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Adventure Works", "Blue Yonder",
    "Litware", "Proseware", "Lucerne", "Woodgrove", "Alpine Ski House", "Coho Winery",
    "Margie's Travel", "Trey Research", "Wide World Importers", "Fourth Coffee", "Humongous",
    "Datum", "Bäckerei Müller", "Société Lumière", "Tōkyō Labs", "Nod Publishers", "Relecloud",
]  # fmt: skip
_COMPANY_SUFFIX = ["Inc.", "GmbH", "Ltd", "LLC", "S.A.", "AB", "K.K.", "", "", ""]
_INDUSTRIES = [
    "Software", "Fintech", "Healthcare", "E-commerce", "Education", "Logistics", "Media",
    "Manufacturing", "Non-profit",
]  # fmt: skip
_PLANS = ["free", "starter", "growth", "enterprise"]
_ROLES = ["admin", "member", "member", "member", "viewer", "owner", "billing"]

# (country, UTC offset in minutes, language); repeated entries weight the draw
_LOCALES = [
    ("US", -300, "en-US"), ("US", -480, "en-US"), ("US", -360, "en-US"), ("US", -300, "en-US"),
    ("GB", 0, "en-GB"), ("GB", 0, "en-GB"), ("DE", 60, "de-DE"), ("DE", 120, "de-DE"),
    ("FR", 60, "fr-FR"), ("ES", 60, "es-ES"), ("BR", -180, "pt-BR"), ("IN", 330, "en-IN"),
    ("NP", 345, "ne-NP"), ("JP", 540, "ja-JP"), ("AU", 600, "en-AU"), ("CA", -300, "en-CA"),
    ("NL", 60, "nl-NL"), ("SE", 60, "sv-SE"), ("PL", 60, "pl-PL"), ("TR", 180, "tr-TR"),
    ("NG", 60, "en-NG"), ("MX", -360, "es-MX"), ("KR", 540, "ko-KR"), ("ZA", 120, "en-ZA"),
]  # fmt: skip
# (browser, os, device)
_AGENTS = [
    ("Chrome", "macOS", "desktop"), ("Chrome", "Windows", "desktop"),
    ("Chrome", "Windows", "desktop"), ("Safari", "macOS", "desktop"),
    ("Firefox", "Linux", "desktop"), ("Edge", "Windows", "desktop"),
    ("Safari", "iOS", "mobile"), ("Chrome", "Android", "mobile"), ("Safari", "iPadOS", "tablet"),
]  # fmt: skip

# Awkward user ids (≈3 %): Unicode, punctuation, Redis hash-tag braces, glob characters.
_AWKWARD_IDS: list[Callable[[int], str]] = [
    lambda n: f"jörg:{{x}}*?{n}",
    lambda n: f"user name {n}",
    lambda n: f"😀 {n}",
    lambda n: f"👩‍💻dev-{n}",
    lambda n: f"o'brien+{n}@example.com",
    lambda n: f"李小龙{n}",
    lambda n: f"a/b\\c:{n}",
    lambda n: f" padded {n} ",
    lambda n: f"%2F..%2F{n}",
    lambda n: f"مستخدم-{n}",
    lambda n: f"Ω≈ç√∫-{n}",
    lambda n: f"{{{n}}}",
    lambda n: f"em\u2003space-{n}",
    lambda n: f"{n:05d}",
    lambda n: "x" * 240 + f"-{n}",
]


def _ri(rng: random.Random, lo: int, hi: int) -> int:
    """rng.randint's job at a quarter of its cost (the hot path draws millions of these)."""
    return lo + int(rng.random() * (hi - lo + 1))


def _pick(rng: random.Random, seq: Sequence[Any]) -> Any:
    return seq[int(rng.random() * len(seq))]


def _page_catalogue() -> list[tuple[Callable[[random.Random], str], str]]:
    """(path maker, title); repeated entries weight the draw."""
    return [
        (lambda r: "/dashboard", "Dashboard"),
        (lambda r: "/dashboard", "Dashboard"),
        (lambda r: "/dashboard", "Dashboard"),
        (lambda r: "/", "Home"),
        (lambda r: "", "Home"),
        (lambda r: "/reports", "Reports"),
        (lambda r: "/reports", "Reports"),
        (lambda r: f"/reports/{_ri(r, 1, 60)}", "Report"),
        (lambda r: f"/reports/{_ri(r, 1, 60)}?tab={_ri(r, 1, 4)}", "Report"),
        (lambda r: f"/reports/{_ri(r, 1, 60)}?tab={_ri(r, 1, 4)}#x", "Report"),
        (lambda r: "/settings/billing/", "Billing"),
        (lambda r: "/settings/team", "Team"),
        (lambda r: "/settings/profile", "Profile settings"),
        (lambda r: f"/onboarding/step-{_ri(r, 1, 4)}", "Onboarding"),
        (lambda r: "/integrations/slack", "Slack integration"),
        (lambda r: f"/Projects/P-{_ri(r, 100, 140)}/Overview", "Project overview"),
        (lambda r: f"/search?q={_pick(r, ['revenue', 'churn', 'mrr', 'nps'])}", "Search"),
        (lambda r: f"/users/{_ri(r, 1, 5000)}", "User details"),
        (lambda r: "/funnels/new", "New funnel"),
        (lambda r: "/help/articles/getting-started", "Help · Getting started"),
        (lambda r: "/café/menü", "Ünïcode page"),
    ]


def _track_catalogue() -> list[tuple[str, str, Callable[[random.Random], dict[str, Any]]]]:
    """(name, kind, properties maker); repeated entries weight the draw."""
    views = ["funnel", "retention", "trends", "paths"]
    return [
        ("Report Viewed", "tracked", lambda r: {"report_id": _ri(r, 1, 60)}),
        ("Report Viewed", "tracked", lambda r: {"report_id": _ri(r, 1, 60)}),
        ("Report Viewed", "tracked", lambda r: {"report_id": _ri(r, 1, 60), "shared": True}),
        (
            "Report Created",
            "tracked",
            lambda r: {"report_type": _pick(r, views), "widgets": _ri(r, 1, 12)},
        ),
        (
            "Invite Sent",
            "tracked",
            lambda r: {"role": _pick(r, _ROLES), "invitees": _ri(r, 1, 5)},
        ),
        ("Export CSV", "tracked", lambda r: {"rows": _ri(r, 10, 50_000), "format": "csv"}),
        (
            "Dashboard Shared",
            "tracked",
            lambda r: {"channel": _pick(r, ["email", "slack", "link"])},
        ),
        (
            "Filter Applied",
            "tracked",
            lambda r: {"field": _pick(r, ["country", "plan", "browser"]), "operator": "eq"},
        ),
        (
            "Integration Connected",
            "tracked",
            lambda r: {"provider": _pick(r, ["slack", "hubspot", "salesforce"])},
        ),
        (
            "Subscription Upgraded",
            "tracked",
            lambda r: {"to_plan": _pick(r, _PLANS[1:]), "mrr": round(r.uniform(20, 2000), 2)},
        ),
        (
            "Search Performed",
            "tracked",
            lambda r: {"query_length": _ri(r, 1, 40), "had_results": r.random() < 0.8},
        ),
        ("Comment Added", "tracked", lambda r: {"length": _ri(r, 1, 500), "campaign": None}),
        ("Checkout – Step 2 ✓", "tracked", lambda r: {}),
        ("Clicked Upgrade Button", "labeled", lambda r: {}),
        ("Clicked Help Icon", "labeled", lambda r: {}),
        ("Opened Date Picker", "labeled", lambda r: {}),
        ("Used Filter Panel", "feature_tag", lambda r: {}),
        ("Used Bulk Edit", "feature_tag", lambda r: {"items": _ri(r, 2, 200)}),
        ("Viewed Pricing Table", "feature_tag", lambda r: {}),
    ]


# (content_id, content_type, content_name or None, steps)
_CONTENT = [
    ("flow-welcome-tour", "flow", "Welcome tour", 4),
    ("flow-reports-101", "flow", None, 3),
    ("spot-scheduled-reports", "spotlight", "New: scheduled reports", 0),
    ("spot-dark-mode", "spotlight", None, 0),
    ("banner-webinar-q3", "banner", "Webinar: roadmap Q3", 0),
    ("banner-maintenance", "banner", "Planned maintenance", 0),
    ("checklist-getting-started", "checklist", "Getting started", 5),
    ("checklist-admin-setup", "checklist", "Admin setup ✓", 4),
]
_CONTENT_BY_ID = {c[0]: c for c in _CONTENT}

_NPS_ANSWERS = [
    "Love the reports!",
    "Too slow on large dashboards.",
    "Pricing is steep for small teams.",
    "Great support team 🙌",
    "Die Exportfunktion ist super.",
    "Missing SSO.",
    "Ça marche bien.",
]
_SURVEYS = [
    (
        "onboarding-survey",
        "How easy was it to get started?",
        ["Very easy", "Okay", "Hard to find the settings", "Needed the docs"],
    ),
    (
        "feature-request",
        "What should we build next?",
        ["Scheduled exports", "Dark mode", "A mobile app", 'Better filters, "please"'],
    ),
]
_REASONS = {
    "exclude": ["internal tester", "QA account", "bot traffic", None],
    "include": ["no longer internal", "excluded by mistake", None],
    "reset_content": ["support: restart onboarding", "customer asked for a fresh tour", None],
    "delete": ["GDPR erasure request", "account closed", None],
    "unmerge": ["merged by mistake", "shared device", None],
}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _day(days_since_epoch: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + days_since_epoch).isoformat()


def rfc3339(ms: int, offset_min: int | None = None) -> str:
    """UTC epoch ms as RFC 3339 with milliseconds: `Z` when offset_min is None, else ±hh:mm."""
    if offset_min is None:
        local, suffix = ms, "Z"
    else:
        local = ms + offset_min * MIN_MS
        sign = "-" if offset_min < 0 else "+"
        hh, mm = divmod(abs(offset_min), 60)
        suffix = f"{sign}{hh:02d}:{mm:02d}"
    days, rem = divmod(local, DAY_MS)
    secs, milli = divmod(rem, 1000)
    hour, secs = divmod(secs, 3600)
    minute, secs = divmod(secs, 60)
    return f"{_day(days)}T{hour:02d}:{minute:02d}:{secs:02d}.{milli:03d}{suffix}"


_UUID_KEEP = ((1 << 128) - 1) ^ ((0xF << 76) | (0x3 << 62))
_UUID_SET = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


def _uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from the seeded generator (never from os.urandom)."""
    h = f"{(rng.getrandbits(128) & _UUID_KEEP) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum() or ch in ".-") or "x"


def _copy(value: Any) -> Any:
    """A deep copy of a record (maps of maps of scalars), much faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def event_time(record: Record) -> int:
    """The event time of a generated record in UTC epoch ms (issued_at for commands)."""
    value = record["issued_at"] if record["type"] == "command" else record["timestamp"]
    if isinstance(value, int):
        return value
    from schemas.timefmt import parse_timestamp  # only for strings; the project's own parser

    return parse_timestamp(value)


# ---------------------------------------------------------------------------------------------
# The world: apps, companies, users, and who gets which command
# ---------------------------------------------------------------------------------------------


@dataclass
class _Company:
    id: str
    name: str
    app: int
    created_at: int | None
    plan: str
    upgraded_plan: str
    upgrade_at: int  # identifies after this carry the upgraded plan
    industry: str
    seats: int
    domain: str


@dataclass
class _World:
    seed: int
    start: int  # first allowed event time
    stop: int  # last allowed event time
    commands: bool
    apps: list[tuple[str, str, str]]
    companies: list[_Company]
    app_companies: list[list[int]]
    user_ids: list[str] = field(default_factory=list)
    user_app: list[int] = field(default_factory=list)
    user_company: list[int | None] = field(default_factory=list)
    user_command: dict[int, str] = field(default_factory=dict)
    user_anonymous: set[int] = field(default_factory=set)  # visitors before they sign up
    unmerge_user: int | None = None  # whose (first) merge an operator undoes
    pages: list[tuple[Callable[[random.Random], str], str]] = field(default_factory=_page_catalogue)
    tracks: list[tuple[str, str, Callable[[random.Random], dict[str, Any]]]] = field(
        default_factory=_track_catalogue
    )


def _app_list(n: int) -> list[tuple[str, str, str]]:
    out = []
    for i in range(n):
        app_id, host, brand = _APPS[i % len(_APPS)]
        if i >= len(_APPS):
            k = i // len(_APPS) + 1
            app_id, host, brand = f"{app_id}-{k}", f"{k}.{host}", f"{brand} {k}"
        out.append((app_id, host, brand))
    return out


def _build_world(
    *, users: int, companies: int, apps: int, start: int, stop: int, seed: int, commands: bool,
    anonymous: float = 0.0,
) -> _World:  # fmt: skip
    rng = random.Random(f"profile-streams/world/{seed}")
    app_list = _app_list(apps)
    comps: list[_Company] = []
    app_companies: list[list[int]] = [[] for _ in app_list]
    for j in range(companies):
        base = _COMPANY_BASE[j % len(_COMPANY_BASE)]
        suffix = rng.choice(_COMPANY_SUFFIX)
        name = f"{base} {suffix}".strip()
        if j >= len(_COMPANY_BASE):
            name = f"{name} ({j // len(_COMPANY_BASE) + 1})"
        cid = f"c-{j + 1:04d}" if rng.random() > 0.05 else f"acme:{{eu}}/{j + 1}"
        plan = rng.choice(_PLANS)
        upgraded = _PLANS[min(len(_PLANS) - 1, _PLANS.index(plan) + 1)]
        created = None if rng.random() < 0.1 else start - rng.randint(30, 1000) * DAY_MS
        if created is not None:
            created += rng.randrange(DAY_MS)
        comps.append(
            _Company(
                id=cid,
                name=name,
                app=j % apps,
                created_at=created,
                plan=plan,
                upgraded_plan=upgraded,
                upgrade_at=stop + 1 if rng.random() < 0.7 else rng.randint(start, stop),
                industry=rng.choice(_INDUSTRIES),
                seats=rng.choice([1, 3, 5, 10, 25, 50, 100, 250, 1000]),
                domain=f"{_ascii_slug(base).replace('.', '')}{j + 1}.example",
            )
        )
        app_companies[j % apps].append(j)
    # Heavy-tailed company sizes: a few big customers, many small ones.
    cum: list[float] = []
    total = 0.0
    for _ in comps:
        total += rng.paretovariate(1.1)
        cum.append(total)

    world = _World(
        seed=seed,
        start=start,
        stop=stop,
        commands=commands,
        apps=app_list,
        companies=comps,
        app_companies=app_companies,
    )
    awkward = set(rng.sample(range(users), max(1, round(users * 0.03)))) if users else set()
    for u in range(users):
        uid = _AWKWARD_IDS[u % len(_AWKWARD_IDS)](u + 1) if u in awkward else f"u-{u + 1:05d}"
        company: int | None = None
        if comps and rng.random() < 0.9:
            company = rng.choices(range(len(comps)), cum_weights=cum)[0]
            app = comps[company].app
        else:
            app = rng.randrange(apps)
        world.user_ids.append(uid)
        world.user_app.append(app)
        world.user_company.append(company)
    if commands and users:
        chosen = rng.sample(range(users), min(users, max(4, round(users * 0.05))))
        fixed = ["delete", "exclude", "exclude_include", "reset_content", "delete"]
        for i, u in enumerate(chosen):
            kind = (
                fixed[i]
                if i < len(fixed)
                else rng.choices(
                    ["exclude", "exclude_include", "reset_content", "delete"],
                    weights=[30, 25, 35, 10],
                )[0]
            )
            world.user_command[u] = kind
    if anonymous and users:
        # A generator of its own: the rest of the world is the same with or without visitors.
        arng = random.Random(f"profile-streams/anonymous/{seed}")
        world.user_anonymous = {u for u in range(users) if arng.random() < anonymous}
        if commands and world.user_anonymous:
            world.unmerge_user = arng.choice(sorted(world.user_anonymous))
    return world


# ---------------------------------------------------------------------------------------------
# One user's records, in event-time order, built lazily session by session
# ---------------------------------------------------------------------------------------------


def _plan_sessions(rng: random.Random, start: int, stop: int) -> list[list[int]]:
    """Interaction times of each session: bursts of 2–40 events, sessions hours/days apart."""
    n = 1 if rng.random() < 0.1 else min(60, int(rng.paretovariate(1.2) * 2.5))
    span = stop - start
    t = start + int(rng.random() ** 1.5 * span * 0.7)
    mean_gap = max(2 * HOUR_MS, (stop - t) // (n + 1))
    sessions: list[list[int]] = []
    for k in range(n):
        if k:
            t += SESSION_GAP_MS + MIN_MS + int(rng.expovariate(1.0 / mean_gap))
            if t > stop:
                break
        size = 2 + min(38, int(rng.expovariate(1.0 / 8)))
        edge_at = rng.randrange(1, size) if rng.random() < 0.03 else -1
        times = [t]
        for i in range(1, size):
            if i == edge_at:
                gap = SESSION_GAP_MS + (k + i) % 2  # exactly 30 min, or 30 min + 1 ms
            elif rng.random() < 0.01:
                gap = 0  # two events in the same millisecond
            else:
                gap = min(10 * MIN_MS, 300 + int(rng.expovariate(1.0 / 45_000)))
            t += gap
            if t > stop:
                break
            times.append(t)
        sessions.append(times)
        if t >= stop:
            break
    return sessions


@dataclass
class _Visitor:
    """How a user was tracked before signing up (docs/design.md §7): session i < `sessions`
    under `ids[i % len(ids)]`, one anonymous id per device; known from `signup` on."""

    ids: list[str]
    sessions: int
    signup: int
    agent: tuple[str, str, str]  # the second device's browser, os and device
    aliases: list[tuple[int, Record]] = field(default_factory=list)  # in the stream's order
    late: list[Record] = field(default_factory=list)  # sent at the end of the stream
    unmerge: tuple[int, Record] | None = None


class _UserGen:
    """Builds one user's records; `run()` yields (event ms, user index, seq, record)."""

    def __init__(self, world: _World, u: int) -> None:
        self.w = world
        self.u = u
        self.rng = rng = random.Random(f"profile-streams/user/{world.seed}/{u}")
        self.user_id = world.user_ids[u]
        self.app_id, self.host, self.brand = world.apps[world.user_app[u]]
        country, self.tz, self.language = rng.choice(_LOCALES)
        self.country = country
        self.agent = rng.choice(_AGENTS)
        self.content: dict[str, list[Any]] = {}
        self.seq = 0
        self.visitor: _Visitor | None = None

    # -- small builders ------------------------------------------------------------------------

    def ts(self, ms: int) -> int | str:
        r = self.rng.random()
        if r < 0.5:
            return ms
        if r < 0.8:
            return rfc3339(ms)
        return rfc3339(ms, self.tz)

    def company_dict(self, c: _Company, at: int) -> dict[str, Any]:
        out: dict[str, Any] = {"id": c.id, "name": c.name}
        if c.created_at is not None:
            out["created_at"] = self.ts(c.created_at)
        out["traits"] = {
            "plan": c.upgraded_plan if at >= c.upgrade_at else c.plan,
            "industry": c.industry,
            "seats": c.seats,
        }
        return out

    def identify(self, at: int, traits: dict[str, Any], company: _Company | None) -> Record:
        rec: Record = {
            "type": "identify",
            "app_id": self.app_id,
            "user_id": self.user_id,
            "event_id": _uuid(self.rng),
            "timestamp": self.ts(at),
            "traits": traits,
        }
        if company is not None:
            rec["company"] = self.company_dict(company, at)
        return rec

    def command(self, kind: str, at: int, user_id: str | None = None) -> Record:
        rec: Record = {
            "type": "command",
            "command": kind,
            "command_id": f"cmd-{_uuid(self.rng)}",
            "issued_at": self.ts(at),
            "app_id": self.app_id,
            "user_id": self.user_id if user_id is None else user_id,
        }
        reason = self.rng.choice(_REASONS[kind])
        if reason is not None:
            rec["reason"] = reason
        return rec

    def alias(self, at: int, previous_id: str) -> Record:
        return {
            "type": "alias",
            "app_id": self.app_id,
            "user_id": self.user_id,
            "previous_id": previous_id,
            "event_id": _uuid(self.rng),
            "timestamp": self.ts(at),
        }

    def url(self) -> tuple[str, str]:
        rng = self.rng
        pages = self.w.pages
        make, title = pages[int(rng.random() * len(pages))]
        path = make(rng)
        host = self.host
        r = rng.random()
        if r < 0.04:
            host = host.upper()
        elif r < 0.08:
            host = host.title()
        elif r < 0.09:
            host = f"{host}:8443"
        if path and "?" not in path and not path.endswith("/") and rng.random() < 0.08:
            path += "/"
        return f"https://{host}{path}", f"{title} · {self.brand}"

    # -- the plan ------------------------------------------------------------------------------

    def visit(self, sessions: list[list[int]]) -> _Visitor | None:
        """The anonymous start of a user of `user_anonymous`: 1–3 sessions (one device, or
        two taking turns) before sign-up, then an alias per device into the known id; a
        quarter of the aliases arrive late; the operator's unmerge undoes the first one."""
        w = self.w
        if self.u not in w.user_anonymous:
            return None
        rng = random.Random(f"profile-streams/anonymous/{w.seed}/{self.u}")
        n = len(sessions)
        k = 1 if n < 2 else rng.randint(1, min(3, n - 1))
        devices = 2 if k >= 2 and rng.random() < 0.4 else 1
        ids = [f"anon-{_uuid(rng)}" for _ in range(devices)]
        if k < n:  # between two sessions: they are more than 30 minutes apart
            signup = sessions[k][0] - rng.randint(SEC_MS, 5 * MIN_MS)
        else:  # signs up at the end of the last visit
            signup = min(w.stop, sessions[-1][-1] + rng.randint(SEC_MS, 5 * MIN_MS))
        visitor = _Visitor(ids, k, signup, _pick(rng, _AGENTS))
        for d, anonymous_id in enumerate(ids):
            # the second device is joined when the user first signs in on it
            at = signup if d == 0 else min(w.stop, signup + rng.randint(SEC_MS, HOUR_MS))
            alias = self.alias(at, anonymous_id)
            if rng.random() < 0.25:
                visitor.late.append(alias)
            else:
                visitor.aliases.append((at, alias))
        if self.u == w.unmerge_user and w.commands and signup < w.stop:
            at = min(w.stop, signup + rng.randint(HOUR_MS, 3 * DAY_MS))
            visitor.unmerge = (at, self.command("unmerge", at, ids[0]))
        return visitor

    def specials(self, sessions: list[list[int]]) -> list[tuple[int, Record]]:
        """Identifies and commands with their times; interactions come from the sessions."""
        rng, w = self.rng, self.w
        start, stop = w.start, w.stop
        first = sessions[0][0]
        out: list[tuple[int, Record]] = []
        first_name, last_name = rng.choice(_FIRST), rng.choice(_LAST)
        name = f"{first_name} {last_name}"
        company_ix = w.user_company[self.u]
        company = w.companies[company_ix] if company_ix is not None else None
        domain = company.domain if company else rng.choice(["gmail.com", "proton.me", "web.de"])
        email = f"{_ascii_slug(first_name)}.{_ascii_slug(last_name)}{self.u + 1}@{domain}"
        at = max(start, first - rng.randint(200, 90_000))
        visitor = self.visitor
        if visitor is not None:  # the first identify is the sign-up
            at = visitor.signup
        traits: dict[str, Any] = {"name": name, "email": email}
        r = rng.random()
        if r < 0.4:  # signed up right before their first visit
            traits["created_at"] = self.ts(at - rng.randint(1_000, 10 * MIN_MS))
        elif r < 0.9:
            traits["created_at"] = self.ts(
                at - rng.randint(1, 500) * DAY_MS - rng.randrange(DAY_MS)
            )
        if rng.random() < 0.85:
            traits["country"] = self.country
        traits["plan"] = company.plan if company else rng.choice(_PLANS[:2])
        traits["role"] = rng.choice(_ROLES)
        if rng.random() < 0.3:
            traits["beta_tester"] = rng.random() < 0.5
        if rng.random() < 0.2:
            traits["logins"] = rng.randint(1, 400)
        if visitor is not None:
            traits["created_at"] = self.ts(at)
        out.append((at, self.identify(at, traits, company)))

        n = len(sessions)
        # a visitor has no traits: later identifies come after the first known session
        known = 1 if visitor is None else visitor.sessions + 1
        if n > known and rng.random() < 0.35:  # a later identify changing one trait
            k = rng.randrange(known, n)
            at = sessions[k][0] - rng.randint(500, 5 * MIN_MS)
            key = rng.choice(["plan", "role", "name", "country", "email", "logins"])
            value: Any
            if key == "plan":
                value = rng.choice(_PLANS)
            elif key == "role":
                value = rng.choice(_ROLES)
            elif key == "name":
                value = f"{first_name} {rng.choice(_LAST)}"
            elif key == "country":
                value = rng.choice(_LOCALES)[0]
            elif key == "email":
                mailbox = rng.choice(["gmail.com", "icloud.com"])
                value = f"{_ascii_slug(first_name)}{self.u + 1}@{mailbox}"
            else:
                value = rng.randint(1, 400)
            out.append(
                (at, self.identify(at, {key: value}, company if rng.random() < 0.4 else None))
            )

        if company is not None and n > known and rng.random() < 0.06:  # moves to another company
            others = [j for j in w.app_companies[company.app] if j != company_ix]
            if others:
                k = rng.randrange(known, n)
                at = sessions[k][0] - rng.randint(500, 5 * MIN_MS)
                moved = w.companies[rng.choice(others)]
                traits = {"plan": moved.plan}
                if rng.random() < 0.5:
                    traits["email"] = email.split("@")[0] + "@" + moved.domain
                out.append((at, self.identify(at, traits, moved)))

        kind = w.user_command.get(self.u) if w.commands else None
        if kind is not None:
            times = sorted([t for s in sessions for t in s] + [t for t, _ in out])
            lo, hi = times[0], times[-1]
            if kind in ("exclude", "exclude_include"):
                t1 = rng.randint(lo, hi)
                if kind == "exclude_include":
                    t1 = min(t1, stop - HOUR_MS)
                    t2 = min(stop, t1 + rng.randint(HOUR_MS, 5 * DAY_MS))
                    out.append((t2, self.command("include", t2)))
                out.append((t1, self.command("exclude", t1)))
            elif kind == "reset_content":
                if n >= 2:
                    t = sessions[n // 2][0] - rng.randint(SEC_MS, 10 * MIN_MS)
                else:
                    t = times[len(times) // 2]
                out.append((t, self.command("reset_content", t)))
            else:  # delete between two of the user's records, near the middle
                t = times[len(times) // 2]
                for i in range(len(times) // 2, len(times)):
                    if i and times[i] > times[i - 1]:
                        t = times[i - 1] + (times[i] - times[i - 1]) // 2
                        break
                out.append((t, self.command("delete", t)))
        if visitor is not None:
            out.extend(visitor.aliases)
            if visitor.unmerge is not None:
                out.append(visitor.unmerge)
        out.sort(key=lambda pair: pair[0])
        return out

    # -- interactions --------------------------------------------------------------------------

    def content_event(self, base: Record) -> bool:
        """Advance one content item; False when there is nothing left to show."""
        rng, state = self.rng, self.content
        active = [cid for cid, s in state.items() if s[0] != "done"]
        if active and rng.random() < 0.75:
            cid = rng.choice(active)
        else:
            fresh = [c[0] for c in _CONTENT if c[0] not in state]
            if not fresh:
                if not active:
                    return False
                cid = rng.choice(active)
            else:
                cid = rng.choice(fresh)
        _, ctype, cname, steps = _CONTENT_BY_ID[cid]
        st = state.get(cid)
        step: int | None = None
        if st is None:
            action, st = "seen", ["seen"]
        elif ctype == "banner":
            action = "clicked" if rng.random() < 0.45 else "dismissed"
            st = ["done"]
        elif ctype == "spotlight":
            action = "completed" if rng.random() < 0.65 else "dismissed"
            st = ["done"]
        elif st[0] == "seen":
            if rng.random() < 0.85:
                remaining = list(range(1, steps + 1))
                if ctype == "checklist":
                    rng.shuffle(remaining)
                action, st = "started", ["steps", remaining]
            else:
                action, st = "dismissed", ["done"]
        else:  # in progress
            remaining = st[1]
            if not remaining:
                action, st = "completed", ["done"]
            elif rng.random() < 0.06:
                action, st = "dismissed", ["done"]
            else:
                action, step = "step_completed", remaining.pop(0)
        state[cid] = st
        base["type"] = "content"
        base["content_id"] = cid
        base["content_type"] = ctype
        if cname is not None and rng.random() < 0.95:
            base["content_name"] = cname
        base["action"] = action
        if step is not None:
            base["step"] = step
        return True

    def run(self) -> Iterator[tuple[int, int, int, Record]]:
        rng, w, u = self.rng, self.w, self.u
        sessions = _plan_sessions(rng, w.start, w.stop)
        visitor = self.visitor = self.visit(sessions)
        anonymous = visitor.sessions if visitor is not None else 0
        specials = self.specials(sessions)
        si, ns = 0, len(specials)
        tracks = w.tracks
        n_tracks = len(tracks)
        ts = self.ts
        app_id, user_id = self.app_id, self.user_id
        lower_host = self.host.lower()
        for i, times in enumerate(sessions):
            country, language = self.country, self.language
            if rng.random() < 0.05:  # travelling
                country, _, language = rng.choice(_LOCALES)
            browser, os_name, device = self.agent if rng.random() < 0.9 else rng.choice(_AGENTS)
            if i < anonymous:  # a visitor who has not signed up yet
                assert visitor is not None
                user_id = visitor.ids[i % len(visitor.ids)]
                if i % len(visitor.ids):
                    browser, os_name, device = visitor.agent
            else:
                user_id = self.user_id
            page_url, page_title = self.url()
            for j, t in enumerate(times):
                while si < ns and specials[si][0] <= t:
                    at, rec = specials[si]
                    si += 1
                    if rec.get("command") == "reset_content":
                        self.content.clear()
                    self.seq += 1
                    yield at, u, self.seq, rec
                rec = {
                    "type": "track",
                    "app_id": app_id,
                    "user_id": user_id,
                    "event_id": _uuid(rng),
                    "timestamp": ts(t),
                }
                r = 0.0 if j == 0 else rng.random()
                if r < 0.33:
                    page_url, page_title = self.url()
                    rec["type"] = "page"
                    rec["url"] = page_url
                    if rng.random() < 0.92:
                        rec["title"] = page_title
                elif r < 0.985 and (r < 0.8 or not self.content_event(rec)):
                    name, kind, props = tracks[int(rng.random() * n_tracks)]
                    rec["name"] = name
                    if kind != "tracked" or rng.random() < 0.5:
                        rec["kind"] = kind
                    rec["properties"] = props(rng)
                elif r >= 0.985:
                    self.feedback(rec)
                rec["context"] = {
                    "page_url": page_url,
                    "page_title": page_title,
                    "hostname": lower_host,
                    "country": country,
                    "browser": browser,
                    "os": os_name,
                    "device": device,
                    "language": language,
                }
                self.seq += 1
                yield t, u, self.seq, rec
        while si < ns:
            at, rec = specials[si]
            si += 1
            self.seq += 1
            yield at, u, self.seq, rec
        for rec in visitor.late if visitor is not None else ():
            self.seq += 1  # its timestamp is the sign-up's; it comes after every other record
            yield w.stop, u, self.seq, rec

    def feedback(self, rec: Record) -> None:
        rng = self.rng
        rec["type"] = "feedback"
        if rng.random() < 0.75:
            rec["survey_id"] = "nps-2026"
            rec["survey_type"] = "nps"
            if rng.random() < 0.6:
                rec["question"] = (
                    f"How likely are you to recommend {self.brand} to a friend or colleague?"
                )
            rec["score"] = rng.choices(range(11), weights=[2, 1, 1, 2, 2, 4, 5, 9, 14, 12, 10])[0]
            if rng.random() < 0.4:
                rec["answer"] = rng.choice(_NPS_ANSWERS)
        else:
            survey_id, question, answers = rng.choice(_SURVEYS)
            rec["survey_id"] = survey_id
            rec["survey_type"] = "survey"
            rec["question"] = question
            rec["answer"] = rng.choice(answers)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _tagged(
    *, users: int, companies: int | None, apps: int, days: int, end_ms: int, seed: int,
    commands: bool, anonymous: float = 0.0,
) -> Iterator[tuple[int, int, int, Record]]:  # fmt: skip
    if users < 0 or apps < 1 or days < 1:
        raise ValueError("users must be >= 0, apps >= 1 and days >= 1")
    if not 0.0 <= anonymous <= 1.0:
        raise ValueError("anonymous is a fraction between 0 and 1")
    n_companies = max(1, users // 8) if companies is None else companies
    if n_companies < 0:
        raise ValueError("companies must be >= 0")
    start, stop = end_ms - days * DAY_MS, end_ms - MIN_MS
    world = _build_world(
        users=users,
        companies=n_companies,
        apps=apps,
        start=start,
        stop=stop,
        seed=seed,
        commands=commands,
        anonymous=anonymous,
    )
    return heapq.merge(*(_UserGen(world, u).run() for u in range(users)))


def iter_records(
    *,
    users: int = 200,
    companies: int | None = None,
    apps: int = 1,
    days: int = 30,
    end_ms: int,
    seed: int = 1,
    commands: bool = False,
    duplicates: float = 0.0,
    shuffle: bool = False,
    anonymous: float = 0.0,
) -> Iterator[Record]:
    """Yield the records of `generate` one by one; lazily (in `generate`'s order) unless
    shuffled/duplicated."""
    if shuffle or duplicates:
        yield from generate(
            users=users, companies=companies, apps=apps, days=days, end_ms=end_ms, seed=seed,
            commands=commands, duplicates=duplicates, shuffle=shuffle, anonymous=anonymous,
        )  # fmt: skip
        return
    for item in _tagged(
        users=users, companies=companies, apps=apps, days=days, end_ms=end_ms, seed=seed,
        commands=commands, anonymous=anonymous,
    ):  # fmt: skip
        yield item[3]


def generate(
    *,
    users: int = 200,
    companies: int | None = None,
    apps: int = 1,
    days: int = 30,
    end_ms: int,
    seed: int = 1,
    commands: bool = False,
    duplicates: float = 0.0,
    shuffle: bool = False,
    anonymous: float = 0.0,
) -> list[Record]:
    """Wire records for `users` users over `days` days ending at `end_ms` (exclusive of the last
    minute); sorted by event time unless `shuffle`; `duplicates` adds exact copies of that
    fraction of the records. `anonymous` is the fraction of users who start as visitors
    under anonymous ids and are joined to their known id by `alias` records at sign-up
    (docs/design.md §7); late aliases come last whatever their time, and with `commands` an
    operator unmerges one of the merges. Same arguments, same output."""
    if not 0.0 <= duplicates <= 1.0:
        raise ValueError("duplicates is a fraction between 0 and 1")
    # A million acyclic dicts make the cyclic GC rescan the growing heap over and over.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        tagged = list(
            _tagged(
                users=users, companies=companies, apps=apps, days=days, end_ms=end_ms, seed=seed,
                commands=commands, anonymous=anonymous,
            )
        )  # fmt: skip
    finally:
        if gc_was_enabled:
            gc.enable()
    if not duplicates and not shuffle:
        return [item[3] for item in tagged]
    rng = random.Random(f"profile-streams/final/{seed}")
    if duplicates:
        picks = sorted(rng.sample(range(len(tagged)), round(len(tagged) * duplicates)))
        tagged.extend(
            (tagged[i][0], tagged[i][1], tagged[i][2], _copy(tagged[i][3])) for i in picks
        )
    if shuffle:
        rng.shuffle(tagged)
        return [item[3] for item in tagged]
    tagged.sort(key=lambda item: item[0])  # stable: copies follow the originals of their ms
    return [item[3] for item in tagged]


def write_jsonl(records: Iterable[Record], path_or_file: str | os.PathLike[str] | IO[str]) -> int:
    """Write one JSON object per line (UTF-8, no ASCII escaping); returns the number written."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if isinstance(path_or_file, str | os.PathLike):
        with open(path_or_file, "w", encoding="utf-8", newline="\n") as fh:
            return _write_lines(records, fh, dumps)
    return _write_lines(records, path_or_file, dumps)


def _write_lines(records: Iterable[Record], fh: IO[str], dumps: Callable[[Any], str]) -> int:
    n = 0
    batch: list[str] = []
    for rec in records:
        batch.append(dumps(rec))
        n += 1
        if len(batch) >= 4096:
            fh.write("\n".join(batch) + "\n")
            batch.clear()
    if batch:
        fh.write("\n".join(batch) + "\n")
    return n
