"""The equity API: groups of students against all students, per school or district, plan or competency,
with small-n suppression already applied for the audience (it is stored that way; see ``_refresh``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import Response

from proficio_events import EventLog, NewEvent

from .._http import (
    CSV_OK,
    DEFINE_SCOPES,
    READ_SCOPES,
    Caller,
    authorize,
    csv_response,
    json_response,
    record_change,
    wants_csv,
)
from ..pacing._plans import SUPPRESSION_SET
from ._aggregate import ALL, DISTRICT, FACTORS
from ._refresh import suppression_rules
from ._rules import SuppressionRules, SuppressionRulesError
from ._tables import equity_cells, equity_state

Consistency = Callable[[Request, str], Awaitable[dict[str, str]]]
JsonBody = Annotated[dict[str, Any], Body()]
#: Unsuppressed cells are for staff with a legitimate educational interest: the ``all`` scope.
STAFF_SCOPES = frozenset({"all"})
COUNTED = ("mastered", "on_track", "stalled")


def equity_router() -> APIRouter:
    api = APIRouter(prefix="/equity", tags=["equity"])

    def log_of(request: Request) -> EventLog:
        log: EventLog = request.app.state.log
        return log

    @api.put("/rules", status_code=204)
    async def put_rules(request: Request, body: JsonBody) -> Response:
        """The tenant's suppression rules: ``preset`` (CO, DE, CA, WI, UT) and/or overrides such as ``min_n``,
        ``min_count``, ``coding`` (see the README); applied at the next refresh."""

        async def write(who: Caller) -> None:
            try:
                SuppressionRules.from_mapping(body)
            except SuppressionRulesError as exc:
                raise SuppressionRulesError(f"suppression rules: {exc}") from None
            event = NewEvent.of("equity:rules", SUPPRESSION_SET, {"scope": "tenant", "settings": body})
            await log_of(request).append(who.tenant, [event])

        return await record_change(request, "changing the suppression rules", write, (SuppressionRulesError,))

    @api.get("/rules")
    async def get_rules(request: Request) -> Response:
        who = await authorize(request, READ_SCOPES | DEFINE_SCOPES, "reading the suppression rules")
        async with log_of(request).engine.connect() as conn:
            rules = await suppression_rules(conn, who.tenant)
        return json_response(rules.to_mapping())

    @api.get("/status")
    async def refresh_status(request: Request) -> Response:
        """When the tenant's equity views were last refreshed, for which day, over how many learners."""
        who = await authorize(request, READ_SCOPES, "reading equity views")
        async with log_of(request).engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(equity_state).where(equity_state.c.tenant == who.tenant)))
                .mappings()
                .first()
            )
        if row is None:
            return json_response({"refreshed": False})
        return json_response({"refreshed": True, "as_of": row["as_of"], "learners": row["learners"],
                              "refreshed_us": row["refreshed_us"]})  # fmt: skip

    @api.get("/scopes")
    async def scopes(request: Request) -> Response:
        """The scopes (plans and competencies) and levels (district, schools) the equity views hold."""
        who = await authorize(request, READ_SCOPES, "reading equity views")
        async with log_of(request).engine.connect() as conn:
            rows = await conn.execute(
                sa.select(equity_cells.c.scope, equity_cells.c.level).where(
                    equity_cells.c.tenant == who.tenant, equity_cells.c.audience == "public",
                    equity_cells.c.factor == ALL,
                ).distinct()
            )  # fmt: skip
            found: dict[str, list[str]] = {}
            for scope, level in rows:
                found.setdefault(scope, []).append(level)
        return json_response(
            {"scopes": [{"scope": s, "levels": sorted(levels)} for s, levels in sorted(found.items())]}
        )

    @api.get("", responses=CSV_OK)
    async def equity_table(
        request: Request,
        scope: str = Query(..., description="plan:<id> or competency:<IRI>"),
        factor: str = Query(..., description=f"One of {', '.join(FACTORS)}"),
        level: str = Query(DISTRICT, description="district, or school:<sourcedId>"),
        audience: str = Query("public", description="public (suppressed) or staff (needs the all scope)"),
        format: str | None = None,
    ) -> Response:
        """One factor's groups against all students: n, percent mastered / on track / stalled (with Wilson 95%
        intervals), median velocity and percent mastered (plans), and each gap against all students, as
        the audience may see them: suppressed cells carry why (primary, complementary, top_bottom) and the
        label to show instead, never the value."""
        if factor not in FACTORS:
            raise HTTPException(400, f"factor is one of {', '.join(FACTORS)}, not {factor!r}")
        if audience not in ("public", "staff"):
            raise HTTPException(400, f"audience is public or staff, not {audience!r}")
        who = await authorize(request, STAFF_SCOPES if audience == "staff" else READ_SCOPES,
                              f"reading the {audience} equity views")  # fmt: skip
        as_csv = wants_csv(request, format)
        async with log_of(request).engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(equity_cells).where(
                        equity_cells.c.tenant == who.tenant, equity_cells.c.audience == audience,
                        equity_cells.c.scope == scope, equity_cells.c.level == level,
                        equity_cells.c.factor.in_([factor, ALL]),
                    ).order_by(equity_cells.c.value)
                )
            ).mappings().all()  # fmt: skip
        if not rows:
            raise HTTPException(404, f"no equity view for {scope} at {level} (see /equity/scopes; views refresh "
                                     "every few seconds)")  # fmt: skip
        cells = {r["value"] if r["factor"] == factor else None: r for r in rows}
        everyone = cells.pop(None)
        reference = orjson.loads(everyone["metrics"])

        def shown(row: Any) -> dict[str, Any]:
            metrics = orjson.loads(row["metrics"])
            gaps = {name: (round(m["value"] - reference[name]["value"], 1)
                           if m["value"] is not None and reference.get(name, {}).get("value") is not None else None)
                    for name, m in metrics.items()}  # fmt: skip
            return {"value": row["value"], "n": row["n"], "hidden": row["hidden"], "label": row["label"],
                    "metrics": metrics, "gap_vs_all": gaps}  # fmt: skip

        groups = [shown(r) for _, r in sorted(cells.items(), key=lambda item: str(item[0]))]
        body = {"scope": scope, "level": level, "factor": factor, "audience": audience, "as_of": everyone["as_of"],
                "all": shown(everyone) | {"gap_vs_all": None}, "groups": groups}  # fmt: skip
        if as_csv:
            names = sorted(reference)
            return csv_response(
                ["scope", "level", "factor", "value", "n", *names, *(f"gap_{n}" for n in names)],
                ([scope, level, factor, g["value"], g["n"] if g["n"] is not None else g["label"],
                  *(_shown_metric(g["metrics"][n]) for n in names), *(g["gap_vs_all"].get(n) for n in names)]
                 for g in [body["all"] | {"value": "all", "gap_vs_all": {}}, *groups]),
            )  # fmt: skip
        return json_response(body)

    return api


def _shown_metric(metric: dict[str, Any]) -> Any:
    if metric["value"] is not None:
        return metric["value"]
    return metric["label"]
