"""The ingestion API: SDKs and browsers post records with their app's write key; each is
validated as the worker would, refused when it is another app's or a command, and the rest
produced to Kafka as `profiles publish` produces them. Mounted by explorer/api.py."""

import asyncio
import hmac
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from explorer import models
from explorer.tokens import ANY_APP, MIN_LENGTH, Tokens
from schemas.codec import Rejected, encode, validate
from streams.publish import record_producer, send_record
from streams.settings import Settings
from streams.topics import Topics

PATH = "/api/ingest"  # where explorer/api.py mounts it
log = logging.getLogger("profiles.ingest")
APP_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # schemas/models.py's AppId
COMMAND_REFUSED = (
    "command records are an operator's: send them with `profiles command` or the read API's "
    "POST /api/apps/{app}/users/{user}/commands"
)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.Error, "description": text}
    for code, text in [
        (400, "a body that is not JSON, not the shape, or more records than a burst"),
        (401, "no write key, or an unknown one"),
        (413, "a body over PROFILES_INGEST_MAX_BODY_BYTES"),
        (429, "the key is over its rate limit: Retry-After says in how many seconds to retry"),
        (503, "Kafka did not acknowledge the records: send them again (the fold drops repeats)"),
    ]
}


class WriteKeys:
    """PROFILES_WRITE_KEYS="APP=KEY,APP2=KEY2": which app's records each key may write. A key
    is public wherever a browser sends it, so it writes one app and never reads."""

    def __init__(self, spec: str) -> None:
        self._keys: list[tuple[bytes, str]] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            app_id, sep, key = (part.strip() for part in item.partition("="))
            if not sep or not app_id or not key:
                raise ValueError("PROFILES_WRITE_KEYS is a comma-separated list of APP=KEY")
            if app_id == ANY_APP:
                raise ValueError("a write key writes the records of one app, not of every app (*)")
            if not APP_ID.fullmatch(app_id):
                raise ValueError(f"{app_id!r} is not an app id ([A-Za-z0-9._-], 1 to 64)")
            if len(key) < MIN_LENGTH:
                raise ValueError(
                    f"the write key of {app_id!r} is shorter than {MIN_LENGTH} characters; "
                    "`python -c 'import secrets; print(secrets.token_urlsafe())'` makes one"
                )
            if any(known == key.encode() and app != app_id for known, app in self._keys):
                raise ValueError(f"a write key of {app_id!r} is another app's too")
            self._keys.append((key.encode(), app_id))
        if not self._keys:
            raise ValueError("PROFILES_WRITE_KEYS names no key")

    def app(self, key: str) -> str | None:
        """The app a key writes (None: unknown), every key compared in constant time."""
        given = key.encode()
        found = [app for known, app in self._keys if hmac.compare_digest(known, given)]
        return found[0] if found else None

    def apps(self) -> list[str]:
        return sorted({app for _key, app in self._keys})

    def also_read_tokens(self, tokens: Tokens) -> list[str]:
        """The apps whose write key is also a read token (which must never be)."""
        return sorted({app for key, app in self._keys if tokens.apps(key.decode())})


class Buckets:
    """A token bucket per write key, in records: `burst` at most, refilled at `rate` a
    second. One process's; each `profiles serve` keeps its own."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._held: dict[str, tuple[float, float]] = {}  # key -> (records, when)

    def take(self, key: str, count: int) -> int:
        """Take `count` records from the key's bucket: 0, or when it holds fewer, nothing
        taken and the whole seconds until it holds them."""
        now = self.clock()
        held, when = self._held.get(key, (float(self.burst), now))
        held = min(float(self.burst), held + (now - when) * self.rate)
        if held >= count:
            self._held[key] = (held - count, now)
            return 0
        self._held[key] = (held, now)
        return max(1, math.ceil((count - held) / self.rate))


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is a 413, whether it says its length or
    comes in chunks; nothing past the limit is read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the body is larger than {self.limit} bytes (PROFILES_INGEST_MAX_BODY_BYTES)"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"error": too_large}, 413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # FastAPI lets an HTTPException out of its body read
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


class Ingest:
    """The ingestion API as an app of its own (its document, its CORS) and its producer,
    which the explorer's lifespan starts and stops."""

    def __init__(self, settings: Settings, keys: WriteKeys) -> None:
        self.settings = settings
        self.keys = keys
        self.topics = Topics(settings.topic_prefix)
        self.buckets = Buckets(settings.ingest_rate, settings.ingest_burst)
        self.producer: AIOKafkaProducer | None = None
        self.app = self._build()

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """The producer, for as long as the server runs (`profiles serve` made the topics)."""
        producer = record_producer(self.settings)
        await producer.start()
        self.producer = producer
        try:
            yield
        finally:
            self.producer = None
            try:  # sends what it still holds, unless Kafka is gone: every answered 200 is acked
                async with asyncio.timeout(self.settings.ingest_kafka_timeout_seconds):
                    await producer.stop()
            except TimeoutError:
                log.warning("stopped without Kafka: records of requests answered 503 dropped")

    def refusal(self, obj: dict[str, Any], app_id: str, now_ms: int) -> tuple[str, str] | None:
        """Why a record may not be produced with this key, as (reason, detail); None: it may.
        The reasons are the dead letters' (schemas/codec.py) and the publisher's."""
        if obj.get("type") == "command":
            return "command_refused", COMMAND_REFUSED
        limits = self.settings.limits
        try:
            validate(obj, limits, now_ms)
        except Rejected as exc:
            return exc.reason, exc.detail
        if obj["app_id"] != app_id:
            return "wrong_app", f"app_id {obj['app_id']!r} is not this write key's app {app_id!r}"
        size = len(encode(obj))
        if size > limits.max_record_bytes:  # what the worker would dead-letter
            return "record_too_large", f"{size} bytes > {limits.max_record_bytes}"
        return None

    async def ingest(self, records: list[dict[str, Any]], key: str) -> dict[str, Any]:
        """Answer each record; produce the accepted ones and answer once Kafka has them."""
        app_id = self.keys.app(key)
        assert app_id is not None  # the key dependency let it through
        rate, burst = self.settings.ingest_rate, self.settings.ingest_burst
        if len(records) > burst:
            raise HTTPException(
                400, f"a request carries at most {burst} records (PROFILES_INGEST_BURST)"
            )
        wait = self.buckets.take(key, len(records))
        if wait:
            raise HTTPException(
                429,
                f"over this key's rate limit ({rate:g} records/s, bursts of {burst}): "
                f"retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        producer = self.producer
        if producer is None:
            raise HTTPException(503, "the ingestion API is not running (no Kafka producer)")
        now_ms = int(time.time() * 1000)
        answers = [self.answer(index, obj, app_id, now_ms) for index, obj in enumerate(records)]
        accepted = [
            obj for obj, a in zip(records, answers, strict=True) if a["status"] == "accepted"
        ]
        await self.produce(producer, accepted)
        return {
            "accepted": len(accepted),
            "refused": len(records) - len(accepted),
            "results": answers,
        }

    def answer(self, index: int, obj: dict[str, Any], app_id: str, now_ms: int) -> dict[str, Any]:
        event_id = obj.get("event_id")
        answer: dict[str, Any] = {
            "index": index,
            "event_id": event_id if isinstance(event_id, str) else None,
            "status": "accepted",
        }
        why = self.refusal(obj, app_id, now_ms)
        if why is not None:
            answer.update(status="refused", reason=why[0], detail=why[1])
        return answer

    async def produce(self, producer: AIOKafkaProducer, records: list[dict[str, Any]]) -> None:
        """Send the records and wait until Kafka acknowledged each; a refusal is a 503 once
        every send has settled (none left for asyncio to log as never retrieved)."""
        pending: list[asyncio.Future[Any]] = []
        failure: BaseException | None = None
        seconds = self.settings.ingest_kafka_timeout_seconds
        try:
            async with asyncio.timeout(seconds):  # Kafka down: the producer would wait forever
                try:
                    for obj in records:
                        pending.append(await send_record(producer, self.topics, obj))
                except KafkaError as exc:
                    failure = exc
                for result in await asyncio.gather(*pending, return_exceptions=True):
                    failure = failure or (result if isinstance(result, BaseException) else None)
        except TimeoutError:
            for future in pending:  # settled later (or never): retrieved, never logged
                future.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise HTTPException(
                503, f"Kafka did not take the records within {seconds:g} s; send them again"
            ) from None
        if isinstance(failure, KafkaError):
            raise HTTPException(
                503, f"Kafka did not take the records: {failure}; send them again"
            ) from None
        if failure is not None:
            raise failure

    def _build(self) -> FastAPI:
        api = FastAPI(
            title="profile-streams ingestion",
            version="1",
            description="Records from SDKs and browsers, produced to Kafka as `profiles publish` "
            "produces them. Every call needs `Authorization: Bearer <write key>`; a key of "
            "PROFILES_WRITE_KEYS writes its one app's records, never commands, and reads "
            "nothing. An answer of 200 lists each record as accepted (Kafka has it) or "
            "refused (never sent) and why.",
            openapi_url="/openapi.json",
            docs_url=None,
            redoc_url=None,
            redirect_slashes=False,
        )
        bearer = HTTPBearer(auto_error=False, description="a write key of PROFILES_WRITE_KEYS")

        async def write_key(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> str:
            if credentials is None or self.keys.app(credentials.credentials) is None:
                raise HTTPException(
                    401, "a valid write key is needed", headers={"WWW-Authenticate": "Bearer"}
                )
            return credentials.credentials

        async def no_parameters(request: Request) -> None:
            if request.query_params:
                raise HTTPException(400, f"unknown parameter {next(iter(request.query_params))!r}")

        Key = Annotated[str, Depends(write_key)]
        checked = [Depends(no_parameters)]

        @api.post(
            "/record",
            summary="One record",
            operation_id="ingest_record",
            response_model=models.Ingested,
            responses=ERRORS,
            tags=["ingest"],
            dependencies=checked,
        )
        async def one(
            key: Key,
            record: Annotated[
                models.WireRecord,
                Body(description="one record as `profiles schemas export` describes it"),
            ],
        ) -> dict[str, Any]:
            """One record, answered as a batch of one."""
            return await self.ingest([record], key)

        @api.post(
            "/batch",
            summary="A batch of records",
            operation_id="ingest_batch",
            response_model=models.Ingested,
            responses=ERRORS,
            tags=["ingest"],
            dependencies=checked,
        )
        async def batch(key: Key, body: models.IngestBatch) -> dict[str, Any]:
            """Many records, each answered at its index."""
            return await self.ingest(body.records, key)

        @api.exception_handler(StarletteHTTPException)
        async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
            return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

        @api.exception_handler(RequestValidationError)
        async def bad_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                why = first.get("ctx", {}).get("error", "")
                return JSONResponse({"error": f"the body is not JSON: {why}".strip()}, 400)
            where = ".".join(str(part) for part in first["loc"][1:])
            if not where:
                error = "the body is not a JSON object (sent as Content-Type: application/json)"
                return JSONResponse({"error": error}, 400)
            return JSONResponse({"error": f"bad body at {where!r}: {first['msg']}"}, 400)

        api.openapi = lambda: _without_422(api)  # type: ignore[method-assign]
        # Outermost last: CORS answers the preflight and marks every answer, 413s too.
        api.add_middleware(BodyLimit, limit=self.settings.ingest_max_body_bytes)
        origins = [o.strip() for o in self.settings.ingest_origins.split(",") if o.strip()]
        api.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
        return api


def _without_422(api: FastAPI) -> dict[str, Any]:
    """The document without FastAPI's 422 answers: a bad body gets a 400 here."""
    if api.openapi_schema is None:
        doc = get_openapi(
            title=api.title,
            version=api.version,
            description=api.description,
            routes=api.routes,
            servers=[{"url": PATH}],
        )
        for item in doc["paths"].values():
            for operation in item.values():
                operation["responses"].pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)
        api.openapi_schema = doc
    return api.openapi_schema
