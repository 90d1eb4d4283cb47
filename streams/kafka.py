"""Kafka connection options from settings, for Faust and for our own aiokafka clients."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupIdNotFound, TopicAlreadyExistsError
from aiokafka.protocol.admin import DeleteGroupsRequest

from streams.settings import Settings
from streams.topics import Topics


def client_options(settings: Settings) -> dict[str, Any]:
    """bootstrap + security options as aiokafka keyword arguments."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        opts["sasl_plain_password"] = password.get_secret_value() if password else None
    return opts


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
