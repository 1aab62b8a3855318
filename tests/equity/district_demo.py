"""The demo district the equity and pacing tests judge the views on, the stated tolerances, and how far a view's
findings come from what the generator planted and its truth.

The figures observed on this district (seed 1, 140 learners, 2 schools, judged on 2026-11-06 under the
decaying average) are in the README ("Demo data"); each tolerance below leaves room for a few learners more
or less on either side, never for a missing effect.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from proficio_cli._demo import Demo, DemoSettings, LearnerTruth, generate_demo
from proficio_cli._demo_district import DISENGAGED, STALLED, DistrictSettings, Profile
from proficio_events import EventLog
from proficio_ingest import find_learner_ids
from proficio_projector.pacing import Pace
from tests.support.directory import stored_learner_ids

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graduate-profile.case.json"
PACKAGE = EXAMPLE.read_bytes()
SEED = 1
LEARNERS = 140
SCHOOLS = 2
PLAN = "plan:demo-course"
#: The district's mastery policy (Canvas's default method): recent evidence counts most.
METHOD = "decaying_average"

#: The gap in the median percent of the plan mastered, English learners against the others (points): the view's is
#: within one competency of the plan's 15 (6.7 points, the step of a median of 15) of the truth's, and the view
#: shows a gap of at least GAP_AT_LEAST (without the planted effect the two groups differ by 0 or one step).
GAP_PCT_TOLERANCE = 7.0
GAP_AT_LEAST = 10.0
#: The gap in the percent on track (points) and in median velocity (masteries per active week; one mastery in
#: the 6-week window is 0.17).
GAP_ON_TRACK_TOLERANCE = 15.0
GAP_VELOCITY_TOLERANCE = 0.2
#: Planted stalled learners the pacing view flags (recall), and the flagged learners that are planted or stalled
#: by the definition on their true mastery dates (precision: learners slow by chance stall too).
STALLED_RECALL = 0.8
STALLED_PRECISION = 0.75
#: Projected completion: for learners with enough evidence (4 active weeks or more, a window velocity of 0.5 or
#: more, not planted), the share whose view projection is within PROJECTION_WEEKS school weeks of the truth's
#: (the same formula on the true mastery dates).
PROJECTION_WEEKS = 3
PROJECTION_SHARE = 0.7
PROJECTION_MIN_VELOCITY = 0.5


def district_settings(**changes: Any) -> DemoSettings:
    return DemoSettings(learners=LEARNERS, seed=SEED, district=DistrictSettings(schools=SCHOOLS, **changes))


@functools.cache
def district_demo() -> Demo:
    return generate_demo(PACKAGE, district_settings())


def as_of(demo: Demo) -> date:
    assert demo.district is not None
    return demo.district.as_of


async def by_learner_id(log: EventLog | str, demo: Demo, tenant: str) -> dict[str, LearnerTruth]:
    """Each learner's truth under the id the views give her (her mbox's learner id in the tenant's learner
    directory, ``log`` or the store at that URL: after the roster import)."""
    if isinstance(log, str):
        ids = await stored_learner_ids(log, tenant, [truth.agent for truth in demo.truth])
    else:
        found = await find_learner_ids(log, tenant, [truth.agent for truth in demo.truth])
        assert None not in found
        ids = [learner for learner in found if learner is not None]
    return dict(zip(ids, demo.truth, strict=True))


def profile(truth: LearnerTruth) -> Profile:
    assert truth.district is not None
    return truth.district.profile


def planted(truths: Mapping[str, LearnerTruth], kind: str) -> set[str]:
    return {learner for learner, truth in truths.items() if profile(truth).planted == kind}


def groups_and_schools(truths: Mapping[str, LearnerTruth]) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """Learner id -> factor -> value, and learner id -> [school]: the roster as the generator made it."""
    return (
        {learner: dict(profile(truth).groups) for learner, truth in truths.items()},
        {learner: [profile(truth).school] for learner, truth in truths.items()},
    )


@dataclass(frozen=True)
class Detection:
    """Flagged learners against the planted ones (and the ones a flag is right about)."""

    planted: frozenset[str]
    flagged: frozenset[str]
    explained: frozenset[str]

    @property
    def recall(self) -> float:
        return len(self.planted & self.flagged) / len(self.planted)

    @property
    def precision(self) -> float:
        return len(self.flagged & (self.planted | self.explained)) / len(self.flagged) if self.flagged else 0.0

    def __str__(self) -> str:
        return (
            f"{len(self.planted & self.flagged)} of {len(self.planted)} planted flagged (recall {self.recall:.2f}),"
            f" {len(self.flagged & (self.planted | self.explained))} of {len(self.flagged)} flagged planted or"
            f" true by the definition (precision {self.precision:.2f})"
        )


def detection(truths: Mapping[str, LearnerTruth], flagged: Iterable[str], kind: str) -> Detection:
    """``kind`` is STALLED or DISENGAGED."""
    explained = {
        learner
        for learner, truth in truths.items()
        if truth.district is not None and getattr(truth.district.pace, "stalled" if kind == STALLED else DISENGAGED)
    }
    return Detection(frozenset(planted(truths, kind)), frozenset(flagged), frozenset(explained))


@dataclass(frozen=True)
class Projections:
    learners: int
    within: int
    #: Median of (view - truth) in school weeks: a bias shows here.
    median_error_weeks: float

    @property
    def share(self) -> float:
        return self.within / self.learners

    def __str__(self) -> str:
        return (
            f"{self.within} of {self.learners} projections within {PROJECTION_WEEKS} school weeks of the truth"
            f" ({self.share:.2f}); median error {self.median_error_weeks:+.1f} weeks"
        )


def projections(truths: Mapping[str, LearnerTruth], paces: Mapping[str, Pace], day: date) -> Projections:
    """How close the view's projected completion comes to the truth's, for learners with enough evidence."""
    errors = []
    for learner, found in paces.items():
        truth = truths[learner].district
        assert truth is not None
        enough = found.active_weeks >= 4 and found.velocity_window >= PROJECTION_MIN_VELOCITY
        if truth.profile.planted or not enough or found.projected_completion is None:
            continue
        assert truth.pace.projected_completion is not None, learner  # a learner with masteries has a velocity
        errors.append(school_weeks_between(truth.pace.projected_completion, found.projected_completion))
    within = sum(abs(error) <= PROJECTION_WEEKS for error in errors)
    return Projections(len(errors), within, statistics.median(errors))


def school_weeks_between(first: date, second: date) -> float:
    """(second - first) in school weeks (five school days each), negative when second comes first."""
    step, low, high = (1, first, second) if first <= second else (-1, second, first)
    days = sum((low + timedelta(days=n)).weekday() < 5 for n in range(1, (high - low).days + 1))
    return step * days / 5


def flagged(paces: Mapping[str, Pace], kind: str) -> set[str]:
    return {learner for learner, p in paces.items() if (p.stalled_learner if kind == STALLED else p.disengaged)}
