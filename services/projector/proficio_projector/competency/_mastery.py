"""Mastery methods: from a learner's evidence scores on one competency to a score and a mastery decision.

Pure functions over scores ordered oldest first, on the scale ``0..points_possible``; the policy's
``mastery_points`` is the threshold (mastered when score >= threshold). Canvas's methods follow its
exact semantics (instructure/canvas-lms ``app/models/rollup_score.rb``), including rounding to 2
decimals half up, and are checked against its worked examples; the others follow the sources in
``../shared/docs/competency-domain.md`` section 3.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from statistics import median

TWO_PLACES = Decimal("0.01")


class Method(enum.StrEnum):
    HIGHEST = "highest"
    LATEST = "latest"
    AVERAGE = "average"
    #: Canvas "Number of Times": the mean of the scores at or above mastery, once there are N of them.
    N_MASTERY = "n_mastery"
    #: Canvas's legacy "decaying average", labelled "Weighted Average": w·latest + (1-w)·mean(the rest).
    WEIGHTED_AVERAGE = "weighted_average"
    #: Canvas "Decaying Average" (standard_decaying_average): an exponential average, d_k = (1-w)·d_{k-1} + w·s_k.
    DECAYING_AVERAGE = "decaying_average"
    #: The most frequent score; ties go to the more recent.
    MODE = "mode"
    MEDIAN_RECENT = "median_recent"
    AVERAGE_RECENT = "average_recent"
    AVERAGE_HIGHEST = "average_highest"
    #: The least-squares power-law fit a·n^b at the latest assessment (at least 3 scores).
    POWER_LAW = "power_law"
    #: Bayesian knowledge tracing over pass/fail observations: the probability that the skill is known.
    BKT = "bkt"


@dataclass(frozen=True)
class BktParameters:
    """Defaults until fitted (competency-domain.md 3.2): prior, learn, guess, slip."""

    prior: float = 0.2
    learn: float = 0.1
    guess: float = 0.2
    slip: float = 0.1
    #: p(L) at or above which the skill counts as mastered (the usual 0.95; unverified, see the domain doc).
    mastery: float = 0.95


@dataclass(frozen=True)
class MasteryPolicy:
    method: Method = Method.HIGHEST
    #: N for n_mastery; the weight in percent for the (weighted/decaying) averages; N for the recent/highest
    #: windows. None: the method's default.
    parameter: int | None = None
    points_possible: Decimal = Decimal(4)
    mastery_points: Decimal = Decimal(3)
    bkt: BktParameters = BktParameters()

    def __post_init__(self) -> None:
        low, high = _PARAMETER_RANGE.get(self.method, (None, None))
        if self.parameter is not None and low is None:
            raise ValueError(f"{self.method} takes no parameter")
        if self.parameter is not None and low is not None and high is not None and not low <= self.parameter <= high:
            raise ValueError(f"{self.method} takes a parameter from {low} to {high}, not {self.parameter}")
        if self.points_possible <= 0 or not 0 <= self.mastery_points <= self.points_possible:
            raise ValueError("a scale needs points_possible > 0 and 0 <= mastery_points <= points_possible")

    @property
    def effective_parameter(self) -> int | None:
        return self.parameter if self.parameter is not None else _DEFAULT_PARAMETER.get(self.method)


_PARAMETER_RANGE: dict[Method, tuple[int, int]] = {
    Method.N_MASTERY: (1, 10),
    Method.WEIGHTED_AVERAGE: (1, 99),
    Method.DECAYING_AVERAGE: (50, 99),
    Method.MEDIAN_RECENT: (1, 100),
    Method.AVERAGE_RECENT: (1, 100),
    Method.AVERAGE_HIGHEST: (1, 100),
}
_DEFAULT_PARAMETER: dict[Method, int] = {
    Method.N_MASTERY: 1,
    Method.WEIGHTED_AVERAGE: 65,
    Method.DECAYING_AVERAGE: 65,
    Method.MEDIAN_RECENT: 3,
    Method.AVERAGE_RECENT: 3,
    Method.AVERAGE_HIGHEST: 3,
}


def round_half_up(value: Decimal | float) -> Decimal:
    """2 decimals, half up, as Canvas rounds (Python's round() is half-even: round(4.125, 2) == 4.12)."""
    if type(value) is Decimal:  # Decimal(str(d)) is d, digit for digit: no need to print and parse it
        return value.quantize(TWO_PLACES, rounding=ROUND_HALF_UP)
    return Decimal(str(value)).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


def rescale(score: Decimal, from_points: Decimal, to_points: Decimal) -> Decimal:
    """A score on a 0..from_points scale on a 0..to_points scale (2 of 5 on a scale of 4 is 1.6)."""
    return round_half_up(score / from_points * to_points)


def _mean(values: Sequence[Decimal], weights: Sequence[Decimal]) -> Decimal:
    """The weighted mean (all weights 1: the plain mean)."""
    return sum((v * w for v, w in zip(values, weights, strict=True)), Decimal(0)) / sum(weights, Decimal(0))


def mastery_score(
    policy: MasteryPolicy, scores: Sequence[Decimal | float | int], weights: Sequence[Decimal] | None = None
) -> Decimal | None:
    """The score the policy gives these scores (oldest first), or None when it gives none.

    Missing scores are the caller's to drop (Canvas drops nil scores; a 0 is a score). BKT reads each
    score as an observation, correct when at or above the mastery points, and returns p(L) (0..1).

    ``weights`` (one per score, in (0, 1]; an alignment's weight) weigh the means: average, the mean in
    n_mastery, the mean of the rest in weighted_average, average_recent and average_highest. The methods
    that pick or order scores (highest, latest, mode, median, the decaying average, power law, BKT) use
    every score as it is: a weight says how much a score counts in a mean, not how high it is.
    """
    values = [Decimal(str(s)) for s in scores]
    if not values:
        return None
    given = list(weights) if weights is not None else [Decimal(1)] * len(values)
    if len(given) != len(values):
        raise ValueError(f"{len(given)} weights for {len(values)} scores")
    if any(not Decimal(0) < w <= Decimal(1) for w in given):
        raise ValueError("weights must be in (0, 1]")
    method = policy.method
    parameter = policy.effective_parameter
    mastery = policy.mastery_points
    if method is Method.HIGHEST:
        return round_half_up(max(values))
    if method is Method.LATEST:
        return round_half_up(values[-1])
    if method is Method.AVERAGE:
        return round_half_up(_mean(values, given))
    if method is Method.N_MASTERY:
        assert parameter is not None
        mastered = [(v, w) for v, w in zip(values, given, strict=True) if v >= mastery]
        if len(mastered) < parameter:
            return None
        return round_half_up(_mean([v for v, _ in mastered], [w for _, w in mastered]))
    if method is Method.WEIGHTED_AVERAGE:
        assert parameter is not None
        if len(values) == 1:
            return round_half_up(values[0])
        weight = Decimal(parameter) / 100
        return round_half_up(weight * values[-1] + (1 - weight) * _mean(values[:-1], given[:-1]))
    if method is Method.DECAYING_AVERAGE:
        assert parameter is not None
        weight = Decimal(parameter) / 100
        decayed = values[0]
        for value in values[1:]:
            decayed = (1 - weight) * decayed + weight * value
        return round_half_up(decayed)
    if method is Method.MODE:
        counts = Counter(values)
        top = max(counts.values())
        latest = {v: i for i, v in enumerate(values)}
        return round_half_up(max((v for v, c in counts.items() if c == top), key=lambda v: latest[v]))
    if method is Method.MEDIAN_RECENT:
        assert parameter is not None
        return round_half_up(median(values[-parameter:]))
    if method is Method.AVERAGE_RECENT:
        assert parameter is not None
        return round_half_up(_mean(values[-parameter:], given[-parameter:]))
    if method is Method.AVERAGE_HIGHEST:
        assert parameter is not None
        # Highest first; among equal scores the more recent (a stable, replayable choice).
        ranked = sorted(range(len(values)), key=lambda i: (values[i], i), reverse=True)[:parameter]
        return round_half_up(_mean([values[i] for i in ranked], [given[i] for i in ranked]))
    if method is Method.POWER_LAW:
        fitted = power_law(values, policy.points_possible)
        return None if fitted is None else round_half_up(fitted[0])
    if method is Method.BKT:
        observations = [v >= mastery for v in values]
        return Decimal(str(bkt_probability(observations, policy.bkt))).quantize(Decimal("0.0001"), ROUND_HALF_UP)
    raise ValueError(f"unknown mastery method {method!r}")


def is_mastered(policy: MasteryPolicy, score: Decimal | None) -> bool:
    if score is None:
        return False
    if policy.method is Method.BKT:
        return score >= Decimal(str(policy.bkt.mastery))
    return score >= policy.mastery_points


#: What stands in for a score of 0 in the power-law fit (logarithms need positive numbers).
EPSILON = 0.01


def power_law(values: Sequence[Decimal], points_possible: Decimal) -> tuple[float, float] | None:
    """(the fitted score at the latest assessment, clamped to 0..P; the exponent b), or None under 3 scores.

    Least squares on logarithms: y_i = a·x_i^b with x_i = i (1-based), zeros replaced by EPSILON.
    """
    n = len(values)
    if n < 3:
        return None
    xs = [math.log(i) for i in range(1, n + 1)]
    ys = [math.log(max(float(v), EPSILON)) for v in values]
    sum_x, sum_y = sum(xs), sum(ys)
    sum_xy = sum(x * y for x, y in zip(xs, ys, strict=True))
    sum_xx = sum(x * x for x in xs)
    b = (n * sum_xy - sum_x * sum_y) / (n * sum_xx - sum_x**2)
    ln_a = (sum_y - b * sum_x) / n
    fitted = math.exp(ln_a) * n**b
    return min(max(fitted, 0.0), float(points_possible)), b


def bkt_probability(observations: Sequence[bool], parameters: BktParameters) -> float:
    """p(L) after the observations: condition on each (correct or not), then the chance to learn."""
    known = parameters.prior
    slip, guess, learn = parameters.slip, parameters.guess, parameters.learn
    for correct in observations:
        if correct:
            posterior = known * (1 - slip) / (known * (1 - slip) + (1 - known) * guess)
        else:
            posterior = known * slip / (known * slip + (1 - known) * (1 - guess))
        known = posterior + (1 - posterior) * learn
    return known


def bkt_next_correct(known: float, parameters: BktParameters) -> float:
    """The predicted chance that the next observation is correct."""
    return known * (1 - parameters.slip) + (1 - known) * parameters.guess


def running_scores(
    policy: MasteryPolicy, scores: Sequence[Decimal], weights: Sequence[Decimal] | None = None
) -> list[Decimal | None]:
    """The score after each of ``scores`` (oldest first): ``mastery_score`` of every prefix, equal to it to the
    digit, in one pass for the methods that allow it (a learner's long history is not quadratic in them)."""
    values = [s if type(s) is Decimal else Decimal(str(s)) for s in scores]
    given = list(weights) if weights is not None else [Decimal(1)] * len(values)
    method, parameter, mastery = policy.method, policy.effective_parameter, policy.mastery_points
    found: list[Decimal | None] = []
    if method is Method.HIGHEST:
        best: Decimal | None = None
        rounded: Decimal | None = None
        for v in values:
            if best is None or v > best:
                best, rounded = v, round_half_up(v)
            found.append(rounded)
    elif method is Method.LATEST:
        found = [round_half_up(v) for v in values]
    elif method in (Method.AVERAGE, Method.N_MASTERY, Method.WEIGHTED_AVERAGE):
        total, weight_sum, count = Decimal(0), Decimal(0), 0
        for n, (v, w) in enumerate(zip(values, given, strict=True)):
            if method is Method.AVERAGE:
                total, weight_sum = total + v * w, weight_sum + w
                found.append(round_half_up(total / weight_sum))
            elif method is Method.N_MASTERY:
                assert parameter is not None
                if v >= mastery:
                    total, weight_sum, count = total + v * w, weight_sum + w, count + 1
                found.append(round_half_up(total / weight_sum) if count >= parameter else None)
            else:  # weighted_average: w·latest + (1-w)·mean(the rest); the rest are the earlier scores
                assert parameter is not None
                share = Decimal(parameter) / 100
                found.append(
                    round_half_up(v) if n == 0 else round_half_up(share * v + (1 - share) * (total / weight_sum))
                )
                total, weight_sum = total + v * w, weight_sum + w
    elif method is Method.DECAYING_AVERAGE:
        assert parameter is not None
        share = Decimal(parameter) / 100
        decayed: Decimal | None = None
        for v in values:
            decayed = v if decayed is None else (1 - share) * decayed + share * v
            found.append(round_half_up(decayed))
    elif method is Method.BKT:
        known, p = policy.bkt.prior, policy.bkt
        for v in values:
            if v >= mastery:
                posterior = known * (1 - p.slip) / (known * (1 - p.slip) + (1 - known) * p.guess)
            else:
                posterior = known * p.slip / (known * p.slip + (1 - known) * (1 - p.guess))
            known = posterior + (1 - posterior) * p.learn
            found.append(Decimal(str(known)).quantize(Decimal("0.0001"), ROUND_HALF_UP))
    else:  # windows, mode, power law: each prefix as it is
        found = [mastery_score(policy, values[: n + 1], given[: n + 1]) for n in range(len(values))]
    return found
