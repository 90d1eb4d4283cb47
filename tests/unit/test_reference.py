"""Hand-computed cases that pin the tricky rules of the batch reference (tests/reference.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import reference as ref  # noqa: E402

APP = "app1"
USER = "u1"
T0 = 1_790_000_000_000  # 2026-09-21T14:13:20.000Z
NOW = T0 + 86_400_000
MIN = 60_000
GAP = 30 * MIN


def track(event_id, ts, name="clicked", **extra):
    return {
        "type": "track",
        "app_id": APP,
        "user_id": USER,
        "event_id": event_id,
        "timestamp": ts,
        "name": name,
        **extra,
    }


def page(event_id, ts, url, **extra):
    return {
        "type": "page",
        "app_id": APP,
        "user_id": USER,
        "event_id": event_id,
        "timestamp": ts,
        "url": url,
        **extra,
    }


def identify(event_id, ts, traits, **extra):
    return {
        "type": "identify",
        "app_id": APP,
        "user_id": USER,
        "event_id": event_id,
        "timestamp": ts,
        "traits": traits,
        **extra,
    }


def command(command_id, issued_at, cmd, user_id=USER):
    return {
        "type": "command",
        "app_id": APP,
        "user_id": user_id,
        "command_id": command_id,
        "issued_at": issued_at,
        "command": cmd,
    }


def sessions(records, **kw):
    return ref.sessions_view(records, APP, USER, now_ms=NOW, **kw)


# --------------------------------------------------------------------------- time


def test_timestamps_convert_to_utc_ms_and_back():
    assert ref.to_ms("1970-01-01T00:00:00Z") == 0
    assert ref.to_ms("1970-01-01T01:00:00.5+01:00") == 500
    assert ref.to_ms("2026-09-21T14:13:20.000Z") == T0
    assert ref.to_ms(T0) == T0
    assert ref.fmt_ms(T0 + 123) == "2026-09-21T14:13:20.123Z"
    assert ref.day_of(T0) == "2026-09-21"


# --------------------------------------------------------------------------- page key


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://App.Example.com/Settings/?tab=1#x", "app.example.com/Settings"),
        ("https://app.example.com", "app.example.com/"),
        ("https://u:p@Host:8080//a//", "host:8080//a"),
        ("App.Example.com/Docs/", "app.example.com/Docs"),
        ("http://example.com?q=1", "example.com/"),
        ("example.com/x?next=http://other.com/y", "example.com/x"),
    ],
)
def test_page_key(url, key):
    assert ref.page_key(url) == key


# --------------------------------------------------------------------------- sessions


def test_gap_of_exactly_the_limit_stays_in_one_session():
    out = sessions([track("a", T0), track("b", T0 + GAP)])
    assert len(out) == 1
    assert out[0]["events"] == 2
    assert out[0]["duration_seconds"] == 1800.0


def test_gap_one_ms_over_the_limit_splits():
    out = sessions([track("a", T0), track("b", T0 + GAP + 1)])
    assert [s["events"] for s in out] == [1, 1]
    # newest first
    assert out[0]["started_at"] == ref.fmt_ms(T0 + GAP + 1)
    assert out[1]["started_at"] == ref.fmt_ms(T0)


def test_single_event_session_lasts_zero_seconds():
    (only,) = sessions([track("a", T0)])
    assert only["duration_seconds"] == 0.0
    assert isinstance(only["duration_seconds"], float)
    assert only["started_at"] == only["ended_at"] == ref.fmt_ms(T0)


def test_late_event_joins_two_sessions():
    early = [track("a", T0), track("c", T0 + 50 * MIN)]
    assert len(sessions(early)) == 2
    late = track("b", T0 + 25 * MIN)  # within 30 min of both neighbours
    joined = sessions([*early, late])
    assert len(joined) == 1
    assert joined[0]["events"] == 3
    assert joined[0]["duration_seconds"] == 3000.0
    assert [b["at"] for b in joined[0]["breakdown"]] == [
        ref.fmt_ms(T0),
        ref.fmt_ms(T0 + 25 * MIN),
        ref.fmt_ms(T0 + 50 * MIN),
    ]
    view = ref.user_view([late, *reversed(early)], APP, USER, now_ms=NOW)
    assert view["total_sessions"] == 1
    assert view["overview"]["avg_session_seconds"] == 3000.0


def test_breakdown_items():
    recs = [
        page("p", T0, "https://App.Example.com/Home/?x=1"),
        track("t", T0 + 1, "saved", context={"page_url": "https://app.example.com/Edit"}),
        {
            "type": "content",
            "app_id": APP,
            "user_id": USER,
            "event_id": "c",
            "timestamp": T0 + 2,
            "content_id": "flow-1",
            "content_type": "flow",
            "action": "seen",
        },
    ]
    (s,) = sessions(recs)
    assert s["breakdown"] == [
        {"type": "page", "name": "app.example.com/Home", "page": "app.example.com/Home",
         "at": ref.fmt_ms(T0)},
        {"type": "track", "name": "saved", "page": "app.example.com/Edit",
         "at": ref.fmt_ms(T0 + 1)},
        {"type": "content", "name": "flow-1", "page": None, "at": ref.fmt_ms(T0 + 2)},
    ]  # fmt: skip


# --------------------------------------------------------------------------- LWW and dedupe


def test_lww_tie_on_timestamp_is_broken_by_event_id():
    recs = [
        identify("b", T0, {"name": "Bea", "plan": "pro"}),
        identify("a", T0, {"name": "Ann", "plan": None, "email": "a@x"}),
    ]
    view = ref.user_view(recs, APP, USER, now_ms=NOW)
    assert view["name"] == "Bea"
    assert view["email"] == "a@x"
    assert view["properties"] == {"name": "Bea", "plan": "pro", "email": "a@x"}
    assert view["first_seen_at"] is None
    assert view["total_sessions"] == 0


def test_duplicates_keep_the_smallest_canonical_json():
    recs = [track("a", T0, "zeta"), track("a", T0, "alpha"), track("a", T0, "alpha")]
    view = ref.user_view(recs, APP, USER, now_ms=NOW)
    assert view["overview"]["top_events"] == [{"name": "alpha", "count": 1}]
    assert view["overview"]["total_events"] == 1


def test_country_prefers_trait_then_latest_context():
    recs = [
        track("a", T0, context={"country": "DE", "browser": "Firefox"}),
        track("b", T0 + 1, context={"country": "FR"}),
        track("c", T0 + 2, context={"country": None}),
    ]
    view = ref.user_view(recs, APP, USER, now_ms=NOW)
    assert view["country"] == "FR"
    assert view["auto_properties"] == {"country": "FR", "browser": "Firefox"}
    view = ref.user_view([*recs, identify("i", T0 - 1, {"country": "US"})], APP, USER, now_ms=NOW)
    assert view["country"] == "US"


# --------------------------------------------------------------------------- commands


def test_delete_drops_earlier_records_and_keeps_later_ones():
    recs = [
        identify("i1", T0, {"name": "Old"}),
        track("a", T0 + 1, "before"),
        command("c-ex", T0 + 2, "exclude"),
        command("del", T0 + 3, "delete"),
        track("b", T0 + 3, "at-delete-time"),
        track("c", T0 + 4, "after"),
    ]
    view = ref.user_view(recs, APP, USER, now_ms=NOW)
    assert view["name"] is None
    assert view["excluded"] is False
    assert view["overview"]["top_events"] == [{"name": "after", "count": 1}]
    assert view["first_seen_at"] == ref.fmt_ms(T0 + 4)
    # nothing after the delete: the user does not exist
    gone = recs[:5]
    assert ref.user_view(gone, APP, USER, now_ms=NOW) is None
    assert ref.user_ids(gone, now_ms=NOW) == set()
    assert ref.user_ids(recs, now_ms=NOW) == {(APP, USER)}


def test_exclude_include_latest_wins_and_commands_alone_make_no_user():
    cmds = [command("b", T0, "include"), command("a", T0, "exclude")]
    assert ref.user_view(cmds, APP, USER, now_ms=NOW) is None
    view = ref.user_view([*cmds, track("t", T0)], APP, USER, now_ms=NOW)
    assert view["excluded"] is False  # same issued_at: command_id "b" (include) is latest


def test_retention_ignores_old_records():
    horizon = NOW - 400 * 86_400_000
    recs = [track("old", horizon - 1, "old"), track("edge", horizon, "edge")]
    view = ref.user_view(recs, APP, USER, now_ms=NOW)
    assert view["overview"]["top_events"] == [{"name": "edge", "count": 1}]


# --------------------------------------------------------------------------- overview


def test_top_events_order_limit_and_search():
    recs = []
    n = 0
    for i in range(12):
        for _ in range(i + 1):
            n += 1
            recs.append(track(f"e{n:03d}", T0 + n, f"Event {i:02d}"))
    recs.append(track("x1", T0 + 1000, "Export CSV"))
    recs.append(track("x2", T0 + 1001, "export pdf"))
    recs.append(track("x3", T0 + 1002, "Imported"))
    view = ref.user_view(recs, APP, USER, now_ms=NOW)
    top = view["overview"]["top_events"]
    assert len(top) == 10
    assert top[0] == {"name": "Event 11", "count": 12}
    assert top[-1] == {"name": "Event 02", "count": 3}

    view = ref.user_view(recs, APP, USER, now_ms=NOW, search="EXPORT")
    assert view["overview"]["top_events"] == [
        {"name": "Export CSV", "count": 1},
        {"name": "export pdf", "count": 1},
    ]
    view = ref.user_view(recs, APP, USER, now_ms=NOW, search="event")
    assert len(view["overview"]["top_events"]) == 12  # no limit of 10 with search


def test_period_bounds_overview_sessions_and_sentiment():
    day2 = T0 + 86_400_000
    fb = {
        "type": "feedback",
        "app_id": APP,
        "user_id": USER,
        "event_id": "f",
        "timestamp": day2,
        "survey_id": "s1",
        "survey_type": "nps",
        "score": 9,
    }
    recs = [track("a", T0, "one"), track("b", day2, "two"), fb]
    d1, d2 = ref.day_of(T0), ref.day_of(day2)
    view = ref.user_view(recs, APP, USER, now_ms=day2, frm=d2, to=d2)
    assert view["overview"]["from"] == d2
    assert view["overview"]["total_events"] == 1
    assert view["overview"]["sessions"] == 1
    assert view["total_sessions"] == 2
    assert view["nps_latest"] == 9
    assert len(ref.sessions_view(recs, APP, USER, now_ms=day2, to=d1)) == 1
    assert ref.sentiment_view(recs, APP, USER, now_ms=day2, to=d1) == []
    assert ref.sentiment_view(recs, APP, USER, now_ms=day2) == [
        {
            "survey_id": "s1",
            "survey_type": "nps",
            "question": None,
            "score": 9,
            "answer": None,
            "page": None,
            "responded_at": ref.fmt_ms(day2),
        }
    ]


# --------------------------------------------------------------------------- engagement


def content(event_id, ts, content_id, action, **extra):
    return {
        "type": "content",
        "app_id": APP,
        "user_id": USER,
        "event_id": event_id,
        "timestamp": ts,
        "content_id": content_id,
        "content_type": "checklist",
        "action": action,
        **extra,
    }


def test_engagement_status_and_reset():
    recs = [
        content("1", T0, "c1", "started", content_name="Tour"),
        content("2", T0 + 1, "c1", "step_completed", step=2),
        content("3", T0 + 2, "c1", "completed"),
        content("4", T0 + 10, "c2", "seen"),
    ]
    out = ref.engagement_view(recs, APP, USER, now_ms=NOW)
    assert [i["content_id"] for i in out] == ["c2", "c1"]
    assert out[1] == {
        "content_id": "c1",
        "content_type": "checklist",
        "content_name": "Tour",
        "last_action": "completed",
        "last_action_at": ref.fmt_ms(T0 + 2),
        "last_page": None,
        "interactions": 3,
        "status": "completed",
        "steps_completed": [2],
    }
    reset = command("r", T0 + 2, "reset_content")  # the completed event is not after T
    out = ref.engagement_view([*recs, reset], APP, USER, now_ms=NOW)
    by_id = {i["content_id"]: i for i in out}
    assert by_id["c1"]["status"] == "not_started"
    assert by_id["c1"]["steps_completed"] == []
    assert by_id["c1"]["interactions"] == 3
    assert by_id["c2"]["status"] == "seen"
    view = ref.user_view([*recs, reset], APP, USER, now_ms=NOW)
    assert view["content_reset_at"] == ref.fmt_ms(T0 + 2)


def test_views_ignore_order_and_duplicates():
    import random

    recs = [
        identify("i", T0, {"name": "N", "created_at": "2026-01-02T03:04:05.678901+02:00"}),
        track("a", T0 + 1, context={"page_url": "https://x.com/a/"}),
        page("p", T0 + 40 * MIN, "x.com/b"),
        content("c", T0 + 41 * MIN, "k", "clicked"),
        command("x", T0 + 5, "exclude"),
    ]
    expected = ref.user_view(recs, APP, USER, now_ms=NOW)
    assert expected["signed_up_at"] == "2026-01-02T01:04:05.678Z"
    assert expected["excluded"] is True
    assert expected["overview"]["sessions"] == 2
    rng = random.Random(7)
    for _ in range(5):
        shuffled = recs * 2
        rng.shuffle(shuffled)
        assert ref.user_view(shuffled, APP, USER, now_ms=NOW) == expected
        assert ref.sessions_view(shuffled, APP, USER, now_ms=NOW) == sessions(recs)
        assert ref.engagement_view(shuffled, APP, USER, now_ms=NOW) == ref.engagement_view(
            recs, APP, USER, now_ms=NOW
        )


# --------------------------------------------------------------------------- companies


def joins(user_id, event_id, ts, company_id, name=None, traits=None, **company):
    """An identify of user_id naming company_id (name/created_at/traits only when given)."""
    comp = {"id": company_id, **company}
    if name is not None:
        comp["name"] = name
    if traits is not None:
        comp["traits"] = traits
    return identify(event_id, ts, {}, user_id=user_id, company=comp)


def company(records, company_id="acme", **kw):
    return ref.company_view(records, APP, company_id, now_ms=NOW, **kw)


def members(records, company_id="acme"):
    return ref.company_users_view(records, APP, company_id, now_ms=NOW)


def two_members():
    """u1: one session of 660 s; u2: two sessions (60 s and 0 s).  Same UTC day."""
    h = 60 * MIN
    return [
        joins("u1", "i1", T0, "acme", "Acme", traits={"plan": "pro"}),
        track("a", T0, "save", user_id="u1"),
        track("b", T0 + 10 * MIN, "save", user_id="u1"),
        page("p", T0 + 11 * MIN, "https://X.com/a/", user_id="u1"),
        joins("u2", "i1", T0, "acme"),
        track("a", T0 + 2 * h, "open", user_id="u2"),
        track("b", T0 + 2 * h + MIN, "save", user_id="u2"),
        track("c", T0 + 5 * h, "open", user_id="u2"),
        # not members: another company, and the same company id in another app
        joins("u3", "i1", T0, "other"),
        track("a", T0, "save", user_id="u3"),
        {**track("a", T0, "save", user_id="u1"), "app_id": "app2"},
        {**joins("u1", "i1", T0, "acme"), "app_id": "app2"},
    ]


def test_company_aggregates_sum_the_members_figures():
    recs = two_members()
    view = company(recs)
    assert view == {
        "app_id": APP,
        "company_id": "acme",
        "name": "Acme",
        "signed_up_at": None,
        "first_seen_at": ref.fmt_ms(T0),
        "last_seen_at": ref.fmt_ms(T0 + 5 * 60 * MIN),
        "total_sessions": 3,
        "users_count": 2,
        "properties": {"plan": "pro"},
        "segments": [],
        "overview": {
            "from": None,
            "to": None,
            "total_events": 5,
            "sessions": 3,
            "avg_session_seconds": 240.0,  # (660 + 60 + 0) / 3
            "top_events": [{"name": "save", "count": 3}, {"name": "open", "count": 2}],
            "top_pages": [{"page": "x.com/a", "count": 1}],
        },
    }
    assert company(recs, search="OP")["overview"]["top_events"] == [{"name": "open", "count": 2}]
    next_day = ref.day_of(T0 + 86_400_000)
    empty = company(recs, frm=next_day)["overview"]
    assert (empty["total_events"], empty["sessions"], empty["avg_session_seconds"]) == (0, 0, 0.0)
    assert empty["top_events"] == empty["top_pages"] == []
    assert ref.company_ids(recs, now_ms=NOW) == {(APP, "acme"), (APP, "other"), ("app2", "acme")}
    assert company(recs, "nope") is None
    assert members(recs, "nope") is None


def test_excluded_member_is_listed_but_not_counted_until_included():
    recs = [
        *two_members(),
        joins("u2", "i2", T0 + 1, "acme", "Acme Inc"),  # an excluded user still names it
        command("x", T0 + 6 * 60 * MIN, "exclude", user_id="u2"),
    ]
    view = company(recs)
    assert view["name"] == "Acme Inc"
    assert view["users_count"] == 1
    assert view["total_sessions"] == 1
    assert view["first_seen_at"] == ref.fmt_ms(T0)
    assert view["last_seen_at"] == ref.fmt_ms(T0 + 11 * MIN)
    assert view["overview"]["total_events"] == 2
    assert view["overview"]["sessions"] == 1
    assert view["overview"]["avg_session_seconds"] == 660.0
    assert view["overview"]["top_events"] == [{"name": "save", "count": 2}]
    assert members(recs) == [
        {
            "user_id": "u2",
            "name": None,
            "email": None,
            "last_seen_at": ref.fmt_ms(T0 + 5 * 60 * MIN),
            "total_sessions": 2,
            "excluded": True,
        },
        {
            "user_id": "u1",
            "name": None,
            "email": None,
            "last_seen_at": ref.fmt_ms(T0 + 11 * MIN),
            "total_sessions": 1,
            "excluded": False,
        },
    ]
    back = [*recs, command("y", T0 + 7 * 60 * MIN, "include", user_id="u2")]
    assert company(back) == {**company(two_members()), "name": "Acme Inc"}
    assert [m["excluded"] for m in members(back)] == [False, False]


def test_a_user_who_changes_company_takes_all_its_figures_along():
    recs = [
        joins("u1", "i1", T0, "A", "Alpha"),
        track("a", T0 + 1, user_id="u1"),
        track("b", T0 + 2 * 60 * MIN, user_id="u1"),
        joins("u1", "i2", T0 + 3 * 60 * MIN, "B", "Beta"),
        identify("i3", T0 + 4 * 60 * MIN, {"name": "Una"}, user_id="u1"),  # no company
        track("c", T0 + 5 * 60 * MIN, user_id="u1"),
    ]
    a = company(recs, "A")
    assert a["name"] == "Alpha"  # the old identify still names A
    assert (a["users_count"], a["total_sessions"]) == (0, 0)
    assert a["first_seen_at"] is None
    assert a["last_seen_at"] is None
    assert (a["overview"]["total_events"], a["overview"]["sessions"]) == (0, 0)
    assert a["overview"]["avg_session_seconds"] == 0.0
    assert members(recs, "A") == []
    b = company(recs, "B")
    assert (b["users_count"], b["total_sessions"]) == (1, 3)
    assert b["first_seen_at"] == ref.fmt_ms(T0 + 1)
    assert b["last_seen_at"] == ref.fmt_ms(T0 + 5 * 60 * MIN)
    assert b["overview"]["total_events"] == 3
    assert [m["user_id"] for m in members(recs, "B")] == ["u1"]
    user = ref.user_view(recs, APP, "u1", now_ms=NOW)
    assert (user["company_id"], user["company_name"]) == ("B", "Beta")
    # a late identify older than the move does not move the user back
    late = [*recs, joins("u1", "i0", T0 + 2 * 60 * MIN + 1, "A")]
    assert company(late, "B")["users_count"] == 1
    assert company(late, "A")["users_count"] == 0


def test_company_name_created_at_and_traits_are_lww_across_users():
    recs = [
        joins("u1", "i1", T0, "acme", "Acme", traits={"plan": "free", "seats": 5},
              created_at="2026-01-01T01:00:00+01:00"),
        joins("u2", "i1", T0 + 1, "acme", "ACME Inc", traits={"plan": "pro"},
              created_at=1_767_225_600_000),
        joins("u1", "i2", T0 + 2, "acme", traits={"seats": None}),  # no name: keeps "ACME Inc"
        joins("u1", "i3", T0 + 3, "acme"),  # no traits: contributes nothing
    ]  # fmt: skip
    view = company(recs)
    assert view["name"] == "ACME Inc"
    assert view["signed_up_at"] == "2026-01-01T00:00:00.000Z"
    assert view["properties"] == {"plan": "pro", "seats": None}
    # the user's company_name is the company's name, not the one its own identify carries
    assert ref.user_view(recs, APP, "u1", now_ms=NOW)["company_name"] == "ACME Inc"
    assert ref.user_view(recs, APP, "u2", now_ms=NOW)["company_name"] == "ACME Inc"
    # a tie on (timestamp, event_id) between two users: the larger user_id wins
    tie = [joins("u2", "same", T0, "acme", "Two"), joins("u1", "same", T0, "acme", "One")]
    assert company(tie)["name"] == "Two"
    # no name ever known
    assert company([joins("u1", "i1", T0, "acme")])["name"] is None
    assert ref.user_view([joins("u1", "i1", T0, "acme")], APP, "u1", now_ms=NOW)[
        "company_name"
    ] is None  # fmt: skip


def test_a_deleted_users_identifies_no_longer_name_the_company():
    recs = [
        joins("u1", "i1", T0, "acme", "Acme", traits={"plan": "pro"}, created_at=T0),
        track("a", T0 + 1, user_id="u1"),
        joins("u2", "i1", T0, "other", "Other"),
        command("del", T0 + 5, "delete", user_id="u1"),
        track("b", T0 + 6, user_id="u1"),  # a new profile, without company
    ]
    assert ref.company_ids(recs, now_ms=NOW) == {(APP, "other")}
    assert company(recs) is None
    assert members(recs) is None
    assert ref.user_view(recs, APP, "u1", now_ms=NOW)["company_id"] is None
    # another user naming acme (without a name) keeps it alive, but nothing of u1 remains
    more = [*recs, joins("u2", "i2", T0 + 1, "acme")]
    view = company(more)
    assert (view["name"], view["signed_up_at"], view["properties"]) == (None, None, {})
    assert view["users_count"] == 1  # u2 moved to acme
    assert view["total_sessions"] == 0
    assert [m["user_id"] for m in members(more)] == ["u2"]


def test_company_users_order_newest_first_nulls_last_then_user_id():
    recs = [
        joins("u2", "i", T0, "acme"),  # only an identify: last_seen_at is null
        joins("u3", "i", T0, "acme"),
        track("t", T0 + 5, user_id="u3"),
        joins("u1", "i", T0, "acme"),
        track("t", T0 + 5, user_id="u1"),
        joins("u0", "i", T0, "acme"),
        track("t", T0 + 1, user_id="u0"),
    ]
    out = members(recs)
    assert [(m["user_id"], m["last_seen_at"]) for m in out] == [
        ("u1", ref.fmt_ms(T0 + 5)),
        ("u3", ref.fmt_ms(T0 + 5)),
        ("u0", ref.fmt_ms(T0 + 1)),
        ("u2", None),
    ]
    assert out[-1]["total_sessions"] == 0
    view = company(recs)
    assert view["users_count"] == 4
    assert view["first_seen_at"] == ref.fmt_ms(T0 + 1)


def test_users_list_sorts():
    recs = [
        identify("i", T0, {"name": "A", "created_at": "2026-01-01T00:00:00Z"}, user_id="a",
                 company={"id": "acme", "name": "Acme"}),
        track("t", T0 + 3, user_id="a"),
        identify("i", T0, {"created_at": "2026-03-01T00:00:00Z"}, user_id="b"),
        identify("i", T0 + 1, {"email": "c@x"}, user_id="c",
                 company={"id": "acme", "name": "Acme Corp"}),
        track("t", T0 + 9, user_id="c"),
        track("u", T0 + 9 + GAP + 1, user_id="c"),
        identify("i", T0, {"created_at": "2026-03-01T00:00:00Z"}, user_id="d"),
        track("t", T0 + 3, user_id="d"),
        command("x", T0, "exclude", user_id="d"),
        command("x", T0, "exclude", user_id="e"),  # commands alone: no user
        {**track("t", T0, user_id="z"), "app_id": "app2"},
    ]  # fmt: skip
    by_last = ref.users_list(recs, APP, now_ms=NOW)
    assert [u["user_id"] for u in by_last] == ["c", "a", "d", "b"]
    assert by_last[0] == {
        "user_id": "c",
        "name": None,
        "email": "c@x",
        "company_id": "acme",
        "company_name": "Acme Corp",
        "signed_up_at": None,
        "last_seen_at": ref.fmt_ms(T0 + 9 + GAP + 1),
        "total_sessions": 2,
        "excluded": False,
    }
    assert by_last[2]["excluded"] is True
    assert by_last[1]["company_name"] == "Acme Corp"  # the company's name, set by c later
    by_signup = ref.users_list(recs, APP, now_ms=NOW, sort="signed_up")
    assert [u["user_id"] for u in by_signup] == ["b", "d", "a", "c"]
    assert by_signup[0]["signed_up_at"] == "2026-03-01T00:00:00.000Z"
    assert ref.users_list(recs, "nope", now_ms=NOW) == []
    with pytest.raises(ValueError):
        ref.users_list(recs, APP, now_ms=NOW, sort="name")
