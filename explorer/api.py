"""The explorer: the §4 views over HTTP (the reader library as JSON), the operator commands,
and the web page in explorer/static. `profiles serve` runs it; /api/docs documents it."""

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote

import fastapi_offline
import redis
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from explorer import ingest, models
from explorer.tokens import ANY_APP, Tokens
from projections.export import user_document, write_user
from projections.reader import NotFound, Reader
from schemas.codec import Rejected
from schemas.timefmt import parse_day
from streams.publish import alias_record, command_record, publish_records
from streams.settings import Settings

STATIC = Path(__file__).with_name("static")
APPS_CACHE_SECONDS = 30.0  # listing the apps scans the key space: not on every page load
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.Error, "description": text}
    for code, text in [
        (400, "a bad parameter"),
        (401, "no token, or an unknown one"),
        (403, "the token does not grant this app"),
        (404, "no such app (no users or companies), user, company or segment"),
    ]
}
T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=1000, description="rows per page")]
Cursor = Annotated[
    str | None, Query(min_length=1, description="`next_cursor` of the previous page")
]
Search = Annotated[
    str | None,
    Query(max_length=200, description="case-insensitive substring of event names and pages"),
]


def _day(**options: Any) -> Any:
    return Query(pattern=r"^\d{4}-\d{2}-\d{2}$", json_schema_extra={"format": "date"}, **options)


async def period(
    frm: Annotated[str | None, _day(alias="from", description="first UTC day (inclusive)")] = None,
    to: Annotated[str | None, _day(description="last UTC day (inclusive)")] = None,
) -> tuple[str | None, str | None]:
    """The period of a view; all time when neither bound is given."""
    try:
        frm = None if frm is None else parse_day(frm)
        to = None if to is None else parse_day(to)
    except ValueError as exc:
        raise HTTPException(400, f"bad parameter: {exc}") from None
    if frm is not None and to is not None and frm > to:
        raise HTTPException(400, f"bad parameter: from {frm} is after to {to}")
    return frm, to


Period = Annotated[tuple[str | None, str | None], Depends(period)]

# An id may hold `/`, sent as %2F; the server decodes the path before routing, so
# `EncodedSlashes` keeps a segment's own slashes as NUL (no id holds a control character)
# and these parameters give them back.
SLASH = "\x00"


async def _user_id(user_id: Annotated[str, FastPath()]) -> str:
    return user_id.replace(SLASH, "/")


async def _company_id(company_id: Annotated[str, FastPath()]) -> str:
    return company_id.replace(SLASH, "/")


async def _segment_id(segment_id: Annotated[str, FastPath()]) -> str:
    return segment_id.replace(SLASH, "/")


UserId = Annotated[str, Depends(_user_id)]
CompanyId = Annotated[str, Depends(_company_id)]
SegmentId = Annotated[str, Depends(_segment_id)]


class EncodedSlashes:
    """ASGI middleware: the path as the client split it, a segment's `%2F` kept as NUL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%2f" in raw.lower():
            parts = raw.decode("latin-1").split("/")
            scope = {**scope, "path": "/".join(unquote(p).replace("/", SLASH) for p in parts)}
        await self.app(scope, receive, send)


# The page and the API load nothing from elsewhere, run no inline script or style, and are
# never framed; API answers (personal data) are never cached.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
NO_STORE = [(b"cache-control", b"no-store")]
SWAGGER_UI = Path(fastapi_offline.__file__).with_name("static")  # Swagger UI 5, from a package
DOCS_PAGE = """<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>profile-streams explorer API</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/api/docs/assets/swagger-ui-bundle.js"></script>
    <script src="/static/api-docs.js"></script>
  </body>
</html>
"""


class SecurityHeaders:
    """ASGI middleware: the security headers on every answer, no-store on the API's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = HEADERS + (NO_STORE if scope["path"].startswith("/api/") else [])

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def answer(call: Callable[[], T]) -> T:
    """A reader call, its refusals as HTTP errors: 404 not found, 400 bad input."""
    try:
        return call()
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, f"bad parameter: {exc}") from None


def create_app(
    settings: Settings, tokens: Tokens, reader: Reader, write_keys: ingest.WriteKeys | None = None
) -> FastAPI:
    writer = None if write_keys is None else ingest.Ingest(settings, write_keys)
    api = FastAPI(
        title="profile-streams explorer",
        version="1",
        description="User and company profiles (docs/design.md §4) as JSON, and operator commands. "
        "Every call needs `Authorization: Bearer <token>`; a token grants the apps that "
        "PROFILES_API_TOKENS gives it.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served below, from this machine, under the policy
        redoc_url=None,
        redirect_slashes=False,  # its redirect would repeat the request's Host header
        lifespan=None if writer is None else writer.lifespan,  # its Kafka producer
    )
    bearer = HTTPBearer(auto_error=False, description="a token of PROFILES_API_TOKENS")

    def token_of(credentials: HTTPAuthorizationCredentials | None) -> str:
        if credentials is None or not tokens.apps(credentials.credentials):
            raise HTTPException(
                401, "a valid bearer token is needed", headers={"WWW-Authenticate": "Bearer"}
            )
        return credentials.credentials

    Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

    async def app_access(app_id: str, credentials: Credentials) -> str:
        if not tokens.grants(token_of(credentials), app_id):
            raise HTTPException(403, f"this token does not grant app {app_id!r}")
        return app_id

    async def known_parameters(request: Request) -> None:
        """A parameter the operation does not have is refused (a typo is not ignored)."""
        route = request.scope["route"]
        operation = api.openapi()["paths"][route.path_format][request.method.lower()]
        known = sorted(p["name"] for p in operation.get("parameters", []) if p["in"] == "query")
        unknown = sorted(set(request.query_params) - set(known))
        if unknown:
            hint = f" (known: {', '.join(known)})" if known else ""
            raise HTTPException(400, f"unknown parameter {unknown[0]!r}{hint}")

    App = Annotated[str, Depends(app_access)]
    apps_seen: list[Any] = [0.0, []]  # (when, apps) of the last key-space scan

    @api.get(
        "/api/apps",
        response_model=models.Apps,
        responses=ERRORS,
        tags=["apps"],
        dependencies=[Depends(known_parameters)],
    )
    def apps(credentials: Credentials) -> dict[str, Any]:
        """The apps this token may read."""
        granted = tokens.apps(token_of(credentials))
        if ANY_APP not in granted:
            return {"apps": sorted(granted)}
        if time.monotonic() - apps_seen[0] > APPS_CACHE_SECONDS:
            apps_seen[:] = [time.monotonic(), reader.apps()]
        return {"apps": apps_seen[1]}

    users = APIRouter(
        prefix="/api/apps/{app_id}", responses=ERRORS, dependencies=[Depends(known_parameters)]
    )

    @users.get("/users", response_model=models.UsersPage, tags=["users"])
    def users_list(
        app_id: App,
        q: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=200,
                description="prefix of the user id (exact case), name or email (any case)",
            ),
        ] = None,
        sort: Literal["last_seen", "signed_up"] = "last_seen",
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """The app's users, newest first by `sort`; with `q`, the users it finds (id matches,
        then name matches, then email matches)."""
        if q is not None:
            rows, after = answer(lambda: reader.find_users(app_id, q, limit=limit, cursor=cursor))
            return {"users": rows, "next_cursor": after, "total": None}
        rows, after = answer(lambda: reader.users(app_id, sort=sort, limit=limit, cursor=cursor))
        return {"users": rows, "next_cursor": after, "total": reader.count_users(app_id)}

    @users.get("/users/{user_id}/daily", response_model=models.Daily, tags=["users"])
    def user_daily(app_id: App, user_id: UserId, span: Period) -> dict[str, Any]:
        """Events and sessions per day of the period (all days, zeros included)."""
        frm, to = span
        return {"days": answer(lambda: reader.daily(app_id, "user", user_id, frm=frm, to=to))}

    @users.get("/users/{user_id}/sessions", response_model=list[models.Session], tags=["users"])
    def sessions(
        app_id: App,
        user_id: UserId,
        span: Period,
        limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    ) -> list[dict[str, Any]]:
        """The user's sessions of the period, newest first, each with its event breakdown."""
        frm, to = span
        return answer(lambda: reader.sessions(app_id, user_id, frm=frm, to=to, limit=limit))

    @users.get("/users/{user_id}/sentiment", response_model=list[models.Response], tags=["users"])
    def sentiment(app_id: App, user_id: UserId, span: Period) -> list[dict[str, Any]]:
        """The user's NPS and survey responses of the period, newest first."""
        frm, to = span
        return answer(lambda: reader.sentiment(app_id, user_id, frm=frm, to=to))

    @users.get("/users/{user_id}/engagement", response_model=list[models.Content], tags=["users"])
    def engagement(app_id: App, user_id: UserId) -> list[dict[str, Any]]:
        """The flows, spotlights, banners and checklists the user met, with their status."""
        return answer(lambda: reader.engagement(app_id, user_id))

    @users.get(
        "/users/{user_id}/export",
        tags=["users"],
        response_class=Response,
        responses={200: {"content": {"text/csv": {}, "application/json": {}}}},
    )
    def export(app_id: App, user_id: UserId, format: Literal["csv", "json"] = "json") -> Response:
        """Everything of one user as a file: profile, sessions, sentiment, engagement."""
        out = io.StringIO()
        write_user(answer(lambda: user_document(reader, app_id, user_id)), format, out)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{app_id}-{user_id}")[:100]
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8" if format == "csv" else "application/json",
            headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
        )

    @users.post(
        "/users/{user_id}/commands",
        status_code=202,
        response_model=models.CommandSent,
        tags=["commands"],
        responses={503: {"model": models.Error, "description": "Kafka is not reachable"}},
    )
    async def command(app_id: App, user_id: UserId, body: models.CommandIn) -> dict[str, Any]:
        """Publish an operator command for the user; the worker applies it a moment later.
        `unmerge` is for an id merged into another: it stands alone again."""
        if body.command == "unmerge":
            if answer(lambda: reader.merged_into(app_id, user_id)) is None:
                raise HTTPException(404, f"user {user_id!r} of app {app_id!r} is not merged")
        else:
            answer(lambda: reader.user(app_id, user_id))  # 404 for a user that does not exist
        record = command_record(body.command, app_id, user_id, int(time.time() * 1000), body.reason)
        await _publish(record)
        return {k: record[k] for k in ("command_id", "command", "user_id", "issued_at")}

    async def _publish(record: dict[str, Any]) -> None:
        try:
            await publish_records([record], settings)
        except Rejected as exc:
            raise HTTPException(400, f"{exc.reason}: {exc.detail}") from None
        except KafkaError as exc:
            raise HTTPException(503, f"Kafka is not reachable: {exc}") from None

    @users.post(
        "/users/{user_id}/merges",
        status_code=202,
        response_model=models.MergeSent,
        tags=["commands"],
        responses={503: {"model": models.Error, "description": "Kafka is not reachable"}},
    )
    async def merge(app_id: App, user_id: UserId, body: models.MergeIn) -> dict[str, Any]:
        """Merge another id into this user (an operator's alias, docs/design.md §7): its
        records count for this user from then on; `unmerge` on that id undoes it."""
        answer(lambda: reader.user(app_id, user_id))  # 404 for a user that does not exist
        if body.previous_id == user_id:
            raise HTTPException(400, "previous_id: an id cannot be merged into itself")
        record = alias_record(app_id, body.previous_id, user_id, int(time.time() * 1000))
        await _publish(record)
        return {k: record[k] for k in ("event_id", "previous_id", "user_id", "timestamp")}

    @users.get("/companies", response_model=models.CompaniesPage, tags=["companies"])
    def companies(
        app_id: App,
        q: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=200,
                description="prefix of the company id (exact case) or name (any case; "
                "a company without a name: its id)",
            ),
        ] = None,
        sort: Annotated[
            Literal["id", "last_seen", "users", "name"],
            Query(description="id; last seen, newest first; most users first; name A to Z"),
        ] = "id",
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """The app's companies in `sort` order (then id); with `q`, the companies it finds (id
        matches, then name matches)."""
        if q is not None:
            rows, after = answer(
                lambda: reader.find_companies(app_id, q, limit=limit, cursor=cursor)
            )
            return {"companies": rows, "next_cursor": after, "total": None}
        rows, after = answer(
            lambda: reader.companies(app_id, sort=sort, limit=limit, cursor=cursor)
        )
        return {"companies": rows, "next_cursor": after, "total": reader.count_companies(app_id)}

    @users.get("/companies/{company_id}/daily", response_model=models.Daily, tags=["companies"])
    def company_daily(app_id: App, company_id: CompanyId, span: Period) -> dict[str, Any]:
        """Events and sessions of the counted members per day of the period."""
        frm, to = span
        days = answer(lambda: reader.daily(app_id, "company", company_id, frm=frm, to=to))
        return {"days": days}

    @users.get(
        "/companies/{company_id}/users",
        response_model=list[models.CompanyUser],
        tags=["companies"],
    )
    def company_users(app_id: App, company_id: CompanyId) -> list[dict[str, Any]]:
        """Every current member, last seen first (excluded ones flagged)."""
        return answer(lambda: reader.company_users(app_id, company_id))

    @users.get("/segments", response_model=list[models.Segment], tags=["segments"])
    def segments(app_id: App) -> list[dict[str, Any]]:
        """The app's segments with their member counts."""
        return list(reader.segments(app_id).values())

    @users.get(
        "/segments/{segment_id}/members", response_model=models.MembersPage, tags=["segments"]
    )
    def segment_members(
        app_id: App, segment_id: SegmentId, limit: Limit = 50, cursor: Cursor = None
    ) -> dict[str, Any]:
        """One page of a segment's member ids, in id order."""
        found = reader.segment_definition(segment_id)
        if found is None or found["app_id"] != app_id:
            raise HTTPException(404, f"segment {segment_id!r} of app {app_id!r} not found")
        ids, after = reader.segment_members(
            app_id, segment_id, scope=found["scope"], limit=limit, cursor=cursor
        )
        return {"members": ids, "next_cursor": after}

    @users.get("/users/{user_id}", response_model=models.User, tags=["users"])
    def user(app_id: App, user_id: UserId, span: Period, search: Search = None) -> dict[str, Any]:
        """A user's profile: header, properties, segments and the overview of the period."""
        frm, to = span
        return answer(lambda: reader.user(app_id, user_id, frm=frm, to=to, search=search))

    @users.get("/companies/{company_id}", response_model=models.Company, tags=["companies"])
    def company(
        app_id: App, company_id: CompanyId, span: Period, search: Search = None
    ) -> dict[str, Any]:
        """A company's profile: header, properties and the overview of its counted members."""
        frm, to = span
        return answer(lambda: reader.company(app_id, company_id, frm=frm, to=to, search=search))

    api.include_router(users)
    api.add_middleware(EncodedSlashes)
    api.add_middleware(SecurityHeaders)
    _errors(api)
    api.openapi = lambda: _without_422(api)  # type: ignore[method-assign]
    api.mount("/static", StaticFiles(directory=STATIC), name="static")
    api.mount("/api/docs/assets", StaticFiles(directory=SWAGGER_UI), name="swagger-ui")
    if writer is not None:  # SDKs' records: its own document and CORS (explorer/ingest.py)
        api.mount(ingest.PATH, writer.app)

    @api.get("/api/docs", include_in_schema=False)
    def docs() -> Response:
        return Response(DOCS_PAGE, media_type="text/html")

    @api.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return api


def _without_422(api: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, without FastAPI's 422 answers: a bad parameter gets a 400 here."""
    if api.openapi_schema is None:
        doc = get_openapi(
            title=api.title, version=api.version, description=api.description, routes=api.routes
        )
        for item in doc["paths"].values():
            for operation in item.values():
                operation["responses"].pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)
        api.openapi_schema = doc
    return api.openapi_schema


def _errors(api: FastAPI) -> None:
    """Every error is `{"error": "<one line>"}`."""

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "request"
        return JSONResponse({"error": f"bad parameter {where!r}: {first['msg']}"}, 400)

    @api.exception_handler(redis.RedisError)
    async def redis_down(_request: Request, exc: redis.RedisError) -> JSONResponse:
        return JSONResponse({"error": f"Redis is not reachable: {exc}"}, 503)
