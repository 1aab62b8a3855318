"""The section grid's per-learner cache (``grid_scored``) on both backends: a learner's cells come from the
cache only while nothing they depend on has changed, and equal, after every kind of change, what scoring
her from the views afresh gives (new evidence, a void, a teacher rating and its withdrawal, an alignment, a
mastery policy, the day, an override, a rebuilt generation)."""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from proficio_events import EventLog, NewEvent
from proficio_projector import RunnerSettings, SqlProjector, build
from proficio_projector.competency import (
    DEFAULT_SCALE,
    CompetencyEvidence,
    CompetencyReference,
    Frameworks,
    MasteryPolicy,
    Method,
    define_alignment,
    import_framework,
    record_rating,
    set_policy,
    withdraw_rating,
)
from proficio_projector.competency._progress import GridCell
from proficio_projector.competency._reads import grid_scored, scored
from tests.projector.support import FAST, caught_up, running

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graduate-profile.case.json"
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
PACKAGE = orjson.loads(EXAMPLE.read_bytes())
URI = {item["humanCodingScheme"]: item["uri"] for item in PACKAGE["CFItems"]}
TENANT = "district-9"
LEARNERS = ["learner:ada", "learner:ben", "learner:cy"]
NOW = 1_795_000_000_000_000  # 2026-11-18
DAY = 86_400_000_000


def statement(learner: str, code: str | None, scaled: float, day: int, activity: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "actor": {"mbox": f"mailto:{learner.split(':')[1]}@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": activity or f"https://example.org/items/{code}/{day}"},
        "result": {"score": {"scaled": scaled}},
        "timestamp": f"2026-11-{day:02d}T09:00:00Z",
    }
    if code:
        body["context"] = {"contextActivities": {"other": [{"id": URI[code], "definition": {"type": OBJECTIVE}}]}}
    return body


async def stored(log: EventLog, learner: str, body: dict[str, Any], kind: str = "StatementStored") -> None:
    await log.append(TENANT, [NewEvent.of(learner, kind, {"statement": body})])


async def settled(log: EventLog) -> None:
    for name in (CompetencyEvidence.name, Frameworks.name, CompetencyReference.name):
        await caught_up(log, name)


async def grid(log: EventLog, *, now_us: int = NOW, override: MasteryPolicy | None = None) -> tuple[Any, int]:
    """The cached grid's cells, checked against scoring afresh; and how many learners it scored itself."""
    async with log.engine.connect() as conn:
        cached = await grid_scored(conn, TENANT, LEARNERS, now_us=now_us, override=override)
        fresh = await scored(conn, TENANT, LEARNERS, now_us=now_us, trend=False, override=override)
    expected = {learner: {c: GridCell.of(p) for c, p in found.items()} for learner, found in fresh.progress.items()}
    assert cached.cells == expected
    # The same reference data, but alignments only for the learners it scored (a cached learner needs none).
    assert dataclasses.replace(cached.reference, alignments={}) == dataclasses.replace(fresh.reference, alignments={})
    assert cached.reference.alignments.items() <= fresh.reference.alignments.items()
    return cached.cells, cached.computed


async def test_the_grid_cache_never_serves_a_stale_grid(log: EventLog) -> None:
    await import_framework(log, TENANT, EXAMPLE.read_bytes(), source="test")
    evidence = [("learner:ada", "GP.A.MATH.2", 0.8, 3), ("learner:ben", "GP.A.MATH.1", 0.9, 3),
                ("learner:ben", "GP.A.SCI.1", 0.4, 4), ("learner:cy", "GP.A.MATH.1", 0.6, 5)]  # fmt: skip
    for learner, code, scaled, day in evidence:
        await stored(log, learner, statement(learner, code, scaled, day))
    await stored(log, "learner:ada", statement("learner:ada", "GP.A.MATH.1", 0.5, 2))
    settings = RunnerSettings(owner="t", **FAST)
    projectors = [SqlProjector(log, p, settings) for p in (CompetencyEvidence(), Frameworks(), CompetencyReference())]
    async with running(*projectors):
        await settled(log)
        cells, computed = await grid(log)
        assert computed == 3
        assert cells["learner:ada"][URI["GP.A.MATH.1"]].score == Decimal("2.00")
        assert (await grid(log))[1] == 0  # nothing changed: every learner from the cache

        # New evidence: only her cells are scored again.
        best = statement("learner:ada", "GP.A.MATH.1", 1.0, 6)
        await stored(log, "learner:ada", best)
        await settled(log)
        cells, computed = await grid(log)
        assert computed == 1
        assert cells["learner:ada"][URI["GP.A.MATH.1"]].mastered

        # A void, from another stream (an instructor's): her rows are untouched, the void row is new.
        teacher_void = {"id": str(uuid.uuid4()), "actor": {"mbox": "mailto:teacher@example.org"},
                        "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
                        "object": {"objectType": "StatementRef", "id": best["id"]}}  # fmt: skip
        await stored(log, "learner:teacher", teacher_void, "StatementVoided")
        await settled(log)
        before = cells
        cells, computed = await grid(log)
        assert computed == 1
        assert cells["learner:ben"] is before["learner:ben"]
        assert cells["learner:ada"][URI["GP.A.MATH.1"]].score == Decimal("2.00")

        # A teacher's rating, then its withdrawal.
        rating_id, _ = await record_rating(log, TENANT, "learner:cy", URI["GP.A.MATH.1"], Decimal(4), DEFAULT_SCALE,
                                           authority="teacher", timestamp_us=NOW - DAY)  # fmt: skip
        await settled(log)
        cells, computed = await grid(log)
        assert computed == 1
        assert cells["learner:cy"][URI["GP.A.MATH.1"]].score == Decimal("4.00")
        await withdraw_rating(log, TENANT, "learner:cy", rating_id, authority="teacher")
        await settled(log)
        cells, computed = await grid(log)
        assert computed == 1
        assert cells["learner:cy"][URI["GP.A.MATH.1"]].score == Decimal("2.40")

        # Reference data: an alignment of an activity a learner used, then a mastery policy.
        aligned = "https://example.org/items/untagged"
        await stored(log, "learner:ben", statement("learner:ben", None, 0.25, 7, activity=aligned))
        await settled(log)
        assert (await grid(log))[1] == 1  # no alignment yet: no evidence, but her rows changed
        await define_alignment(log, TENANT, aligned, URI["GP.A.SCI.1"])
        await settled(log)
        cells, computed = await grid(log)
        assert computed == 3
        assert cells["learner:ben"][URI["GP.A.SCI.1"]].score == Decimal("1.60")  # the highest of 0.4 and 0.25
        await set_policy(log, TENANT, "tenant", Method.LATEST.value)
        await settled(log)
        cells, computed = await grid(log)
        assert computed == 3
        assert cells["learner:ben"][URI["GP.A.SCI.1"]].score == Decimal("1.00")  # the latest: the aligned item

        # The day (the idle rule counts school days to today) and an override are part of the key.
        assert (await grid(log))[1] == 0
        cells, computed = await grid(log, now_us=NOW + 30 * DAY)
        assert computed == 3
        assert all(cell.stalled for mine in cells.values() for cell in mine.values() if not cell.mastered)
        assert (await grid(log, override=MasteryPolicy(Method.AVERAGE)))[1] == 3
        assert (await grid(log, override=MasteryPolicy(Method.AVERAGE)))[1] == 0

    # A rebuilt evidence view (a new generation) is a new key for everyone.
    await build(log, CompetencyEvidence(), settings)
    assert (await grid(log))[1] == 3

    # A full cache lets the least recently read learner go.
    async with log.engine.connect() as conn:
        later = NOW + 60 * DAY
        assert (await grid_scored(conn, TENANT, LEARNERS, now_us=later, cache_learners=2)).computed == 3
        assert (await grid_scored(conn, TENANT, LEARNERS, now_us=later, cache_learners=2)).computed == 1
        # Ben and Cy were read from the cache (in that order), then Ada scored and kept: Ben went.
        kept = [LEARNERS[2], LEARNERS[0]]
        assert (await grid_scored(conn, TENANT, kept, now_us=later, cache_learners=2)).computed == 0
        assert (await grid_scored(conn, TENANT, LEARNERS[1:2], now_us=later, cache_learners=2)).computed == 1


def test_grid_cells_are_what_progress_gives_under_every_method() -> None:
    import random

    from proficio_projector.competency import Observation, progress
    from proficio_projector.competency._progress import grid_cells

    rng = random.Random(6)
    codes = list(URI.values())[:6]
    for method in Method:
        for _ in range(20):
            observations = [
                Observation(str(uuid.UUID(int=rng.getrandbits(128))), f"https://example.org/items/{rng.randrange(5)}",
                            tuple(rng.sample(codes, rng.choice((1, 1, 2)))), Decimal(rng.randrange(101)) / 100,
                            rng.random() > 0.3, NOW - rng.randrange(60) * DAY, NOW)
                for _ in range(rng.randrange(1, 30))
            ]  # fmt: skip
            voided = {o.statement_id for o in observations if rng.random() < 0.1}
            aligned = {"https://example.org/items/1": {codes[0]: Decimal("0.5")}}
            parameter = rng.choice((None, 2)) if method in (Method.N_MASTERY, Method.AVERAGE_RECENT) else None
            policy = MasteryPolicy(method, parameter)
            full = progress(observations, voided, policy, alignments=aligned, now_us=NOW, trend=False)
            cells = grid_cells(observations, voided, policy, alignments=aligned, now_us=NOW)
            assert cells == {c: GridCell.of(p) for c, p in full.items()}


async def test_nothing_is_kept_when_the_reference_views_moved_during_the_read(log: EventLog, monkeypatch: Any) -> None:
    from proficio_projector.competency import _reads

    await import_framework(log, TENANT, EXAMPLE.read_bytes(), source="test")
    for n, learner in enumerate(LEARNERS):
        await stored(log, learner, statement(learner, "GP.A.MATH.1", 0.25 * (n + 1), 2 + n))
    settings = RunnerSettings(owner="t", **FAST)
    for projection in (CompetencyEvidence(), Frameworks(), CompetencyReference()):
        await build(log, projection, settings)
    _reads._GRID_CACHE.clear()
    _reads._REFERENCES.clear()
    stamp_of = _reads._reference_stamp
    calls = 0

    async def moved(*args: Any) -> Any:  # the second read (after scoring) sees a fold of the reference views
        nonlocal calls
        calls += 1
        stamp, marks = await stamp_of(*args)
        return (stamp, (*marks, ("mark:moved", 0, calls))) if calls % 2 == 0 else (stamp, marks)

    monkeypatch.setattr(_reads, "_reference_stamp", moved)
    assert (await grid(log))[1] == 3
    assert not _reads._GRID_CACHE
    assert not _reads._REFERENCES
    monkeypatch.setattr(_reads, "_reference_stamp", stamp_of)
    assert (await grid(log))[1] == 3
    assert (await grid(log))[1] == 0
