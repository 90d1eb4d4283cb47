"""The explorer API's response shapes, for its OpenAPI document: the §4 views of docs/design.md
(projections/views.py builds them) and the explorer's own lists."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.models import CommandName

Time = str | None  # RFC 3339 UTC with milliseconds and Z


class Error(BaseModel):
    error: str = Field(description="what was wrong, in one line")


class Count(BaseModel):
    count: int


class EventCount(Count):
    name: str


class PageCount(Count):
    page: str


class Overview(BaseModel):
    from_: str | None = Field(alias="from")
    to: str | None
    total_events: int
    sessions: int
    avg_session_seconds: float
    top_events: list[EventCount]
    top_pages: list[PageCount]


class User(BaseModel):
    app_id: str
    user_id: str
    name: str | None
    email: str | None
    country: str | None
    company_id: str | None
    company_name: str | None
    signed_up_at: Time
    first_seen_at: Time
    last_seen_at: Time
    total_sessions: int
    excluded: bool
    content_reset_at: Time
    properties: dict[str, Any]
    auto_properties: dict[str, Any]
    segments: list[str]
    nps_latest: int | None
    merged_ids: list[str] = Field(description="the ids merged into this user (aliases, §7)")
    overview: Overview


class UsersRow(BaseModel):
    user_id: str
    name: str | None
    email: str | None
    company_id: str | None
    company_name: str | None
    signed_up_at: Time
    last_seen_at: Time
    total_sessions: int
    excluded: bool


class UsersPage(BaseModel):
    users: list[UsersRow]
    next_cursor: str | None
    total: int | None = Field(description="users of the app (null when searching)")


class Step(BaseModel):
    type: str
    name: str | None
    page: str | None
    at: Time


class Session(BaseModel):
    started_at: Time
    ended_at: Time
    duration_seconds: float
    events: int
    breakdown: list[Step]


class Response(BaseModel):
    survey_id: str
    survey_type: str | None
    question: str | None
    score: int | None
    answer: str | None
    page: str | None
    responded_at: Time


class Content(BaseModel):
    content_id: str
    content_type: str | None
    content_name: str | None
    last_action: str | None
    last_action_at: Time
    last_page: str | None
    interactions: int
    status: str | None
    steps_completed: list[int]


class Day(BaseModel):
    day: str
    events: int
    sessions: int


class Daily(BaseModel):
    days: list[Day]


class Company(BaseModel):
    app_id: str
    company_id: str
    name: str | None
    signed_up_at: Time
    first_seen_at: Time
    last_seen_at: Time
    total_sessions: int
    users_count: int
    properties: dict[str, Any]
    segments: list[str]
    overview: Overview


class CompaniesRow(BaseModel):
    company_id: str
    name: str | None
    users_count: int
    total_sessions: int
    signed_up_at: Time
    last_seen_at: Time


class CompaniesPage(BaseModel):
    companies: list[CompaniesRow]
    next_cursor: str | None
    total: int | None = Field(description="companies of the app (null when searching)")


class CompanyUser(BaseModel):
    user_id: str
    name: str | None
    email: str | None
    last_seen_at: Time
    total_sessions: int
    excluded: bool


class Segment(BaseModel):
    id: str
    app_id: str
    name: str
    scope: Literal["user", "company"]
    members: int
    state: Literal["ready", "evaluating"]
    evaluated: int


class MembersPage(BaseModel):
    members: list[str]
    next_cursor: str | None


class Apps(BaseModel):
    apps: list[str]


class CommandIn(BaseModel):
    command: CommandName
    reason: str | None = Field(default=None, max_length=500)


class MergeIn(BaseModel):
    previous_id: str = Field(
        min_length=1, max_length=256, description="the id to merge into this user"
    )


class MergeSent(BaseModel):
    event_id: str
    previous_id: str
    user_id: str
    timestamp: int = Field(description="epoch milliseconds")


class CommandSent(BaseModel):
    command_id: str
    command: str
    user_id: str
    issued_at: int = Field(description="epoch milliseconds")


# The ingestion API (explorer/ingest.py): its own OpenAPI document, /api/ingest/openapi.json.
WireRecord = dict[str, Any]


class IngestBatch(BaseModel):
    records: list[WireRecord] = Field(
        min_length=1,
        description="records as `profiles schemas export` describes them (identify, track, "
        "page, feedback, content, alias), each of the write key's app; "
        "at most PROFILES_INGEST_BURST",
    )


class RecordAnswer(BaseModel):
    index: int = Field(description="the record's place in the request, from 0")
    event_id: str | None = Field(description="the record's event_id, when it has one")
    status: Literal["accepted", "refused"]
    reason: str | None = Field(
        default=None,
        description="why it was refused, as the dead letters say it: invalid_field, "
        "unknown_type, timestamp_too_old, record_too_large, … ; wrong_app (not the key's "
        "app), command_refused (an operator's record)",
    )
    detail: str | None = Field(default=None, description="the refusal in words, one line")


class Ingested(BaseModel):
    accepted: int = Field(description="records Kafka acknowledged")
    refused: int = Field(description="records refused, never sent")
    results: list[RecordAnswer]
