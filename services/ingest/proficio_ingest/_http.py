"""HTTP plumbing of the xAPI interface: responses, headers, body limits, the alternate request syntax."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import BadRequest, PayloadTooLarge
from ._tenants import DEFAULT_POLICY, V1, V2, TenantPolicy, parse_version

EXPOSED_HEADERS = [
    "X-Experience-API-Version",
    "X-Experience-API-Consistent-Through",
    "ETag",
    "Last-Modified",
    "Content-Type",
]


class JSONResponse(Response):
    """JSON rendered by orjson; bytes are passed through untouched."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


class PlainRoute(APIRoute):
    """A route whose endpoint takes the request alone and returns a Response is called as it is.

    FastAPI's own request handler resolves the endpoint's dependencies and checks its return value on every
    request, ~40 µs that an endpoint of this shape does not need (the xAPI resources parse their own
    parameters and bodies). The route is declared, documented in OpenAPI and matched as before; errors
    the endpoint raises reach the app's exception handlers the same way.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        parameters = list(inspect.signature(self.endpoint).parameters.values())
        if (
            inspect.iscoroutinefunction(self.endpoint)
            and len(parameters) == 1
            and parameters[0].annotation in (Request, "Request")
        ):
            endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
            return endpoint
        return super().get_route_handler()


def error_response(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def iso_from_us(recorded_us: int) -> str:
    moment = datetime.fromtimestamp(recorded_us // 1000 / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def http_date_from_us(recorded_us: int) -> str:
    """An HTTP date (whole seconds, as HTTP dates are) for a moment in microseconds since the epoch."""
    return _http_date(recorded_us // 1_000_000)


@lru_cache(maxsize=1024)
def _http_date(seconds: int) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, tz=UTC), usegmt=True)


class _HasConsistency(Protocol):
    async def consistent_through_us(self) -> int: ...


async def consistent_through_header(service: _HasConsistency) -> dict[str, str]:
    return {"X-Experience-API-Consistent-Through": iso_from_us(await service.consistent_through_us())}


def check_version_header(request: Request, policy: TenantPolicy = DEFAULT_POLICY) -> str:
    """The request's xAPI version (which every request but About must state) if the tenant accepts it.

    The version is recorded on the request, so the response, an error included, speaks it.
    """
    stated = request.headers.get("x-experience-api-version")
    version = parse_version(stated)
    request.state.xapi_version = version if version in policy.xapi_versions else policy.default_version
    accepted = ", ".join(policy.xapi_versions)
    if stated is None:
        raise BadRequest(f"the X-Experience-API-Version header is required (this LRS speaks {accepted})")
    if version is None:
        raise BadRequest(f"X-Experience-API-Version {stated!r} is not supported; use one of {accepted}")
    if version not in policy.xapi_versions:
        raise BadRequest(f"this tenant accepts xAPI {accepted} only, not {stated}")
    return version


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, or 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class VersionHeaderMiddleware:
    """Every response, errors included, says which xAPI version it speaks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # Shared with the request objects inside, which record the version they negotiated.
        state = scope.setdefault("state", {})

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                version = state.get("xapi_version")
                if version is None:
                    stated = dict(scope["headers"]).get(b"x-experience-api-version", b"").decode("latin-1")
                    version = parse_version(stated) or V1
                MutableHeaders(scope=message)["X-Experience-API-Version"] = version
            await send(message)

        await self.app(scope, receive, send_with_version)


# Form fields of the alternate request syntax that stand for request headers.
_FORM_HEADERS = {
    "authorization",
    "x-experience-api-version",
    "content-type",
    "content-length",
    "if-match",
    "if-none-match",
}
_ALTERNATE_METHODS = {"GET", "HEAD", "PUT", "POST", "DELETE"}


class AlternateSyntaxMiddleware:
    """xAPI 1.0.3 §1.3: ``POST ...?method=PUT`` with headers, content and parameters as form fields.

    The request is rewritten into the request it stands for before routing, so every resource
    behaves the same under both syntaxes.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only the xAPI resources speak the alternate syntax: other APIs may have a parameter called method.
        xapi = str(scope.get("path", "")).startswith("/xapi")
        if scope["type"] != "http" or not xapi or b"method=" not in scope.get("query_string", b""):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if not any(name == "method" for name, _ in query):
            await self.app(scope, receive, send)
            return
        try:
            rewritten, body = await self._rewrite(scope, receive, query)
        except (BadRequest, PayloadTooLarge) as exc:
            await error_response(exc.status, type(exc).__name__, exc.message)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(rewritten, replay, send)

    async def _rewrite(self, scope: Scope, receive: Receive, query: list[tuple[str, str]]) -> tuple[Scope, bytes]:
        if scope["method"] != "POST":
            raise BadRequest("the alternate request syntax (?method=...) must be sent as a POST")
        if len(query) != 1:
            raise BadRequest("with the alternate request syntax, 'method' must be the only query parameter")
        method = query[0][1].upper()
        if method not in _ALTERNATE_METHODS:
            raise BadRequest(f"method={query[0][1]!r} is not an HTTP method this LRS accepts")
        request = Request(scope, receive)
        content_type = request.headers.get("content-type", "")
        raw = await read_body(request, self.max_body_bytes)
        if raw and not content_type.lower().startswith("application/x-www-form-urlencoded"):
            raise BadRequest("the alternate request syntax needs an application/x-www-form-urlencoded body")
        try:
            fields = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"the form body of the alternate request syntax is malformed: {exc}") from exc
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        headers.pop("content-type", None)
        headers.pop("content-length", None)
        params: list[tuple[str, str]] = []
        content = b""
        for name, value in fields:
            lowered = name.lower()
            if lowered in _FORM_HEADERS:
                headers[lowered] = value
            elif name == "content":
                content = value.encode()
            else:
                params.append((name, value))
        if content:
            headers.setdefault("content-type", "application/json")
        elif method in ("PUT", "POST"):
            raise BadRequest(f"a {method} in the alternate request syntax needs a 'content' form field")
        headers["content-length"] = str(len(content))
        if parse_version(headers.get("x-experience-api-version")) == V2:
            raise BadRequest("the alternate request syntax (?method=...) is not part of xAPI 2.0")
        rewritten = dict(scope)
        rewritten["method"] = method
        rewritten["query_string"] = urlencode(params).encode()
        rewritten["headers"] = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        return rewritten, content
