"""The fold against the batch reference: any order, duplicates and batching give its answer."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import reference as ref
from foldkit import fold, random_batches, users_page, views
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.reader import NotFound

NOW = 1_795_000_000_000  # a fixed "now" (2026-11-18) so runs are reproducible
BASE = NOW - 6 * 86_400_000
MIN = 60_000
GAPS = [0, 1, 1000, 29 * MIN, 30 * MIN, 30 * MIN + 1, 2 * 60 * MIN, 20 * 60 * MIN]
USERS = ["u1", "u:2{x}", "ü3"]
URLS = [
    "https://App.Example.com/Settings/?tab=1#x",
    "https://app.example.com",
    "app.example.com/reports/",
    "https://x.io:8080/a//",
    "http://x.io/A",
]
NAMES = ["Report Created", "report exported", "Invite Sent", "Export CSV"]


def wire_time(ms: int, style: int) -> Any:
    if style == 0:
        return ms
    offset = timedelta(hours=2 if style == 1 else -5)
    at = datetime.fromtimestamp(ms / 1000, UTC).astimezone(__import__("datetime").timezone(offset))
    return at.isoformat(timespec="milliseconds")


@st.composite
def record_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    n = draw(st.integers(1, 30))
    clocks = {u: BASE + draw(st.integers(0, 3)) * 86_400_000 for u in USERS}
    for i in range(n):
        user = draw(st.sampled_from(USERS))
        # never past NOW: a record more than 24 h ahead of the clock is rejected, not folded
        clocks[user] = min(clocks[user] + draw(st.sampled_from(GAPS)), NOW)
        ts = clocks[user]
        if draw(st.booleans()):  # a late event: somewhere back in this user's past
            ts -= draw(st.sampled_from(GAPS))
        kind = draw(
            st.sampled_from(
                ["track", "track", "page", "identify", "feedback", "content", "command"]
            )
        )
        common = {"app_id": "app", "user_id": user}
        stamp = wire_time(ts, draw(st.integers(0, 2)))
        ctx = draw(
            st.none()
            | st.fixed_dictionaries(
                {
                    "page_url": st.sampled_from(URLS),
                    "country": st.sampled_from(["DE", "FR"]),
                    "browser": st.sampled_from(["Chrome", "Firefox"]),
                }
            )
        )
        if kind == "command":
            rec = {
                "type": "command",
                **common,
                "command_id": f"c{i}",
                "issued_at": stamp,
                "command": draw(st.sampled_from(["exclude", "include", "reset_content", "delete"])),
            }
        else:
            rec = {
                "type": kind,
                **common,
                "event_id": f"e{draw(st.integers(0, 3))}-{i}",
                "timestamp": stamp,
            }
            if ctx is not None:
                rec["context"] = ctx
        if kind == "track":
            rec["name"] = draw(st.sampled_from(NAMES))
        elif kind == "page":
            rec["url"] = draw(st.sampled_from(URLS))
        elif kind == "identify":
            rec.pop("context", None)
            rec["traits"] = draw(
                st.dictionaries(
                    st.sampled_from(["name", "email", "plan", "country", "created_at"]),
                    st.sampled_from(["A", "B", 3, None, True]),
                    max_size=3,
                )
            )
            if "created_at" in rec["traits"]:
                rec["traits"]["created_at"] = draw(
                    st.sampled_from([None, BASE, "2025-01-02T03:04:05Z"])
                )
            if "country" in rec["traits"]:
                rec["traits"]["country"] = draw(st.sampled_from([None, "GB"]))
            if draw(st.booleans()):
                rec["company"] = {
                    "id": draw(st.sampled_from(["c1", "c2"])),
                    "name": draw(st.sampled_from(["Acme", None])),
                }
        elif kind == "feedback":
            nps = draw(st.booleans())
            rec.update(
                {
                    "survey_id": draw(st.sampled_from(["nps", "q1"])),
                    "survey_type": "nps" if nps else "survey",
                    "score": draw(st.integers(0, 10)) if nps else None,
                    "answer": draw(st.sampled_from([None, "great"])),
                }
            )
        elif kind == "content":
            rec.update(
                {
                    "content_id": draw(st.sampled_from(["f1", "f2"])),
                    "content_type": "flow",
                    "content_name": draw(st.sampled_from([None, "Onboarding"])),
                    "action": draw(
                        st.sampled_from(
                            [
                                "seen",
                                "started",
                                "step_completed",
                                "completed",
                                "dismissed",
                                "clicked",
                            ]
                        )
                    ),
                    "step": draw(st.sampled_from([None, 1, 2])),
                }
            )
        records.append(rec)
    return records


def reference_views(records: list[dict[str, Any]], user: str, **period: Any) -> Any:
    search = period.pop("search", None)
    u = ref.user_view(records, "app", user, now_ms=NOW, search=search, **period)
    if u is None:
        return None
    return {
        "user": u,
        "sessions": ref.sessions_view(records, "app", user, now_ms=NOW, **period),
        "sentiment": ref.sentiment_view(records, "app", user, now_ms=NOW, **period),
        "engagement": ref.engagement_view(records, "app", user, now_ms=NOW),
    }


PERIODS = [
    {},
    {"frm": ref.day_of(BASE + 86_400_000)},
    {"frm": ref.day_of(BASE), "to": ref.day_of(BASE + 2 * 86_400_000)},
    {"search": "report"},
    {"to": ref.day_of(BASE + 86_400_000), "search": "app.EX"},
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_sets(), seed=st.integers(0, 2**32), dup=st.floats(0, 0.5))
def test_any_order_duplicates_and_batches_give_the_batch_answer(
    records: list[dict[str, Any]], seed: int, dup: float
) -> None:
    rng = random.Random(seed)
    delivered = records + [dict(r) for r in records if rng.random() < dup]
    rng.shuffle(delivered)
    batches = random_batches(len(delivered), rng)
    # companies through the deltas topic (live worker) or handed over directly (replay)
    reader = fold(delivered, now_ms=NOW, batches=batches, rng=rng, direct=rng.random() < 0.3)
    for user in USERS:
        for period in PERIODS:
            assert views(reader, "app", user, **dict(period)) == reference_views(
                records, user, **dict(period)
            ), (user, period)
    for company in ("c1", "c2"):
        for period in PERIODS:
            assert company_views(reader, company, **dict(period)) == reference_company(
                records, company, **dict(period)
            ), (company, period)
    for sort in ("last_seen", "signed_up"):
        listed, _cursor = users_page(reader, records, "app", NOW, sort=sort, limit=100)
        assert listed == ref.users_list(records, "app", now_ms=NOW, sort=sort), sort
        paged, cursor = [], None
        while True:  # two at a time, resuming from each page's cursor
            page, cursor = users_page(
                reader, records, "app", NOW, sort=sort, limit=2, cursor=cursor
            )
            paged += page
            if cursor is None:
                break
        assert paged == listed


def company_views(reader: Any, company: str, **period: Any) -> Any:
    search = period.pop("search", None)
    try:
        return {
            "company": reader.company("app", company, search=search, **period),
            "users": reader.company_users("app", company),
        }
    except NotFound:
        return None


def reference_company(records: list[dict[str, Any]], company: str, **period: Any) -> Any:
    search = period.pop("search", None)
    view = ref.company_view(records, "app", company, now_ms=NOW, search=search, **period)
    if view is None:
        return None
    return {"company": view, "users": ref.company_users_view(records, "app", company, now_ms=NOW)}
