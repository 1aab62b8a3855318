"""The pacing API: plans, calendars, thresholds and graduation menus (each change an event), and the
views computed from them on a day: a learner's pace, a plan's learners, readiness, and a section's
intervention queue. JSON (paginated) or CSV, as the competency API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog

from .._http import (
    CSV_OK,
    DEFINE_SCOPES,
    READ_SCOPES,
    LearnerId,
    authorize,
    check_limit,
    csv_response,
    json_response,
    parse_day,
    read_learner,
    record_access,
    record_change,
    text,
    wants_csv,
)
from .._learner_activity import LearnerActivity
from .._store import ViewStore, active_generation
from ..competency import CompetencyEvidence, CompetencyReference, Frameworks, Observation, Progress, StallRule
from ..competency._reads import NotBuilt, Reference, scored
from ._calendar import SchoolCalendar
from ._interventions import intervention_queue
from ._pace import Pace, learners_of, pace
from ._plans import (
    PacingDataError,
    PacingPlan,
    PacingReference,
    PacingReferenceView,
    reference_from_rows,
    set_calendar,
    set_pacing_policy,
    set_plan,
)
from ._readiness import Readiness, readiness, set_menu

Consistency = Callable[[Request, str], Awaitable[dict[str, str]]]
JsonBody = Annotated[dict[str, Any], Body()]


async def pacing_reference(conn: AsyncConnection, tenant: str) -> PacingReference:
    generation = await active_generation(conn, PacingReferenceView.name)
    if generation is None:
        return PacingReference()
    store = ViewStore(PacingReferenceView(), generation)
    rows: dict[str, list[dict[str, Any]]] = {}
    for name in ("calendars", "plans", "policies", "menus", "suppression"):
        table = store.table(name)
        found = await conn.execute(sa.select(table.c.id, table.c.data).where(table.c.tenant == tenant))
        rows[name] = [{"id": i, "data": d} for i, d in found]
    return reference_from_rows(rows)


async def section_rosters(conn: AsyncConnection, tenant: str, sections: Iterable[str]) -> dict[str, list[str]]:
    wanted = sorted(set(sections))
    generation = await active_generation(conn, CompetencyReference.name)
    if generation is None or not wanted:
        return {}
    table = ViewStore(CompetencyReference(), generation).table("sections")
    rows = await conn.execute(
        sa.select(table.c.section, table.c.learners).where(table.c.tenant == tenant, table.c.section.in_(wanted))
    )
    return {section: orjson.loads(learners) for section, learners in rows}


async def last_activity(conn: AsyncConnection, tenant: str, learners: Sequence[str]) -> dict[str, int]:
    """Each learner's latest statement timestamp (µs), from the learner_activity view."""
    generation = await active_generation(conn, LearnerActivity.name)
    if generation is None or not learners:
        return {}
    table = ViewStore(LearnerActivity(), generation).table("learners")
    rows = await conn.execute(
        sa.select(table.c.learner, table.c.last_activity_us).where(
            table.c.tenant == tenant, table.c.learner.in_(list(learners))
        )
    )
    return {learner: int(last) for learner, last in rows}


async def precedes_graph(conn: AsyncConnection, tenant: str) -> dict[str, list[str]]:
    generation = await active_generation(conn, Frameworks.name)
    if generation is None:
        return {}
    table = ViewStore(Frameworks(), generation).table("relations")
    rows = await conn.execute(
        sa.select(table.c.origin, table.c.destination).where(table.c.tenant == tenant, table.c.type == "precedes")
    )
    graph: dict[str, list[str]] = {}
    for origin, destination in rows:
        graph.setdefault(origin, []).append(destination)
    return graph


def _end_of(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + 86_400) * 1_000_000 - 1


@dataclass
class Standing:
    """What the pacing views need of a set of learners on a day."""

    as_of: date
    progress: dict[str, dict[str, Progress]]
    observations: dict[str, list[Observation]]
    last_seen: dict[str, date]
    competency_reference: Reference


async def standing(
    conn: AsyncConnection, tenant: str, learners: Sequence[str], competencies: Iterable[str], as_of: date,
    stall: StallRule,
) -> Standing:  # fmt: skip
    """Progress of these learners on the evidence up to the end of ``as_of``, judged on that day."""
    until = _end_of(as_of)
    loaded = await scored(conn, tenant, learners, now_us=until, competencies=competencies, until_us=until, stall=stall)
    seen = await last_activity(conn, tenant, learners)
    return Standing(
        as_of, loaded.progress, {learner: obs for learner, (obs, _) in loaded.evidence.items()},
        {learner: _day(us) for learner, us in seen.items() if us <= until}, loaded.reference,
    )  # fmt: skip


def _day(us: int) -> date:
    return datetime.fromtimestamp(us / 1_000_000, UTC).date()


def pace_item(learner: str, p: Pace, label: Callable[[str], str | None]) -> dict[str, Any]:
    return {
        "learner": learner, "plan": p.plan, "as_of": p.as_of.isoformat(), "required": p.required,
        "mastered": p.mastered, "remaining": p.remaining, "pct_mastered": str(p.pct_mastered),
        "expected_pct": str(p.expected_pct), "pace_status": p.status, "active_weeks": p.active_weeks,
        "last_active_week": text(p.last_active_week), "velocity": {
            "window": str(p.velocity_window), "lifetime": str(p.velocity_lifetime), "smoothed": str(p.velocity_ewma),
        },
        "required_velocity": text(p.required_velocity),
        "projected_completion": text(p.projected_completion),
        "projected_range": [text(p.projected_early), text(p.projected_late)],
        "behind_count": len(p.behind), "behind_bucket": p.behind_bucket,
        "behind": [{"competency": c, "code": label(c)} for c in p.behind],
        "stalled": [{"competency": c, "code": label(c)} for c in p.stalled],
        "stalled_learner": p.stalled_learner, "disengaged": p.disengaged, "last_activity": text(p.last_activity),
        "time_to_mastery": [{"competency": t.competency, "code": label(t.competency), "days": t.days,
                             "attempts": t.attempts} for t in p.time_to_mastery],
    }  # fmt: skip


PACE_COLUMNS = ("learner", "plan", "as_of", "required", "mastered", "pct_mastered", "expected_pct", "pace_status",
                "active_weeks", "velocity_window", "required_velocity", "projected_completion", "behind_count",
                "behind_bucket", "stalled_count", "stalled_learner", "disengaged", "last_activity")  # fmt: skip


def pace_row(learner: str, p: Pace) -> list[Any]:
    return [learner, p.plan, p.as_of.isoformat(), p.required, p.mastered, p.pct_mastered, p.expected_pct, p.status,
            p.active_weeks, p.velocity_window, p.required_velocity, text(p.projected_completion), len(p.behind),
            p.behind_bucket, len(p.stalled), p.stalled_learner, p.disengaged, text(p.last_activity)]  # fmt: skip


def readiness_item(learner: str, r: Readiness) -> dict[str, Any]:
    return {
        "learner": learner, "menu": r.menu, "as_of": r.as_of.isoformat(), "ready": r.ready,
        "ready_on": text(r.ready_on), "projected_ready": text(r.projected_ready),
        "requirements": [
            {"area": q.area, "title": q.title, "met": q.met, "met_by": q.met_by, "met_on": text(q.met_on),
             "options": [{"id": o.option, "kind": o.kind, "met": o.met, "met_on": text(o.met_on),
                          "evidence": list(o.evidence), "still_needed": o.still_needed} for o in q.options]}
            for q in r.requirements
        ],
    }  # fmt: skip


def pacing_router(consistency: Consistency, learner_id: LearnerId | None) -> APIRouter:
    api = APIRouter(prefix="/pacing", tags=["pacing"])

    def log_of(request: Request) -> EventLog:
        log: EventLog = request.app.state.log
        return log

    def today() -> date:
        return datetime.now(UTC).date()

    async def record(request: Request, write: Callable[[EventLog, str], Awaitable[Any]]) -> Response:
        return await record_change(
            request, "changing pacing reference data", lambda who: write(log_of(request), who.tenant),
            (PacingDataError,),
        )  # fmt: skip

    def same_id(path_id: str, body: dict[str, Any], field: str) -> dict[str, Any]:
        if body.get(field, path_id) != path_id:
            raise HTTPException(400, f"the body's {field} ({body.get(field)!r}) differs from the address ({path_id!r})")
        return {**body, field: path_id}

    @api.put("/calendars/{calendar}", status_code=204)
    async def put_calendar(request: Request, calendar: str, body: JsonBody) -> Response:
        """A school calendar: ``first_day``, ``last_day``, ``breaks`` [{first, last, name}], ``weekdays``
        (0 = Monday); without one a plan counts Monday to Friday."""
        return await record(request, lambda log, tenant: set_calendar(log, tenant, same_id(calendar, body, "calendar")))

    @api.put("/plans/{plan}", status_code=204)
    async def put_plan(request: Request, plan: str, body: JsonBody) -> Response:
        """A pacing plan: ``title``, ``start``, ``target``, ``calendar``, ``sections``, ``learners`` and
        ``competencies`` [{uri, tier: must|should|aspire, week}]; it replaces the plan."""
        return await record(request, lambda log, tenant: set_plan(log, tenant, same_id(plan, body, "plan")))

    @api.put("/policy", status_code=204)
    async def put_policy(request: Request, body: JsonBody) -> Response:
        """The tenant's pacing thresholds: band_pct, window_weeks, ewma_alpha, stall_attempts, stall_idle_days,
        disengaged_days (the ones left out take their defaults)."""
        return await record(request, lambda log, tenant: set_pacing_policy(log, tenant, body))

    @api.put("/graduation-menus/{menu}", status_code=204)
    async def put_menu(request: Request, menu: str, body: JsonBody) -> Response:
        """A graduation menu: ``requirements`` [{area, title, options: [{id, kind, ...}]}] (see the README)."""
        return await record(request, lambda log, tenant: set_menu(log, tenant, same_id(menu, body, "menu")))

    @api.get("/reference")
    async def get_reference(request: Request) -> Response:
        """The tenant's calendars, plans, pacing thresholds and graduation menus."""
        who = await authorize(request, READ_SCOPES | DEFINE_SCOPES, "reading pacing reference data")
        async with log_of(request).engine.connect() as conn:
            generation = await active_generation(conn, PacingReferenceView.name)
            found: dict[str, Any] = {"calendars": [], "plans": [], "policies": [], "menus": []}
            if generation is not None:
                store = ViewStore(PacingReferenceView(), generation)
                for name in found:
                    table = store.table(name)
                    rows = await conn.execute(sa.select(table.c.data).where(table.c.tenant == who.tenant))
                    found[name] = [orjson.loads(d) for (d,) in rows]
        return json_response(found)

    async def plan_of(conn: AsyncConnection, tenant: str, plan_id: str) -> tuple[PacingReference, PacingPlan]:
        ref = await pacing_reference(conn, tenant)
        plan = ref.plans.get(plan_id)
        if plan is None:
            raise HTTPException(404, f"no pacing plan {plan_id!r}")
        return ref, plan

    def stall_of(ref: PacingReference) -> StallRule:
        return ref.policy.stall_rule()

    @api.get("/progress", responses=CSV_OK)
    async def learner_pace(
        request: Request,
        learner: str | None = None,
        agent: str | None = None,
        plan: str | None = Query(None, description="One plan; else every plan the learner follows"),
        as_of: str | None = Query(None, description="The day to judge on (default: today)"),
        format: str | None = None,
    ) -> Response:
        """A learner's pace on her plans: percent mastered against expected, velocity (window, lifetime,
        smoothed), required velocity, projected completion with a range, pace status, what is behind or
        stalled, disengagement, and time and attempts to mastery. Measured on evidence, never seat time."""
        who, chosen = await read_learner(request, READ_SCOPES, "reading pacing", learner_id, learner, agent)
        day = parse_day(as_of) or today()
        as_csv = wants_csv(request, format)
        try:
            async with log_of(request).engine.connect() as conn:
                ref = await pacing_reference(conn, who.tenant)
                rosters = await section_rosters(conn, who.tenant, {s for p in ref.plans.values() for s in p.sections})
                if plan is not None and plan not in ref.plans:
                    raise HTTPException(404, f"no pacing plan {plan!r}")
                plans = [p for p in ref.plans.values() if (plan is None or p.plan == plan)
                         and (plan is not None or chosen in learners_of(p, rosters))]  # fmt: skip
                wanted = {c.uri for p in plans for c in p.competencies}
                found = await standing(conn, who.tenant, [chosen], wanted, day, stall_of(ref))
        except NotBuilt as exc:
            raise HTTPException(503, f"the {exc.args[0]} view has not been built yet") from None
        label = _labeller(found.competency_reference)
        seen = found.last_seen.get(chosen)
        mine = found.progress[chosen]
        paces = [pace(p, ref.calendar_of(p), ref.policy, mine, day, last_activity=seen)
                 for p in sorted(plans, key=lambda p: p.plan)]  # fmt: skip
        headers = await consistency(request, CompetencyEvidence.name)
        if as_csv:
            return csv_response(PACE_COLUMNS, (pace_row(chosen, p) for p in paces), headers)
        return json_response(
            {"learner": chosen, "plans": [pace_item(chosen, p, label) for p in paces]}, headers=headers
        )

    @api.get("/plans/{plan_id}/learners", responses=CSV_OK)
    async def plan_learners(
        request: Request,
        plan_id: str,
        as_of: str | None = None,
        pace_status: str | None = Query(None, description="Only ahead, on_track or behind"),
        limit: int = 100,
        after: str | None = Query(None, description="The last learner of the previous page"),
        format: str | None = None,
    ) -> Response:
        """Every learner on a plan (its learners and its sections'), each with her pace on the day."""
        who = await authorize(request, READ_SCOPES, "reading pacing")
        day = parse_day(as_of) or today()
        page = check_limit(limit)
        as_csv = wants_csv(request, format)
        if pace_status not in (None, "ahead", "on_track", "behind"):
            raise HTTPException(400, f"pace_status is ahead, on_track or behind, not {pace_status!r}")
        try:
            async with log_of(request).engine.connect() as conn:
                ref, plan = await plan_of(conn, who.tenant, plan_id)
                rosters = await section_rosters(conn, who.tenant, plan.sections)
                learners = [x for x in learners_of(plan, rosters) if after is None or x > after]
                found = await standing(conn, who.tenant, learners, {c.uri for c in plan.competencies}, day,
                                       stall_of(ref))  # fmt: skip
        except NotBuilt as exc:
            raise HTTPException(503, f"the {exc.args[0]} view has not been built yet") from None
        calendar = ref.calendar_of(plan)
        paces = [(x, pace(plan, calendar, ref.policy, found.progress[x], day, last_activity=found.last_seen.get(x)))
                 for x in learners]  # fmt: skip
        paces = [(x, p) for x, p in paces if pace_status is None or p.status == pace_status]
        more = None
        if len(paces) > page:
            paces = paces[:page]
            more = str(request.url.include_query_params(after=paces[-1][0]))
        await record_access(request, who, [x for x, _ in paces])
        headers = await consistency(request, CompetencyEvidence.name)
        if as_csv:
            if more:
                headers["Link"] = f'<{more}>; rel="next"'
            return csv_response(PACE_COLUMNS, (pace_row(x, p) for x, p in paces), headers)
        label = _labeller(found.competency_reference)
        body = {"plan": plan.plan, "title": plan.title, "as_of": day.isoformat(),
                "learners": [pace_item(x, p, label) for x, p in paces], "more": more}  # fmt: skip
        return json_response(body, headers=headers)

    @api.get("/readiness", responses=CSV_OK)
    async def learner_readiness(
        request: Request,
        menu: str,
        learner: str | None = None,
        agent: str | None = None,
        as_of: str | None = None,
        format: str | None = None,
    ) -> Response:
        """A learner's graduation readiness on a menu: each requirement met or not, by which option and
        evidence, and when; and the projected readiness date at her mastery velocity."""
        who, chosen = await read_learner(request, READ_SCOPES, "reading readiness", learner_id, learner, agent)
        day = parse_day(as_of) or today()
        as_csv = wants_csv(request, format)
        try:
            async with log_of(request).engine.connect() as conn:
                ref = await pacing_reference(conn, who.tenant)
                if menu not in ref.menus:
                    raise HTTPException(404, f"no graduation menu {menu!r}")
                chosen_menu = ref.menus[menu]
                named = {c for r in chosen_menu["requirements"] for o in r["options"]
                         for c in [*o.get("competencies", []), o.get("parent"), o.get("competency")] if c}  # fmt: skip
                found = await standing(conn, who.tenant, [chosen], named, day, stall_of(ref))
        except NotBuilt as exc:
            raise HTTPException(503, f"the {exc.args[0]} view has not been built yet") from None
        competencies = found.competency_reference
        children = competencies.children({c.framework for c in competencies.competencies.values()})
        mine = found.progress[chosen]
        firsts = [p.mastered_at_us for p in mine.values() if p.mastered_at_us is not None]
        weeks = {SchoolCalendar().week_of(_day(e.timestamp_us)) for p in mine.values() for e in p.evidence}
        velocity = Decimal(len(firsts)) / len(weeks) if weeks else Decimal(0)
        result = readiness(chosen_menu, mine, found.observations[chosen], day, children=children, velocity=velocity)
        headers = await consistency(request, CompetencyEvidence.name)
        if as_csv:
            return csv_response(
                ["learner", "menu", "as_of", "area", "met", "met_by", "met_on", "evidence"],
                ([chosen, result.menu, day.isoformat(), q.area, q.met, q.met_by, text(q.met_on),
                  " ".join(e for o in q.options if o.option == q.met_by for e in o.evidence)]
                 for q in result.requirements),
                headers,
            )  # fmt: skip
        return json_response(readiness_item(chosen, result), headers=headers)

    @api.get("/sections/{section}/interventions", responses=CSV_OK)
    async def interventions(
        request: Request, section: str, plan: str, as_of: str | None = None, format: str | None = None
    ) -> Response:
        """A section's intervention queue on a plan: learners ranked by how far behind, their stalled
        prerequisites weighted by what those block, and the time to the target, with the reasons."""
        who = await authorize(request, READ_SCOPES, "reading interventions")
        day = parse_day(as_of) or today()
        as_csv = wants_csv(request, format)
        try:
            async with log_of(request).engine.connect() as conn:
                ref, chosen_plan = await plan_of(conn, who.tenant, plan)
                rosters = await section_rosters(conn, who.tenant, [section])
                if section not in rosters:
                    raise HTTPException(404, f"no section {section!r}")
                learners = sorted(rosters[section])
                found = await standing(conn, who.tenant, learners, {c.uri for c in chosen_plan.competencies}, day,
                                       stall_of(ref))  # fmt: skip
                graph = await precedes_graph(conn, who.tenant)
        except NotBuilt as exc:
            raise HTTPException(503, f"the {exc.args[0]} view has not been built yet") from None
        calendar = ref.calendar_of(chosen_plan)
        paces = {x: pace(chosen_plan, calendar, ref.policy, found.progress[x], day,
                         last_activity=found.last_seen.get(x)) for x in learners}  # fmt: skip
        label = _labeller(found.competency_reference)
        days_left = calendar.school_days(day, chosen_plan.target)
        queue = intervention_queue(paces, graph, days_left, label=lambda c: label(c) or c)
        await record_access(request, who, [q.learner for q in queue])
        headers = await consistency(request, CompetencyEvidence.name)
        if as_csv:
            return csv_response(
                ["rank", "learner", "plan", "behind_count", "stalled", "blocked_weight", "pace_status", "disengaged",
                 "school_days_to_target", "reasons"],
                ([q.rank, q.learner, q.plan, q.behind, " ".join(label(c) or c for c in q.stalled), q.blocked_weight,
                  q.pace_status, q.disengaged, q.school_days_to_target, "; ".join(q.reasons)] for q in queue),
                headers,
            )  # fmt: skip
        body = {
            "section": section, "plan": plan, "as_of": day.isoformat(), "learners_total": len(learners),
            "queue": [{"rank": q.rank, "learner": q.learner, "behind_count": q.behind,
                       "stalled": [{"competency": c, "code": label(c)} for c in q.stalled],
                       "blocked_weight": q.blocked_weight, "pace_status": q.pace_status, "disengaged": q.disengaged,
                       "school_days_to_target": q.school_days_to_target, "reasons": list(q.reasons)} for q in queue],
        }  # fmt: skip
        return json_response(body, headers=headers)

    return api


def _labeller(ref: Reference) -> Callable[[str], str | None]:
    def label(competency: str) -> str | None:
        return ref.label(competency)[0]

    return label
