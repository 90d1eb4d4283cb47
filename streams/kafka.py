"""Kafka connection options from settings, for Faust and for our own aiokafka clients."""

from __future__ import annotations

import contextlib
import logging
import ssl
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    AuthenticationFailedError,
    GroupIdNotFound,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.admin import DeleteGroupsRequest

from streams.settings import Settings
from streams.topics import Topics


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


async def ensure_topics(settings: Settings) -> None:
    """Create every topic the pipeline uses (a no-op for those that exist)."""
    topics = Topics(settings.topic_prefix)
    names = [*topics.sources, topics.dlq, topics.company_deltas, topics.segments]
    configs = {
        topics.company_deltas: {"max.message.bytes": str(MAX_DELTA_BYTES)},
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
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(missing)
    finally:
        await admin.close()


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
