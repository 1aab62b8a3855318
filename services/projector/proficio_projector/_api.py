"""Running projectors beside the xAPI service, and the HTTP API that reads their views.

``install(app, projections)`` adds both to a FastAPI app whose lifespan opens ``app.state.log``: on
the embedded default the projectors tail the SQL log in the same process, so one command gives a
working system. Views are read per tenant (every view table's first key column is ``tenant``), in
pages keyed by the row key, with ``X-Experience-API-Consistent-Through`` giving how far into the log
the view has folded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import Response

from proficio_events import EventLog

from ._http import Caller, LearnerId, record_access
from ._model import Projection
from ._runtime import RunnerSettings, active_watermark, sql_projectors, status
from ._settings import StreamSettings
from ._store import ViewStore, active_generation, migrate_runtime
from .roster import PROTECTED_VIEWS

READ_SCOPES = frozenset({"all", "all/read", "statements/read"})
#: The one scope that may read a protected view (``roster.PROTECTED_VIEWS``).
PROTECTED_SCOPE = "all"
MAX_PAGE = 1000


def _json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json", headers=headers)


async def _tenant(request: Request, view: str | None = None) -> str:
    """The caller's tenant, once its credential may read views (and ``view``, if that one is protected)."""
    return (await _caller(request, view)).tenant


async def _caller(request: Request, view: str | None = None) -> Caller:
    """The caller, once its credential may read views (and ``view``, if that one is protected)."""
    credential: Caller = await request.app.state.credentials.authenticate(request.headers.get("authorization"))
    if not credential.scopes & READ_SCOPES:
        raise HTTPException(403, f"reading views needs one of the scopes {', '.join(sorted(READ_SCOPES))}")
    if view in PROTECTED_VIEWS and PROTECTED_SCOPE not in credential.scopes:
        # Group memberships (race, disability, ...) are protected: read-only credentials do not get them.
        raise HTTPException(
            403, f"the view {view!r} holds protected data: reading it needs the scope {PROTECTED_SCOPE}"
        )
    return credential


async def _record_rows_read(request: Request, who: Caller, rows: Sequence[dict[str, Any]]) -> None:
    """Rows about learners (a ``learner`` column) go on those learners' record of access, like every other read."""
    learners = {row["learner"] for row in rows if isinstance(row.get("learner"), str)}
    if learners:
        await record_access(request, who, sorted(learners))


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def router(projections: Sequence[Projection], stream: StreamSettings) -> APIRouter:
    by_name = {p.name: p for p in projections}
    api = APIRouter(prefix="/views", tags=["views"])

    @api.get("/status")
    async def projector_status(request: Request) -> Response:
        """Each projector's generation, watermark (log position), lag (events) and open dead letters."""
        await _tenant(request)
        log: EventLog = request.app.state.log
        found = await status(log, topic=stream.kafka_topic)
        return _json(
            [
                {
                    "name": s.name, "generation": s.generation, "code_version": s.code_version, "status": s.status,
                    "watermark": s.watermark, "lag": s.lag, "dead_letters": s.dead_letters,
                }
                for s in found
            ]
        )  # fmt: skip

    @api.get("/{name}/{table}")
    async def list_rows(
        request: Request, name: str, table: str, limit: int = 100, after: str | None = None
    ) -> Response:
        """Rows of one view table for the caller's tenant, in key order; ``more`` gives the next page."""
        who = await _caller(request, name)
        tenant = who.tenant
        _store, physical = await _view(request, by_name, name, table)
        if not 1 <= limit <= MAX_PAGE:
            raise HTTPException(400, f"limit must be between 1 and {MAX_PAGE}")
        keys = [c for c in physical.primary_key.columns]
        query = sa.select(physical).where(keys[0] == tenant).order_by(*keys).limit(limit + 1)
        if after is not None:
            try:
                last = orjson.loads(after)
            except orjson.JSONDecodeError:
                last = None
            if not isinstance(last, list) or len(last) != len(keys) - 1:
                raise HTTPException(400, f"after must be a JSON array of {len(keys) - 1} key value(s)")
            query = query.where(sa.tuple_(*keys[1:]) > sa.tuple_(*(sa.literal(v) for v in last)))
        log: EventLog = request.app.state.log
        async with log.engine.connect() as conn:
            rows = [{str(k): v for k, v in r.items()} for r in (await conn.execute(query)).mappings()]
        more = None
        if len(rows) > limit:
            rows = rows[:limit]
            cursor = orjson.dumps([rows[-1][c.name] for c in keys[1:]]).decode()
            more = str(request.url.include_query_params(after=cursor))
        await _record_rows_read(request, who, rows)
        return _json({"rows": rows, "more": more}, headers=await _consistency(request, name, stream))

    @api.get("/{name}/{table}/{key:path}")
    async def one_row(request: Request, name: str, table: str, key: str) -> Response:
        """One row by the rest of its key (after the tenant), ``/``-separated."""
        who = await _caller(request, name)
        tenant = who.tenant
        _store, physical = await _view(request, by_name, name, table)
        keys = list(physical.primary_key.columns)
        parts = key.split("/")
        if len(parts) != len(keys) - 1:
            raise HTTPException(400, f"{name}/{table} rows are keyed by {', '.join(c.name for c in keys[1:])}")
        log: EventLog = request.app.state.log
        async with log.engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(physical).where(*(c == v for c, v in zip(keys, [tenant, *parts], strict=True)))
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise HTTPException(404, f"no such row in {name}/{table}")
        found = {str(k): v for k, v in row.items()}
        await _record_rows_read(request, who, [found])
        return _json(found, headers=await _consistency(request, name, stream))

    return api


async def _view(request: Request, by_name: dict[str, Projection], name: str, table: str) -> tuple[ViewStore, sa.Table]:
    projection = by_name.get(name)
    if projection is None:
        raise HTTPException(404, f"no view named {name!r}; known: {', '.join(sorted(by_name))}")
    log: EventLog = request.app.state.log
    async with log.engine.connect() as conn:
        generation = await active_generation(conn, name)
    if generation is None:
        raise HTTPException(503, f"the view {name!r} has not been built yet")
    store = ViewStore(projection, generation)
    if table not in store.tables:
        raise HTTPException(404, f"{name} has no table {table!r}; it has {', '.join(sorted(store.tables))}")
    return store, store.table(table)


async def _consistency(request: Request, name: str, stream: StreamSettings) -> dict[str, str]:
    """The view holds every event recorded up to this time (its slowest worker's watermark)."""
    log: EventLog = request.app.state.log
    found = await active_watermark(log, name, topic=stream.kafka_topic)
    when = _iso(found[1]) if found is not None else None
    return {"X-Experience-API-Consistent-Through": when} if when else {}


def install(
    app: FastAPI,
    projections: Sequence[Projection],
    stream: StreamSettings | None = None,
    runner: RunnerSettings | None = None,
    *,
    run_projectors: bool = True,
    learner_id: LearnerId | None = None,
) -> None:
    """Add the views API to ``app`` and, with ``run_projectors``, run the projectors on the SQL log in its lifespan.

    ``learner_id`` turns an xAPI agent into the learner id of the views (the competency API's ``agent=``), through
    the learner directory (``proficio_ingest.directory_learner_id``).
    """
    from .audit._access import AccessRecorder
    from .audit._api import audit_router
    from .competency._api import competency_router
    from .equity import EquityRefresher
    from .equity._api import equity_router
    from .pacing._api import pacing_router

    stream = stream or StreamSettings()
    chosen = stream
    app.state.grid_cache_learners = stream.grid_cache_learners
    app.include_router(router(projections, stream))

    async def consistency(request: Request, name: str) -> dict[str, str]:
        return await _consistency(request, name, chosen)

    app.include_router(competency_router(consistency, learner_id))
    app.include_router(pacing_router(consistency, learner_id))
    app.include_router(equity_router())
    app.include_router(audit_router(learner_id))
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            log: EventLog = app_.state.log
            await migrate_runtime(log)
            stop = asyncio.Event()
            recorder = AccessRecorder(log)
            app_.state.access_recorder = recorder
            tasks = (
                [asyncio.create_task(p.run(stop)) for p in sql_projectors(log, projections, runner)]
                + [asyncio.create_task(EquityRefresher(log).run(stop))]
                if run_projectors
                else []
            )
            tasks.append(asyncio.create_task(recorder.run(stop)))  # reads are recorded whoever folds the views
            try:
                yield state
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)

    app.router.lifespan_context = lifespan
