"""Mastery methods against the worked examples of their sources (competency-domain.md section 3)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proficio_projector.competency import (
    BktParameters,
    MasteryPolicy,
    Method,
    bkt_next_correct,
    bkt_probability,
    is_mastered,
    mastery_score,
    power_law,
    rescale,
    round_half_up,
    running_scores,
)

# Canvas's examples: a scale of 5 points, mastery at 3, scores oldest first.
CANVAS = {"points_possible": Decimal(5), "mastery_points": Decimal(3)}


def score(method: Method, scores: list[float], parameter: int | None = None) -> Decimal | None:
    return mastery_score(MasteryPolicy(method, parameter, **CANVAS), scores)


@pytest.mark.parametrize(
    ("method", "parameter", "scores", "expected"),
    [
        (Method.HIGHEST, None, [1, 2, 3, 4, 5], "5"),
        (Method.AVERAGE, None, [1, 2, 3, 4, 5], "3.0"),
        (Method.LATEST, None, [1, 2, 4, 5, 3], "3"),
        (Method.WEIGHTED_AVERAGE, 65, [1, 2, 3, 4, 5], "4.13"),  # 0.65·5 + 0.35·2.5 = 4.125, half up
        (Method.WEIGHTED_AVERAGE, None, [1, 2, 3, 4, 5], "4.13"),  # 65 is the default
        (Method.DECAYING_AVERAGE, 65, [1, 2, 3, 4, 5], "4.47"),  # 1.65 -> 2.5275 -> 3.485 -> 4.4696
        (Method.N_MASTERY, 3, [1, 2, 3, 4, 5], "4"),  # mean(3, 4, 5)
        (Method.HIGHEST, None, [2, 4, 3], "4"),
        (Method.AVERAGE, None, [2, 4, 3], "3.0"),
        (Method.HIGHEST, None, [0], "0"),
    ],
)
def test_canvas_worked_examples(method: Method, parameter: int | None, scores: list[float], expected: str) -> None:
    assert score(method, scores, parameter) == Decimal(expected)


def test_n_mastery_gives_no_score_until_n_scores_reach_mastery() -> None:
    assert score(Method.N_MASTERY, [1, 2, 3, 4, 5], 4) is None
    assert score(Method.N_MASTERY, [3, 3, 3, 3, 1], 4) == Decimal(3)


def test_rounding_is_half_up_not_half_even() -> None:
    assert round(4.125, 2) == 4.12  # what plain Python would give
    assert round_half_up(Decimal("4.125")) == Decimal("4.13")
    assert round_half_up(Decimal("2.675")) == Decimal("2.68")


def test_rescale_to_another_scale() -> None:
    assert rescale(Decimal(2), Decimal(5), Decimal(4)) == Decimal("1.6")


def test_the_two_averages_canvas_calls_decaying_differ() -> None:
    legacy = score(Method.WEIGHTED_AVERAGE, [1, 2, 3, 4, 5], 65)
    standard = score(Method.DECAYING_AVERAGE, [1, 2, 3, 4, 5], 65)
    assert (legacy, standard) == (Decimal("4.13"), Decimal("4.47"))


def test_rolling_average_75_is_the_decaying_average_at_75() -> None:
    # JumpRope: 0.75·latest + 0.25·previous result.
    assert score(Method.DECAYING_AVERAGE, [2, 4], 75) == Decimal("3.5")
    assert score(Method.DECAYING_AVERAGE, [2, 4, 1], 75) == Decimal("1.63")  # 0.25·3.5 + 0.75·1 = 1.625


def test_mode_breaks_ties_towards_the_more_recent_score() -> None:
    assert score(Method.MODE, [1, 2, 2, 3, 3]) == Decimal(3)
    assert score(Method.MODE, [3, 3, 2, 2]) == Decimal(2)
    assert score(Method.MODE, [4, 1, 4, 2]) == Decimal(4)


def test_recent_and_highest_windows() -> None:
    scores = [1, 4, 2, 3, 4]
    assert score(Method.MEDIAN_RECENT, scores, 3) == Decimal(3)  # median(2, 3, 4)
    assert score(Method.AVERAGE_RECENT, scores, 3) == Decimal(3)
    assert score(Method.AVERAGE_RECENT, scores, 2) == Decimal("3.5")
    assert score(Method.AVERAGE_HIGHEST, scores) == Decimal("3.67")  # (4 + 4 + 3) / 3
    assert score(Method.MEDIAN_RECENT, [1, 4], 3) == Decimal("2.5")  # fewer scores than the window


def test_power_law_fits_a_rising_learner_and_needs_three_scores() -> None:
    exact = [2 * i**0.5 for i in range(1, 5)]  # y = 2·x^0.5
    fitted = power_law([Decimal(str(v)) for v in exact], Decimal(5))
    assert fitted is not None
    assert math.isclose(fitted[1], 0.5, abs_tol=1e-3)
    assert math.isclose(fitted[0], 4.0, abs_tol=1e-3)
    assert score(Method.POWER_LAW, exact) == Decimal("4.00")
    assert score(Method.POWER_LAW, [1, 2]) is None
    assert score(Method.POWER_LAW, [2, 4, 5, 5, 5]) <= Decimal(5)  # clamped to the scale
    assert score(Method.POWER_LAW, [0, 0, 3]) is not None  # zeros are replaced, not log(0)


def test_bkt_updates_as_the_formulas_say() -> None:
    parameters = BktParameters(prior=0.2, learn=0.1, guess=0.2, slip=0.1)
    # Correct: 0.2·0.9 / (0.2·0.9 + 0.8·0.2) = 0.5294; then learning: + 0.4706·0.1 = 0.5765.
    assert math.isclose(bkt_probability([True], parameters), 0.18 / 0.34 + (1 - 0.18 / 0.34) * 0.1)
    # Incorrect: 0.2·0.1 / (0.2·0.1 + 0.8·0.8) = 0.0303; then + 0.9697·0.1 = 0.1273.
    assert math.isclose(bkt_probability([False], parameters), 0.02 / 0.66 + (1 - 0.02 / 0.66) * 0.1)
    assert math.isclose(bkt_next_correct(0.5, parameters), 0.5 * 0.9 + 0.5 * 0.2)
    policy = MasteryPolicy(Method.BKT, **CANVAS)
    assert not is_mastered(policy, mastery_score(policy, [4, 1, 2]))
    streak = mastery_score(policy, [4, 4, 4, 4, 4])
    assert streak is not None
    assert streak > Decimal("0.95")
    assert is_mastered(policy, streak)


def test_mastered_means_at_or_above_the_mastery_points() -> None:
    policy = MasteryPolicy(Method.HIGHEST, **CANVAS)
    assert is_mastered(policy, Decimal(3))
    assert not is_mastered(policy, Decimal("2.99"))
    assert not is_mastered(policy, None)


def test_policies_refuse_parameters_out_of_range() -> None:
    with pytest.raises(ValueError, match="from 50 to 99"):
        MasteryPolicy(Method.DECAYING_AVERAGE, 40)
    with pytest.raises(ValueError, match="takes no parameter"):
        MasteryPolicy(Method.HIGHEST, 3)
    with pytest.raises(ValueError, match="points_possible"):
        MasteryPolicy(Method.HIGHEST, points_possible=Decimal(3), mastery_points=Decimal(4))


AVERAGING = [
    (Method.HIGHEST, None), (Method.LATEST, None), (Method.AVERAGE, None), (Method.WEIGHTED_AVERAGE, 65),
    (Method.DECAYING_AVERAGE, 80), (Method.MODE, None), (Method.MEDIAN_RECENT, 3), (Method.AVERAGE_RECENT, 4),
    (Method.AVERAGE_HIGHEST, 3),
]  # fmt: skip


@pytest.mark.parametrize(("method", "parameter"), AVERAGING)
@given(scores=st.lists(st.integers(0, 500).map(lambda n: n / 100), min_size=1, max_size=12))
def test_summaries_stay_within_the_scores(method: Method, parameter: int | None, scores: list[float]) -> None:
    result = score(method, scores, parameter)
    assert result is not None
    assert round_half_up(min(scores)) <= result <= round_half_up(max(scores))


@given(scores=st.lists(st.integers(0, 500).map(lambda n: n / 100), min_size=3, max_size=12))
def test_power_law_stays_on_the_scale(scores: list[float]) -> None:
    result = score(Method.POWER_LAW, scores)
    assert result is not None
    assert Decimal(0) <= result <= Decimal(5)


EVERY_METHOD = [*AVERAGING, (Method.N_MASTERY, 2), (Method.POWER_LAW, None), (Method.BKT, None)]


@pytest.mark.parametrize(("method", "parameter"), EVERY_METHOD)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 400).map(lambda n: Decimal(n) / 100), st.sampled_from(["1", "0.5", "0.25", "0.8"])),
        min_size=1, max_size=15,
    )
)  # fmt: skip
def test_running_scores_equal_the_score_of_every_prefix(
    method: Method, parameter: int | None, pairs: list[tuple[Decimal, str]]
) -> None:
    policy = MasteryPolicy(method, parameter)
    values, weights = [v for v, _ in pairs], [Decimal(w) for _, w in pairs]
    expected = [mastery_score(policy, values[: n + 1], weights[: n + 1]) for n in range(len(values))]
    assert running_scores(policy, values, weights) == expected
