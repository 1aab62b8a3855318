"""What every resource handler needs from a request: settings, services, credentials, parameters."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl

from fastapi import Request

from proficio_events import EventLog

from ._credentials import Credential
from ._errors import BadRequest
from ._http import check_version_header
from ._settings import IngestSettings
from ._statements import StatementService
from ._tenants import TenantPolicy


def settings(request: Request) -> IngestSettings:
    found: IngestSettings = request.app.state.settings
    return found


def event_log(request: Request) -> EventLog:
    log: EventLog = request.app.state.log
    return log


def statement_service(request: Request) -> StatementService:
    service: StatementService = request.app.state.statements
    return service


async def authenticate(request: Request) -> Credential:
    """The request's credential (401 without a valid one); then its xAPI version, which the tenant must accept."""
    credential: Credential = await request.app.state.credentials.authenticate(request.headers.get("authorization"))
    policy: TenantPolicy = await request.app.state.tenants.policy(credential.tenant)
    check_version_header(request, policy)
    return credential


def xapi_version(request: Request) -> str:
    """The xAPI version the request was negotiated in (after ``authenticate``)."""
    version: str = request.state.xapi_version
    return version


@lru_cache(maxsize=4096)
def query_pairs(query_string: bytes) -> tuple[tuple[str, str], ...]:
    """A raw query string's (name, value) pairs, decoded as Starlette's ``request.query_params`` decodes them.

    Cached: content players send the same few query strings (their learner, activity and document) over
    and over, and percent-decoding them is a tenth of a document request's CPU.
    """
    return tuple(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


def parameters(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, each at most once, each one the resource knows (names are case-sensitive)."""
    return query_parameters(request.scope["query_string"], allowed)


def query_parameters(query_string: bytes, allowed: frozenset[str]) -> dict[str, str]:
    """``parameters`` of a raw query string."""
    found: dict[str, str] = {}
    for name, value in query_pairs(query_string):
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise BadRequest(f"unknown query parameter {name!r} (accepted here: {known})")
        if name in found:
            raise BadRequest(f"query parameter {name!r} is given more than once")
        found[name] = value
    return found


def boolean(params: dict[str, str], name: str) -> bool:
    """A true/false parameter; case-insensitive, since common client libraries send Python's "True"."""
    value = params.get(name, "false")
    if value.lower() not in ("true", "false"):
        raise BadRequest(f"{name} must be 'true' or 'false', not {value!r}")
    return value.lower() == "true"
