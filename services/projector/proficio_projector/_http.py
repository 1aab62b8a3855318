"""What the read APIs share: credentials and scopes, learner ids from agents, JSON and CSV responses."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson
from fastapi import HTTPException, Request
from fastapi.responses import Response

READ_SCOPES = frozenset({"all", "all/read", "statements/read"})
DEFINE_SCOPES = frozenset({"all", "define"})
MAX_PAGE = 1000
CSV_TYPE = "text/csv; charset=utf-8"
#: The OpenAPI ``responses`` of a read that also answers CSV.
CSV_OK: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}}

#: The learner id (the pseudonymous stream ingest files the learner's statements under) of an xAPI agent, from the
#: learner directory: ``(log, tenant, agent, create)``. None for an agent the directory does not know (never seen, or
#: erased), unless ``create`` (a write naming a learner before she sent anything) enrolls her.
LearnerId = Callable[[Any, str, Any, bool], Awaitable[str | None]]


class Caller(Protocol):
    tenant: str
    name: str
    key: str
    scopes: frozenset[str]


async def authorize(request: Request, allowed: frozenset[str], what: str) -> Caller:
    """The request's credential, if it holds one of ``allowed`` (401 without one, 403 without the scope)."""
    credential: Caller = await request.app.state.credentials.authenticate(request.headers.get("authorization"))
    if not credential.scopes & allowed:
        raise HTTPException(403, f"{what} needs one of the scopes {', '.join(sorted(allowed))}")
    return credential


async def resolve_learner(
    request: Request,
    learner_id: LearnerId | None,
    tenant: str,
    learner: str | None,
    agent: Any,
    *,
    create: bool = False,
) -> str:
    """The learner id given, or the one of the xAPI agent given (JSON text or an object); exactly one.

    An agent the learner directory does not know is no learner: 404, unless ``create`` (writes) enrolls her.
    Reads never create directory rows."""
    if (learner is None) == (agent is None):
        raise HTTPException(400, "give exactly one of learner (a learner id) or agent (an xAPI agent as JSON)")
    if learner is not None:
        return learner
    if learner_id is None:
        raise HTTPException(400, "this service resolves no agents: give learner")
    try:
        parsed = orjson.loads(agent) if isinstance(agent, str) else agent
        found = await learner_id(request.app.state.log, tenant, parsed, create)
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise HTTPException(400, f"agent is not an xAPI agent: {exc}") from None
    if found is None:
        raise HTTPException(404, "no learner is known by this agent (never seen, or erased)")
    return found


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, default=str), status_code=status_code, media_type="application/json",
                    headers=headers)  # fmt: skip


def csv_response(
    header: Sequence[str], rows: Iterable[Sequence[Any]], headers: dict[str, str] | None = None
) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return Response(out.getvalue(), media_type=CSV_TYPE, headers=headers)


def wants_csv(request: Request, format: str | None) -> bool:
    """``format=csv``, or ``Accept: text/csv`` without JSON; ``format`` is json or csv."""
    if format is not None:
        if format not in ("json", "csv"):
            raise HTTPException(400, f"format is json or csv, not {format!r}")
        return format == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def now_us() -> int:
    return time.time_ns() // 1000


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise HTTPException(400, f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    return limit


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text(value: Decimal | date | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def parse_day(value: str | None, what: str = "as_of") -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{what} must be a date (YYYY-MM-DD), not {value!r}") from None


async def record_access(request: Request, who: Caller, learners: Iterable[str]) -> None:
    """The record of access: ``who`` read this path about these learners (see ``audit._access``)."""
    recorder = getattr(request.app.state, "access_recorder", None)
    if recorder is not None:
        await recorder.record(who.tenant, who, learners, request.url.path, request.url.query)


async def read_learner(
    request: Request,
    allowed: frozenset[str],
    what: str,
    learner_id: LearnerId | None,
    learner: str | None,
    agent: Any,
) -> tuple[Caller, str]:
    """A read of one learner's data: the credential (with one of ``allowed``), her learner id (from ``learner``
    or ``agent``), and the read put on her record of access."""
    who = await authorize(request, allowed, what)
    chosen = await resolve_learner(request, learner_id, who.tenant, learner, agent)
    await record_access(request, who, [chosen])
    return who, chosen


async def record_change(
    request: Request,
    what: str,
    write: Callable[[Caller], Awaitable[Any]],
    refused: tuple[type[Exception], ...],
) -> Response:
    """A change of reference data (scope ``all`` or ``define``): ``write`` appends its event; an error of the
    ``refused`` kinds (the data's own check) is a 400 naming the problem; otherwise 204."""
    who = await authorize(request, DEFINE_SCOPES, what)
    try:
        await write(who)
    except refused as exc:
        raise HTTPException(400, str(exc)) from None
    return Response(status_code=204)
