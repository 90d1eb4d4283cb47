"""Profile views: a user, their sessions, sentiment and engagement, a company, its users, and
the users list of an app."""

from __future__ import annotations

import click

from cli.common import (
    emit,
    period_options,
    read,
)


@click.command()
@click.argument("app_id")
@click.argument("user_id")
@period_options
@click.option("--search", help="case-insensitive substring of event names and pages")
@click.option("--json", "as_json", is_flag=True)
def user(
    app_id: str, user_id: str, frm: str | None, to: str | None, search: str | None, as_json: bool
) -> None:
    """A user's profile: header, properties and the overview of a period."""
    from cli.tables import user_table

    emit(
        read(lambda r: r.user(app_id, user_id, frm=frm, to=to, search=search)),
        as_json,
        user_table,
    )


@click.command()
@click.argument("app_id")
@click.argument("user_id")
@period_options
@click.option("--limit", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
def sessions(
    app_id: str, user_id: str, frm: str | None, to: str | None, limit: int | None, as_json: bool
) -> None:
    """A user's sessions with their event breakdown, newest first."""
    from cli.tables import sessions_table

    emit(
        read(lambda r: r.sessions(app_id, user_id, frm=frm, to=to, limit=limit)),
        as_json,
        sessions_table,
    )


@click.command()
@click.argument("app_id")
@click.argument("user_id")
@period_options
@click.option("--json", "as_json", is_flag=True)
def sentiment(app_id: str, user_id: str, frm: str | None, to: str | None, as_json: bool) -> None:
    """A user's NPS and survey responses, newest first."""
    from cli.tables import sentiment_table

    emit(
        read(lambda r: r.sentiment(app_id, user_id, frm=frm, to=to)),
        as_json,
        sentiment_table,
    )


@click.command()
@click.argument("app_id")
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True)
def engagement(app_id: str, user_id: str, as_json: bool) -> None:
    """A user's flows, spotlights, banners and checklists with their status."""
    from cli.tables import engagement_table

    emit(read(lambda r: r.engagement(app_id, user_id)), as_json, engagement_table)


@click.command()
@click.argument("app_id")
@click.argument("company_id")
@period_options
@click.option("--search", help="case-insensitive substring of event names and pages")
@click.option("--json", "as_json", is_flag=True)
def company(
    app_id: str, company_id: str, frm: str | None, to: str | None, search: str | None, as_json: bool
) -> None:
    """A company's profile: header, properties and the overview of its counted members."""
    from cli.tables import company_table

    emit(
        read(lambda r: r.company(app_id, company_id, frm=frm, to=to, search=search)),
        as_json,
        company_table,
    )


@click.command("company-users")
@click.argument("app_id")
@click.argument("company_id")
@click.option("--json", "as_json", is_flag=True)
def company_users(app_id: str, company_id: str, as_json: bool) -> None:
    """Every current member of a company, last seen first (excluded ones flagged)."""
    from cli.tables import users_table

    emit(read(lambda r: r.company_users(app_id, company_id)), as_json, users_table)


@click.command()
@click.argument("app_id")
@click.option(
    "--sort", type=click.Choice(["last_seen", "signed_up"]), default="last_seen", show_default=True
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", help="the next_cursor of the previous page")
@click.option("--json", "as_json", is_flag=True)
def users(app_id: str, sort: str, limit: int, cursor: str | None, as_json: bool) -> None:
    """The app's users, newest first (excluded ones flagged), a page at a time."""
    from cli.tables import users_table

    rows, next_cursor = read(lambda r: r.users(app_id, sort=sort, limit=limit, cursor=cursor))
    if as_json:
        emit({"users": rows, "next_cursor": next_cursor}, True, users_table)
    else:
        users_table(rows)
        if next_cursor:
            click.echo(f"next page: --cursor '{next_cursor}'")
