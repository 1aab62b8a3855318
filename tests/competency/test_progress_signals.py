"""What progress adds to a score, as pure functions: alignment weights in the means, teacher ratings as
evidence (and withdrawn), trend, stalled and regressed flags, rollups to parents and the graduate profile,
and the section grid's level distribution."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from proficio_events import NewEvent, StoredEvent
from proficio_projector import fold
from proficio_projector.competency import (
    DEFAULT_SCALE,
    CompetencyEvidence,
    MasteryPolicy,
    Method,
    Observation,
    Progress,
    ReferenceDataError,
    RollupPolicy,
    RollupRule,
    StallRule,
    grid_columns,
    mastery_score,
    progress,
    rating_points,
    rollups,
    school_days_between,
)
from tests.competency.test_progress import FRACTIONS, RATIOS, T0, observations_of, sid, stmt, stored

QUIZ = "https://example.org/items/ratio-quiz"


def us(day: int, month: int = 11) -> int:
    return int(datetime(2026, month, day, 10, tzinfo=UTC).timestamp()) * 1_000_000


def obs(n: int, norm: str, day: int, *, competencies: tuple[str, ...] = (FRACTIONS,), activity: str | None = None,
        source: str = "statement") -> Observation:  # fmt: skip
    return Observation(sid(n), activity, competencies, Decimal(norm), None, us(day), us(day), source)


def test_weights_weigh_the_means_and_nothing_else() -> None:
    scores, weights = [Decimal(4), Decimal(2)], [Decimal(1), Decimal("0.25")]
    assert mastery_score(MasteryPolicy(Method.AVERAGE), scores, weights) == Decimal("3.60")  # (4 + 0.5) / 1.25
    assert mastery_score(MasteryPolicy(Method.AVERAGE), scores) == Decimal("3.00")
    assert mastery_score(MasteryPolicy(Method.AVERAGE_RECENT, 2), scores, weights) == Decimal("3.60")
    assert mastery_score(MasteryPolicy(Method.HIGHEST), scores, weights) == Decimal("4.00")
    assert mastery_score(MasteryPolicy(Method.LATEST), scores, weights) == Decimal("2.00")
    with pytest.raises(ValueError, match="weights"):
        mastery_score(MasteryPolicy(Method.AVERAGE), scores, [Decimal(1)])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        mastery_score(MasteryPolicy(Method.AVERAGE), scores, [Decimal(1), Decimal(0)])


def test_an_alignment_weight_counts_in_the_average() -> None:
    observations = [
        obs(1, "1.0", 2),  # names FRACTIONS itself: weight 1
        obs(2, "0.5", 3, competencies=(), activity=QUIZ),  # aligned at 0.25
    ]
    found = progress(observations, set(), MasteryPolicy(Method.AVERAGE),
                     alignments={QUIZ: {FRACTIONS: Decimal("0.25")}})[FRACTIONS]  # fmt: skip
    assert [e.weight for e in found.evidence] == [Decimal(1), Decimal("0.25")]
    assert found.score == Decimal("3.60")  # (4 x 1 + 2 x 0.25) / 1.25, not the plain mean 3.00


def rating_event(position: int, rating_id: str, competency: str, norm: str, day: int, *,
                 withdrawn: bool = False) -> StoredEvent:  # fmt: skip
    data = {"rating_id": rating_id, "authority": "Ms. Rivera"}
    if not withdrawn:
        data |= {"competency": competency, "points": str(Decimal(norm) * 4), "points_possible": "4", "norm": norm,
                 "level": None, "comment": "capstone presentation", "timestamp_us": us(day)}  # fmt: skip
    new = NewEvent.of("learner:ada", "TeacherRatingWithdrawn" if withdrawn else "TeacherRatingRecorded", data)
    return StoredEvent(position, "t", "learner:ada", position, new.event_type, 1, T0 + position, None, None,
                       new.payload, None, None, b"", b"")  # fmt: skip


def test_a_teacher_rating_is_evidence_with_its_authority_until_withdrawn() -> None:
    rating = "0b0c5f3e-6f55-4f43-9d1e-3d1f6a1f0001"
    events = [stored(1, stmt(1, 0.5, day=2)), rating_event(2, rating, FRACTIONS, "0.75", day=3)]
    observations, voided = observations_of(events)
    found = progress(observations, voided, MasteryPolicy(Method.LATEST))[FRACTIONS]
    assert [(e.source, e.authority) for e in found.evidence] == [("statement", None), ("rating", "Ms. Rivera")]
    assert (found.score, found.mastered, found.mastered_at_us) == (Decimal("3.00"), True, us(3))

    observations, voided = observations_of([*events, rating_event(3, rating, FRACTIONS, "", 0, withdrawn=True)])
    after = progress(observations, voided, MasteryPolicy(Method.LATEST))[FRACTIONS]
    assert [e.source for e in after.evidence] == ["statement"]
    assert (after.score, after.mastered) == (Decimal("2.00"), False)


def test_rating_points_come_from_a_level_or_points_on_the_scale() -> None:
    assert rating_points(DEFAULT_SCALE, level="proficient", points=None) == Decimal(3)
    assert rating_points(DEFAULT_SCALE, level=None, points="2.5") == Decimal("2.5")
    for level, points, message in (
        ("Expert", None, "no level 'Expert'"), (None, "5", "from 0 to the scale's top"),
        (None, "abc", "must be a number"), ("Proficient", "3", "exactly one"), (None, "NaN", "from 0"),
    ):  # fmt: skip
        with pytest.raises(ReferenceDataError, match=message):
            rating_points(DEFAULT_SCALE, level=level, points=points)


def test_trend_is_the_power_law_exponent_from_three_pieces_of_evidence() -> None:
    rising = progress([obs(1, "0.25", 2), obs(2, "0.5", 3), obs(3, "0.75", 4)], set(), MasteryPolicy())[FRACTIONS]
    falling = progress([obs(1, "0.75", 2), obs(2, "0.5", 3), obs(3, "0.25", 4)], set(), MasteryPolicy())[FRACTIONS]
    two = progress([obs(1, "0.25", 2), obs(2, "0.5", 3)], set(), MasteryPolicy())[FRACTIONS]
    assert rising.trend_b is not None
    assert rising.trend_b > 0
    assert falling.trend_b is not None
    assert falling.trend_b < 0
    assert two.trend_b is None


def test_stalled_after_attempts_without_a_level_gain() -> None:
    flat = [obs(n, "0.5", 2 + n) for n in range(1, 5)]  # Developing four times
    climbing = [obs(1, "0.25", 2), obs(2, "0.25", 3), obs(3, "0.5", 4), obs(4, "0.5", 5)]
    assert progress(flat, set(), MasteryPolicy(Method.LATEST))[FRACTIONS].stalled
    assert not progress(flat[:3], set(), MasteryPolicy(Method.LATEST))[FRACTIONS].stalled  # under 4 attempts
    assert not progress(climbing, set(), MasteryPolicy(Method.LATEST))[FRACTIONS].stalled  # 1 -> 2 in the last 3
    mastered = [obs(n, "0.75", 2 + n) for n in range(1, 5)]
    assert not progress(mastered, set(), MasteryPolicy(Method.LATEST))[FRACTIONS].stalled  # mastered is not stuck


def test_stalled_after_fifteen_school_days_without_evidence() -> None:
    one = [obs(1, "0.25", 2)]  # Monday 2 November 2026
    assert not progress(one, set(), MasteryPolicy(), now_us=us(20))[FRACTIONS].stalled  # 14 school days
    assert progress(one, set(), MasteryPolicy(), now_us=us(23))[FRACTIONS].stalled  # 15
    assert not progress(one, set(), MasteryPolicy(), now_us=us(23), stall=StallRule(idle_school_days=16))[
        FRACTIONS
    ].stalled
    assert not progress(one, set(), MasteryPolicy())[FRACTIONS].stalled  # no moment given: the rule is off


def test_school_days_count_mondays_to_fridays() -> None:
    assert school_days_between(us(6), us(9)) == 1  # Friday -> Monday
    assert school_days_between(us(2), us(6)) == 4  # Monday -> Friday
    assert school_days_between(us(2), us(2)) == 0
    assert school_days_between(us(2), us(30)) == 20  # four weeks
    assert school_days_between(us(9), us(2)) == 0


def test_regressed_once_mastered_but_not_now() -> None:
    found = progress([obs(1, "0.75", 2), obs(2, "0.25", 3)], set(), MasteryPolicy(Method.LATEST))[FRACTIONS]
    assert (found.mastered, found.mastered_at_us, found.regressed) == (False, us(2), True)
    kept = progress([obs(1, "0.75", 2), obs(2, "0.25", 3)], set(), MasteryPolicy(Method.HIGHEST))[FRACTIONS]
    assert (kept.mastered, kept.regressed) == (True, False)


def test_bkt_scores_are_probabilities_without_a_level() -> None:
    found = progress([obs(n, "1.0", 2 + n) for n in range(6)], set(), MasteryPolicy(Method.BKT))[FRACTIONS]
    assert found.level is None
    assert found.mastered
    assert found.norm_score == found.score


PROFILE = "https://example.org/profile"
STRAND = "https://example.org/strand"
A, B, C = "https://example.org/a", "https://example.org/b", "https://example.org/c"


def scored(levels: dict[str, str]) -> dict[str, Progress]:
    return progress([obs(n, norm, 2, competencies=(c,)) for n, (c, norm) in enumerate(levels.items())],
                    set(), MasteryPolicy(Method.LATEST))  # fmt: skip


def test_rollup_rules_judge_parents_from_children_bottom_up() -> None:
    children = {PROFILE: [STRAND, C], STRAND: [A, B]}
    found = scored({A: "0.75", B: "0.5"})  # A mastered (3 of 4), B not; C no evidence
    every = rollups(found, children)
    assert (every[STRAND].children_mastered, every[STRAND].children_started, every[STRAND].mastered) == (1, 2, False)
    assert every[STRAND].mean_share == Decimal("0.63")  # (0.75 + 0.5) / 2, half up
    assert (every[PROFILE].children_started, every[PROFILE].status) == (1, "in_progress")

    one_of = rollups(found, children, policy_of=lambda p: RollupPolicy(RollupRule.K_OF_N, 1))
    assert one_of[STRAND].mastered
    assert one_of[PROFILE].mastered

    mean = rollups(found, children, policy_of=lambda p: RollupPolicy(RollupRule.MEAN_OF_CHILDREN),
                   threshold_of=lambda p: Decimal("0.6"))  # fmt: skip
    assert mean[STRAND].mastered  # 0.63 >= 0.6
    assert not mean[PROFILE].mastered  # (0.63 + 0) / 2

    done = rollups(scored({A: "1.0", B: "0.75", C: "0.75"}), children)
    assert done[PROFILE].mastered
    assert done[PROFILE].status == "mastered"
    assert rollups({}, children)[PROFILE].status == "not_started"


def test_a_rollup_policy_checks_its_k() -> None:
    with pytest.raises(ValueError, match="k_of_n takes k"):
        RollupPolicy(RollupRule.K_OF_N)
    with pytest.raises(ValueError, match="only k_of_n"):
        RollupPolicy(RollupRule.ALL_CHILDREN_MASTERED, 2)


def test_grid_columns_count_learners_at_each_level() -> None:
    by_learner = {
        "l1": scored({A: "0.75", B: "0.25"}),
        "l2": scored({A: "1.0"}),
        "l3": scored({A: "0.5"}),
    }
    columns = {c.competency: c for c in grid_columns(by_learner, [A, B, C], lambda _: DEFAULT_SCALE)}
    assert columns[A].levels == {"Beginning": 0, "Developing": 1, "Proficient": 1, "Advanced": 1}
    assert (columns[A].no_evidence, columns[A].mastered, columns[A].mean, columns[A].median) == (
        0, 2, Decimal("3.00"), Decimal("3.00"),
    )  # fmt: skip
    assert (columns[B].levels["Beginning"], columns[B].no_evidence) == (1, 2)
    assert (columns[C].no_evidence, columns[C].mean) == (3, None)


def test_the_fold_is_unchanged_by_ratings_of_other_learners() -> None:
    rating = "0b0c5f3e-6f55-4f43-9d1e-3d1f6a1f0002"
    state = fold(CompetencyEvidence(), [rating_event(1, rating, RATIOS, "0.5", 4)])
    [key] = [k for k, v in state.rows["observations"].items() if v is not None]
    assert key == ("t", "learner:ada", f"rating:{rating}")
