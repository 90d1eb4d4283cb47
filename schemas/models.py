"""Pydantic models of every record: SDK events, operator commands, DLQ and company deltas."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from schemas.timefmt import parse_timestamp

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


_ALPHA_2 = re.compile(r"[A-Za-z]{2}")


def _country(value: str) -> str:
    if not _ALPHA_2.fullmatch(value):
        raise ValueError("country is an ISO 3166 alpha-2 code")
    return value.upper()


AppId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
UserId = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(_no_control)
]
EventId = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_no_control)
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
EpochMs = Annotated[
    int,
    BeforeValidator(parse_timestamp),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}],
            "description": "RFC 3339 with an offset, or integer epoch milliseconds",
        }
    ),
]
Scalar = str | int | float | bool | None
FlatMap = dict[str, Scalar]
Country = Annotated[str, AfterValidator(_country)]


class _Model(BaseModel):
    # Unknown fields are ignored so that newer SDKs can talk to older workers.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)


class Context(_Model):
    page_url: str | None = None
    page_title: str | None = None
    hostname: str | None = None
    country: Country | None = None
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    language: str | None = None


class _Event(_Model):
    app_id: AppId
    user_id: UserId
    event_id: EventId
    timestamp: EpochMs
    context: Context | None = None


class Company(_Model):
    id: Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_no_control)]
    name: str | None = None
    created_at: EpochMs | None = None
    traits: FlatMap = Field(default_factory=dict)


class Identify(_Event):
    type: Literal["identify"]
    traits: FlatMap = Field(default_factory=dict)
    company: Company | None = None

    @model_validator(mode="after")
    def _reserved_traits(self) -> Identify:
        created = self.traits.get("created_at")
        if created is not None:
            parse_timestamp(created)  # sign-up must be a timestamp; raises a clear error
        country = self.traits.get("country")
        if country is not None and (not isinstance(country, str) or _country(country) != country):
            raise ValueError("trait country is an upper-case ISO 3166 alpha-2 code")
        return self


class Track(_Event):
    type: Literal["track"]
    name: Name
    kind: Literal["tracked", "labeled", "feature_tag"] = "tracked"
    properties: FlatMap = Field(default_factory=dict)


class Page(_Event):
    type: Literal["page"]
    url: Annotated[str, StringConstraints(min_length=1)]
    title: str | None = None


class Feedback(_Event):
    type: Literal["feedback"]
    survey_id: Name
    survey_type: Literal["nps", "survey"]
    question: str | None = None
    score: Annotated[int, Field(ge=0, le=10, strict=True)] | None = None
    answer: str | None = None

    @model_validator(mode="after")
    def _nps_has_score(self) -> Feedback:
        if self.survey_type == "nps" and self.score is None:
            raise ValueError("an nps response needs a score")
        return self


class Content(_Event):
    type: Literal["content"]
    content_id: Name
    content_type: Literal["flow", "spotlight", "banner", "checklist"]
    content_name: str | None = None
    action: Literal["seen", "started", "step_completed", "completed", "dismissed", "clicked"]
    step: Annotated[int, Field(strict=True, ge=0)] | None = None


class Alias(_Event):
    """`user_id` is the id the person is known by from now on; `previous_id` the id it was
    tracked under before (docs/design.md §7). Keyed by the previous id: it lands where that
    id's records are."""

    type: Literal["alias"]
    previous_id: UserId

    @model_validator(mode="after")
    def _two_ids(self) -> Alias:
        if self.previous_id == self.user_id:
            raise ValueError("previous_id must differ from user_id")
        return self


CommandName = Literal["exclude", "include", "reset_content", "delete", "unmerge"]


class Command(_Model):
    type: Literal["command"]
    command: CommandName
    command_id: EventId
    issued_at: EpochMs
    app_id: AppId
    user_id: UserId
    reason: str | None = None


Event = Identify | Track | Page | Feedback | Content
Interaction = Track | Page | Feedback | Content
Record = Annotated[
    Identify | Track | Page | Feedback | Content | Alias | Command, Field(discriminator="type")
]
RECORD_TYPES = ("identify", "track", "page", "feedback", "content", "alias", "command")

# Built once: validation of every incoming record goes through this adapter.
RECORD_ADAPTER: TypeAdapter[Record] = TypeAdapter(Record)


class DeadLetter(_Model):
    """What profiles.dlq holds for a record that could not be accepted."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    failed_at: int


class MemberPart(_Model):
    """One user's part in one company at one user-step version: absolute, never a
    difference, so a redelivered or stale part changes nothing (the company keeps per member
    and per day the newest version it was given)."""

    user_id: UserId
    version: int
    facts: dict[str, Any] | None  # what the user's identifies say of the company (LWW triples)
    member: dict[str, Any] | None  # the user's users-tab row; None when not a current member
    days: dict[str, dict[str, Any] | None]  # figures of the days that changed (None: gone)
    full: bool = False  # `days` is every day the user counts in the company: the others go


class CompanyDelta(_Model):
    """What one batch of user steps gives one company (profiles.company-deltas, keyed by
    company): one message per company and batch, one part per user."""

    type: Literal["company_delta"] = "company_delta"
    app_id: AppId
    company_id: str
    namespace: str  # the projection namespace the user steps wrote
    parts: list[MemberPart]
