"""Pacing, readiness and the intervention queue as pure functions, on hand-made progress and calendars."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from proficio_projector.competency import MasteryPolicy, Method, Observation, progress
from proficio_projector.pacing import (
    Break,
    PacingDataError,
    PacingPolicy,
    SchoolCalendar,
    day_of,
    intervention_queue,
    menu_data,
    pace,
    plan_from_data,
    readiness,
)

C = [f"https://example.org/c{n}" for n in range(8)]
PLAN = plan_from_data({
    "plan": "alg-1", "title": "Algebra 1", "start": "2026-09-07", "target": "2026-12-18",
    "competencies": [{"uri": C[n], "tier": "must", "week": 2 * (n + 1)} for n in range(6)]
    + [{"uri": C[6], "tier": "should"}, {"uri": C[7], "tier": "aspire"}],
})  # fmt: skip
WEEKDAYS = SchoolCalendar()


def us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 10, tzinfo=UTC).timestamp()) * 1_000_000


def evidence(*items: tuple[str, str, date]) -> list[Observation]:
    return [Observation(f"s{n}", None, (c,), Decimal(norm), None, us(d), us(d)) for n, (c, norm, d) in enumerate(items)]


def test_a_calendar_counts_school_days_and_skips_breaks() -> None:
    fall = SchoolCalendar(
        date(2026, 9, 7), date(2027, 6, 4), (Break(date(2026, 11, 23), date(2026, 11, 27), "Thanksgiving"),)
    )
    assert WEEKDAYS.school_days(date(2026, 11, 20), date(2026, 11, 30)) == 6
    assert fall.school_days(date(2026, 11, 20), date(2026, 11, 30)) == 1  # the break week is no school
    assert fall.add_school_days(date(2026, 11, 20), 2) == date(2026, 12, 1)
    assert not fall.is_school_day(date(2026, 9, 4))  # before the first day
    assert fall.school_weeks(date(2026, 11, 15), date(2026, 12, 6)) == [date(2026, 11, 16), date(2026, 11, 30)]
    with pytest.raises(ValueError, match="last day"):
        SchoolCalendar(date(2026, 9, 7), date(2026, 9, 1))


def test_pace_of_a_learner_on_track_with_her_own_velocity() -> None:
    # Two competencies mastered in her first two active weeks, evidence on a third the week after.
    found = progress(evidence((C[0], "0.75", date(2026, 9, 8)), (C[1], "0.8", date(2026, 9, 16)),
                              (C[2], "0.5", date(2026, 9, 23))), set(), MasteryPolicy())  # fmt: skip
    p = pace(PLAN, WEEKDAYS, PacingPolicy(), found, date(2026, 9, 25))
    assert (p.required, p.mastered, p.pct_mastered) == (6, 2, Decimal("33.3"))
    assert p.expected_pct == Decimal("20.0")  # 15 of 75 school days
    assert p.status == "ahead"
    assert (p.active_weeks, p.velocity_window, p.velocity_lifetime) == (3, Decimal("0.67"), Decimal("0.67"))
    assert p.required_velocity == Decimal("0.33")  # 4 left over 12 school weeks
    assert p.projected_completion == WEEKDAYS.add_school_days(date(2026, 9, 25), 6 * 5)  # ceil(4 / 0.67) weeks
    # Weekly masteries in the window: 1, 1, 0; P75 = 1 a week (4 weeks), P25 = 0.5 (8 weeks).
    assert p.projected_early == WEEKDAYS.add_school_days(date(2026, 9, 25), 4 * 5)
    assert p.projected_late == WEEKDAYS.add_school_days(date(2026, 9, 25), 8 * 5)
    assert p.behind == ()
    assert [(t.competency, t.days, t.attempts) for t in p.time_to_mastery] == [(C[0], 0, 1), (C[1], 0, 1)]
    assert not p.disengaged
    assert not p.stalled_learner


def test_behind_past_planned_weeks_stalled_and_disengaged() -> None:
    flat = [(C[0], "0.5", date(2026, 9, 8 + n)) for n in range(4)]  # four tries, Developing each time
    found = progress(evidence(*flat), set(), MasteryPolicy(Method.LATEST))
    p = pace(PLAN, WEEKDAYS, PacingPolicy(), found, date(2026, 10, 26))
    assert p.behind == (C[0], C[1], C[2])  # planned by weeks 2, 4, 6; none mastered
    assert p.behind_bucket == "3-4"
    assert p.stalled == (C[0],)
    assert p.status == "behind"
    assert p.disengaged  # no evidence for over 10 school days
    assert p.last_activity == date(2026, 9, 11)
    assert p.projected_completion is None  # velocity 0


def test_a_regression_never_takes_a_mastery_back_from_velocity() -> None:
    found = progress(evidence((C[0], "0.75", date(2026, 9, 8)), (C[0], "0.25", date(2026, 9, 9))), set(),
                     MasteryPolicy(Method.LATEST))  # fmt: skip
    p = pace(PLAN, WEEKDAYS, PacingPolicy(), found, date(2026, 9, 10))
    assert (p.mastered, p.velocity_window) == (0, Decimal("1.00"))


def test_thresholds_come_from_the_tenants_policy() -> None:
    found = progress(evidence((C[0], "0.75", date(2026, 9, 8))), set(), MasteryPolicy())
    on_track = pace(PLAN, WEEKDAYS, PacingPolicy(band_pct=Decimal(20)), found, date(2026, 9, 25))
    assert on_track.status == "on_track"  # 16.7% against 20% expected, within +-20
    with pytest.raises(PacingDataError, match="band_pct"):
        PacingPolicy(band_pct=Decimal(80))
    with pytest.raises(PacingDataError, match="unknown pacing setting"):
        PacingPolicy.from_data({"speed": 3})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "2026-09-01"}, "target must come after start"),
        ({"competencies": []}, "non-empty list"),
        ({"competencies": [{"uri": C[0], "tier": "maybe"}]}, "tier is must, should or aspire"),
        ({"competencies": [{"uri": C[0], "week": 0}]}, "school week number"),
        ({"competencies": [{"uri": C[0]}, {"uri": C[0]}]}, "listed twice"),
        ({"competencies": [{"uri": C[0], "tier": "aspire"}]}, "at least one must-do"),
        ({"competencies": [{"uri": "not an iri"}]}, "competencies[0].uri must be an IRI"),
        ({"start": "next monday"}, "start must be a date"),
        ({"plan": "a b"}, "plan is 1 to 200"),
    ],
)
def test_bad_plans_are_refused_naming_the_problem(change: dict[str, Any], message: str) -> None:
    data = {"plan": "p", "start": "2026-09-07", "target": "2026-12-18", "competencies": [{"uri": C[0]}], **change}
    with pytest.raises(PacingDataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_from_data(data)


MENU = menu_data({
    "menu": "co-2027", "title": "Graduation guidelines",
    "requirements": [
        {"area": "math", "options": [
            {"id": "sat", "kind": "assessment", "activity": "https://example.org/tests/sat-math", "min_raw": 530},
            {"id": "performance", "kind": "competencies", "competencies": C[:3], "rule": "all"},
        ]},
        {"area": "english", "options": [
            {"id": "capstone", "kind": "rating", "competency": C[6], "min_points": 3},
            {"id": "certificate", "kind": "assessment", "activity": "https://example.org/certs/ela", "success": True},
        ]},
    ],
})  # fmt: skip


def test_readiness_names_the_option_and_evidence_that_met_each_requirement() -> None:
    observations = [
        Observation("sat-1", "https://example.org/tests/sat-math", (), Decimal("0.5"), None, us(date(2026, 10, 3)),
                    us(date(2026, 10, 3)), raw=Decimal(500)),
        Observation("sat-2", "https://example.org/tests/sat-math", (), Decimal("0.6"), None, us(date(2026, 12, 5)),
                    us(date(2026, 12, 5)), raw=Decimal(560)),
        Observation("rating:1", None, (C[6],), Decimal("0.75"), None, us(date(2026, 11, 2)), us(date(2026, 11, 2)),
                    source="rating"),
    ]  # fmt: skip
    found = progress(observations, set(), MasteryPolicy())
    result = readiness(MENU, found, observations, date(2026, 12, 10))
    math, english = result.requirements
    assert (math.met, math.met_by, math.met_on) == (True, "sat", date(2026, 12, 5))
    assert math.options[0].evidence == ("sat-2",)  # 500 missed the cut
    assert (english.met_by, english.options[0].evidence) == ("capstone", ("rating:1",))
    assert (result.ready, result.ready_on) == (True, date(2026, 12, 5))

    early = readiness(MENU, found, observations[:1] + observations[2:], date(2026, 11, 6), velocity=Decimal(1))
    assert not early.requirements[0].met
    assert early.requirements[0].options[1].still_needed == 3
    assert early.projected_ready == WEEKDAYS.add_school_days(date(2026, 11, 6), 3 * 5)  # 3 competencies at 1 a week
    assert readiness(MENU, {}, [], date(2026, 11, 6), velocity=Decimal(1)).projected_ready is None  # english: no path


@pytest.mark.parametrize(
    ("requirements", "message"),
    [
        ([], "non-empty list"),
        ([{"area": "math", "options": [{"id": "x", "kind": "vibes"}]}], "kind is one of"),
        ([{"area": "m", "options": [{"id": "x", "kind": "assessment", "activity": "https://t"}]}], "exactly one cut"),
        ([{"area": "math", "options": [{"id": "x", "kind": "competencies", "competencies": [C[0]], "rule": "k_of_n"}]}],
         "k_of_n takes k"),
        ([{"area": "m", "options": [{"id": "x", "kind": "rating", "competency": C[0], "min_points": "high"}]}],
         "must be a number"),
    ],
)  # fmt: skip
def test_bad_menus_are_refused_naming_the_problem(requirements: list[Any], message: str) -> None:
    with pytest.raises(PacingDataError, match=message):
        menu_data({"menu": "m", "requirements": requirements})


def test_the_intervention_queue_ranks_by_behind_then_what_stalls_block() -> None:
    stuck_on_first = progress(evidence(*[(C[0], "0.5", date(2026, 10, 19 + n)) for n in range(4)]), set(),
                              MasteryPolicy(Method.LATEST))  # fmt: skip
    stuck_on_last = progress(evidence(*[(C[5], "0.5", date(2026, 10, 19 + n)) for n in range(4)]), set(),
                             MasteryPolicy(Method.LATEST))  # fmt: skip
    fine = progress(evidence(*[(C[n], "1.0", date(2026, 9, 8 + n)) for n in range(6)]), set(), MasteryPolicy())
    as_of = date(2026, 10, 23)
    paces = {name: pace(PLAN, WEEKDAYS, PacingPolicy(), found, as_of)
             for name, found in (("ana", stuck_on_last), ("bo", stuck_on_first), ("cy", fine))}  # fmt: skip
    precedes = {C[0]: [C[1]], C[1]: [C[2]], C[2]: [C[3]]}
    queue = intervention_queue(paces, precedes, 40, label=lambda c: c.rsplit("/", 1)[1])
    # cy finished the plan: nothing to act on, though she has been quiet since.
    assert [(q.learner, q.rank, q.behind, q.blocked_weight) for q in queue] == [("bo", 1, 3, 4), ("ana", 2, 3, 1)]
    assert queue[0].reasons[0].startswith("3 required competencies past the planned week (c0, c1, c2)")
    assert "stalled on c0, which 3 others build on" in queue[0].reasons


def test_the_day_of_a_moment_is_its_utc_date_at_every_boundary() -> None:
    """``day_of`` counts whole days since the epoch; it agrees with datetime at and around every midnight."""
    day_us = 86_400_000_000
    moments = [0, -1, 1, 1795420209374818] + [k * day_us + o for k in range(-800, 30_000, 7) for o in (-1, 0, 1)]
    for moment in moments:
        assert day_of(moment) == datetime.fromtimestamp(moment / 1_000_000, UTC).date(), moment


def test_school_weeks_are_remembered_but_each_caller_gets_its_own_list() -> None:
    calendar = SchoolCalendar(breaks=(Break(date(2026, 12, 21), date(2027, 1, 1), "winter"),))
    weeks = calendar.school_weeks(date(2026, 12, 10), date(2027, 1, 12))
    assert weeks == [date(2026, 12, 7), date(2026, 12, 14), date(2027, 1, 4), date(2027, 1, 11)]
    weeks.clear()  # a caller's list is its own: the remembered weeks are not changed through it
    assert calendar.school_weeks(date(2026, 12, 10), date(2027, 1, 12))[0] == date(2026, 12, 7)
