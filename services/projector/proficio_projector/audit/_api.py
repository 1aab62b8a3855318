"""The audit API (scope ``all``): a learner's history, her views as of a moment, and the diff of two."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from proficio_events import EventLog, read_keys

from .._http import LearnerId, authorize, json_response, now_us, read_learner, resolve_learner
from ..competency._reads import NotBuilt
from ._access import listed_access
from ._replay import diff, learner_events, summary, views_as_of

AUDIT_SCOPES = frozenset({"all"})


def _moment(value: str | None, what: str) -> int:
    if value is None:
        return now_us()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{what} must be an ISO 8601 time, not {value!r}") from None
    if moment.tzinfo is None:
        raise HTTPException(400, f"{what} needs a time zone (for example 2026-11-20T09:00:00Z)")
    return int(moment.timestamp() * 1_000_000)


def audit_router(learner_id: LearnerId | None) -> APIRouter:
    api = APIRouter(prefix="/audit", tags=["audit"])

    def log_of(request: Request) -> EventLog:
        log: EventLog = request.app.state.log
        return log

    @api.get("/learner/history")
    async def history(request: Request, learner: str | None = None, agent: str | None = None) -> Response:
        """Every event about the learner in log order: statements, voiding statements, teacher ratings and
        their withdrawal, group memberships."""
        who, chosen = await read_learner(request, AUDIT_SCOPES, "auditing a learner", learner_id, learner, agent)
        try:
            events = await learner_events(log_of(request), who.tenant, chosen)
        except NotBuilt as exc:
            raise HTTPException(503, f"the {exc.args[0]} view has not been built yet") from None
        keys = await read_keys(log_of(request).engine, who.tenant, [e.key_id for e in events])
        return json_response({"learner": chosen, "events": [summary(e, keys) for e in events]})

    @api.get("/learner/access")
    async def access(request: Request, learner: str | None = None, agent: str | None = None) -> Response:
        """The record of access to the learner's data: which credential read what about her, and when (FERPA's
        record of disclosures). Reads are recorded within a fraction of a second."""
        who = await authorize(request, AUDIT_SCOPES, "auditing a learner")
        chosen = await resolve_learner(request, learner_id, who.tenant, learner, agent)
        listed = await listed_access(log_of(request), who.tenant, chosen)
        return json_response({"learner": chosen, "accesses": listed})

    @api.get("/learner/views")
    async def as_of(
        request: Request,
        learner: str | None = None,
        agent: str | None = None,
        at: str | None = Query(None, description="The moment (ISO 8601 with a zone; default now)"),
    ) -> Response:
        """The learner's competency progress, rollups, pace and groups as the log held them at ``at``,
        replayed from the log (equal to the live views when ``at`` is now)."""
        who, chosen = await read_learner(request, AUDIT_SCOPES, "auditing a learner", learner_id, learner, agent)
        moment = _moment(at, "at")
        try:
            found = await views_as_of(log_of(request), who.tenant, chosen, moment)
        except NotBuilt as exc:
            raise HTTPException(503, f"the {exc.args[0]} view has not been built yet") from None
        return json_response(found.as_dict())

    @api.get("/learner/diff")
    async def between(
        request: Request,
        since: str = Query(..., alias="from", description="The earlier moment (ISO 8601)"),
        until: str | None = Query(None, alias="to", description="The later moment (default now)"),
        learner: str | None = None,
        agent: str | None = None,
    ) -> Response:
        """Which evidence changed which conclusion between two moments."""
        who, chosen = await read_learner(request, AUDIT_SCOPES, "auditing a learner", learner_id, learner, agent)
        first, second = _moment(since, "from"), _moment(until, "to")
        if second < first:
            raise HTTPException(400, "to must not come before from")
        try:
            events = await learner_events(log_of(request), who.tenant, chosen)
            before = await views_as_of(log_of(request), who.tenant, chosen, first, events=events)
            after = await views_as_of(log_of(request), who.tenant, chosen, second, events=events)
        except NotBuilt as exc:
            raise HTTPException(503, f"the {exc.args[0]} view has not been built yet") from None
        return json_response(diff(before, after))

    return api
