"""The equity views built by the refresher from real projections on both backends: a district of two schools
imported from OneRoster, a pacing plan, and English learners planted a known gap behind. The views must
find the gap, hide the small groups from the public (and every cell that would give one back), show
staff everything, stay the same when refreshed again, and follow the evidence when it changes."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from proficio_events import EventLog, NewEvent
from proficio_ingest import enroll_learner_ids
from proficio_projector import RunnerSettings, SqlProjector, default_projections
from proficio_projector.equity import CO, EquityRefresher, Fact, scope_tables, suppress
from proficio_projector.equity._tables import equity_cells, equity_facts, equity_state
from proficio_projector.pacing import set_plan
from proficio_projector.roster import import_roster, read_package
from tests.equity.district import Student, write_oneroster
from tests.equity.test_suppression import assert_nothing_derivable
from tests.projector.support import FAST, caught_up, running

TENANT = "district-7"
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
COMPETENCIES = [f"https://district.example.org/competencies/m{n}" for n in range(6)]
AS_OF = date(2026, 11, 2)
PLAN = "plan:math-8"


def district() -> list[Student]:
    """50 students at school A (14 English learners), 30 at school B (6)."""
    students = []
    for n in range(80):
        school = "school-a" if n < 50 else "school-b"
        english_learner = n < 14 or 50 <= n < 56
        students.append(Student(f"s{n:03d}", school, f"s{n:03d}@district.example.org", english_learner,
                                "male" if n % 2 else "female"))  # fmt: skip
    return students


def actor(student: Student) -> dict[str, str]:
    return {"mbox": f"mailto:{student.email}"}


def mastery(student: Student, competency: str, day: int, learner: str) -> NewEvent:
    statement = {
        "id": str(uuid.uuid4()), "actor": actor(student), "verb": {"id": "http://adlnet.gov/expapi/verbs/passed"},
        "object": {"id": f"{competency}/quiz"}, "result": {"score": {"scaled": 1.0}, "success": True},
        "context": {"contextActivities": {"other": [{"id": competency, "definition": {"type": OBJECTIVE}}]}},
        "timestamp": f"2026-10-{day:02d}T10:00:00Z",
    }  # fmt: skip
    return NewEvent.of(learner, "StatementStored", {"statement": statement})


async def build(log: EventLog) -> None:
    async with running(*(SqlProjector(log, p, RunnerSettings(owner="t", batch_size=500, **FAST))
                         for p in default_projections())):  # fmt: skip
        for p in default_projections():
            await caught_up(log, p.name)


async def cells(log: EventLog, audience: str, level: str, factor: str) -> dict[str, dict[str, Any]]:
    async with log.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(equity_cells).where(
                    equity_cells.c.tenant == TENANT, equity_cells.c.audience == audience,
                    equity_cells.c.scope == PLAN, equity_cells.c.level == level, equity_cells.c.factor == factor,
                )
            )
        ).mappings()  # fmt: skip
        return {r["value"]: {**r, "metrics": orjson.loads(r["metrics"])} for r in rows}


async def test_equity_views_find_a_planted_gap_and_hide_small_groups(log: EventLog, tmp_path: Path) -> None:
    students = district()
    package = read_package(write_oneroster(tmp_path / "oneroster", students, ["school-a", "school-b"]))
    await import_roster(log, TENANT, package, learner_ids=enroll_learner_ids, effective=date(2026, 8, 24))
    # The ids the roster import gave them (the learner directory's), under which their statements go.
    ids = dict(zip([s.email for s in students], await enroll_learner_ids(log, TENANT, [actor(s) for s in students]),
                   strict=True))  # fmt: skip
    learners = sorted(ids.values())
    await set_plan(log, TENANT, {
        "plan": "math-8", "title": "Math 8", "start": "2026-08-24", "target": "2027-05-28", "learners": learners,
        "competencies": [{"uri": c, "tier": "must"} for c in COMPETENCIES],
    })  # fmt: skip
    # The gap planted: English learners have mastered 1 of 6, the others 4 of 6.
    for student in students:
        done = COMPETENCIES[: 1 if student.english_learner else 4]
        events = [mastery(student, c, 5 + k, ids[student.email]) for k, c in enumerate(done)]
        await log.append(TENANT, events)
    await build(log)
    refresher = EquityRefresher(log)
    [report] = await refresher.refresh(AS_OF)
    assert (report.learners_refreshed, report.learners_total) == (80, 80)

    district_el = await cells(log, "public", "district", "english_learner")
    everyone = (await cells(log, "public", "district", "all"))["all"]
    assert (everyone["n"], district_el["true"]["n"], district_el["false"]["n"]) == (80, 20, 60)
    assert district_el["true"]["metrics"]["pct_mastered"]["value"] == 16.7
    assert district_el["false"]["metrics"]["pct_mastered"]["value"] == 66.7
    assert everyone["metrics"]["pct_mastered"]["value"] == 66.7  # the median: the gap against all is -50 points

    # School B's 6 English learners are under Colorado's 16: hidden from the public, and so is the other group
    # there (30 - 24 would give them back); staff see both.
    school_b = await cells(log, "public", "school:school-b", "english_learner")
    assert (school_b["true"]["n"], school_b["true"]["hidden"]) == (None, "primary")
    assert (school_b["false"]["n"], school_b["false"]["hidden"]) == (None, "complementary")
    staff_b = await cells(log, "staff", "school:school-b", "english_learner")
    assert (staff_b["true"]["n"], staff_b["false"]["n"], staff_b["true"]["hidden"]) == (6, 24, None)

    # What the public sees is exactly the suppression of the stored facts, and nothing hidden can be derived.
    async with log.engine.connect() as conn:
        facts = [Fact(r["learner"], r["scope"], r["pct_mastered"], r["mastered"], r["on_track"], r["stalled"],
                      r["velocity"]) for r in (await conn.execute(sa.select(equity_facts))).mappings()]  # fmt: skip
    schools = {ids[s.email]: [s.school] for s in students}
    groups = {ids[s.email]: {"english_learner": "true" if s.english_learner else "false",
                                                 "gender": "male" if s.sex == "male" else "female",
                                                 "race_ethnicity": "white", "economically_disadvantaged": "false",
                                                 "disability": "false"} for s in students}  # fmt: skip
    [plan_table] = [t for t in scope_tables(facts, groups, schools) if t.scope == PLAN]
    table = suppress(plan_table.cells, plan_table.partitions, CO)
    assert_nothing_derivable(table, plan_table.partitions)
    assert table.public[("school:school-b", PLAN, "english_learner", "true")].n is None

    # Nothing changed: nothing to refresh. A new mastery refreshes that learner only.
    assert await refresher.refresh(AS_OF) == []
    first_el = next(s for s in students if s.english_learner)
    await log.append(TENANT, [mastery(first_el, COMPETENCIES[5], 20, ids[first_el.email])])
    await build(log)
    [again] = await refresher.refresh(AS_OF)
    assert (again.learners_refreshed, again.learners_total) == (1, 80)
    staff_district = await cells(log, "staff", "district", "english_learner")
    assert staff_district["true"]["metrics"]["mastered"]["count"] == 0
    # A new day judges everyone again.
    [next_day] = await refresher.refresh(date(2026, 11, 3))
    assert next_day.learners_refreshed == 80


async def _district_with_plan(log: EventLog, tmp_path: Path) -> tuple[list[Student], dict[str, str]]:
    """The district above with its gap planted and the projections caught up; (students, email -> learner id)."""
    students = district()
    package = read_package(write_oneroster(tmp_path / "oneroster", students, ["school-a", "school-b"]))
    await import_roster(log, TENANT, package, learner_ids=enroll_learner_ids, effective=date(2026, 8, 24))
    ids = dict(zip([s.email for s in students], await enroll_learner_ids(log, TENANT, [actor(s) for s in students]),
                   strict=True))  # fmt: skip
    await set_plan(log, TENANT, {
        "plan": "math-8", "title": "Math 8", "start": "2026-08-24", "target": "2027-05-28",
        "learners": sorted(ids.values()), "competencies": [{"uri": c, "tier": "must"} for c in COMPETENCIES],
    })  # fmt: skip
    for student in students:
        done = COMPETENCIES[: 1 if student.english_learner else 4]
        await log.append(TENANT, [mastery(student, c, 5 + k, ids[student.email]) for k, c in enumerate(done)])
    await build(log)
    return students, ids


async def _fact_rows(log: EventLog, learner: str) -> dict[str, dict[str, Any]]:
    async with log.engine.connect() as conn:
        rows = (await conn.execute(sa.select(equity_facts).where(equity_facts.c.learner == learner))).mappings()
        return {r["scope"]: dict(r) for r in rows}


async def _mastered(log: EventLog, competency: str) -> int:
    async with log.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(equity_cells.c.metrics).where(
                    equity_cells.c.tenant == TENANT, equity_cells.c.audience == "staff",
                    equity_cells.c.scope == f"competency:{competency}", equity_cells.c.level == "district",
                    equity_cells.c.factor == "all",
                )
            )
        ).scalar_one()  # fmt: skip
    return int(orjson.loads(row)["mastered"]["count"])


async def test_a_round_writes_only_the_facts_that_changed_and_never_trusts_facts_another_refresher_changed(
    log: EventLog, tmp_path: Path
) -> None:
    students, ids = await _district_with_plan(log, tmp_path)
    refresher = EquityRefresher(log)
    await refresher.refresh(AS_OF)
    assert await _mastered(log, COMPETENCIES[5]) == 0
    # A statement that changes nothing the facts say (m0 passed again, the same day): her rows are not rewritten.
    same, changed = students[0], students[1]
    learner = ids[same.email]
    async with log.transaction() as conn:
        await conn.execute(equity_facts.update().where(equity_facts.c.learner == learner, equity_facts.c.scope == PLAN)
                           .values(pct_mastered="12.5"))  # fmt: skip
    await log.append(TENANT, [mastery(same, COMPETENCIES[0], 5, learner)])
    await log.append(TENANT, [mastery(changed, COMPETENCIES[4], 21, ids[changed.email])])
    await build(log)
    [report] = await refresher.refresh(AS_OF)
    assert report.learners_refreshed == 2
    assert (await _fact_rows(log, learner))[PLAN]["pct_mastered"] == "12.5"  # left as it was: not written again
    assert (await _fact_rows(log, ids[changed.email]))[f"competency:{COMPETENCIES[4]}"]["mastered"] is True
    # Another refresher (``proficio equity refresh``) stores a change; this one's next round must not count on
    # the facts it kept from its own last round.
    third, fourth = students[2], students[3]
    await log.append(TENANT, [mastery(third, COMPETENCIES[5], 22, ids[third.email])])
    await build(log)
    await EquityRefresher(log).refresh(AS_OF)
    assert await _mastered(log, COMPETENCIES[5]) == 1
    await log.append(TENANT, [mastery(fourth, COMPETENCIES[4], 23, ids[fourth.email])])
    await build(log)
    [report] = await refresher.refresh(AS_OF)
    assert report.learners_refreshed == 1
    assert await _mastered(log, COMPETENCIES[5]) == 1


async def test_rounds_pause_longer_while_the_evidence_view_catches_up(log: EventLog, tmp_path: Path) -> None:
    import asyncio

    students, ids = await _district_with_plan(log, tmp_path)
    rounds: list[float] = []

    class Counted(EquityRefresher):
        async def refresh(self, as_of: date | None = None) -> list[Any]:
            rounds.append(asyncio.get_running_loop().time())
            return await super().refresh(AS_OF)

    async def rounds_in(seconds: float) -> int:
        rounds.clear()
        stop = asyncio.Event()
        task = asyncio.create_task(Counted(log, interval_s=0.05, stretch=10_000).run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task
        return len(rounds)

    # Caught up: a round every interval_s, however long the stretch (here: nearly forever).
    assert await rounds_in(1.5) >= 3
    # Statements the evidence view has not folded yet: one round, then a pause of 10,000 times its length.
    await log.append(TENANT, [mastery(students[0], COMPETENCIES[5], 22, ids[students[0].email])])
    assert await rounds_in(1.5) == 1


async def _all_cells(log: EventLog) -> list[dict[str, Any]]:
    async with log.engine.connect() as conn:
        query = sa.select(equity_cells).order_by(*equity_cells.primary_key.columns)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def _all_facts(log: EventLog) -> list[dict[str, Any]]:
    async with log.engine.connect() as conn:
        query = sa.select(equity_facts).order_by(*equity_facts.primary_key.columns)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def test_cells_kept_from_round_to_round_are_the_cells_built_afresh(log: EventLog, tmp_path: Path) -> None:
    """A round changes the cells by the facts that changed (``RunningCells``) and writes only those facts; after
    rounds of masteries, a refresher judging everyone from scratch stores the same cells and facts."""
    students, ids = await _district_with_plan(log, tmp_path)
    refresher = EquityRefresher(log)
    await refresher.refresh(AS_OF)
    before = await _all_cells(log)
    for day, chosen in ((21, students[0:30:3]), (22, students[40:80:7]), (23, students[0:80:11])):
        for student in chosen:
            await log.append(TENANT, [mastery(student, COMPETENCIES[5], day, ids[student.email])])
        await build(log)
        [report] = await refresher.refresh(AS_OF)
        assert report.learners_refreshed == len(chosen)
    kept = await _all_cells(log)
    assert kept != before
    # Kept rounds write only the facts that changed (an upsert); the stored facts are a fresh judgement's.
    kept_facts = await _all_facts(log)
    assert await _mastered(log, COMPETENCIES[5]) == len({s.email for s in students[0:30:3] + students[40:80:7]
                                                          + students[0:80:11]})  # fmt: skip
    async with log.transaction() as conn:
        await conn.execute(equity_cells.delete())  # nothing of the kept rounds is left to build on
        await conn.execute(sa.delete(equity_state))
    [afresh] = await EquityRefresher(log).refresh(AS_OF)
    assert afresh.learners_refreshed == len(students)
    assert await _all_cells(log) == kept
    assert await _all_facts(log) == kept_facts


async def test_a_round_holds_the_cycle_collector_off_and_collects_once_after_it(
    log: EventLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector traversed a round's millions of short-lived tuples again and again (~40% of its CPU at 50,000
    learners): it is off while learners are judged and runs once, in full, when the round is done."""
    import gc

    from proficio_projector.equity import _refresh

    await _district_with_plan(log, tmp_path)
    judged_with_collector: list[bool] = []
    judge = _refresh.learner_facts

    def watched(*args: Any, **kwargs: Any) -> list[Fact]:
        judged_with_collector.append(gc.isenabled())
        return judge(*args, **kwargs)

    monkeypatch.setattr(_refresh, "learner_facts", watched)
    full: list[int] = []

    def counted(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(len(judged_with_collector))

    assert gc.isenabled()
    gc.callbacks.append(counted)
    try:
        [report] = await EquityRefresher(log).refresh(AS_OF)
    finally:
        gc.callbacks.remove(counted)
    assert report.learners_refreshed > 0
    assert judged_with_collector
    assert not any(judged_with_collector)
    assert gc.isenabled()
    assert full
    assert full[-1] == len(judged_with_collector)  # a full collection once every learner was judged
