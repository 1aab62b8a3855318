"""The competency API for dashboards and the people behind them.

Reads (scopes ``all``, ``all/read`` or ``statements/read``): a learner's progress across a framework with
its rollups, one competency's evidence trail, sections and their mastery grid; each as JSON (paginated,
``more`` gives the next page) or CSV (``format=csv`` or ``Accept: text/csv``). Progress is computed from
the evidence view when read, under the reference data in force.

Writes, each an event in the log: teacher ratings (``all`` or ``statements/write``; the rater is the
credential's authority), and alignments, mastery policies, rollup rules and section rosters (``all`` or
``define``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from proficio_events import DuplicateEventError, EventLog

from .._http import (
    CSV_OK,
    DEFINE_SCOPES,
    READ_SCOPES,
    Caller,
    LearnerId,
    authorize,
    check_limit,
    csv_response,
    json_response,
    now_us,
    read_learner,
    record_access,
    record_change,
    resolve_learner,
    wants_csv,
)
from .._http import iso as _iso
from .._http import text as _text
from .._store import ViewStore, active_generation
from ._mastery import MasteryPolicy, Method
from ._progress import (
    RATING_PREFIX,
    CompetencyEvidence,
    Progress,
    Rollup,
    grid_columns,
    level_for,
    on_scale,
)
from ._ratings import rating_points, record_rating, withdraw_rating
from ._reads import (
    NotBuilt,
    Reference,
    active_generations,
    framework_exists,
    grid_scored,
    learner_evidence,
    learner_rollups,
    order_key,
    reference,
    score,
    scored,
    section,
    void_reasons,
)
from ._reference import (
    CompetencyReference,
    ReferenceDataError,
    check_section,
    define_alignment,
    remove_alignment,
    set_policy,
    set_rollup_rule,
    set_section,
)

Consistency = Callable[[Request, str], Awaitable[dict[str, str]]]

RATE_SCOPES = frozenset({"all", "statements/write"})


# --- what the API answers (for the OpenAPI document; responses are written with orjson) ---


class EvidenceOut(BaseModel):
    statement_id: str = Field(description="The statement's id, or rating:<id> for a teacher rating")
    statement: str | None = Field(description="Where the statement is read (xAPI), None for a rating")
    source: str = Field(description="statement (it names the competency), alignment, or rating")
    authority: str | None = Field(description="Who rated (ratings only)")
    weight: str
    points: str = Field(description="The evidence on the competency's scale")
    timestamp: str
    timestamp_us: int


class ProgressOut(BaseModel):
    competency: str
    code: str | None
    statement: str | None
    framework: str | None
    method: str
    parameter: int | None
    score: str | None
    level: str | None
    status: str = Field(description="mastered, in_progress or not_started")
    mastered: bool
    mastered_at: str | None
    mastered_at_us: int | None
    n_evidence: int
    first_at: str | None
    last_at: str | None
    trend_b: str | None = Field(description="Power-law exponent of the evidence (3 or more): >0 rising")
    stalled: bool
    regressed: bool
    trail: str
    evidence: list[EvidenceOut]


class RollupOut(BaseModel):
    competency: str = Field(description="A parent competency, or a framework's uri (its graduate profile)")
    code: str | None
    statement: str | None
    rule: str
    k: int | None
    children_total: int
    children_started: int
    children_mastered: int
    mean_share: str
    mastered: bool
    status: str


class ProgressPage(BaseModel):
    learner: str
    framework: str | None
    competencies: list[ProgressOut]
    rollups: list[RollupOut]
    more: str | None


class TrailStep(EvidenceOut):
    norm: str
    success: bool | None
    stored: str
    voided: bool
    voided_by: str | None
    score_after: str | None = Field(description="The competency's score after this evidence (None if voided)")
    level_after: str | None


class TrailOut(BaseModel):
    learner: str
    competency: str
    code: str | None
    statement: str | None
    method: str
    score: str | None
    level: str | None
    mastered: bool
    evidence: list[TrailStep]


class GridColumnOut(BaseModel):
    competency: str
    code: str | None
    statement: str | None
    levels: dict[str, int] = Field(description="Learners at each level of the scale")
    no_evidence: int
    mastered: int
    mean: str | None
    median: str | None


class GridCell(BaseModel):
    score: str | None
    level: str | None
    mastered: bool
    stalled: bool


class GridRow(BaseModel):
    learner: str
    mastered: int
    cells: list[GridCell | None] = Field(description="One per competency column; None without evidence")


class GridOut(BaseModel):
    section: str
    title: str
    framework: str | None
    learners_total: int
    competencies: list[GridColumnOut]
    learners: list[GridRow]
    more: str | None


# --- what the API takes ---


class RatingIn(BaseModel):
    learner: str | None = Field(default=None, description="A learner id; or give agent")
    agent: dict[str, Any] | None = Field(default=None, description="An xAPI agent")
    competency: str
    level: str | None = Field(default=None, description="A level label of the competency's scale; or give points")
    points: str | float | None = None
    comment: str | None = None
    timestamp: datetime | None = Field(default=None, description="When the judgement was made (default: now)")
    id: str | None = Field(default=None, description="A UUID, to make a retry harmless (default: a new one)")


class AlignmentIn(BaseModel):
    activity: str
    competency: str
    weight: str | float = "1"


class PolicyIn(BaseModel):
    method: str
    parameter: int | None = None


class RollupRuleIn(BaseModel):
    rule: str
    k: int | None = None


class SectionIn(BaseModel):
    title: str = ""
    learners: list[str] = Field(default_factory=list, description="Learner ids")
    agents: list[dict[str, Any]] = Field(default_factory=list, description="xAPI agents, turned into learner ids")


def progress_item(ref: Reference, learner: str, competency: str, p: Progress | None) -> dict[str, Any]:
    code, statement = ref.label(competency)
    policy = p.policy if p is not None else on_scale(ref.policy_of(competency), ref.scale_of(competency))
    status = "not_started" if p is None else "mastered" if p.mastered else "in_progress"
    trail = f"/competency/trail?learner={learner}&competency={competency}"
    evidence = [] if p is None else [
        {
            "statement_id": e.statement_id,
            "statement": None if e.source == "rating" else f"/xapi/statements?statementId={e.statement_id}",
            "source": e.source, "authority": e.authority, "weight": str(e.weight), "points": str(points),
            "timestamp": _iso(e.timestamp_us), "timestamp_us": e.timestamp_us,
        }
        for e, points in zip(p.evidence, p.scores, strict=True)
    ]  # fmt: skip
    return {
        "competency": competency, "code": code, "statement": statement, "framework": ref.framework_of(competency),
        "method": policy.method.value, "parameter": policy.effective_parameter,
        "score": _text(p.score) if p else None, "level": p.level.label if p and p.level else None,
        "status": status, "mastered": bool(p and p.mastered),
        "mastered_at": _iso(p.mastered_at_us) if p else None, "mastered_at_us": p.mastered_at_us if p else None,
        "n_evidence": p.n_evidence if p else 0, "first_at": _iso(p.first_at_us) if p else None,
        "last_at": _iso(p.last_at_us) if p else None, "trend_b": _text(p.trend_b) if p else None,
        "stalled": bool(p and p.stalled), "regressed": bool(p and p.regressed), "trail": trail,
        "evidence": evidence,
    }  # fmt: skip


def rollup_item(ref: Reference, r: Rollup) -> dict[str, Any]:
    code, statement = ref.label(r.competency)
    return {
        "competency": r.competency, "code": code, "statement": statement, "rule": r.policy.rule.value,
        "k": r.policy.k, "children_total": r.children_total, "children_started": r.children_started,
        "children_mastered": r.children_mastered, "mean_share": str(r.mean_share), "mastered": r.mastered,
        "status": r.status,
    }  # fmt: skip


def progress_listing(
    ref: Reference,
    learner: str,
    found: Mapping[str, Progress],
    *,
    framework: str | None = None,
    competency: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A learner's progress items in framework order (with ``framework``: all its competencies, evidence or
    not) and the rollups of the frameworks involved: what the progress API lists, and the audit's as-of view."""
    listed = set(found)
    if framework is not None:
        listed = {c for c in listed if ref.framework_of(c) == framework}
        listed |= {c.uri for c in ref.competencies.values() if c.framework == framework}
    if competency is not None:
        listed &= {competency}
    ordered = sorted(listed, key=lambda c: order_key(ref.competencies[c]) if c in ref.competencies
                     else ("\U0010ffff", 0, "", c))  # fmt: skip
    items = [progress_item(ref, learner, c, found.get(c)) for c in ordered]
    frameworks = {framework} if framework else {ref.framework_of(c) for c in found} - {None}
    rolled = [rollup_item(ref, r) for r in learner_rollups(found, ref, [f for f in frameworks if f])]
    return items, rolled


def competency_router(consistency: Consistency, learner_id: LearnerId | None) -> APIRouter:
    api = APIRouter(prefix="/competency", tags=["competency"])

    caller = authorize

    async def resolve(request: Request, tenant: str, learner: str | None, agent: Any, *, create: bool = False) -> str:
        return await resolve_learner(request, learner_id, tenant, learner, agent, create=create)

    def override_of(method: str | None, parameter: int | None) -> MasteryPolicy | None:
        if method is None:
            if parameter is not None:
                raise HTTPException(400, "parameter goes with method")
            return None
        try:
            return MasteryPolicy(Method(method), parameter)
        except ValueError as exc:
            choices = ", ".join(m.value for m in Method)
            raise HTTPException(400, f"mastery policy ({choices}): {exc}") from None

    def log_of(request: Request) -> EventLog:
        log: EventLog = request.app.state.log
        return log

    def not_built(exc: NotBuilt) -> HTTPException:
        return HTTPException(503, f"the {exc.args[0]} view has not been built yet; try again shortly")

    @api.get("/progress", response_model=ProgressPage, responses=CSV_OK)
    async def learner_progress(
        request: Request,
        learner: str | None = Query(None, description="A learner id (the views' pseudonymous id)"),
        agent: str | None = Query(None, description="An xAPI agent as JSON"),
        framework: str | None = Query(None, description="Every competency of this framework, with or without evidence"),
        competency: str | None = Query(None, description="Only this competency"),
        mastered: bool | None = None,
        stalled: bool | None = None,
        method: str | None = Query(None, description="Score under this method instead of the configured policy"),
        parameter: int | None = None,
        limit: int = 200,
        after: str | None = Query(None, description="The last competency of the previous page"),
        format: str | None = Query(None, description="json (default) or csv"),
    ) -> Response:
        """A learner's progress on each competency (score, level, mastered and since when, trend, stalled,
        regressed) with the evidence behind it, and the rollups to parent competencies and each framework's
        graduate profile. Each competency is scored under the tenant's most specific mastery policy
        (competency, framework, tenant; else ``highest``) on its framework's scale; ``method`` overrides it.
        """
        who, chosen = await read_learner(request, READ_SCOPES, "reading progress", learner_id, learner, agent)
        override = override_of(method, parameter)
        page = check_limit(limit)
        as_csv = wants_csv(request, format)
        try:
            async with log_of(request).engine.connect() as conn:
                if framework is not None and not await framework_exists(conn, who.tenant, framework):
                    raise HTTPException(404, f"no framework {framework!r} in this tenant")
                loaded = await scored(conn, who.tenant, [chosen], now_us=now_us(),
                                      frameworks=[framework] if framework else [], override=override)  # fmt: skip
        except NotBuilt as exc:
            raise not_built(exc) from None
        ref, found = loaded.reference, loaded.progress[chosen]
        items, rolled = progress_listing(ref, chosen, found, framework=framework, competency=competency)
        items = [i for i in items if (mastered is None or i["mastered"] == mastered)
                 and (stalled is None or i["stalled"] == stalled)]  # fmt: skip
        if after is not None:
            position = next((n for n, i in enumerate(items) if i["competency"] == after), None)
            if position is None:
                raise HTTPException(400, "after is not a competency of this listing")
            items = items[position + 1 :]
        more = None
        if len(items) > page:
            items = items[:page]
            more = str(request.url.include_query_params(after=items[-1]["competency"]))
        headers = await consistency(request, CompetencyEvidence.name)
        if as_csv:
            columns = ["competency", "code", "statement", "framework", "method", "score", "level", "status",
                       "mastered", "mastered_at", "n_evidence", "first_at", "last_at", "trend_b", "stalled",
                       "regressed"]  # fmt: skip
            if more:
                headers["Link"] = f'<{more}>; rel="next"'
            return csv_response(["learner", *columns], ([chosen, *(i[c] for c in columns)] for i in items), headers)
        body = {"learner": chosen, "framework": framework, "competencies": items, "rollups": rolled, "more": more}
        return json_response(body, headers=headers)

    @api.get("/trail", response_model=TrailOut, responses=CSV_OK)
    async def evidence_trail(
        request: Request,
        competency: str,
        learner: str | None = None,
        agent: str | None = None,
        method: str | None = None,
        parameter: int | None = None,
        format: str | None = None,
    ) -> Response:
        """One competency's evidence trail for a learner, oldest first: every piece of evidence (voided and
        withdrawn ones too, marked), its points, who gave it, and the score and level after it."""
        who, chosen = await read_learner(request, READ_SCOPES, "reading progress", learner_id, learner, agent)
        override = override_of(method, parameter)
        as_csv = wants_csv(request, format)
        try:
            async with log_of(request).engine.connect() as conn:
                evidence = await learner_evidence(conn, who.tenant, [chosen])
                observations, voided = evidence[chosen]
                ref = await reference(
                    conn, who.tenant, competencies=[competency],
                    activities={o.activity for o in observations if o.activity}, override=override,
                )  # fmt: skip
                reasons = await void_reasons(conn, who.tenant, sorted(voided))
        except NotBuilt as exc:
            raise not_built(exc) from None
        current = score({chosen: (observations, voided)}, ref, now_us=now_us())[chosen].get(competency)
        everything = score({chosen: (observations, set())}, ref, now_us=None)[chosen].get(competency)
        after = {e.statement_id: n for n, e in enumerate(current.evidence)} if current else {}
        policy = current.policy if current else on_scale(ref.policy_of(competency), ref.scale_of(competency))
        steps = []
        for e, points in zip(everything.evidence, everything.scores, strict=True) if everything else ():
            n = after.get(e.statement_id)
            running = current.running[n] if current is not None and n is not None else None
            reached = None if policy.method is Method.BKT else level_for(running, ref.scale_of(competency))
            level = reached.label if reached else None
            steps.append({
                "statement_id": e.statement_id,
                "statement": None if e.source == "rating" else f"/xapi/statements?statementId={e.statement_id}",
                "source": e.source, "authority": e.authority, "weight": str(e.weight), "norm": str(e.norm),
                "points": str(points), "success": e.success, "timestamp": _iso(e.timestamp_us),
                "timestamp_us": e.timestamp_us, "stored": _iso(e.stored_us), "voided": e.statement_id in voided,
                "voided_by": reasons.get(e.statement_id), "score_after": _text(running), "level_after": level,
            })  # fmt: skip
        code, statement = ref.label(competency)
        headers = await consistency(request, CompetencyEvidence.name)
        if as_csv:
            columns = ["statement_id", "source", "authority", "weight", "points", "timestamp", "stored", "voided",
                       "voided_by", "score_after", "level_after"]  # fmt: skip
            return csv_response(["learner", "competency", *columns],
                        ([chosen, competency, *(s[c] for c in columns)] for s in steps), headers)  # fmt: skip
        body = {
            "learner": chosen, "competency": competency, "code": code, "statement": statement,
            "method": policy.method.value, "score": _text(current.score) if current else None,
            "level": current.level.label if current and current.level else None,
            "mastered": bool(current and current.mastered), "evidence": steps,
        }  # fmt: skip
        return json_response(body, headers=headers)

    @api.post("/ratings", status_code=201)
    async def rate(request: Request, rating: RatingIn) -> Response:
        """Record a teacher's rating of a learner on a competency (a level of its scale, or points): it counts
        as evidence, with the credential as its authority. ``id`` makes a retry harmless."""
        who = await caller(request, RATE_SCOPES, "recording a rating")
        chosen = await resolve(request, who.tenant, rating.learner, rating.agent, create=True)
        when = rating.timestamp
        if when is not None and when.tzinfo is None:
            raise HTTPException(400, "timestamp needs a time zone (for example 2026-11-20T09:00:00Z)")
        async with log_of(request).engine.connect() as conn:
            ref = await reference(conn, who.tenant, competencies=[rating.competency])
        if rating.competency not in ref.competencies:
            raise HTTPException(400, f"no competency {rating.competency!r} in this tenant's frameworks")
        scale = ref.scale_of(rating.competency)
        try:
            points = rating_points(scale, level=rating.level,
                                   points=None if rating.points is None else str(rating.points))  # fmt: skip
            rating_id, _ = await record_rating(
                log_of(request), who.tenant, chosen, rating.competency, points, scale, authority=who.name,
                timestamp_us=int(when.timestamp() * 1_000_000) if when else now_us(), comment=rating.comment,
                rating_id=rating.id,
            )  # fmt: skip
        except ReferenceDataError as exc:
            raise HTTPException(400, str(exc)) from None
        except DuplicateEventError:
            raise HTTPException(409, f"rating {rating.id} was recorded with other content") from None
        created = {"id": rating_id, "learner": chosen, "competency": rating.competency, "points": str(points)}
        return json_response(created, status_code=201)

    @api.delete("/ratings/{rating_id}", status_code=204)
    async def withdraw(
        request: Request, rating_id: str, learner: str | None = None, agent: str | None = None
    ) -> Response:
        """Withdraw a rating: its evidence no longer counts (the rating stays in the log and the trail)."""
        who = await caller(request, RATE_SCOPES, "withdrawing a rating")
        chosen = await resolve(request, who.tenant, learner, agent)
        try:
            async with log_of(request).engine.connect() as conn:
                evidence = await learner_evidence(conn, who.tenant, [chosen])
        except NotBuilt as exc:
            raise not_built(exc) from None
        if not any(o.statement_id == RATING_PREFIX + rating_id for o in evidence[chosen][0]):
            raise HTTPException(404, f"no rating {rating_id} for this learner (in the view so far)")
        with contextlib.suppress(DuplicateEventError):  # withdrawn already, by another rater: it stays withdrawn
            await withdraw_rating(log_of(request), who.tenant, chosen, rating_id, authority=who.name)
        return Response(status_code=204)

    async def reference_rows(request: Request, table: str) -> list[dict[str, Any]]:
        who = await caller(request, READ_SCOPES | DEFINE_SCOPES, "reading reference data")
        async with log_of(request).engine.connect() as conn:
            generation = await active_generation(conn, CompetencyReference.name)
            if generation is None:
                return []
            physical = ViewStore(CompetencyReference(), generation).table(table)
            keys = list(physical.primary_key.columns)
            rows = await conn.execute(sa.select(physical).where(keys[0] == who.tenant).order_by(*keys))
            return [{str(k): v for k, v in r.items() if k != "tenant"} for r in rows.mappings()]

    @api.get("/alignments")
    async def list_alignments(request: Request) -> Response:
        """The alignment map: which activities count as evidence of which competencies, and how much."""
        return json_response({"alignments": await reference_rows(request, "alignments")})

    @api.put("/alignments", status_code=204)
    async def put_alignment(request: Request, alignment: AlignmentIn) -> Response:
        """Align an activity to a competency with a weight in (0, 1] (weights weigh the averaging methods)."""
        return await record_change(
            request, "changing alignments",
            lambda who: define_alignment(log_of(request), who.tenant, alignment.activity, alignment.competency,
                                         weight=str(alignment.weight), source=f"api:{who.name}"),
            (ReferenceDataError,),
        )  # fmt: skip

    @api.delete("/alignments", status_code=204)
    async def delete_alignment(request: Request, activity: str, competency: str) -> Response:
        return await record_change(
            request, "changing alignments",
            lambda who: remove_alignment(log_of(request), who.tenant, activity, competency), (ReferenceDataError,),
        )  # fmt: skip

    @api.get("/policies")
    async def list_policies(request: Request) -> Response:
        """Mastery policies and rollup rules by scope (tenant, framework:<id>, competency:<IRI>)."""
        return json_response({
            "policies": await reference_rows(request, "policies"),
            "rollup_rules": await reference_rows(request, "rollup_rules"),
        })  # fmt: skip

    @api.put("/policies/{scope:path}", status_code=204)
    async def put_policy(request: Request, scope: str, policy: PolicyIn) -> Response:
        """Set the mastery method for a scope: ``tenant``, ``framework:<identifier>`` or ``competency:<IRI>``."""
        return await record_change(
            request, "changing mastery policies",
            lambda who: set_policy(log_of(request), who.tenant, scope, policy.method, policy.parameter),
            (ReferenceDataError,),
        )  # fmt: skip

    @api.put("/rollup-rules/{scope:path}", status_code=204)
    async def put_rollup_rule(request: Request, scope: str, rule: RollupRuleIn) -> Response:
        """Set how parents are judged from their children in a scope: all_children_mastered, k_of_n (with k)
        or mean_of_children."""
        return await record_change(
            request, "changing rollup rules",
            lambda who: set_rollup_rule(log_of(request), who.tenant, scope, rule.rule, rule.k), (ReferenceDataError,),
        )  # fmt: skip

    @api.get("/sections")
    async def list_sections(request: Request) -> Response:
        rows = await reference_rows(request, "sections")
        return json_response({"sections": [{"section": r["section"], "title": r["title"],
                                    "learners": len(orjson.loads(r["learners"]))} for r in rows]})  # fmt: skip

    @api.put("/sections/{section_id}", status_code=204)
    async def put_section(request: Request, section_id: str, body: SectionIn) -> Response:
        """Set a section's title and roster (learner ids and/or xAPI agents); it replaces the roster."""

        async def write(who: Caller) -> Any:
            # A roster names learners before they send anything: agents the directory does not know are enrolled.
            learners = list(body.learners) + [
                await resolve(request, who.tenant, None, agent, create=True) for agent in body.agents
            ]
            return await set_section(log_of(request), who.tenant, check_section(section_id), body.title, learners)

        return await record_change(request, "changing sections", write, (ReferenceDataError,))

    @api.get("/sections/{section_id}")
    async def get_section(request: Request, section_id: str) -> Response:
        who = await caller(request, READ_SCOPES, "reading sections")
        async with log_of(request).engine.connect() as conn:
            found = await section(conn, who.tenant, section_id)
        if found is None:
            raise HTTPException(404, f"no section {section_id!r}")
        return json_response(found)

    @api.get("/sections/{section_id}/grid", response_model=GridOut, responses=CSV_OK)
    async def section_grid(
        request: Request,
        section_id: str,
        framework: str | None = Query(None, description="Columns: every competency of this framework"),
        method: str | None = None,
        parameter: int | None = None,
        rows: str = Query("learners", description="CSV rows: learners (the grid) or competencies (distribution)"),
        limit: int = 100,
        after: str | None = Query(None, description="The last learner of the previous page"),
        format: str | None = None,
    ) -> Response:
        """A section's mastery grid: learners x competencies (score, level, mastered, stalled), and for each
        competency the learners at each level of its scale, mastered, mean and median over the section."""
        who = await caller(request, READ_SCOPES, "reading a section's grid")
        override = override_of(method, parameter)
        page = check_limit(limit)
        as_csv = wants_csv(request, format)
        if rows not in ("learners", "competencies"):
            raise HTTPException(400, f"rows is learners or competencies, not {rows!r}")
        try:
            async with log_of(request).engine.connect() as conn:
                known = await active_generations(conn)
                found = await section(conn, who.tenant, section_id, generations=known)
                if found is None:
                    raise HTTPException(404, f"no section {section_id!r}")
                if framework is not None and not await framework_exists(conn, who.tenant, framework):
                    raise HTTPException(404, f"no framework {framework!r} in this tenant")
                roster: list[str] = sorted(found["learners"])
                loaded = await grid_scored(
                    conn, who.tenant, roster, now_us=now_us(), frameworks=[framework] if framework else [],
                    override=override, cache_learners=getattr(request.app.state, "grid_cache_learners", 0),
                    generations=known,
                )  # fmt: skip
        except NotBuilt as exc:
            raise not_built(exc) from None
        ref, by_learner = loaded.reference, loaded.cells
        if framework is not None:
            columns = [c.uri for c in sorted(ref.competencies.values(), key=order_key) if c.framework == framework]
        else:
            seen = {c for p in by_learner.values() for c in p}
            columns = sorted(seen, key=lambda c: order_key(ref.competencies[c]) if c in ref.competencies
                             else ("\U0010ffff", 0, "", c))  # fmt: skip
        stats = grid_columns(by_learner, columns, ref.scale_of)
        column_items: list[dict[str, Any]] = [
            {"competency": s.competency, "code": ref.label(s.competency)[0], "statement": ref.label(s.competency)[1],
             "levels": s.levels, "no_evidence": s.no_evidence, "mastered": s.mastered, "mean": _text(s.mean),
             "median": _text(s.median)}
            for s in stats
        ]  # fmt: skip
        listed = [learner for learner in roster if after is None or learner > after]
        more = None
        if len(listed) > page:
            listed = listed[:page]
            more = str(request.url.include_query_params(after=listed[-1]))
        await record_access(request, who, listed)
        learner_rows: list[dict[str, Any]] = []
        for learner in listed:
            mine = by_learner[learner]
            cells = [
                None if (p := mine.get(c)) is None else
                {"score": _text(p.score), "level": p.level.label if p.level else None, "mastered": p.mastered,
                 "stalled": p.stalled}
                for c in columns
            ]  # fmt: skip
            learner_rows.append({"learner": learner, "mastered": sum(p.mastered for p in mine.values()),
                                 "cells": cells})  # fmt: skip
        headers = await consistency(request, CompetencyEvidence.name)
        if as_csv:
            names = [i["code"] or i["competency"] for i in column_items]
            if rows == "competencies":
                labels = list(dict.fromkeys(label for i in column_items for label in i["levels"]))  # scale order
                return csv_response(
                    ["competency", "code", *labels, "no_evidence", "mastered", "mean", "median"],
                    ([i["competency"], i["code"], *(i["levels"].get(label, 0) for label in labels), i["no_evidence"],
                      i["mastered"], i["mean"], i["median"]] for i in column_items),
                    headers,
                )  # fmt: skip
            if more:
                headers["Link"] = f'<{more}>; rel="next"'
            return csv_response(
                ["learner", "mastered", *names],
                ([r["learner"], r["mastered"], *((c["level"] or c["score"]) if c else None for c in r["cells"])]
                 for r in learner_rows),
                headers,
            )  # fmt: skip
        body = {
            "section": found["section"], "title": found["title"], "framework": framework,
            "learners_total": len(roster), "competencies": column_items, "learners": learner_rows, "more": more,
        }  # fmt: skip
        return json_response(body, headers=headers)

    return api
