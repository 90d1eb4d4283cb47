"""The explorer's HTTP API on real Kafka and Redis: every endpoint against the batch reference
of docs/design.md §3 (or the CLI, itself compared with it elsewhere), tokens, bad parameters."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import reference as ref
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from pipelinekit import ROOT, Pipeline

from explorer.api import create_app
from explorer.tokens import Tokens
from projections.reader import Reader
from schemas.generate import generate
from streams.redis_clients import sync_client

# One process for the module: the fixture's pipeline is shared, and the last test checks
# that the others called every documented endpoint.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("api")]

ADMIN = "admin-token-0123456789abcdef"
PATHS_CALLED: set[tuple[str, str]] = set()


class Site:
    """The pipeline's data, the API over it, and the batch reference."""

    def __init__(self, pipeline: Pipeline, records: list[dict[str, Any]], now_ms: int) -> None:
        self.pipeline = pipeline
        self.records = records
        self.now_ms = now_ms
        self.apps = sorted({r["app_id"] for r in records})
        self.token = {app: f"token-of-{app}-0123456789" for app in self.apps}
        spec = ",".join(f"{a}={t}" for a, t in self.token.items()) + f",*={ADMIN}"
        cfg = pipeline.settings
        self.reader = Reader(sync_client(cfg), cfg.namespace)
        self.client = TestClient(create_app(cfg, Tokens(spec), self.reader))

    def get(
        self, path: str, app: str | None = None, token: str | None = None, **params: Any
    ) -> Any:
        """GET as the app's own token (or `token`), noting the route for the coverage check."""
        headers = {"Authorization": f"Bearer {token or self.token[app or self.apps[0]]}"}
        return self.client.get(path, params=params, headers=headers)

    def ok(self, path: str, app: str, route: str, **params: Any) -> Any:
        PATHS_CALLED.add(("get", route))
        response = self.get(path, app, **params)
        assert response.status_code == 200, (path, params, response.text)
        return response.json()

    def user_ids(self, app: str) -> list[str]:
        return [row["user_id"] for row in ref.users_list(self.records, app, now_ms=self.now_ms)]


@pytest.fixture(scope="module")
def site(services: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    pipeline = Pipeline(tmp_path_factory.mktemp("api"))
    now_ms = int(time.time() * 1000)
    records = generate(
        users=90, apps=2, days=20, end_ms=now_ms, seed=21, commands=True, duplicates=0.03
    )
    records += odd_users(records[0]["app_id"], now_ms)
    try:
        pipeline.start_worker()
        assert pipeline.publish_file(records).returncode == 0
        pipeline.wait_idle()
        for definition in sorted((ROOT / "examples" / "segments").iterdir()):
            added = pipeline.cli("segments", "add", str(definition))
            assert added.exit_code == 0, added.output
        yield Site(pipeline, records, now_ms)
    finally:  # also when the setup fails: no worker outlives the module
        pipeline.stop()


# Ids that hold `/`, one of them with the name of a sub-view at its end.
ODD_IDS = ["odd/daily", "odd", "a/b/sessions"]


def odd_users(app: str, now_ms: int) -> list[dict[str, Any]]:
    """An identify and a few events of each odd id, a different number each."""
    out: list[dict[str, Any]] = []
    for n, user in enumerate(ODD_IDS, start=1):
        common = {"app_id": app, "user_id": user}
        out.append(
            {
                "type": "identify",
                **common,
                "event_id": f"{user}-i",
                "timestamp": now_ms - 7_200_000,
                "traits": {"name": f"Odd {n}"},
            }
        )
        out += [
            {
                "type": "track",
                **common,
                "event_id": f"{user}-{k}",
                "timestamp": now_ms - 3_600_000 + k * 1000,
                "name": "Odd Event",
            }
            for k in range(n)
        ]
    return out


def busiest_user(site: Site) -> tuple[str, str]:
    """(app, user) of a user with a company, sessions and a name."""
    app = site.apps[0]
    rows = ref.users_list(site.records, app, now_ms=site.now_ms)
    best = max(
        (r for r in rows if r["company_id"] and r["name"] and not r["excluded"]),
        key=lambda r: (r["total_sessions"], r["user_id"]),
    )
    return app, best["user_id"]


def test_user_views_equal_the_batch_reference(site: Site) -> None:
    app, user = busiest_user(site)
    base = f"/api/apps/{app}/users/{user}"
    expected = ref.user_view(site.records, app, user, now_ms=site.now_ms)
    got = site.ok(base, app, "/api/apps/{app_id}/users/{user_id}")
    assert {k: v for k, v in got.items() if k != "segments"} == {
        k: v for k, v in expected.items() if k != "segments"
    }
    assert got["segments"] == site.pipeline.cli_json("user", app, user)["segments"]

    days = sorted(
        {
            s["started_at"][:10]
            for s in ref.sessions_view(site.records, app, user, now_ms=site.now_ms)
        }
    )
    frm, to = days[len(days) // 3], days[-1]
    period = {"from": frm, "to": to}
    got = site.ok(base, app, "/api/apps/{app_id}/users/{user_id}", **period, search="e")
    want = ref.user_view(site.records, app, user, now_ms=site.now_ms, frm=frm, to=to, search="e")
    assert got["overview"] == want["overview"]

    sessions = site.ok(
        f"{base}/sessions", app, "/api/apps/{app_id}/users/{user_id}/sessions", **period
    )
    assert sessions == ref.sessions_view(
        site.records, app, user, now_ms=site.now_ms, frm=frm, to=to
    )
    limited = site.ok(
        f"{base}/sessions", app, "/api/apps/{app_id}/users/{user_id}/sessions", limit=2
    )
    assert limited == ref.sessions_view(site.records, app, user, now_ms=site.now_ms)[:2]
    sentiment = site.ok(f"{base}/sentiment", app, "/api/apps/{app_id}/users/{user_id}/sentiment")
    assert sentiment == ref.sentiment_view(site.records, app, user, now_ms=site.now_ms)
    engagement = site.ok(f"{base}/engagement", app, "/api/apps/{app_id}/users/{user_id}/engagement")
    assert engagement == ref.engagement_view(site.records, app, user, now_ms=site.now_ms)


def test_ids_holding_a_slash_reach_their_own_views(site: Site) -> None:
    app = site.apps[0]
    for user in ODD_IDS:
        path = f"/api/apps/{app}/users/{quote(user, safe='')}"
        got = site.ok(path, app, "/api/apps/{app_id}/users/{user_id}")
        assert (got["user_id"], got["name"]) == (user, f"Odd {ODD_IDS.index(user) + 1}")
        assert got == {
            **ref.user_view(site.records, app, user, now_ms=site.now_ms),
            "segments": got["segments"],
        }
        days = site.ok(f"{path}/daily", app, "/api/apps/{app_id}/users/{user_id}/daily")["days"]
        assert sum(d["events"] for d in days) == got["overview"]["total_events"]
        sessions = site.ok(f"{path}/sessions", app, "/api/apps/{app_id}/users/{user_id}/sessions")
        assert sessions == ref.sessions_view(site.records, app, user, now_ms=site.now_ms)
    # Not encoded, the slash splits the path: `odd` and its sub-view `daily`.
    plain = site.get(f"/api/apps/{app}/users/odd/daily", app)
    assert plain.status_code == 200 and "days" in plain.json()


def test_daily_figures_add_up_to_the_overview_every_day_listed(site: Site) -> None:
    app, user = busiest_user(site)
    company = site.ok(f"/api/apps/{app}/users/{user}", app, "/api/apps/{app_id}/users/{user_id}")[
        "company_id"
    ]
    today = date.today().isoformat()
    for route, entity_id in (
        ("/api/apps/{app_id}/users/{user_id}", user),
        ("/api/apps/{app_id}/companies/{company_id}", company),
    ):
        base = route.replace("{app_id}", app).rsplit("/", 1)[0] + f"/{entity_id}"
        for period in ({}, {"from": "2026-01-01", "to": today}):
            days = site.ok(f"{base}/daily", app, route + "/daily", **period)["days"]
            overview = site.ok(base, app, route, **period)["overview"]
            assert sum(d["events"] for d in days) == overview["total_events"] > 0
            assert sum(d["sessions"] for d in days) == overview["sessions"] > 0
            listed = [d["day"] for d in days]
            if period:  # every day of the period, oldest first, zeros included
                first = date.fromisoformat(period["from"])
                assert listed == [
                    (first + timedelta(days=n)).isoformat()
                    for n in range((date.fromisoformat(today) - first).days + 1)
                ]
            else:  # from the first to the last day with figures
                assert days[0]["events"] + days[0]["sessions"] > 0
                assert days[-1]["events"] + days[-1]["sessions"] > 0
                assert listed == sorted(set(listed))


def search_reference(rows: list[dict[str, Any]], q: str) -> list[str]:
    """What find_users promises: id matches (id order), then name, then email matches."""

    def first(row: dict[str, Any]) -> str | None:
        if row["user_id"].startswith(q):
            return "id"
        for name in ("name", "email"):
            if (row[name] or "").casefold().startswith(q.casefold()):
                return name
        return None

    out: list[str] = []
    for stage, key in (
        ("id", lambda r: r["user_id"].encode()),
        ("name", lambda r: ((r["name"] or "").casefold().encode(), r["user_id"].encode())),
        ("email", lambda r: ((r["email"] or "").casefold().encode(), r["user_id"].encode())),
    ):
        out += [r["user_id"] for r in sorted((r for r in rows if first(r) == stage), key=key)]
    return out


def pages(
    site: Site, app: str, path: str, field: str, limit: int, route: str = "", **params: Any
) -> list[Any]:
    """Every row of a paged list, `limit` a page."""
    out, cursor = [], None
    for _ in range(1000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = site.ok(path, app, route or path.replace(f"/{app}/", "/{app_id}/"), **query)
        out += page[field]
        cursor = page["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("paging never ended")


def test_users_list_and_search_page_through_exactly_the_reference(site: Site) -> None:
    app = site.apps[0]
    rows = ref.users_list(site.records, app, now_ms=site.now_ms)
    path = f"/api/apps/{app}/users"
    first = site.ok(path, app, "/api/apps/{app_id}/users", limit=7)
    assert first["total"] == len(rows) and first["users"] == rows[:7]
    assert pages(site, app, path, "users", 13) == rows
    by_signup = ref.users_list(site.records, app, now_ms=site.now_ms, sort="signed_up")
    assert pages(site, app, path, "users", 50, sort="signed_up") == by_signup

    _app, user = busiest_user(site)
    row = next(r for r in rows if r["user_id"] == user)
    probes = {
        user[:3],
        user,
        row["name"][:2].upper(),
        row["name"][:1].lower(),
        row["email"][:4].upper(),
        "zzzz-none",
    }
    for q in sorted(probes):
        found = pages(site, app, path, "users", 3, q=q)
        assert [r["user_id"] for r in found] == search_reference(rows, q), q
        assert all(r == next(x for x in rows if x["user_id"] == r["user_id"]) for r in found)
    assert user in [
        r["user_id"] for r in pages(site, app, path, "users", 50, q=row["name"][:2].upper())
    ]


def test_companies_list_and_views(site: Site) -> None:
    app = site.apps[0]
    expected = sorted(c for a, c in ref.company_ids(site.records, now_ms=site.now_ms) if a == app)
    path = f"/api/apps/{app}/companies"
    listed = pages(site, app, path, "companies", 4)
    assert [c["company_id"] for c in listed] == expected
    assert site.ok(path, app, "/api/apps/{app_id}/companies")["total"] == len(expected)
    for row in listed[:5]:
        company = row["company_id"]
        base = f"{path}/{company}"
        view = ref.company_view(site.records, app, company, now_ms=site.now_ms)
        got = site.ok(base, app, "/api/apps/{app_id}/companies/{company_id}")
        assert {k: v for k, v in got.items() if k != "segments"} == {
            k: v for k, v in view.items() if k != "segments"
        }
        assert {k: row[k] for k in ("name", "users_count", "total_sessions", "last_seen_at")} == {
            k: view[k] for k in ("name", "users_count", "total_sessions", "last_seen_at")
        }
        users = site.ok(f"{base}/users", app, "/api/apps/{app_id}/companies/{company_id}/users")
        assert users == ref.company_users_view(site.records, app, company, now_ms=site.now_ms)


def test_companies_list_orders_and_search_page_through_exactly_the_reference(
    site: Site,
) -> None:
    app = site.apps[0]
    path, route = f"/api/apps/{app}/companies", "/api/apps/{app_id}/companies"
    orders = {}
    for sort in ("last_seen", "users", "name", "id"):
        orders[sort] = ref.companies_list(site.records, app, now_ms=site.now_ms, sort=sort)
        assert pages(site, app, path, "companies", 3, route, sort=sort) == orders[sort], sort
    assert orders["last_seen"] != orders["id"] != orders["users"]  # the orders say something
    first = site.ok(path, app, route, sort="users", limit=2)
    assert first["total"] == len(orders["id"]) and first["companies"] == orders["users"][:2]
    name = next(c["name"] for c in orders["users"] if c["name"])
    for q in (name[:2].lower(), name[:2].upper(), orders["id"][0]["company_id"][:1], "zz-none"):
        want = ref.find_companies(site.records, app, q, now_ms=site.now_ms)
        assert pages(site, app, path, "companies", 2, route, q=q) == want, q
        assert site.ok(path, app, route, q=q)["total"] is None
    assert any(c["name"] == name for c in pages(site, app, path, "companies", 5, route, q=name))
    refused = site.get(path, app, sort="signed_up")
    assert refused.status_code == 400 and "sort" in refused.json()["error"]


def test_segments_and_their_members(site: Site) -> None:
    app = site.apps[0]
    listed = site.ok(f"/api/apps/{app}/segments", app, "/api/apps/{app_id}/segments")
    cli = [s for s in site.pipeline.cli_json("segments", "list") if s["app_id"] == app]
    assert listed == cli and listed, "the examples define segments of the first app"
    for segment in listed:
        path = f"/api/apps/{app}/segments/{segment['id']}/members"
        route = "/api/apps/{app_id}/segments/{segment_id}/members"
        members = pages(site, app, path, "members", 5, route)
        assert members == site.pipeline.cli_json("segments", "members", segment["id"])
        assert len(members) == segment["members"]
        other = site.apps[1]  # a segment is its own app's: another app's path does not find it
        path = f"/api/apps/{other}/segments/{segment['id']}/members"
        assert site.get(path, other).status_code == 404


def test_exports(site: Site) -> None:
    app, user = busiest_user(site)
    route = ("get", "/api/apps/{app_id}/users/{user_id}/export")
    PATHS_CALLED.add(route)
    as_json = site.get(f"/api/apps/{app}/users/{user}/export", app, format="json")
    assert as_json.status_code == 200
    assert "attachment" in as_json.headers["content-disposition"]
    doc = as_json.json()
    assert doc["profile"]["user_id"] == user
    assert doc["sessions"] == ref.sessions_view(site.records, app, user, now_ms=site.now_ms)
    as_csv = site.get(f"/api/apps/{app}/users/{user}/export", app, format="csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[0] == "section,item,field,value"
    assert f"profile,,user_id,{user}" in as_csv.text.splitlines()


def test_tokens_grant_their_own_apps_only(site: Site) -> None:
    a, b = site.apps[0], site.apps[1]
    user = site.user_ids(b)[0]
    assert site.get("/api/apps", a).json() == {"apps": [a]}
    assert site.get("/api/apps", token=ADMIN).json() == {"apps": site.apps}
    PATHS_CALLED.add(("get", "/api/apps"))
    for path in (
        f"/api/apps/{b}/users",
        f"/api/apps/{b}/users/{user}",
        f"/api/apps/{b}/users/{user}/sessions",
        f"/api/apps/{b}/companies",
        f"/api/apps/{b}/segments",
    ):
        assert site.get(path, token=site.token[a]).status_code == 403
        assert site.get(path, token=site.token[b]).status_code == 200
        assert site.get(path, token=ADMIN).status_code == 200
        assert site.client.get(path).status_code == 401
        wrong = site.get(path, token="not-a-token-at-all-1234")
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert "error" in wrong.json()
    refused = site.client.post(
        f"/api/apps/{b}/users/{user}/commands",
        json={"command": "exclude"},
        headers={"Authorization": f"Bearer {site.token[a]}"},
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("users/{user}", {"from": "2026-13-01"}, 400, "not a day"),
        ("users/{user}", {"from": "2026-11-10", "to": "2026-11-01"}, 400, "after"),
        ("users/{user}/daily", {"from": "2001-01-01", "to": "2026-01-01"}, 400, "at most"),
        ("users", {"limit": "0"}, 400, "'limit'"),
        ("users", {"limit": "many"}, 400, "'limit'"),
        ("users", {"sort": "name"}, 400, "'sort'"),
        ("users", {"form": "2026-11-01"}, 400, "unknown parameter 'form'"),
        ("users/{user}", {"from": "2026-1-01"}, 400, "'from'"),
        ("users", {"q": ""}, 400, "'q'"),
        ("users", {"q": "a", "cursor": "bogus"}, 400, "cursor"),
        ("users/{user}/sessions", {"limit": "-3"}, 400, "'limit'"),
        ("users/{user}/export", {"format": "xml"}, 400, "'format'"),
        ("users/no-such-user", {}, 404, "not found"),
        ("users/no-such-user/sessions", {}, 404, "not found"),
        ("users/no-such-user/daily", {}, 404, "not found"),
        ("users/no-such-user/export", {}, 404, "not found"),
        ("companies/no-such-company", {}, 404, "not found"),
        ("companies/no-such-company/users", {}, 404, "not found"),
        ("segments/no-such-segment/members", {}, 404, "not found"),
    ],
)
def test_bad_parameters_get_one_line_errors(
    site: Site, path: str, params: dict[str, str], status: int, says: str
) -> None:
    app, user = busiest_user(site)
    response = site.get(f"/api/apps/{app}/" + path.format(user=user), app, **params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error and "\n" not in error


def test_security_headers_and_no_reflected_host(site: Site) -> None:
    """Every answer carries the policy and its headers; the API's are never cached; /api/docs
    loads nothing from elsewhere; a trailing slash is not redirected to the request's Host."""
    app, user = busiest_user(site)
    answers = {
        "/": site.client.get("/"),
        "/api/docs": site.client.get("/api/docs"),
        "/api/apps": site.get("/api/apps", app),
        "user": site.get(f"/api/apps/{app}/users/{user}", app),
        "refused": site.client.get("/api/apps"),
    }
    for name, response in answers.items():
        headers = response.headers
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, name
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["x-frame-options"] == "DENY", name
        assert headers["referrer-policy"] == "no-referrer", name
        api = name != "/"
        assert (headers.get("cache-control") == "no-store") == api, name
    docs = answers["/api/docs"].text
    assert "swagger-ui-bundle.js" in docs and not re.search(r"(src|href)=\"(https?:)?//", docs)
    assert "<script>" not in docs  # no inline script: the policy would refuse it
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert site.client.get(f"/api/docs/assets/{asset}").status_code == 200
    slashed = site.client.get(
        f"/api/apps/{app}/users/", headers={"Host": "evil.example"}, follow_redirects=False
    )
    assert slashed.status_code == 404 and "evil.example" not in str(slashed.headers)


def test_an_app_without_data_is_not_found(site: Site) -> None:
    """An app with no users and no companies answers 404 as an unknown user does, not an
    empty list; an app with data and a search that finds nothing answers an empty page."""
    for path, params in (("users", {}), ("users", {"q": "a"}), ("companies", {})):
        response = site.get(f"/api/apps/no-such-app/{path}", token=ADMIN, **params)
        assert response.status_code == 404, response.text
        assert response.json() == {"error": "app 'no-such-app' has no users or companies"}
    found = site.get(f"/api/apps/{site.apps[0]}/users", q="no-such-user-prefix-at-all")
    assert found.status_code == 200 and found.json()["users"] == []


def test_bad_command_bodies(site: Site) -> None:
    app, user = busiest_user(site)
    headers = {"Authorization": f"Bearer {site.token[app]}"}
    url = f"/api/apps/{app}/users/{user}/commands"
    for body in ({"command": "explode"}, {}, {"command": "exclude", "reason": "x" * 501}):
        response = site.client.post(url, json=body, headers=headers)
        assert response.status_code == 400 and "error" in response.json(), body
    missing = site.client.post(
        f"/api/apps/{app}/users/nobody-here/commands", json={"command": "exclude"}, headers=headers
    )
    assert missing.status_code == 404


def wait_for(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "the worker did not apply the command in time"
        time.sleep(0.3)


def test_commands_reach_the_worker_and_change_the_company(site: Site) -> None:
    app, user = busiest_user(site)
    PATHS_CALLED.add(("post", "/api/apps/{app_id}/users/{user_id}/commands"))
    profile = site.get(f"/api/apps/{app}/users/{user}", app).json()
    company_path = f"/api/apps/{app}/companies/{profile['company_id']}"
    before = site.get(company_path, app).json()
    headers = {"Authorization": f"Bearer {site.token[app]}"}
    url = f"/api/apps/{app}/users/{user}/commands"

    sent = site.client.post(url, json={"command": "exclude", "reason": "api test"}, headers=headers)
    assert sent.status_code == 202, sent.text
    assert sent.json()["command"] == "exclude" and sent.json()["user_id"] == user
    after = wait_for(
        lambda: (
            (c := site.get(company_path, app).json())["users_count"] == before["users_count"] - 1
            and c
        )
    )
    assert after["total_sessions"] == before["total_sessions"] - profile["total_sessions"]
    assert site.get(f"/api/apps/{app}/users/{user}", app).json()["excluded"] is True

    sent = site.client.post(url, json={"command": "include"}, headers=headers)
    assert sent.status_code == 202
    wait_for(lambda: site.get(company_path, app).json()["users_count"] == before["users_count"])
    assert site.get(company_path, app).json()["total_sessions"] == before["total_sessions"]


def test_a_merge_and_its_unmerge_through_the_api(site: Site) -> None:
    """docs/design.md §7: another user merged into the busiest one counts for it, answers 404
    naming it, and stands alone again after an unmerge; every figure comes back."""
    app, user = busiest_user(site)
    PATHS_CALLED.add(("post", "/api/apps/{app_id}/users/{user_id}/merges"))
    rows = ref.users_list(site.records, app, now_ms=site.now_ms)
    other = next(r["user_id"] for r in rows if r["user_id"] not in (user, *ODD_IDS))
    headers = {"Authorization": f"Bearer {site.token[app]}"}
    before = site.get(f"/api/apps/{app}/users/{user}", app).json()
    theirs = site.get(f"/api/apps/{app}/users/{other}", app).json()

    refused = site.client.post(
        f"/api/apps/{app}/users/{user}/merges", json={"previous_id": user}, headers=headers
    )
    assert refused.status_code == 400, refused.text
    not_merged = site.client.post(
        f"/api/apps/{app}/users/{other}/commands", json={"command": "unmerge"}, headers=headers
    )
    assert not_merged.status_code == 404, not_merged.text

    sent = site.client.post(
        f"/api/apps/{app}/users/{user}/merges", json={"previous_id": other}, headers=headers
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["previous_id"] == other and sent.json()["user_id"] == user
    merged = wait_for(
        lambda: (
            (p := site.get(f"/api/apps/{app}/users/{user}", app).json())["merged_ids"] == [other]
            and p
        )
    )
    events = before["overview"]["total_events"] + theirs["overview"]["total_events"]
    assert merged["overview"]["total_events"] == events
    gone = site.get(f"/api/apps/{app}/users/{other}", app)
    assert gone.status_code == 404
    assert gone.json() == {"error": f"user {other!r} of app {app!r} was merged into {user!r}"}

    undo = site.client.post(
        f"/api/apps/{app}/users/{other}/commands", json={"command": "unmerge"}, headers=headers
    )
    assert undo.status_code == 202, undo.text
    wait_for(lambda: site.get(f"/api/apps/{app}/users/{other}", app).status_code == 200)
    wait_for(lambda: site.get(f"/api/apps/{app}/users/{user}", app).json() == before)
    assert site.get(f"/api/apps/{app}/users/{other}", app).json() == theirs


@pytest.fixture(scope="module")
def api_schema(site: Site) -> Any:
    return schemathesis.openapi.from_asgi("/api/openapi.json", site.client.app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_documented_contract(case: Any, site: Site) -> None:
    """Schemathesis: generated (also invalid) parameters and bodies on every operation get a
    documented status, and a body in its documented schema; never a 5xx."""
    # Left out: "schema-valid data is accepted" (two rules span parameters, which a schema
    # cannot state: from after to, a cursor of another list; 400 by design, tested above) and
    # "invalid data is rejected" (it counts `cursor=-4.8e+16` as a number, though every query
    # value is a string on the wire, and the bearer header here replaces its invalid one; the
    # parametrized test above sends the invalid parameters).
    case.call_and_validate(
        headers={"Authorization": f"Bearer {ADMIN}"},
        excluded_checks=[
            schemathesis.checks.positive_data_acceptance,
            schemathesis.checks.negative_data_rejection,
        ],
    )


def test_the_openapi_document_lists_every_endpoint_the_tests_call(site: Site) -> None:
    doc = site.client.get("/api/openapi.json").json()
    documented = {
        (method, path.replace(":path", ""))
        for path, item in doc["paths"].items()
        for method in item
    }
    assert documented - PATHS_CALLED == set()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_page_and_its_files_are_served(site: Site) -> None:
    page = site.client.get("/")
    assert page.status_code == 200 and "<script" in page.text
    assert site.client.head("/").status_code == 200  # health checks probe with HEAD
    for name in sorted(p.name for p in (ROOT / "explorer" / "static").iterdir()):
        assert site.client.get(f"/static/{name}").status_code == 200, name


def test_serve_refuses_to_start_in_one_line(services: None) -> None:
    """A bad token spec, a port in use, an unreachable Redis: one line and a non-zero exit."""
    import socket
    import subprocess

    from pipelinekit import PROFILES

    def serve(port: int, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PROFILES, "serve", "--port", str(port)],
            env={"PATH": "/usr/bin:/bin", "PROFILES_API_TOKENS": f"*={ADMIN}", **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad = serve(0, PROFILES_API_TOKENS="app-1=short")
    assert bad.returncode == 78  # a bad setting (EX_CONFIG)
    assert bad.stderr.count("\n") == 1 and "PROFILES_API_TOKENS" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = serve(taken.getsockname()[1])
    assert busy.returncode == 1
    assert busy.stderr.count("\n") == 1 and "cannot listen" in busy.stderr
    gone = serve(0, PROFILES_REDIS_URL="redis://127.0.0.1:1/0")
    assert gone.returncode == 1
    assert gone.stderr.count("\n") == 1 and "Redis is not reachable" in gone.stderr
