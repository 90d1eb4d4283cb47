"""Company contributions on the wire: the user agent's Kafka sink, the company agent's decode."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from projections.company import Contribution
from schemas.codec import Rejected, decode_bytes, encode
from schemas.limits import Limits
from schemas.models import CompanyDelta
from streams.topics import record_key

# Contributions carry a user's per-day figures: allow far more than an SDK record may hold.
DELTA_LIMITS = Limits(max_keys=100_000, max_record_bytes=64 * 1024 * 1024, max_depth=6)


def encode_delta(c: Contribution) -> bytes:
    return encode(
        {
            "type": "company_delta",
            "delta_id": f"{c.app_id}:{c.user_id}:{c.version}:{c.company_id}",
            "app_id": c.app_id,
            "company_id": c.company_id,
            "user_id": c.user_id,
            "version": c.version,
            "facts": c.facts,
            "member": c.member,
            "days": c.days,
            "namespace": c.namespace,
        }
    )


def decode_delta(raw: bytes, topic: str, partition: int, offset: int) -> Contribution:
    """Bytes of profiles.company-deltas to a Contribution, or Rejected."""
    try:
        d = CompanyDelta.model_validate(decode_bytes(raw, DELTA_LIMITS))
    except ValidationError as exc:
        raise Rejected("invalid_field", str(exc.errors()[0]["msg"])) from None
    return Contribution(
        d.app_id,
        d.company_id,
        d.user_id,
        d.version,
        d.facts,
        d.member,
        d.days,
        d.namespace,
        topic,
        partition,
        offset,
    )


class KafkaSink:
    """Sends contributions on the company-deltas topic and waits until the broker has them."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    async def send(self, deltas: list[Contribution]) -> None:
        futures = await asyncio.gather(
            *(
                self._topic.send(key=record_key(c.app_id, c.company_id), value=encode_delta(c))
                for c in deltas
            )
        )
        await asyncio.gather(*futures)
