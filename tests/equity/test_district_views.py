"""The views judged on a simulated district, on both backends: the demo generator's district (2 schools, 140
learners, English learners planted behind, stalled and disengaged learners, a small group per school) imported as a
district would (its OneRoster package, the framework, alignments and mastery policy, the pacing plan, then the
statements the LRS had received by the judging day), projected and refreshed for that day. The pacing views must
flag the planted stalled and disengaged learners and project completion dates close to the truth's; the equity
views must find the planted gap and hide the small groups (and whatever would give them back) from the public."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from proficio_cli._demo import Demo
from proficio_cli._demo_district import DISENGAGED, STALLED, expected_primary_cells
from proficio_events import EventLog, NewEvent
from proficio_ingest import enroll_learner_ids
from proficio_projector.competency import StallRule, define_alignment, import_framework, set_policy
from proficio_projector.equity import CO, EquityRefresher, Fact, cell_rows, scope_tables, suppress
from proficio_projector.equity._tables import equity_cells, equity_facts
from proficio_projector.pacing import Pace, learners_of, pace, set_plan
from proficio_projector.pacing._api import pacing_reference, section_rosters, standing
from proficio_projector.roster import import_roster, read_package
from tests.equity.district_demo import (
    GAP_AT_LEAST,
    GAP_ON_TRACK_TOLERANCE,
    GAP_PCT_TOLERANCE,
    GAP_VELOCITY_TOLERANCE,
    LEARNERS,
    METHOD,
    PACKAGE,
    PLAN,
    PROJECTION_SHARE,
    STALLED_PRECISION,
    STALLED_RECALL,
    by_learner_id,
    detection,
    district_demo,
    flagged,
    groups_and_schools,
    projections,
)
from tests.equity.test_equity_views import build
from tests.equity.test_suppression import assert_nothing_derivable

TENANT = "district-9"
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
Cells = dict[tuple[str, str, str], dict[str, Any]]


async def import_district(log: EventLog, demo: Demo, roster_dir: Path) -> int:
    """What the district does before anyone looks: import its roster (groups from the first day of the course),
    its framework with the alignments of untagged items, choose its mastery policy, record the plan; then the
    statements as ingest stores them (each id once, voiding ones as StatementVoided). The events appended."""
    assert demo.district is not None
    for name, content in demo.district.roster.items():
        (roster_dir / name).write_bytes(content)
    package = read_package(roster_dir)
    await import_roster(log, TENANT, package, learner_ids=enroll_learner_ids, effective=demo.settings.start)
    await import_framework(log, TENANT, PACKAGE, source="demo")
    for alignment in demo.alignments:
        await define_alignment(log, TENANT, alignment["activity"], alignment["competency"], weight=alignment["weight"])
    await set_policy(log, TENANT, "tenant", METHOD)
    await set_plan(log, TENANT, demo.district.plan)
    seen: set[str] = set()
    events = []
    # Their learner ids as ingest would give them (the learner directory's; the roster's students have theirs).
    actors = list({orjson.dumps(s["actor"], option=orjson.OPT_SORT_KEYS): s["actor"] for s in demo.statements}.values())
    ids = dict(zip([orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in actors],
                   await enroll_learner_ids(log, TENANT, actors), strict=True))  # fmt: skip
    for statement in demo.statements:
        if statement["id"] in seen:  # a retry: the LRS already has it
            continue
        seen.add(statement["id"])
        kind = "StatementVoided" if statement["verb"]["id"] == VOIDED else "StatementStored"
        learner = ids[orjson.dumps(statement["actor"], option=orjson.OPT_SORT_KEYS)]
        events.append(NewEvent.of(learner, kind, {"statement": statement}))
    for start in range(0, len(events), 1000):
        await log.append(TENANT, events[start : start + 1000])
    return len(events)


async def plan_paces(log: EventLog, day: date) -> dict[str, Pace]:
    """Every learner's pace on the plan, as ``GET /pacing/plans/{plan}/learners?as_of=`` computes it."""
    async with log.engine.connect() as conn:
        reference = await pacing_reference(conn, TENANT)
        plan = reference.plans[PLAN.removeprefix("plan:")]
        learners = learners_of(plan, await section_rosters(conn, TENANT, plan.sections))
        policy = reference.policy
        stall = StallRule(attempts=policy.stall_attempts, idle_school_days=policy.stall_idle_days)
        found = await standing(conn, TENANT, learners, {c.uri for c in plan.competencies}, day, stall)
    calendar = reference.calendar_of(plan)
    return {learner: pace(plan, calendar, policy, found.progress[learner], day,
                          last_activity=found.last_seen.get(learner)) for learner in learners}  # fmt: skip


async def stored_cells(log: EventLog, audience: str) -> Cells:
    async with log.engine.connect() as conn:
        chosen = sa.and_(equity_cells.c.tenant == TENANT, equity_cells.c.audience == audience,
                         equity_cells.c.scope == PLAN)  # fmt: skip
        rows = await conn.execute(sa.select(equity_cells).where(chosen))
        return {(r["level"], r["factor"], r["value"]): {**r, "metrics": orjson.loads(r["metrics"])}
                for r in rows.mappings()}  # fmt: skip


def metric(cells: Cells, factor: str, value: str, name: str) -> float:
    found = cells[("district", factor, value)]["metrics"][name]["value"]
    assert found is not None, (factor, value, name)
    return float(found)


async def test_the_views_find_what_the_generator_planted(log: EventLog, tmp_path: Path) -> None:
    demo = district_demo()
    assert demo.district is not None
    day = demo.district.as_of
    appended = await import_district(log, demo, tmp_path)
    truths = await by_learner_id(log, demo, TENANT)
    assert appended > 10_000
    await build(log)
    [report] = await EquityRefresher(log).refresh(day)
    assert (report.learners_refreshed, report.learners_total) == (LEARNERS, LEARNERS)

    # Pacing: the plan's learners are the roster's (sections of the two schools), with their pace on the day.
    paces = await plan_paces(log, day)
    assert set(paces) == set(truths)
    stalled = detection(truths, flagged(paces, STALLED), STALLED)
    assert len(stalled.planted) == round(0.08 * LEARNERS)
    assert stalled.recall >= STALLED_RECALL, str(stalled)
    assert stalled.precision >= STALLED_PRECISION, str(stalled)
    for learner in stalled.planted & stalled.flagged:  # and the competency she is stuck on is among her stalled ones
        stuck = truths[learner].district
        assert stuck is not None
        assert stuck.stuck_on in paces[learner].stalled, (truths[learner].learner, paces[learner].stalled)
    disengaged = detection(truths, flagged(paces, DISENGAGED), DISENGAGED)
    assert len(disengaged.planted) == round(0.06 * LEARNERS)
    assert (disengaged.recall, disengaged.precision) == (1.0, 1.0), str(disengaged)
    projected = projections(truths, paces, day)
    assert projected.learners >= LEARNERS // 2, str(projected)
    assert projected.share >= PROJECTION_SHARE, str(projected)
    assert abs(projected.median_error_weeks) <= 1, str(projected)

    # Equity, at the district level: English learners against the others, in the view (staff) and in the truth.
    # (Medians of velocity move in steps of 1/6: on this district the view shows no gap there, the truth 0.16.)
    staff, public = await stored_cells(log, "staff"), await stored_cells(log, "public")
    truth = demo.district.truth.gaps["english_learner"]
    for name, true_gap, tolerance in (
        ("pct_mastered", truth["true"].pct_mastered - truth["false"].pct_mastered, GAP_PCT_TOLERANCE),
        ("on_track", truth["true"].on_track - truth["false"].on_track, GAP_ON_TRACK_TOLERANCE),
        ("velocity", truth["true"].velocity - truth["false"].velocity, GAP_VELOCITY_TOLERANCE),
    ):
        view_gap = metric(staff, "english_learner", "true", name) - metric(staff, "english_learner", "false", name)
        assert abs(view_gap - true_gap) <= tolerance, (name, view_gap, true_gap)
        if name == "pct_mastered":
            assert view_gap <= -GAP_AT_LEAST, view_gap
        elif name == "on_track":
            assert view_gap < 0, view_gap
    # The public sees it too: of the groups it is shown, English learners have the lowest median.
    shown = {(factor, value): cell["metrics"]["pct_mastered"]["value"]
             for (level, factor, value), cell in public.items()
             if level == "district" and factor != "all" and cell["n"] is not None}  # fmt: skip
    assert min(shown, key=lambda group: (shown[group], group)) == ("english_learner", "true"), shown

    # Suppression: the public cells are exactly the suppression of the stored facts over the district's groups as
    # the generator made them, no hidden cell can be worked out from the published ones, and the cells hidden for
    # being small (primary) are exactly those the truth expects, the planted small groups among them.
    async with log.engine.connect() as conn:
        rows = (await conn.execute(sa.select(equity_facts).where(equity_facts.c.tenant == TENANT))).mappings()
        facts = [Fact(r["learner"], r["scope"], Decimal(r["pct_mastered"]), r["mastered"], r["on_track"], r["stalled"],
                      None if r["velocity"] is None else Decimal(r["velocity"])) for r in rows]  # fmt: skip
    groups, schools = groups_and_schools(truths)
    tables = scope_tables(facts, groups, schools)
    assert len(tables) == 1 + 15  # the plan and each of its competencies
    for table in tables:
        assert_nothing_derivable(suppress(table.cells, table.partitions, CO), table.partitions)
    [plan_table] = [t for t in tables if t.scope == PLAN]
    expected = {
        key: {name: row[name] for name in ("n", "hidden", "label")} | {"metrics": orjson.loads(row["metrics"])}
        for row in cell_rows(TENANT, [plan_table], CO, day)
        if row["audience"] == "public" and (key := (row["level"], row["factor"], row["value"]))
    }
    assert {key: {name: cell[name] for name in ("n", "hidden", "label", "metrics")} for key, cell in public.items()} \
        == expected  # fmt: skip
    primary = {key for key, cell in public.items() if cell["hidden"] == "primary"}
    assert primary == set(expected_primary_cells(demo.district.truth))
    small_groups = planted_small_groups_of(demo)
    assert len(small_groups) == 2
    for level, value in small_groups:
        for place in (level, "district"):
            hidden, seen = public[(place, "race_ethnicity", value)], staff[(place, "race_ethnicity", value)]
            assert (hidden["n"], hidden["hidden"], hidden["label"]) == (None, "primary", "*")
            assert all(m["value"] is None for m in hidden["metrics"].values())
            assert (seen["n"], seen["hidden"]) == (3, None)
    # School 2's English learners are too few for the public (primary), and so their complement there.
    school_2 = {value: public[("school:school-2", "english_learner", value)]["hidden"] for value in ("true", "false")}
    assert school_2 == {"true": "primary", "false": "complementary"}


def planted_small_groups_of(demo: Demo) -> list[tuple[str, str]]:
    """(level, race value) of each planted small group, as the truth file lists them."""
    listed: Mapping[str, Any] = orjson.loads(demo.truth_json())["district"]["planted"]
    return [(group["level"], group["value"]) for group in listed["small_groups"]]
