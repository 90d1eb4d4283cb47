"""The explorer page in headless Chromium against a real worker and `profiles serve`: lists,
search, every profile tab, periods, event search, export, and an Exclude that the company's
figures follow. Screenshots of every step go to test-artifacts/e2e (PROFILES_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from schemas.generate import generate

pytestmark = [pytest.mark.integration]

ADMIN = "e2e-admin-" + secrets.token_hex(8)
PLAIN_ID = re.compile(r"u-\d{5}")


def q(part: str) -> str:
    """One path segment of an API or page URL."""
    return urllib.parse.quote(part, safe="")


def utc_day(offset: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


def css(value: str) -> str:
    """A CSS string literal (for attribute selectors on arbitrary ids)."""
    return json.dumps(value, ensure_ascii=False)


def wait_for(check: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.1)


def figure(page: Page, testid: str) -> int:
    return int(page.get_by_test_id(testid).inner_text().replace(",", ""))


def ready(page: Page, tab: str) -> None:
    """The tab panel shows `tab`, loaded."""
    panel = page.locator(f'[data-testid=tab-panel][data-tab="{tab}"][data-state=ready]')
    expect(panel).to_be_visible(timeout=15_000)


def shown_period(page: Page) -> tuple[str | None, str | None]:
    """The period the page asked the API for (the period picker's resolved days)."""
    label = page.get_by_test_id("period-range")
    return label.get_attribute("data-from") or None, label.get_attribute("data-to") or None


def check_session(page: Page, sessions: list[dict[str, Any]]) -> None:
    """The newest session with a page view: its row shows that it opens (a chevron,
    aria-expanded) and counts its interactions apart from its tracked events; open, its steps
    read to the second, and a page view names its page once."""
    index = next(
        i for i, s in enumerate(sessions) if any(e["type"] == "page" for e in s["breakdown"])
    )
    session = sessions[index]
    row = page.get_by_test_id("session-row").nth(index)
    summary = row.get_by_test_id("session-summary")
    expect(summary).to_have_attribute("aria-expanded", "false")
    expect(row.locator(".chevron")).to_be_visible()
    plural = "" if session["events"] == 1 else "s"
    expect(row.get_by_test_id("session-interactions")).to_have_text(
        f"{session['events']} interaction{plural}"
    )
    tracked = sum(1 for e in session["breakdown"] if e["type"] == "track")
    expect(row.get_by_test_id("session-tracked")).to_have_text(
        f"{tracked} tracked event{'' if tracked == 1 else 's'}"
    )
    summary.click()
    expect(summary).to_have_attribute("aria-expanded", "true")
    steps = row.get_by_test_id("breakdown-row")
    expect(steps).to_have_count(len(session["breakdown"]))
    cells = steps.evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    for (clock, kind, name, where), step in zip(cells, session["breakdown"], strict=True):
        assert re.fullmatch(r"\d\d:\d\d:\d\d", clock) and clock == step["at"][11:19], (clock, step)
        assert kind == step["type"] and where == (step["page"] or "—"), (kind, where, step)
        if step["type"] == "page":
            assert name == "page view" != where, (name, step)
        else:
            assert name == (step["name"] or "—"), (name, step)
    row.scroll_into_view_if_needed()


def check_chart(page: Page, days: list[dict[str, Any]]) -> None:
    """Tracked events as bars and sessions as a line, each in a panel of its own with its own
    axis, one above the other: the line never crosses the bars."""
    chart = page.get_by_test_id("chart")
    expect(chart.locator("rect.bar-events")).to_have_count(len(days))
    expect(chart.locator("circle.dot-sessions")).to_have_count(len(days))
    spans = chart.evaluate(
        """svg => Object.fromEntries(
            ["axis-events", "chart-events", "axis-sessions", "chart-sessions"].map((id) => {
                const box = svg.querySelector(`[data-testid=${id}]`).getBoundingClientRect();
                return [id, [box.top, box.bottom]];
            }))"""
    )
    events, sessions = spans["axis-events"], spans["axis-sessions"]
    assert events[1] < sessions[0], spans  # the panels do not overlap
    for drawn, panel in (("chart-events", events), ("chart-sessions", sessions)):
        top, bottom = spans[drawn]
        assert panel[0] - 1 <= top and bottom <= panel[1] + 1, (drawn, spans)


def choose_member(api: Any, app: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A company of several members and one of them with sessions whose last 7 days differ
    from its last 30 (so changing the period changes the figures)."""
    companies = api.get(f"/api/apps/{q(app)}/companies", limit=1000)["companies"]
    for company in sorted(companies, key=lambda c: (-c["users_count"], c["company_id"])):
        if company["users_count"] < 2:
            continue
        base = f"/api/apps/{q(app)}/companies/{q(company['company_id'])}/users"
        for member in api.get(base):
            if member["excluded"] or not member["total_sessions"] or not member["name"]:
                continue
            path = f"/api/apps/{q(app)}/users/{q(member['user_id'])}"
            week = api.get(path, **{"from": utc_day(-6), "to": utc_day()})["overview"]
            month = api.get(path, **{"from": utc_day(-29), "to": utc_day()})["overview"]
            if week["total_events"] != month["total_events"]:
                return company, member
    raise AssertionError("no company member with activity both in and before the last week")


def test_explorer_page_end_to_end(
    pipeline: Any, serve: Any, chromium: Any, artifacts: Path
) -> None:
    started = time.monotonic()
    records = generate(
        users=60,
        days=30,
        end_ms=int(time.time() * 1000),
        seed=23,
        commands=False,
        duplicates=0.02,
        shuffle=True,
    )
    app = records[0]["app_id"]
    pipeline.start_worker()
    assert pipeline.publish_file(records).returncode == 0
    pipeline.wait_idle()
    segment = pipeline.tmp / "segment.json"
    segment.write_text(
        json.dumps(
            {
                "id": "active-users",
                "app_id": app,
                "name": "Active users",
                "scope": "user",
                "rule": {
                    "op": "and",
                    "conditions": [
                        {
                            "kind": "number",
                            "field": "total_sessions",
                            "operator": "gte",
                            "value": 1,
                        }
                    ],
                },
            }
        )
    )
    added = pipeline.cli("segments", "add", str(segment))
    assert added.exit_code == 0, added.output

    api = serve(pipeline, {"*": ADMIN, app: "e2e-app-" + secrets.token_hex(8)})
    company, member = choose_member(api, app)
    user_id, company_id = member["user_id"], company["company_id"]
    user_api = f"/api/apps/{q(app)}/users/{q(user_id)}"
    company_api = f"/api/apps/{q(app)}/companies/{q(company_id)}"
    setup_done = time.monotonic()

    step = iter(range(1, 100))

    def shot(page: Page, name: str) -> None:
        page.screenshot(path=str(artifacts / f"{next(step):02d}-{name}.png"), full_page=True)

    with chromium() as browser:
        context = browser.new_context(
            viewport={"width": 1360, "height": 900}, accept_downloads=True
        )
        page = context.new_page()
        crashes: list[str] = []
        page.on("pageerror", lambda exc: crashes.append(str(exc)))
        # The server's Content-Security-Policy is on: anything it refuses fails the test.
        refused: list[str] = []
        page.on(
            "console",
            lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
        )

        # Without a token: the sign-in form, which refuses a wrong token.
        page.goto(api.base + "/")
        expect(page.get_by_test_id("signin-form")).to_be_visible()
        page.get_by_test_id("token-input").fill("not-a-token-of-this-server")
        page.get_by_test_id("token-submit").click()
        expect(page.get_by_test_id("signin-error")).to_be_visible()
        shot(page, "signin-refused")

        # A #token= link signs in, leaves the address bar, and lands on the users list.
        page.goto(f"{api.base}/#token={ADMIN}")
        expect(page).to_have_url(re.compile(rf"#/apps/{re.escape(q(app))}/users$"))
        assert "token" not in page.url
        expect(page.get_by_test_id("app-select")).to_have_value(app)
        everyone = api.get(f"/api/apps/{q(app)}/users", limit=1000)
        rows = page.get_by_test_id("user-row")
        expect(page.get_by_test_id("users-total")).to_have_text(f"{everyone['total']} users")
        expect(rows).to_have_count(min(50, everyone["total"]))
        if everyone["total"] > 50:
            page.get_by_test_id("load-more").click()
            expect(rows).to_have_count(everyone["total"])
        shot(page, "users")

        def row_ids() -> list[str | None]:
            return rows.evaluate_all("rows => rows.map(r => r.getAttribute('data-user-id'))")

        by_signup = api.get(f"/api/apps/{q(app)}/users", sort="signed_up")["users"]
        page.get_by_test_id("sort-select").select_option("signed_up")
        wait_for(lambda: row_ids() == [u["user_id"] for u in by_signup], what="signed_up order")

        # Search by name: the API's matches, in its order; open the member.
        found = api.get(f"/api/apps/{q(app)}/users", q=member["name"])["users"]
        page.get_by_test_id("user-search").fill(member["name"])
        wait_for(lambda: row_ids() == [u["user_id"] for u in found], what="search results")
        shot(page, "users-search")
        page.locator(f"[data-testid=user-row][data-user-id={css(user_id)}]").get_by_test_id(
            "user-link"
        ).click()

        profile = api.get(user_api)
        expect(page.get_by_test_id("profile-id")).to_have_text(user_id)
        expect(page.get_by_test_id("profile-name")).to_have_text(member["name"])
        expect(page.get_by_test_id("header-total-sessions")).to_have_text(
            f"{profile['total_sessions']:,}"
        )
        expect(page.get_by_test_id("company-link")).to_have_text(profile["company_name"])
        ready(page, "overview")
        shot(page, "user-overview")

        # Every tab, each against the API for the period the page shows.
        page.get_by_test_id("tab-sessions").click()
        ready(page, "sessions")
        frm, to = shown_period(page)
        sessions = api.get(f"{user_api}/sessions", **{"from": frm, "to": to, "limit": 200})
        expect(page.get_by_test_id("session-row")).to_have_count(len(sessions))
        assert sessions, "the member has sessions in the last 30 days"
        check_session(page, sessions)
        shot(page, "user-sessions")

        page.get_by_test_id("tab-sentiment").click()
        ready(page, "sentiment")
        frm, to = shown_period(page)
        responses = api.get(f"{user_api}/sentiment", **{"from": frm, "to": to})
        expect(page.get_by_test_id("sentiment-row")).to_have_count(len(responses))
        shot(page, "user-sentiment")

        page.get_by_test_id("tab-engagement").click()
        ready(page, "engagement")
        content = api.get(f"{user_api}/engagement")
        expect(page.get_by_test_id("engagement-row")).to_have_count(len(content))
        shot(page, "user-engagement")

        page.get_by_test_id("tab-properties").click()
        ready(page, "properties")
        traits = page.get_by_test_id("traits-table").get_by_test_id("property-row")
        keys = traits.evaluate_all("rows => rows.map(r => r.getAttribute('data-key'))")
        assert sorted(keys) == sorted(profile["properties"])
        auto = page.get_by_test_id("auto-properties-table").get_by_test_id("property-row")
        expect(auto).to_have_count(len(profile["auto_properties"]))
        shot(page, "user-properties")

        page.get_by_test_id("tab-segments").click()
        ready(page, "segments")
        assert "active-users" in profile["segments"]
        expect(page.get_by_test_id("segment-row")).to_have_count(len(profile["segments"]))
        expect(
            page.locator("[data-testid=segment-row][data-segment-id=active-users]")
        ).to_contain_text("Active users")
        shot(page, "user-segments")

        # Periods: the figures are the API's for the period asked, and the chart adds up.
        page.get_by_test_id("tab-overview").click()
        ready(page, "overview")

        def check_overview(frm: str | None, to: str | None, label: str) -> int:
            expect(page.get_by_test_id("period-range")).to_have_attribute("data-from", frm or "")
            expect(page.get_by_test_id("period-range")).to_have_attribute("data-to", to or "")
            expect(page.get_by_test_id("period-label")).to_have_text(label)
            expect(page.get_by_test_id("total-events-label")).to_have_text("Tracked events")
            overview = api.get(user_api, **{"from": frm, "to": to})["overview"]
            total = page.get_by_test_id("total-events")
            expect(total).to_have_attribute("data-value", str(overview["total_events"]))
            expect(total).to_have_text(f"{overview['total_events']:,}")
            sessions_count = page.get_by_test_id("sessions-count")
            expect(sessions_count).to_have_attribute("data-value", str(overview["sessions"]))
            days = api.get(f"{user_api}/daily", **{"from": frm, "to": to})["days"]
            chart = page.get_by_test_id("chart")
            expect(chart).to_have_attribute("data-days", str(len(days)))
            expect(chart).to_have_attribute("data-events", str(sum(d["events"] for d in days)))
            check_chart(page, days)
            return int(overview["total_events"])

        month = check_overview(
            utc_day(-29), utc_day(), f"Last 30 days ({utc_day(-29)} – {utc_day()})"
        )
        page.get_by_test_id("period-select").select_option("7d")
        week = check_overview(utc_day(-6), utc_day(), f"Last 7 days ({utc_day(-6)} – {utc_day()})")
        assert week != month
        shot(page, "user-overview-7d")

        busiest = max(api.get(f"{user_api}/daily")["days"], key=lambda d: d["events"])
        page.get_by_test_id("period-select").select_option("custom")
        page.get_by_test_id("period-from").fill(busiest["day"])
        page.get_by_test_id("period-to").fill(busiest["day"])
        page.get_by_test_id("period-apply").click()
        day = busiest["day"]
        assert check_overview(day, day, f"Custom range ({day} – {day})") == busiest["events"]
        shot(page, "user-overview-custom")

        page.get_by_test_id("period-select").select_option("all")
        assert check_overview(None, None, "All time") == profile["overview"]["total_events"]
        expect(page.get_by_test_id("chart").locator("rect.bar-events")).not_to_have_count(0)

        # Event search: case-insensitive, every match, nothing else.
        name = profile["overview"]["top_events"][0]["name"]
        needle = name.lower()[1:4]
        wanted = api.get(user_api, search=needle)["overview"]
        page.get_by_test_id("event-search").fill(needle.upper())
        events = page.locator(f"[data-testid=top-events][data-search={css(needle.upper())}]")
        expect(events).to_be_visible()
        expect(events.get_by_test_id("top-event-row")).to_have_count(len(wanted["top_events"]))
        for text in events.get_by_test_id("top-event-row").all_inner_texts():
            assert needle in text.lower(), (needle, text)
        pages = page.get_by_test_id("top-pages").get_by_test_id("top-page-row")
        expect(pages).to_have_count(len(wanted["top_pages"]))
        for text in pages.all_inner_texts():
            assert needle in text.lower(), (needle, text)
        shot(page, "user-event-search")

        # Export CSV: a download made with the bearer token.
        with page.expect_download() as download:
            page.get_by_test_id("btn-export").click()
        lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
        assert lines[0] == "section,item,field,value"
        assert download.value.suggested_filename.endswith(".csv")

        # The company: its figures are the API's; its users tab links back to the member.
        page.get_by_test_id("company-link").click()
        ready(page, "overview")
        before = api.get(company_api)
        expect(page.get_by_test_id("company-id")).to_have_text(company_id)
        assert figure(page, "company-users-count") == before["users_count"]
        assert figure(page, "company-total-sessions") == before["total_sessions"]
        expect(page.get_by_test_id("company-first-seen")).to_have_text(before["first_seen_at"][:10])
        expect(page.get_by_test_id("company-signed-up")).to_have_text(
            (before["signed_up_at"] or "—")[:10]
        )
        shot(page, "company-overview")
        page.get_by_test_id("tab-users").click()
        ready(page, "users")
        members = api.get(f"{company_api}/users")
        expect(page.get_by_test_id("company-user-row")).to_have_count(len(members))
        shot(page, "company-users")
        page.locator(f"[data-testid=company-user-row][data-user-id={css(user_id)}]").get_by_test_id(
            "user-link"
        ).click()
        expect(page.get_by_test_id("profile-id")).to_have_text(user_id)

        # Exclude, confirmed in the page's dialog; the page shows it once the worker applied it.
        sessions_of_member = api.get(user_api)["total_sessions"]
        page.get_by_test_id("btn-exclude").click()
        expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
        page.get_by_test_id("confirm-reason").fill("e2e: explorer page test")
        shot(page, "exclude-confirm")
        page.get_by_test_id("confirm-ok").click()
        expect(page.get_by_test_id("notice")).to_contain_text(
            "command sent; the worker applies it shortly"
        )
        expect(page.get_by_test_id("btn-include")).to_be_visible(timeout=60_000)
        expect(page.get_by_test_id("excluded-badge")).to_be_visible()
        shot(page, "user-excluded")

        # Merge another id into the user from its page (docs/design.md §7): listed once the
        # worker applied it; then unmerged from the same list.
        ghost = "anon-e2e-visitor"
        page.get_by_test_id("btn-merge").click()
        page.get_by_test_id("merge-id").fill(ghost)
        page.get_by_test_id("confirm-ok").click()
        merged = page.locator(f"[data-testid=merged-id][data-id={css(ghost)}]")
        expect(merged).to_be_visible(timeout=60_000)
        assert api.get(user_api)["merged_ids"] == [ghost]
        shot(page, "user-merged")
        merged.get_by_test_id("btn-unmerge").click()
        expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
        page.get_by_test_id("confirm-ok").click()
        expect(merged).to_have_count(0, timeout=60_000)
        assert api.get(user_api)["merged_ids"] == []

        # The company stops counting the member: its users and its sessions drop.
        page.get_by_test_id("company-link").click()
        deadline = time.monotonic() + 60
        while True:
            ready(page, "overview")
            users_now = figure(page, "company-users-count")
            sessions_now = figure(page, "company-total-sessions")
            if (users_now, sessions_now) == (
                before["users_count"] - 1,
                before["total_sessions"] - sessions_of_member,
            ):
                break
            assert time.monotonic() < deadline, (users_now, sessions_now, before)
            time.sleep(1)
            page.reload()
        shot(page, "company-after-exclude")
        page.get_by_test_id("tab-users").click()
        ready(page, "users")
        excluded_row = page.locator(f"[data-testid=company-user-row][data-user-id={css(user_id)}]")
        expect(excluded_row.get_by_test_id("excluded-badge")).to_be_visible()

        # The companies list: last seen first, other orders, and a search by name prefix.
        page.get_by_test_id("nav-companies").click()
        companies_api = f"/api/apps/{q(app)}/companies"
        company_rows = page.get_by_test_id("company-row")

        def company_ids() -> list[str | None]:
            return company_rows.evaluate_all(
                "rows => rows.map(r => r.getAttribute('data-company-id'))"
            )

        def listed(**params: Any) -> list[str]:
            return [c["company_id"] for c in api.get(companies_api, **params)["companies"]]

        newest = api.get(companies_api, sort="last_seen")
        assert [c["last_seen_at"] for c in newest["companies"]] == sorted(
            (c["last_seen_at"] for c in newest["companies"]), reverse=True
        )
        expect(page.get_by_test_id("companies-total")).to_have_text(f"{newest['total']} companies")
        wait_for(lambda: company_ids() == listed(sort="last_seen"), what="companies by last seen")
        shot(page, "companies")
        most = api.get(companies_api, sort="users")["companies"]
        assert [c["users_count"] for c in most] == sorted(
            (c["users_count"] for c in most), reverse=True
        )
        assert [c["company_id"] for c in most] != listed(sort="last_seen")
        page.get_by_test_id("company-sort").select_option("users")
        wait_for(lambda: company_ids() == [c["company_id"] for c in most], what="most users")
        expect(page).to_have_url(re.compile(r"companies\?sort=users$"))
        typed = (company["name"] or company_id)[:3].lower()
        found = listed(q=typed)
        assert company_id in found
        page.get_by_test_id("company-search").fill(typed)
        wait_for(lambda: company_ids() == found, what="companies found")
        expect(page.get_by_test_id("companies-total")).to_have_text(
            re.compile(rf"^{len(found)}\+? matching")
        )
        shot(page, "companies-search")
        page.locator(
            f"[data-testid=company-row][data-company-id={css(company_id)}]"
        ).get_by_test_id("company-link").click()
        expect(page.get_by_test_id("company-id")).to_have_text(company_id)

        # Awkward ids reach their own page; an unknown user shows the API's error.
        for odd in [
            u["user_id"] for u in everyone["users"] if not PLAIN_ID.fullmatch(u["user_id"])
        ]:
            page.goto(f"{api.base}/#/apps/{q(app)}/users/{q(odd)}")
            expect(page.get_by_test_id("profile-id")).to_have_text(odd)
            assert page.get_by_test_id("profile-id").text_content() == odd
            ready(page, "overview")
        page.goto(f"{api.base}/#/apps/{q(app)}/users/no-such-user-e2e")
        expect(page.get_by_test_id("error-banner")).to_be_visible()
        expect(page.get_by_test_id("error-banner")).to_contain_text("not found")
        shot(page, "error-banner")

        # The API's documentation: Swagger UI from this server, under the same policy.
        page.goto(f"{api.base}/api/docs")
        expect(page.get_by_text("/api/apps/{app_id}/users", exact=True).first).to_be_visible()
        shot(page, "api-docs")

        context.close()
        assert not crashes, crashes
        assert not refused, refused
    print(f"setup {setup_done - started:.1f} s, browser {time.monotonic() - setup_done:.1f} s")
