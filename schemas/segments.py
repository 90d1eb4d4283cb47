"""Segment definitions as data: a named, scoped tree of AND/OR groups of conditions (issue 6).

A definition arrives as a dict (from JSON or YAML) and goes through `parse_segment`, which
returns a frozen `Segment` or raises ValueError with a one-line message. What a condition
means on a profile lives in `projections/segments.py`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

MAX_DEPTH = 5  # the root group is depth 1
MAX_DAYS = 36_500
MAX_ITEMS = 100


def _not_bool(value: Any) -> Any:
    # pydantic's lax int/float accept booleans; a count or a score is never true/false.
    if isinstance(value, bool):
        raise ValueError("a number is expected, not a boolean")
    return value


Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Scalar = str | int | float | bool
Number = Annotated[int | float, BeforeValidator(_not_bool)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=0)]
Days = Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=MAX_DAYS)]
WindowDays = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=MAX_DAYS)]
Comparison = Literal["eq", "neq", "gt", "gte", "lt", "lte"]
PropertyOperator = Literal[
    "eq", "neq", "contains", "starts_with", "gt", "gte", "lt", "lte", "exists", "in"
]


class _Model(BaseModel):
    # Unlike wire records, a definition is written by people: a typo must not pass silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


class PropertyCondition(_Model):
    """A user's `properties`/`auto_properties`, or the properties of the user's company."""

    kind: Literal["property"]
    source: Literal["properties", "auto_properties", "company_properties"]
    key: Text
    operator: PropertyOperator
    value: Scalar | Annotated[list[Scalar], Field(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> PropertyCondition:
        if self.operator == "exists":
            if self.value is not None:
                raise ValueError("operator exists takes no value")
        elif self.operator == "in":
            if not isinstance(self.value, list):
                raise ValueError("operator in needs a list value")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"operator {self.operator} needs a single value")
        elif self.operator in ("contains", "starts_with") and not isinstance(self.value, str):
            raise ValueError(f"operator {self.operator} needs a string value")
        return self


class TimeCondition(_Model):
    """A timestamp of the header within the last N days, or before the last N days."""

    kind: Literal["time"]
    field: Literal["last_seen_at", "signed_up_at", "first_seen_at"]
    within_days: Days | None = None
    before_days: Days | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TimeCondition:
        if (self.within_days is None) == (self.before_days is None):
            raise ValueError("exactly one of within_days and before_days is needed")
        return self


class NumberCondition(_Model):
    kind: Literal["number"]
    field: Literal["total_sessions", "nps_latest"]
    operator: Comparison
    value: Number


class EventCondition(_Model):
    """A track event performed at least and/or at most N times over the last `days` UTC days."""

    kind: Literal["event"]
    name: Text
    at_least: Count | None = None
    at_most: Count | None = None
    days: WindowDays

    @model_validator(mode="after")
    def _bounds(self) -> EventCondition:
        if self.at_least is None and self.at_most is None:
            raise ValueError("at least one of at_least and at_most is needed")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError("at_least is greater than at_most")
        return self


class PageCondition(_Model):
    """A page key (docs/design.md §3) visited over the last `days` UTC days."""

    kind: Literal["page"]
    page: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    days: WindowDays


class ContentCondition(_Model):
    kind: Literal["content"]
    content_id: Text
    status: Literal["not_started", "seen", "in_progress", "completed", "dismissed"]


class ExcludedCondition(_Model):
    kind: Literal["excluded"]
    value: bool


Condition = (
    PropertyCondition
    | TimeCondition
    | NumberCondition
    | EventCondition
    | PageCondition
    | ContentCondition
    | ExcludedCondition
)
CONDITION_KINDS = ("property", "time", "number", "event", "page", "content", "excluded")


def _item_tag(value: Any) -> str | None:
    """A group is told apart by its `op`; a condition by its `kind`."""
    if isinstance(value, dict):
        return "group" if "op" in value and "kind" not in value else value.get("kind")
    return "group" if isinstance(value, Group) else getattr(value, "kind", None)


Item = Annotated[
    Annotated[PropertyCondition, Tag("property")]
    | Annotated[TimeCondition, Tag("time")]
    | Annotated[NumberCondition, Tag("number")]
    | Annotated[EventCondition, Tag("event")]
    | Annotated[PageCondition, Tag("page")]
    | Annotated[ContentCondition, Tag("content")]
    | Annotated[ExcludedCondition, Tag("excluded")]
    | Annotated["Group", Tag("group")],
    Discriminator(
        _item_tag,
        custom_error_type="invalid_item",
        custom_error_message="an item is a group (op) or a condition with a known kind "
        f"({', '.join(CONDITION_KINDS)})",
    ),
]


class Group(_Model):
    op: Literal["and", "or"]
    conditions: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)]

    def depth(self) -> int:
        return 1 + max((c.depth() for c in self.conditions if isinstance(c, Group)), default=0)

    @model_validator(mode="after")
    def _shallow(self) -> Group:
        if self.depth() > MAX_DEPTH:
            raise ValueError(f"groups are nested more than {MAX_DEPTH} deep")
        return self


Group.model_rebuild()


def user_only(c: Condition) -> bool:
    """Conditions that only mean something for a user, not for a company."""
    if isinstance(c, PropertyCondition):
        return c.source != "properties"
    if isinstance(c, NumberCondition):
        return c.field == "nps_latest"
    return isinstance(c, ContentCondition | ExcludedCondition)


def _conditions(group: Group) -> list[Condition]:
    out: list[Condition] = []
    for item in group.conditions:
        out += _conditions(item) if isinstance(item, Group) else [item]
    return out


class Segment(_Model):
    """A definition; `id` is unique across apps (the key of `profiles.segments`)."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    app_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    name: Text
    scope: Literal["user", "company"]
    rule: Group

    @model_validator(mode="after")
    def _fits_scope(self) -> Segment:
        if self.scope == "company":
            wrong = next((c for c in _conditions(self.rule) if user_only(c)), None)
            if wrong is not None:
                what = getattr(wrong, "source", None) or getattr(wrong, "field", None) or wrong.kind
                raise ValueError(f"a company segment cannot use the user-only condition {what}")
        return self


def parse_segment(data: dict[str, Any]) -> Segment:
    """A definition (decoded JSON/YAML) to a Segment; ValueError with one line otherwise."""
    if not isinstance(data, dict):
        raise ValueError("a segment definition is a mapping")
    try:
        return Segment.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "segment"
        text = str(first["msg"]).removeprefix("Value error, ")
        message = " ".join(f"{where}: {text}".split())
        raise ValueError(message[:300]) from None


def encode_segment(segment: Segment) -> bytes:
    """The value of a definition on `profiles.segments` (JSON; the key is the id)."""
    return segment.model_dump_json(exclude_none=True).encode()


def decode_segment(value: bytes) -> Segment:
    """A `profiles.segments` value back to a Segment; ValueError with one line otherwise."""
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a JSON definition: {exc}") from None
    return parse_segment(data)
