"""Competency progress: the evidence fold (pure, and run by the runtime on both backends) and the progress
computed from it under a policy, with voiding, late statements, alignments and mastery dates."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from proficio_events import EventLog, NewEvent, StoredEvent
from proficio_projector import RunnerSettings, SqlProjector, fold
from proficio_projector.competency import (
    CompetencyEvidence,
    MasteryPolicy,
    Method,
    Observation,
    progress,
)
from tests.projector.support import FAST, caught_up, replayed_rows, running, view_rows

OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
FRACTIONS = "https://proficio.example.org/case/CFItems/fractions"
RATIOS = "https://proficio.example.org/case/CFItems/ratios"
T0 = 1_795_000_000_000_000


def sid(n: int) -> str:
    return str(uuid.UUID(int=n))


def stmt(n: int, scaled: float | None, *, day: int, competencies: tuple[str, ...] = (FRACTIONS,),
         activity: str = "https://example.org/items/1") -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {
        "id": sid(n),
        "actor": {"mbox": "mailto:ada@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": activity},
        "context": {
            "contextActivities": {"other": [{"id": c, "definition": {"type": OBJECTIVE}} for c in competencies]}
        },
        "timestamp": f"2026-11-{day:02d}T10:00:00Z",
    }
    if scaled is not None:
        body["result"] = {"score": {"scaled": scaled}}
    return body


def stored(
    position: int, statement: dict[str, Any], *, voiding: bool = False, stream: str = "learner:ada"
) -> StoredEvent:
    new = NewEvent.of(stream, "StatementVoided" if voiding else "StatementStored", {"statement": statement})
    return StoredEvent(position, "t", stream, position, new.event_type, 1, T0 + position, None, None, new.payload,
                       None, None, b"", b"")  # fmt: skip


def void(n: int, target: int) -> dict[str, Any]:
    return {"id": sid(n), "actor": {"mbox": "mailto:teacher@example.org"},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
            "object": {"objectType": "StatementRef", "id": sid(target)}}  # fmt: skip


def observations_of(events: list[StoredEvent]) -> tuple[list[Observation], set[str]]:
    state = fold(CompetencyEvidence(), events)
    rows = [dict(r) for r in state.rows.get("observations", {}).values() if r is not None]
    voided = {key[1] for key, row in state.rows.get("voids", {}).items() if row is not None}
    return [Observation.from_row(r) for r in rows], voided


def test_the_fold_keeps_observations_with_a_value_and_voids() -> None:
    events = [
        stored(1, stmt(1, 0.5, day=2)),
        stored(2, stmt(2, None, day=3)),  # no result: no evidence value, no row
        stored(3, void(3, 1), voiding=True, stream="learner:teacher"),
    ]
    observations, voided = observations_of(events)
    assert [(o.statement_id, o.norm, o.competencies) for o in observations] == [(sid(1), Decimal("0.5"), (FRACTIONS,))]
    assert voided == {sid(1)}


def test_progress_under_policies_with_mastery_dates() -> None:
    events = [stored(1, stmt(1, 0.5, day=2)), stored(2, stmt(2, 0.8, day=3)), stored(3, stmt(3, 0.6, day=4))]
    observations, voided = observations_of(events)

    highest = progress(observations, voided, MasteryPolicy(Method.HIGHEST))[FRACTIONS]
    assert highest.scores == (Decimal("2.0"), Decimal("3.2"), Decimal("2.4"))  # norm x the scale's top (4)
    assert (highest.score, highest.level.label if highest.level else None, highest.mastered) == (
        Decimal("3.2"), "Proficient", True,
    )  # fmt: skip
    assert highest.mastered_at_us == _day_us(3)  # the 3.2 of day 3

    latest = progress(observations, voided, MasteryPolicy(Method.LATEST))[FRACTIONS]
    assert (latest.score, latest.level.label if latest.level else None, latest.mastered) == (
        Decimal("2.4"), "Developing", False,
    )  # fmt: skip
    assert latest.mastered_at_us == _day_us(3)  # reached on day 3; a later drop leaves the date

    never = progress(observations, voided, MasteryPolicy(Method.N_MASTERY, 2))[FRACTIONS]
    assert (never.score, never.level, never.mastered, never.mastered_at_us) == (None, None, False, None)


def _day_us(day: int) -> int:
    from datetime import UTC, datetime

    return int((datetime(2026, 11, day, 10, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000


def test_late_statements_are_placed_by_timestamp_and_voided_ones_withdrawn() -> None:
    events = [
        stored(1, stmt(1, 0.9, day=10)),
        stored(2, stmt(2, 0.25, day=5)),  # sent late: it happened first
        stored(3, stmt(3, 1.0, day=11)),
        stored(4, void(4, 3), voiding=True, stream="learner:teacher"),
    ]
    observations, voided = observations_of(events)
    found = progress(observations, voided, MasteryPolicy(Method.LATEST))[FRACTIONS]
    assert [e.statement_id for e in found.evidence] == [sid(2), sid(1)]  # day 5, day 10; day 11 voided
    assert found.score == Decimal("3.6")
    assert (found.first_at_us, found.last_at_us) == (_day_us(5), _day_us(10))


def test_alignments_count_for_untagged_activities() -> None:
    events = [stored(1, stmt(1, 0.75, day=2, competencies=(), activity="https://example.org/items/ratio-quiz"))]
    observations, voided = observations_of(events)
    assert progress(observations, voided, MasteryPolicy()) == {}
    aligned = progress(observations, voided, MasteryPolicy(),
                       alignments={"https://example.org/items/ratio-quiz": {RATIOS: Decimal(1)}})  # fmt: skip
    assert aligned[RATIOS].score == Decimal("3.00")
    assert aligned[RATIOS].evidence[0].source == "alignment"


async def test_the_evidence_view_on_both_backends_equals_the_fold(log: EventLog) -> None:
    for n in range(60):
        learner = n % 6
        statement = stmt(n, (n % 10) / 10, day=1 + n % 20, competencies=(FRACTIONS, RATIOS)[: 1 + n % 2])
        statement["actor"] = {"mbox": f"mailto:learner{learner}@example.org"}
        await log.append("district-7", [NewEvent.of(f"learner:{learner}", "StatementStored", {"statement": statement})])
    await log.append("district-7", [NewEvent.of("learner:teacher", "StatementVoided", {"statement": void(99, 7)})])
    async with running(SqlProjector(log, CompetencyEvidence(), RunnerSettings(owner="t", **FAST))):
        await caught_up(log, "competency_evidence")
    projection = CompetencyEvidence()
    observed = await view_rows(log, projection, "observations")
    assert observed == await replayed_rows(log, projection, "observations")
    assert len(observed) == 60  # a scaled score of 0.0 is evidence too
    assert await view_rows(log, projection, "voids") == await replayed_rows(log, projection, "voids")


def test_a_framework_scale_sets_the_points_and_the_mastery_threshold() -> None:
    from proficio_projector.competency import Level

    five = (
        Level(Decimal(0), "Not yet", False),
        Level(Decimal(2), "Emerging", False),
        Level(Decimal(4), "Secure", True),
        Level(Decimal(5), "Exceeding", True),
    )
    events = [stored(1, stmt(1, 0.7, day=2)), stored(2, stmt(2, 0.8, day=3))]
    observations, voided = observations_of(events)

    on_five = progress(observations, voided, MasteryPolicy(Method.LATEST), scale_of=lambda _: five)[FRACTIONS]
    on_default = progress(observations, voided, MasteryPolicy(Method.LATEST))[FRACTIONS]

    assert on_five.scores == (Decimal("3.5"), Decimal("4.0"))  # norm x 5
    assert (on_five.score, on_five.level.label if on_five.level else None, on_five.mastered) == (
        Decimal("4.00"), "Secure", True,
    )  # fmt: skip
    assert on_five.mastered_at_us == _day_us(3)  # 3.5 was below the threshold of 4
    assert (on_default.score, on_default.mastered_at_us) == (Decimal("3.20"), _day_us(3))  # 2.8, then 3.2 >= 3
