"""The FastAPI application: the log and the services on it are created in the lifespan, never at import."""

from __future__ import annotations

import gc
import inspect
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from proficio_events import EventLog, EventStoreError, StoreUnavailableError, open_event_log
from proficio_events._sql import SqlEventLog

from ._credentials import CredentialStore
from ._documents import router as documents_router
from ._erasure import router as erasure_router
from ._errors import XAPIError
from ._http import (
    EXPOSED_HEADERS,
    AlternateSyntaxMiddleware,
    JSONResponse,
    PlainRoute,
    VersionHeaderMiddleware,
    consistent_through_header,
    error_response,
)
from ._resources import router as resources_router
from ._routes import router
from ._settings import IngestSettings
from ._statements import StatementService
from ._tenants import V1, TenantStore, parse_version

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "proficio_ingest_version"
logger = logging.getLogger("proficio.ingest")


async def open_ingest_store(settings: IngestSettings) -> EventLog:
    """The log with the ingest service's tables migrated beside it."""
    log = await open_event_log(settings.log_url())
    if isinstance(log, SqlEventLog):
        log.max_group_events = settings.group_max_events
    try:
        await log.migrate_package(MIGRATIONS, VERSION_TABLE)
    except BaseException:
        await log.close()
        raise
    return log


Endpoint = Callable[[Request], Awaitable[Response]]


class ProficioAPI(FastAPI):
    """The app, with a short way in for the xAPI resources that content players call all the time.

    A request to a route that takes the request alone (a ``PlainRoute`` at a fixed path: State, the profiles,
    Statements, About) skips the middleware stack and the router: no Origin header (so CORS adds only ``Vary:
    Origin``), not the alternate request syntax, served at the root. The endpoint's errors reach the same
    exception handlers, and the response gets the same ``X-Experience-API-Version`` and ``Vary`` headers; any
    other request (CORS, ``?method=``, a path with parameters, an unknown method) takes the whole stack. The
    stack cost ~15% of a State round trip's CPU in the server (a dozen ASGI layers and the route search).
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.fast_routes: dict[tuple[str, str], Endpoint] = {}

    def plain_routes(self, *routers: APIRouter) -> None:
        """Serve the plain routes of ``routers`` (in the order they were included) the short way."""
        self.fast_routes = {}
        for included in routers:
            for route in included.routes:
                if not isinstance(route, PlainRoute) or "{" in route.path:
                    continue
                if route.get_route_handler() is route.endpoint:
                    for method in route.methods or ():
                        self.fast_routes.setdefault((route.path, method), route.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self.fast_routes.get((scope["path"], scope["method"]))
            if (
                endpoint is not None
                and b"method=" not in scope["query_string"]
                and not any(name == b"origin" for name, _ in scope["headers"])
            ):
                await self._serve_plain(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve_plain(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        state = scope.setdefault("state", {})
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handlers = self.exception_handlers
            handler = next((handlers[kind] for kind in type(exc).__mro__ if kind in handlers), None)
            if handler is None:
                raise
            outcome = handler(request, exc)
            response = await outcome if inspect.isawaitable(outcome) else outcome

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # What CORSMiddleware adds to a response to a request without an Origin header.
                headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
                version = state.get("xapi_version")  # as VersionHeaderMiddleware
                if version is None:
                    stated = dict(scope["headers"]).get(b"x-experience-api-version", b"").decode("latin-1")
                    version = parse_version(stated) or V1
                headers["X-Experience-API-Version"] = version
            await send(message)

        await response(scope, receive, send_with_headers)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log = await open_ingest_store(settings)
        app.state.log = log
        app.state.credentials = CredentialStore(log)
        app.state.statements = StatementService(log)
        app.state.tenants = TenantStore(log)
        # Long-lived objects made at start-up (modules, caches) need never be scanned by the cycle
        # collector again; and a request allocates thousands of small objects, so collect less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        try:
            yield
        finally:
            await log.close()

    app = ProficioAPI(
        title="Proficio xAPI",
        summary="The xAPI 1.0.3 and 2.0 Learning Record Store interface of Proficio",
        default_response_class=JSONResponse,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.openapi = lambda: _openapi_once(app)  # type: ignore[method-assign]
    app.include_router(resources_router)
    app.include_router(documents_router)
    app.include_router(erasure_router)
    app.include_router(router)
    app.plain_routes(resources_router, documents_router, erasure_router, router)

    @app.get("/health", include_in_schema=False)
    async def health(request: Request) -> Response:
        """Liveness for operators and load balancers: the store answers and how far the log reaches."""
        position, _ = await request.app.state.log.head()
        return JSONResponse({"status": "ok", "log_position": position})

    @app.exception_handler(XAPIError)
    async def xapi_error(request: Request, exc: XAPIError) -> Response:
        return await _with_consistency(request, error_response(exc.status, type(exc).__name__, exc.message))

    @app.exception_handler(EventStoreError)
    async def store_error(request: Request, exc: EventStoreError) -> Response:
        status = 503 if isinstance(exc, StoreUnavailableError) else 400
        return await _with_consistency(request, error_response(status, type(exc).__name__, str(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, "HTTPError", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(400, "BadRequest", str(exc.errors()))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "InternalError", "the server failed; the request was not stored")

    app.add_middleware(AlternateSyntaxMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=EXPOSED_HEADERS,
    )
    app.add_middleware(VersionHeaderMiddleware)
    return app


async def _with_consistency(request: Request, response: Response) -> Response:
    """Every Statements response carries X-Experience-API-Consistent-Through, errors included."""
    if request.url.path.rstrip("/").endswith("/statements"):
        service: Any = getattr(request.app.state, "statements", None)
        if service is not None:
            with suppress(EventStoreError):
                response.headers.update(await consistent_through_header(service))
    return response


def _openapi_once(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with one operation id per method: xAPI resources answer GET and HEAD (and the
    document resources four methods) from one route, which FastAPI gives a single, repeated id."""
    if app.openapi_schema is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        seen: set[str] = set()
        for operations in schema.get("paths", {}).values():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "operationId" in operation:
                    if operation["operationId"] in seen:
                        operation["operationId"] = f"{operation['operationId']}_{method}"
                    seen.add(operation["operationId"])
        app.openapi_schema = schema
    return app.openapi_schema
