"""Every view of every user and company through the real CLI, against the batch reference."""

from __future__ import annotations

from typing import Any

import reference as ref


def _by(records: list[dict[str, Any]], key: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault((r["app_id"], r[key]), []).append(r)
    return out


def period_of(records: list[dict[str, Any]]) -> tuple[str, str]:
    days = sorted({ref.day_of(ref.record_ms(r)) for r in records})
    return days[len(days) // 3], days[2 * len(days) // 3]


Segments = dict[tuple[str, str], list[str]]  # (scope, entity id) -> member segment ids


def _with_segments(view: Any, scope: str, entity: str, segments: Segments | None) -> Any:
    """The reference knows no segment definitions: put in the expected memberships."""
    if segments is None or not isinstance(view, dict):
        return view
    return {**view, "segments": segments.get((scope, entity), [])}


def compare_users(
    pipeline: Any,
    records: list[dict[str, Any]],
    now_ms: int,
    every: int = 1,
    segments: Segments | None = None,
) -> int:
    """All user views of every user (of every `every`-th); returns how many were compared."""
    existing = sorted(ref.user_ids(records, now_ms=now_ms))
    users = existing[::every]
    frm, to = period_of(records)
    by_user = _by(records, "user_id")
    # company_name is the company's name across users: the reference needs every identify
    # naming a company, and the commands that may erase them
    shared = [
        r
        for r in records
        if r["type"] == "command" or (r["type"] == "identify" and r.get("company"))
    ]
    # with identity links (§7) a user's views need the records of every id merged into it
    linked = any(r["type"] == "alias" for r in records)
    mismatches = []
    for app, user in users:
        mine = (
            records
            if linked
            else by_user[(app, user)] + [r for r in shared if r["user_id"] != user]
        )
        period = {"frm": frm, "to": to}
        expected = {
            "user": _with_segments(
                ref.user_view(mine, app, user, now_ms=now_ms), "user", user, segments
            ),
            "user-period": _with_segments(
                ref.user_view(mine, app, user, now_ms=now_ms, search="e", **period),
                "user",
                user,
                segments,
            ),
            "sessions": ref.sessions_view(mine, app, user, now_ms=now_ms),
            "sessions-period": ref.sessions_view(mine, app, user, now_ms=now_ms, limit=3, **period),
            "sentiment": ref.sentiment_view(mine, app, user, now_ms=now_ms),
            "engagement": ref.engagement_view(mine, app, user, now_ms=now_ms),
        }
        actual = {
            "user": pipeline.cli_json("user", app, user),
            "user-period": pipeline.cli_json(
                "user", app, user, "--from", frm, "--to", to, "--search", "e"
            ),
            "sessions": pipeline.cli_json("sessions", app, user),
            "sessions-period": pipeline.cli_json(
                "sessions", app, user, "--from", frm, "--to", to, "--limit", "3"
            ),
            "sentiment": pipeline.cli_json("sentiment", app, user),
            "engagement": pipeline.cli_json("engagement", app, user),
        }
        mismatches += [(app, user, view) for view in expected if actual[view] != expected[view]]
    assert not mismatches, f"{len(mismatches)} user views differ, first: {mismatches[:5]}"
    # Users that only had commands, or were deleted with nothing after: gone, exit code 3;
    # and ids merged into another: exit code 3, naming that one.
    for app, user in sorted(set(by_user) - set(existing))[::every]:
        result = pipeline.cli("user", app, user, "--json")
        root = ref.merged_into(records, app, user) if linked else None
        said = "not found" if root is None else f"merged into {root!r}"
        assert result.exit_code == 3 and said in result.stderr, (app, user, result.stderr)
    return len(users)


def compare_companies(
    pipeline: Any, records: list[dict[str, Any]], now_ms: int, segments: Segments | None = None
) -> int:
    """Company, company users and the app users list; returns how many companies."""
    companies = sorted(ref.company_ids(records, now_ms=now_ms))
    frm, to = period_of(records)
    mismatches = []
    for app, company in companies:
        expected = {
            "company": _with_segments(
                ref.company_view(records, app, company, now_ms=now_ms),
                "company",
                company,
                segments,
            ),
            "company-period": _with_segments(
                ref.company_view(records, app, company, now_ms=now_ms, frm=frm, to=to, search="a"),
                "company",
                company,
                segments,
            ),
            "users": ref.company_users_view(records, app, company, now_ms=now_ms),
        }
        actual = {
            "company": pipeline.cli_json("company", app, company),
            "company-period": pipeline.cli_json(
                "company", app, company, "--from", frm, "--to", to, "--search", "a"
            ),
            "users": pipeline.cli_json("company-users", app, company),
        }
        mismatches += [(app, company, v) for v in expected if actual[v] != expected[v]]
    for app in sorted({a for a, _c in companies}):
        for sort in ("last_seen", "signed_up"):
            listed = pipeline.cli_json("users", app, "--sort", sort, "--limit", "10000")
            if listed["users"] != ref.users_list(records, app, now_ms=now_ms, sort=sort):
                mismatches.append((app, "users list", sort))
    assert not mismatches, f"{len(mismatches)} company views differ, first: {mismatches[:5]}"
    return len(companies)
