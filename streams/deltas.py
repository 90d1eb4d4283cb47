"""Company contributions on the wire: the user agent's Kafka sink, the company agent's decode."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
from pydantic import ValidationError

from projections.company import Contribution
from schemas.codec import Rejected, encode
from schemas.models import CompanyDelta
from streams.kafka import MAX_DELTA_BYTES
from streams.topics import record_key


def encode_delta(parts: list[Contribution]) -> bytes:
    """One message of the parts of one company (same app, company and namespace)."""
    first = parts[0]
    return encode(
        {
            "type": "company_delta",
            "app_id": first.app_id,
            "company_id": first.company_id,
            "namespace": first.namespace,
            "parts": [
                {
                    "user_id": c.user_id,
                    "version": c.version,
                    "facts": c.facts,
                    "member": c.member,
                    "days": c.days,
                    "full": c.full,
                }
                for c in parts
            ],
        }
    )


def decode_delta(raw: bytes, topic: str, partition: int, offset: int) -> list[Contribution]:
    """Bytes of profiles.company-deltas to its contributions, or Rejected. The workers write
    this topic, not SDKs: its schema is checked, not the walk of SDK limits (a message holds
    every day's figures of many users)."""
    if len(raw) > MAX_DELTA_BYTES:
        raise Rejected("record_too_large", f"{len(raw)} bytes > {MAX_DELTA_BYTES}")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
        d = CompanyDelta.model_validate(obj)
    except ValidationError as exc:
        raise Rejected("invalid_field", str(exc.errors()[0]["msg"])) from None
    except Exception as exc:  # not msgpack (or too deep for it)
        raise Rejected("invalid_msgpack", f"{type(exc).__name__}: {exc}"[:200]) from None
    return [
        Contribution(
            d.app_id,
            d.company_id,
            p.user_id,
            p.version,
            p.facts,
            p.member,
            p.days,
            d.namespace,
            topic,
            partition,
            offset,
            p.full,
        )
        for p in d.parts
    ]


def by_company(deltas: list[Contribution]) -> list[list[Contribution]]:
    """The contributions of a batch grouped into one message per company, in their order."""
    grouped: dict[tuple[str, str, str], list[Contribution]] = {}
    for c in deltas:
        grouped.setdefault((c.namespace, c.app_id, c.company_id), []).append(c)
    return list(grouped.values())


class KafkaSink:
    """Sends a batch's contributions on the company-deltas topic, one message per company,
    and waits until the broker has them."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    async def send(self, deltas: list[Contribution]) -> None:
        futures = await asyncio.gather(
            *(
                self._topic.send(
                    key=record_key(parts[0].app_id, parts[0].company_id),
                    value=encode_delta(parts),
                )
                for parts in by_company(deltas)
            )
        )
        await asyncio.gather(*futures)
