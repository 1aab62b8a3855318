"""The competency read API: a learner's progress, computed from the evidence view when read."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from proficio_events import EventLog

from .._store import ViewStore, active_generation
from ._case import DEFAULT_SCALE, Level
from ._frameworks import Frameworks
from ._mastery import MasteryPolicy, Method
from ._progress import CompetencyEvidence, Observation, progress
from ._reference import CompetencyReference, policies_from_rows, policy_for

#: The learner id (the pseudonymous stream ingest files the learner's statements under) of an xAPI agent.
LearnerId = Callable[[str, Any], str]


def _json(content: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, default=str), media_type="application/json", headers=headers)


def competency_router(
    tenant_of: Callable[[Request], Any], consistency: Callable[[Request, str], Any], learner_id: LearnerId | None
) -> APIRouter:
    api = APIRouter(prefix="/competency", tags=["competency"])

    @api.get("/progress")
    async def learner_progress(
        request: Request,
        learner: str | None = None,
        agent: str | None = None,
        method: str | None = None,
        parameter: int | None = None,
    ) -> Response:
        """A learner's progress on every competency with evidence: score, level, mastered (now and since when),
        and the evidence behind it. ``learner`` is the learner id of the views; ``agent`` an xAPI agent (JSON).
        Each competency is scored under the tenant's most specific mastery policy (competency, framework,
        tenant; else ``highest``) and its alignments count; ``method``/``parameter`` override the policy.
        """
        tenant: str = await tenant_of(request)
        if (learner is None) == (agent is None):
            raise HTTPException(400, "give exactly one of learner (a learner id) or agent (an xAPI agent as JSON)")
        if agent is not None:
            if learner_id is None:
                raise HTTPException(400, "this service resolves no agents: give learner")
            try:
                learner = learner_id(tenant, orjson.loads(agent))
            except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError, KeyError) as exc:
                raise HTTPException(400, f"agent is not an xAPI agent: {exc}") from None
        override: MasteryPolicy | None = None
        if method is not None:
            try:
                override = MasteryPolicy(Method(method), parameter)
            except ValueError as exc:
                raise HTTPException(400, f"mastery policy: {exc}") from None
        assert learner is not None
        log: EventLog = request.app.state.log
        async with log.engine.connect() as conn:
            evidence_generation = await active_generation(conn, CompetencyEvidence.name)
            if evidence_generation is None:
                raise HTTPException(503, "the competency evidence view has not been built yet")
            store = ViewStore(CompetencyEvidence(), evidence_generation)
            observations_table, voids_table = store.table("observations"), store.table("voids")
            rows = (
                await conn.execute(
                    sa.select(observations_table).where(
                        observations_table.c.tenant == tenant, observations_table.c.learner == learner
                    )
                )
            ).mappings()
            observations = [Observation.from_row({str(k): v for k, v in r.items()}) for r in rows]
            ids = [o.statement_id for o in observations]
            voided = {
                statement_id
                for (statement_id,) in await conn.execute(
                    sa.select(voids_table.c.statement_id).where(
                        voids_table.c.tenant == tenant, voids_table.c.statement_id.in_(ids)
                    )
                )
            } if ids else set()  # fmt: skip
            activities = sorted({o.activity for o in observations if o.activity})
            alignments, policies = await _reference(conn, tenant, activities)
            competencies = {c for o in observations for c in o.competencies}
            competencies |= {c for a in activities for c in alignments.get(a, {})}
            labels = await _labels(conn, tenant, sorted(competencies))

            scales = await _scales(conn, tenant, sorted({v["framework"] for v in labels.values()}))

            def policy_of(competency: str) -> MasteryPolicy:
                framework = labels.get(competency, {}).get("framework")
                return override or policy_for(policies, competency, framework, MasteryPolicy())

            def scale_of(competency: str) -> tuple[Level, ...]:
                framework: str = labels.get(competency, {}).get("framework") or ""
                return scales.get(framework, DEFAULT_SCALE)

            found = progress(observations, voided, MasteryPolicy(), alignments=alignments, policy_of=policy_of,
                             scale_of=scale_of)  # fmt: skip
        body = [
            {
                "competency": competency,
                "code": labels.get(competency, {}).get("code"),
                "statement": labels.get(competency, {}).get("statement"),
                "method": policy_of(competency).method.value,
                "score": p.score,
                "level": p.level.label if p.level else None,
                "mastered": p.mastered,
                "mastered_at_us": p.mastered_at_us,
                "evidence": [
                    {
                        "statement_id": e.statement_id,
                        "points": points,
                        "timestamp_us": e.timestamp_us,
                        "source": e.source,
                    }
                    for e, points in zip(p.evidence, p.scores, strict=True)
                ],
            }
            for competency, p in sorted(found.items())
        ]
        return _json(
            {"learner": learner, "competencies": body},
            headers=await consistency(request, CompetencyEvidence.name),
        )

    return api


async def _labels(conn: Any, tenant: str, competencies: list[str]) -> dict[str, dict[str, Any]]:
    """Code and statement of the competencies the frameworks view knows."""
    generation = await active_generation(conn, Frameworks.name)
    if generation is None or not competencies:
        return {}
    table = ViewStore(Frameworks(), generation).table("competencies")
    rows = await conn.execute(
        sa.select(table.c.uri, table.c.code, table.c.statement, table.c.framework).where(
            table.c.tenant == tenant, table.c.uri.in_(competencies)
        )
    )
    return {uri: {"code": code, "statement": statement, "framework": fw} for uri, code, statement, fw in rows}


async def _scales(conn: Any, tenant: str, frameworks: list[str]) -> dict[str, tuple[Level, ...]]:
    """Each framework's proficiency scale (from its rubric, or the default)."""
    generation = await active_generation(conn, Frameworks.name)
    if generation is None or not frameworks:
        return {}
    table = ViewStore(Frameworks(), generation).table("frameworks")
    rows = await conn.execute(
        sa.select(table.c.framework, table.c.scale).where(table.c.tenant == tenant, table.c.framework.in_(frameworks))
    )
    return {
        framework: tuple(Level(Decimal(level["points"]), level["label"], level["mastery"])
                         for level in orjson.loads(scale))
        for framework, scale in rows
    }  # fmt: skip


async def _reference(
    conn: Any, tenant: str, activities: list[str]
) -> tuple[dict[str, dict[str, Decimal]], dict[str, MasteryPolicy]]:
    """The alignments of these activities and the tenant's policies (empty before the view is built)."""
    generation = await active_generation(conn, CompetencyReference.name)
    if generation is None:
        return {}, {}
    store = ViewStore(CompetencyReference(), generation)
    aligned, configured = store.table("alignments"), store.table("policies")
    alignments: dict[str, dict[str, Decimal]] = {}
    if activities:
        rows = await conn.execute(
            sa.select(aligned.c.activity, aligned.c.competency, aligned.c.weight).where(
                aligned.c.tenant == tenant, aligned.c.activity.in_(activities)
            )
        )
        for activity, competency, weight in rows:
            alignments.setdefault(activity, {})[competency] = Decimal(weight)
    rows = await conn.execute(sa.select(configured).where(configured.c.tenant == tenant))
    return alignments, policies_from_rows({str(k): v for k, v in r.items()} for r in rows.mappings())
