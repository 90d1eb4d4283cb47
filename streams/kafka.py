"""Kafka connection options from settings, for Faust and for our own aiokafka clients."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, replace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    GroupIdNotFound,
    IllegalSaslStateError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DeleteGroupsRequest,
    DescribeAclsRequest_v1,
    DescribeGroupsRequest,
    DescribeGroupsRequest_v1,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from schemas.limits import DAY_MS, HOUR_MS
from streams.kafka_acl import OPERATIONS, PATTERN_TYPES, PERMISSIONS, RESOURCE_TYPES, Binding
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger(__name__)


class KafkaSecurityError(Exception):
    """The TLS files of the Kafka settings cannot be used."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (None for the other protocols): it verifies the
    broker against KAFKA_SSL_CAFILE, else the system's CAs, and presents KAFKA_SSL_CERTFILE
    (with KAFKA_SSL_KEYFILE) when the broker asks for a client certificate."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; both say which
        raise KafkaSecurityError(f"cannot use the Kafka TLS files: {exc}") from None
    return context


def _sasl(settings: Settings) -> tuple[str, str, str] | None:
    """(mechanism, username, password) for SASL_PLAINTEXT and SASL_SSL, else None."""
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return None
    password = settings.kafka_sasl_password
    return (
        settings.kafka_sasl_mechanism or "",
        settings.kafka_sasl_username or "",
        password.get_secret_value() if password else "",
    )


def client_options(settings: Settings) -> dict[str, Any]:
    """bootstrap + security options as aiokafka keyword arguments."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        opts["ssl_context"] = context
    sasl = _sasl(settings)
    if sasl is not None:
        opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"] = sasl
    return opts


def faust_credentials(settings: Settings) -> Any:
    """The same security options as `client_options`, as Faust's `broker_credentials`."""
    # Imported here: only the worker needs Faust, the other commands start faster without it.
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(settings)
    sasl = _sasl(settings)
    if sasl is not None:  # with a context Faust speaks SASL_SSL, without it SASL_PLAINTEXT
        mechanism, username, password = sasl
        return SASLCredentials(
            username=username, password=password, mechanism=mechanism, ssl_context=context
        )
    if context is not None:
        return SSLCredentials(context)
    return None


# What a broker answers when it does not accept our SASL login.
LOGIN_REFUSALS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)

# What a broker answers when the login's ACLs do not allow a request (README: Kafka ACLs).
ACL_REFUSALS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


class BootstrapFailures(logging.Filter):
    """aiokafka logs why a bootstrap server could not be used (a refused login, a TLS failure,
    a refused connection) and then raises only "Unable to bootstrap". Added to the `aiokafka`
    logger, this keeps the reason and drops its log line, so the CLI can say it in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.last: tuple[str, BaseException] | None = None  # (host:port, why)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        # aiokafka's AIOKafkaClient.bootstrap: 'Unable connect to "%s:%s": %s'
        if str(record.msg).startswith('Unable connect to "') and len(args) == 3:
            host, port, why = args
            if isinstance(why, BaseException):
                self.last = (f"{host}:{port}", why)
                return False
        return True


# A company contribution carries a user's per-day figures for the whole retention: allow
# more than Kafka's default 1 MB message (the worker's producer allows the same).
MAX_DELTA_BYTES = 16 * 1024 * 1024

FOREVER = -1  # retention.ms / retention.bytes: no limit


def required_retention(settings: Settings) -> dict[str, int]:
    """The retention.ms each topic a replay reads must have at least (FOREVER: every record),
    by topic name; used to create the topics and to check them. Events and dead letters
    (which a redrive sends back) must stay while their event time is within the retention
    (`Limits.log_retention_ms`). Commands stay forever: the fold keeps them whatever their
    age (a delete keeps later records erased), so a replay must find them all; the topic is
    not compacted, since every command of a user key matters, not only its last."""
    topics = Topics(settings.topic_prefix)
    keep = settings.limits.log_retention_ms()
    need = {name: keep for name in topics.sources}
    need[topics.for_type("command")] = FOREVER
    need[topics.dlq] = keep
    return need


def _retention_configs(required_ms: int) -> dict[str, str]:
    """Topic configs that keep records `required_ms`, whatever the broker's defaults
    (log.retention.*): a retention.bytes would delete records by size, however recent."""
    return {"retention.ms": str(required_ms), "retention.bytes": str(FOREVER)}


def keeps_less(retention_ms: int, retention_bytes: int, required_ms: int) -> bool:
    """Whether a topic with these effective configs may delete a record before `required_ms`."""
    if retention_bytes >= 0:  # deletes the oldest segments once a partition is that big
        return True
    if retention_ms < 0:  # -1: forever
        return False
    return required_ms < 0 or retention_ms < required_ms


def duration(ms: int) -> str:
    """A retention in words: "402 days", "36 hours", "forever"."""
    if ms < 0:
        return "forever"
    for unit, size in (("days", DAY_MS), ("hours", HOUR_MS)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


@dataclass(frozen=True)
class TopicRetention:
    """A pipeline topic as the broker has it: partitions and the effective retention configs
    (None when the topic does not exist), and what the views need of it (None: nothing)."""

    topic: str
    partitions: int | None
    retention_ms: int | None
    retention_bytes: int | None
    cleanup_policy: str | None
    required_ms: int | None

    @property
    def exists(self) -> bool:
        return self.partitions is not None

    @property
    def keeps_less(self) -> bool:
        """The topic exists and may delete records the views still hold."""
        if self.required_ms is None or self.retention_ms is None or self.retention_bytes is None:
            return False
        return keeps_less(self.retention_ms, self.retention_bytes, self.required_ms)

    def warning(self) -> str:
        """One line: how the topic keeps less than the views need, and the fix."""
        assert self.required_ms is not None
        assert self.retention_ms is not None and self.retention_bytes is not None
        how = []
        if keeps_less(self.retention_ms, FOREVER, self.required_ms):
            how.append(
                f"keeps records {duration(self.retention_ms)} (retention.ms={self.retention_ms})"
            )
        if self.retention_bytes >= 0:
            how.append(f"drops the oldest past retention.bytes={self.retention_bytes} a partition")
        needs = duration(self.required_ms)
        if self.required_ms >= 0:
            needs += f" (retention.ms={self.required_ms})"
        return (
            f"warning: topic {self.topic} {' and '.join(how)}; a replay needs its records"
            f" {needs} or older records leave every view: run `profiles topics --apply-retention`"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "exists": self.exists,
            "partitions": self.partitions,
            "cleanup_policy": self.cleanup_policy,
            "retention_ms": self.retention_ms,
            "retention_bytes": self.retention_bytes,
            "required_ms": self.required_ms,
            "keeps_less": self.keeps_less,
        }

    def shortfall_json(self) -> dict[str, Any]:
        """The entry of `profiles status --json`'s "retention" list."""
        return {
            "topic": self.topic,
            "retention_ms": self.retention_ms,
            "retention_bytes": self.retention_bytes,
            "required_ms": self.required_ms,
            "warning": self.warning(),
        }


def pipeline_topics(settings: Settings) -> list[str]:
    """Every topic of the pipeline, in the order `profiles topics` lists them."""
    topics = Topics(settings.topic_prefix)
    return [
        *topics.sources,
        topics.dlq,
        topics.company_deltas,
        topics.segments,
        topics.dlq_redriven,
        topics.purge_staging,
    ]


async def _describe_retention(
    admin: AIOKafkaAdminClient, settings: Settings, names: list[str]
) -> list[TopicRetention]:
    """The named topics in the given order; those that exist with partitions and configs."""
    need = required_retention(settings)
    existing = set(await admin.list_topics())
    found = [n for n in names if n in existing]  # metadata of a missing topic would create it
    described = await admin.describe_topics(found) if found else []
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    configs: dict[str, dict[str, str]] = {}
    if found:
        wanted = ("retention.ms", "retention.bytes", "cleanup.policy")
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, n, dict.fromkeys(wanted)) for n in found
        ]
        for response in await admin.describe_configs(resources):
            for code, message, _type, name, entries in response.resources:
                if code:
                    raise for_code(code)(f"cannot describe the configs of {name}: {message}")
                configs[name] = {entry[0]: entry[1] for entry in entries}
    rows = []
    for name in names:
        config = configs.get(name, {})
        ms, size = config.get("retention.ms"), config.get("retention.bytes")
        rows.append(
            TopicRetention(
                topic=name,
                partitions=counts.get(name) if name in configs else None,
                retention_ms=None if ms is None else int(ms),
                retention_bytes=None if size is None else int(size),
                cleanup_policy=config.get("cleanup.policy"),
                required_ms=need.get(name),
            )
        )
    return rows


async def ensure_topics(settings: Settings) -> list[TopicRetention]:
    """Create every topic the pipeline uses (a no-op for those that exist); returns the
    existing topics that keep less than the views need (`required_retention`), which are
    never altered here: `profiles topics --apply-retention` does that when asked."""
    topics = Topics(settings.topic_prefix)
    names = [
        *topics.sources,
        topics.dlq,
        topics.company_deltas,
        topics.segments,
        topics.identity,
        topics.merges,
    ]
    need = required_retention(settings)
    configs = {
        **{name: _retention_configs(ms) for name, ms in need.items()},
        topics.company_deltas: {"max.message.bytes": str(MAX_DELTA_BYTES)},
        topics.merges: {"max.message.bytes": str(MAX_DELTA_BYTES)},
        topics.segments: {"cleanup.policy": "compact"},
    }
    # Definitions are few and read in order by one worker: one partition.
    counts = {topics.segments: 1}
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                n,
                counts.get(n, settings.partitions),
                1,
                topic_configs=configs.get(n, {}),
            )
            for n in names
            if n not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *why in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):  # or another worker was first
                    raise for_code(code)(f"cannot create topic {name}: {why[0] if why else ''}")
        # Those created just now have the configs above; those that existed may not.
        return await _shortfalls(admin, settings, [n for n in need if n in existing])
    finally:
        await admin.close()


async def _shortfalls(
    admin: AIOKafkaAdminClient, settings: Settings, names: list[str]
) -> list[TopicRetention]:
    """Those of the named topics that keep less than the views need. A login that may not
    describe topic configs (a Kafka ACL without DescribeConfigs) gets a log line, not a stop."""
    try:
        return [t for t in await _describe_retention(admin, settings, names) if t.keeps_less]
    except (TopicAuthorizationFailedError, ClusterAuthorizationFailedError) as exc:
        log.warning("cannot check the retention of the topics: %s", exc)
        return []


async def topic_retention(settings: Settings) -> list[TopicRetention]:
    """Every pipeline topic (`pipeline_topics`): partitions, retention and what it needs."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return await _describe_retention(admin, settings, pipeline_topics(settings))
    finally:
        await admin.close()


async def retention_shortfalls(settings: Settings) -> list[TopicRetention]:
    """The existing topics that keep less than the views need."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return await _shortfalls(admin, settings, list(required_retention(settings)))
    finally:
        await admin.close()


@dataclass(frozen=True)
class RetentionChange:
    topic: str
    changed: dict[str, tuple[int, int]]  # config -> (before, after)

    def line(self) -> str:
        what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in self.changed.items())
        return f"changed {self.topic}: {what}"

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "changed": {k: {"before": old, "after": new} for k, (old, new) in self.changed.items()},
        }


def _retention_change(row: TopicRetention) -> RetentionChange | None:
    """What makes a topic that keeps less keep what the views need (a longer retention.ms or
    a retention.bytes of -1 stays as it is)."""
    if not row.keeps_less:
        return None
    assert row.required_ms is not None
    assert row.retention_ms is not None and row.retention_bytes is not None
    changed = {}
    if keeps_less(row.retention_ms, FOREVER, row.required_ms):
        changed["retention.ms"] = (row.retention_ms, row.required_ms)
    if row.retention_bytes != FOREVER:
        changed["retention.bytes"] = (row.retention_bytes, FOREVER)
    return RetentionChange(row.topic, changed)


async def apply_retention(
    settings: Settings,
) -> tuple[list[TopicRetention], list[RetentionChange]]:
    """Make every existing topic that keeps less than the views need keep enough, leaving its
    other configs as they are: IncrementalAlterConfigs SETs just retention.ms and
    retention.bytes (aiokafka's alter_configs sends AlterConfigs, which resets every dynamic
    config it does not name). Returns every pipeline topic as it is now, and what changed."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        rows = await _describe_retention(admin, settings, pipeline_topics(settings))
        changes = [c for c in map(_retention_change, rows) if c is not None]
        if changes:
            resources = [
                (
                    int(ConfigResourceType.TOPIC),
                    c.topic,
                    [(k, _SET, str(new)) for k, (_old, new) in c.changed.items()],
                )
                for c in changes
            ]
            response = await admin._send_request(_IncrementalAlterConfigs(resources))
            for code, message, _type, name in response.responses:
                if code:
                    raise for_code(code)(f"cannot change the retention of {name}: {message}")
        done = {c.topic: c.changed for c in changes}
        now = []
        for row in rows:
            changed = done.get(row.topic, {})
            now.append(
                replace(
                    row,
                    retention_ms=changed.get("retention.ms", (0, row.retention_ms))[1],
                    retention_bytes=changed.get("retention.bytes", (0, row.retention_bytes))[1],
                )
            )
        return now, changes
    finally:
        await admin.close()


# IncrementalAlterConfigs (KIP-339, Kafka >= 2.3), which aiokafka 0.14's admin client lacks.
_SET = 0  # config_operation: SET (1 DELETE, 2 APPEND, 3 SUBTRACT)


class _IncrementalAlterConfigsResponse_v0(Response):
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
            ),
        ),
    )


class _IncrementalAlterConfigsRequest_v0(RequestStruct):
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = _IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                (
                    "configs",
                    Array(
                        ("name", String("utf-8")),
                        ("config_operation", Int8),
                        ("value", String("utf-8")),
                    ),
                ),
            ),
        ),
        ("validate_only", Boolean),
    )


class _IncrementalAlterConfigs(Request[_IncrementalAlterConfigsRequest_v0]):
    API_KEY = 44

    def __init__(self, resources: list[tuple[int, str, list[tuple[str, int, str]]]]) -> None:
        self._resources = resources

    def build(
        self, request_struct_class: type[_IncrementalAlterConfigsRequest_v0]
    ) -> _IncrementalAlterConfigsRequest_v0:
        return request_struct_class(self._resources, False)


async def partitions(settings: Settings, names: list[str]) -> list[TopicPartition]:
    """Every partition of the named topics that exist, in topic then partition order."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n in existing]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    found = {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described}
    return [TopicPartition(t, p) for t in wanted for p in found.get(t, [])]


async def committed_offsets(settings: Settings, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets (empty for a group that has committed nothing yet)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    except KafkaError:  # the group does not exist yet
        found = {}
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items() if meta is not None and meta.offset >= 0}


class _DescribeGroupsV1(DescribeGroupsRequest):
    """DescribeGroups at version 1: aiokafka 0.14 picks version 3 against Kafka 4 and cannot
    decode the answer."""

    def build(self, request_struct_class: Any) -> Any:
        return DescribeGroupsRequest_v1(self._groups)


async def group_members(settings: Settings, group: str) -> list[dict[str, str]]:
    """The group's members now (the workers): client id and host of each, in id order."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        node = await admin.find_coordinator(group)
        response = await admin._send_request_to_node(node, _DescribeGroupsV1([group]))
    finally:
        await admin.close()
    members = [m for g in response.groups if g[1] == group for m in g[5]]
    return sorted(
        ({"member": m[0], "client": m[1], "host": m[2].lstrip("/")} for m in members),
        key=lambda m: m["member"],
    )


async def delete_groups(settings: Settings, groups: list[str]) -> list[str]:
    """Delete consumer groups; returns those still there. (aiokafka 0.14's admin client has no
    delete_consumer_groups, so this sends DeleteGroups to each group's coordinator.)"""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    left = []
    try:
        for group in groups:
            node = await admin.find_coordinator(group)
            response = await admin._send_request_to_node(node, DeleteGroupsRequest([group]))
            left += [g for g, code in response.results if code not in (0, GroupIdNotFound.errno)]
    finally:
        await admin.close()
    return left


# ACLs (streams/kafka_acl.py makes them). aiokafka 0.14's admin client has no call for them;
# its request classes carry one creation or filter each, and would pick DescribeAcls v2, a
# flexible version their v1 layout does not encode. These send v1 (Kafka 4 keeps v1 to v3).
class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, creations: list[tuple[int, str, int, str, str, int, int]]) -> None:
        self._creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._creations)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    API_KEY = 31

    def __init__(self, filters: list[tuple[int, str, int, str, str, int, int]]) -> None:
        self._filters = filters

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self._filters)


class _DescribeAcls(Request[DescribeAclsRequest_v1]):
    API_KEY = 29

    def __init__(self, principal: str) -> None:
        self._principal = principal

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        # ANY resource type (1), any name (null), ANY pattern (1), this principal, any host
        # (null), ANY operation (1), ANY permission (1)
        return request_struct_class(1, None, 1, self._principal, None, 1, 1)


async def create_acls(settings: Settings, bindings: list[Binding], wait: float = 30) -> None:
    """Create the ACLs (one that exists already stays as it is), and return once the broker
    describes them: the controller takes them, the brokers' authorizers learn them from the
    metadata log a moment later. Needs a principal that may alter ACLs: a super user."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        response = await admin._send_request(_CreateAcls([b.codes() for b in bindings]))
        for binding, (code, message) in zip(bindings, response.creation_responses, strict=True):
            if code:
                raise for_code(code)(f"cannot create the ACL {binding}: {message}")
        deadline = time.monotonic() + wait
        for who in dict.fromkeys(b.principal for b in bindings):
            wanted = {b for b in bindings if b.principal == who}
            while not wanted <= set(await _described(admin, who)):
                if time.monotonic() > deadline:
                    raise KafkaTimeoutError(f"the broker does not show the new ACLs of {who}")
                await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def delete_acls(settings: Settings, bindings: list[Binding]) -> int:
    """Delete exactly these ACLs; returns how many the broker held."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        response = await admin._send_request(_DeleteAcls([b.codes() for b in bindings]))
    finally:
        await admin.close()
    deleted = 0
    for binding, (code, message, matching) in zip(bindings, response.filter_responses, strict=True):
        if code:
            raise for_code(code)(f"cannot delete the ACL {binding}: {message}")
        deleted += len(matching)
    return deleted


async def describe_acls(settings: Settings, principal: str) -> list[Binding]:
    """Every ACL of the principal (LITERAL and PREFIXED patterns), in no particular order."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return await _described(admin, principal)
    finally:
        await admin.close()


async def _described(admin: AIOKafkaAdminClient, principal: str) -> list[Binding]:
    response = await admin._send_request(_DescribeAcls(principal))
    if response.error_code:
        raise for_code(response.error_code)(f"cannot describe the ACLs: {response.error_message}")
    names = {
        table: {code: name for name, code in codes.items()}
        for table, codes in (
            ("resource", RESOURCE_TYPES),
            ("pattern", PATTERN_TYPES),
            ("operation", OPERATIONS),
            ("permission", PERMISSIONS),
        )
    }
    return [
        Binding(
            names["resource"][resource_type],
            name,
            names["pattern"][pattern_type],
            names["operation"][operation],
            who,
            host,
            names["permission"][permission],
        )
        for resource_type, name, pattern_type, acls in response.resources
        for who, host, operation, permission in acls
    ]
