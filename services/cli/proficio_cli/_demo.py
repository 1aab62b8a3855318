"""Synthetic demo data: learners with a hidden mastery state, as xAPI statements (competency-domain.md section 9).

A pure, deterministic simulation: the same package and settings give byte-identical output.

- **What is practised:** the framework's leaf items (items no other item is a child of), each learner in an
  order of the ``precedes`` associations (among the ready items, the next one is drawn at random; items
  caught in a ``precedes`` cycle are taken in the framework's order).
- **Hidden state (Bayesian knowledge tracing):** per learner and competency a latent "knows it" state,
  known at the start with p = prior. Each attempt is correct with p = 1 - slip when known, p = guess when
  not; after an attempt an unknown skill becomes known with p = learn. The true mastery moment is the
  first attempt made in the known state; the state at the last attempt is the truth at the end.
- **Tutor:** a learner moves on after ``streak`` correct answers in a row (ASSISTments skill builders use
  3) or ``max_attempts`` attempts.
- **Timing:** school days (Monday to Friday, from ``start``), a learner present on a share of them, one
  session of 2-5 attempts between 08:00 and 15:00 UTC.
- **Statements:** ``answered`` an item of the competency's item bank, ``result.score`` raw out of 20 (and
  scaled), correct when the score reaches the framework's mastery level. The competency is named in
  ``contextActivities.other``, except for a share of the items, which name nothing and count only
  through the alignment map that comes with the output.
- **Delivery faults:** mis-recorded scores voided by a teacher a few days later, retries of a statement
  (the same id and content), and late deliveries (an offline device syncing days later, so ``stored``
  order differs from ``timestamp`` order). ``statements`` is in delivery order.
- **District** (``DemoSettings.district``): learners in schools and student groups, following one course whose
  tutor keeps each learner on a competency until the streak (mastery-based pacing: ``max_attempts`` does not
  apply), in school weeks she may skip; a planted gap, planted stalled and disengaged learners, a OneRoster
  package and a pacing plan (see ``_demo_district``). The course is simulated past its target date (for as
  many weeks again); the statements are those delivered by the end of the judging day, the truth covers it all.
"""

from __future__ import annotations

import dataclasses
import math
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson

from proficio_projector.competency import BktParameters, Framework, Level, parse_package

from ._demo_district import (
    DISENGAGED,
    DISTRICT_ORG,
    PLAN_ID,
    PRIMARY_MIN_N,
    RACE_ETHNICITY,
    STALLED,
    Course,
    DistrictSettings,
    DistrictTruth,
    PaceTruth,
    Profile,
    district_profiles,
    district_truth,
    expected_primary_cells,
    monday_of,
    oneroster_files,
    pace_truth,
    plan_document,
    planted_small_groups,
    roster_student,
    school_ids,
)

DEMO_HOME = "https://demo.proficio.example.org"
ANSWERED = {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}}
VOIDED = {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}}
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
ASSESSMENT = "http://adlnet.gov/expapi/activities/assessment"
TEACHER = {"objectType": "Agent", "name": "Demo teacher", "account": {"homePage": DEMO_HOME, "name": "teacher-1"}}
#: Points an item is scored out of (a 20-point task; a twentieth is 0.05, so scaled scores are exact decimals).
RAW_MAX = 20
ITEMS_PER_COMPETENCY = 6
#: In a district, the share of an active week's school days she practises the course on (times her attendance).
COURSE_DAY_SHARE = 0.75
SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DemoSettings:
    """What to simulate; out-of-range values are a ValueError."""

    learners: int = 30
    seed: int = 1
    #: The first school day (weekends are skipped).
    start: date = date(2026, 9, 8)
    #: BKT parameters per competency IRI; the others get ``default_bkt``.
    bkt: Mapping[str, BktParameters] = field(default_factory=dict)
    default_bkt: BktParameters = field(default_factory=BktParameters)
    #: The share of each competency's items whose statements name no competency (counted via alignments only).
    aligned_only_share: float = 0.3
    #: Per genuine attempt: the chance of a mis-recorded score that is voided later, of a retry, of a late delivery.
    void_rate: float = 0.02
    retry_rate: float = 0.03
    late_rate: float = 0.05
    #: Correct answers in a row after which the tutor moves on to the next competency, and the most attempts.
    streak: int = 3
    max_attempts: int = 12
    #: A district of schools and student groups with planted effects (None: learners on their own).
    district: DistrictSettings | None = None

    def __post_init__(self) -> None:
        if self.learners < 1:
            raise ValueError(f"learners must be at least 1, not {self.learners}")
        for name in ("aligned_only_share", "void_rate", "retry_rate", "late_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if not 1 <= self.streak <= self.max_attempts:
            raise ValueError(f"need 1 <= streak <= max_attempts, not {self.streak} and {self.max_attempts}")
        for competency, parameters in {"(default)": self.default_bkt, **self.bkt}.items():
            values = (parameters.prior, parameters.learn, parameters.guess, parameters.slip)
            if not all(0 <= v <= 1 for v in values):
                raise ValueError(f"BKT parameters of {competency} must lie between 0 and 1: {parameters}")
        if self.district is not None:
            self.district.check(self.learners, self.start)

    def parameters_of(self, competency: str) -> BktParameters:
        return self.bkt.get(competency, self.default_bkt)


@dataclass(frozen=True)
class CompetencyTruth:
    competency: str
    code: str | None
    #: The hidden state at the learner's last attempt on it.
    mastered: bool
    #: The timestamp of the first attempt made in the known state (None if never known).
    mastered_at_us: int | None
    #: Genuine attempts (retries and voided mis-recordings not counted): the evidence the views should hold.
    attempts: int


@dataclass(frozen=True)
class DistrictLearner:
    """A district learner's profile, what was planted in her, and her pace truth on the judging day."""

    profile: Profile
    #: A planted stalled learner: the competency she got stuck on, and her first attempt on it stuck.
    stuck_on: str | None
    stuck_since_us: int | None
    #: Her last genuine attempt in the course (delivered by the judging day or not).
    last_attempt_us: int | None
    pace: PaceTruth


@dataclass(frozen=True)
class LearnerTruth:
    learner: str
    agent: dict[str, Any]
    competencies: tuple[CompetencyTruth, ...]
    district: DistrictLearner | None = None


@dataclass(frozen=True)
class DistrictDemo:
    """What a district hands over besides the statements, and the truth beyond each learner's."""

    settings: DistrictSettings
    as_of: date
    target: date
    #: File name -> content of the OneRoster 1.1 package.
    roster: Mapping[str, bytes]
    plan: dict[str, Any]
    truth: DistrictTruth


@dataclass(frozen=True)
class Demo:
    framework: Framework
    settings: DemoSettings
    #: xAPI statements in delivery order; a retried statement appears twice.
    statements: tuple[dict[str, Any], ...]
    #: ``{"activity", "competency", "weight"}``: what the aligned-only items count for.
    alignments: tuple[dict[str, str], ...]
    truth: tuple[LearnerTruth, ...]
    district: DistrictDemo | None = None

    def statements_ndjson(self) -> bytes:
        return b"".join(orjson.dumps(s, option=orjson.OPT_SORT_KEYS) + b"\n" for s in self.statements)

    def alignments_json(self) -> bytes:
        return orjson.dumps(list(self.alignments), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    def plan_json(self) -> bytes:
        assert self.district is not None
        return orjson.dumps(self.district.plan, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    def truth_json(self) -> bytes:
        settings = self.settings
        document: dict[str, Any] = {
            "framework": {"identifier": self.framework.identifier, "uri": self.framework.uri},
            "seed": settings.seed,
            "start": settings.start.isoformat(),
            "streak": settings.streak,
            "max_attempts": settings.max_attempts,
            "learners": [
                {
                    "learner": learner.learner,
                    "agent": learner.agent,
                    "competencies": [
                        {
                            "competency": c.competency,
                            "code": c.code,
                            "bkt": dataclasses.asdict(settings.parameters_of(c.competency)),
                            "mastered": c.mastered,
                            "mastered_at": None if c.mastered_at_us is None else iso_timestamp(c.mastered_at_us),
                            "mastered_at_us": c.mastered_at_us,
                            "attempts": c.attempts,
                        }
                        for c in learner.competencies
                    ],
                    **({} if learner.district is None else _district_learner_json(learner.district)),
                }
                for learner in self.truth
            ],
        }
        if self.district is not None:
            document["district"] = _district_json(self.district, self.truth, self.framework)
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def _district_learner_json(found: DistrictLearner) -> dict[str, Any]:
    profile = found.profile
    return {
        "school": profile.school, "email": profile.email, "groups": dict(profile.groups), "planted": profile.planted,
        "stuck_on": found.stuck_on,
        "stuck_since": None if found.stuck_since_us is None else iso_timestamp(found.stuck_since_us),
        "last_attempt": None if found.last_attempt_us is None else iso_timestamp(found.last_attempt_us),
        "pace": found.pace.as_json(),
    }  # fmt: skip


def _district_json(district: DistrictDemo, truth: tuple[LearnerTruth, ...], framework: Framework) -> dict[str, Any]:
    settings = district.settings
    found = [learner.district for learner in truth if learner.district is not None]
    codes = {c["uri"]: c["code"] for c in framework.competencies}
    everyone = district.truth.everyone
    return {
        "schools": school_ids(settings.schools), "plan": district.plan["plan"], "weeks": settings.weeks,
        "start": district.plan["start"], "target": district.target.isoformat(), "as_of": district.as_of.isoformat(),
        "planted": {
            "gap": {"factor": settings.gap_factor, "value": settings.gap_value, "learn_factor": settings.gap_learn,
                    "skip_week_rate": settings.gap_skip_week_rate,
                    "others_skip_week_rate": settings.skip_week_rate},
            STALLED: [{"learner": f.profile.learner, "competency": f.stuck_on, "code": codes.get(f.stuck_on or ""),
                       "since": None if f.stuck_since_us is None else iso_timestamp(f.stuck_since_us)}
                      for f in found if f.profile.planted == STALLED],
            DISENGAGED: [{"learner": f.profile.learner,
                          "last_attempt": None if f.last_attempt_us is None else iso_timestamp(f.last_attempt_us)}
                         for f in found if f.profile.planted == DISENGAGED],
            "small_groups": [{"level": f"school:{school}", "factor": RACE_ETHNICITY, "value": value,
                              "n": district.truth.levels[f"school:{school}"][RACE_ETHNICITY][value]}
                             for school, value in planted_small_groups(settings)],
        },
        "gaps": {factor: {value: group.as_json(everyone, district.truth.rest.get(factor, {}).get(value))
                          for value, group in values.items()}
                 for factor, values in district.truth.gaps.items()},
        "all": everyone.as_json(everyone),
        "group_sizes": district.truth.levels,
        "expected_primary_suppression": {
            "rule": f"n < {PRIMARY_MIN_N} (Colorado, the default rules), on the plan's table",
            "cells": [list(cell) for cell in expected_primary_cells(district.truth)],
        },
    }  # fmt: skip


def iso_timestamp(moment_us: int) -> str:
    return (EPOCH + timedelta(microseconds=moment_us)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def practised_competencies(framework: Framework) -> list[dict[str, Any]]:
    """The leaf items, in the framework's order: what statements give evidence of."""
    parents = {c["parent"] for c in framework.competencies if c["parent"] is not None}
    return [c for c in framework.competencies if c["uri"] not in parents]


def mastery_fraction(framework: Framework) -> Fraction:
    """The first mastery level's points over the top level's (3 of 4 on the sample framework's rubric)."""
    levels = [Level(Decimal(v["points"]), v["label"], v["mastery"]) for v in framework.data["scale"]]
    top = max(level.points for level in levels)
    mastery = [level.points for level in levels if level.mastery]
    return Fraction(min(mastery) if mastery else top) / Fraction(top)


@dataclass(frozen=True)
class _Item:
    activity: str
    competency: str
    code: str
    number: int
    #: Whether its statements name the competency (else only the alignment map links them).
    tagged: bool


@dataclass
class _Delivery:
    delivered_us: int
    sequence: int
    statement: dict[str, Any]


class _Simulation:
    def __init__(self, framework: Framework, settings: DemoSettings) -> None:
        self.framework = framework
        self.settings = settings
        self.competencies = practised_competencies(framework)
        if not self.competencies:
            raise ValueError("the framework has no items to practise")
        fraction = mastery_fraction(framework)
        # The lowest raw score at or above the mastery level (at least 1, so an incorrect answer exists).
        self.pass_raw = max(1, math.ceil(fraction * RAW_MAX))
        self.deliveries: list[_Delivery] = []
        self.items = self._item_bank()
        uris = {c["uri"] for c in self.competencies}
        self.prerequisites: dict[str, set[str]] = {uri: set() for uri in uris}
        for relation in framework.relations:
            if relation["type"] == "precedes" and relation["origin"] in uris and relation["destination"] in uris:
                self.prerequisites[relation["destination"]].add(relation["origin"])
        self.profiles: list[Profile] = []
        self.until_us: int | None = None
        if settings.district is not None:
            self.as_of = settings.district.judging_day(settings.start)
            self.target = settings.district.target(settings.start)
            # Competency-based: learners go on past the target until they master the plan, so the truth knows
            # when most of them finish; simulated for as many weeks again.
            self.horizon = self.target + timedelta(weeks=settings.district.weeks)
            self.profiles = district_profiles(settings.learners, settings.seed, settings.start, settings.district)
            self.until_us = _moment_us(self.as_of + timedelta(days=1), 0) - 1
            self.stuck_raw = _stuck_raw_range(framework, self.pass_raw)

    def _item_bank(self) -> dict[str, list[_Item]]:
        rng = random.Random(f"{self.settings.seed}:items")
        bank: dict[str, list[_Item]] = {}
        aligned_only = round(self.settings.aligned_only_share * ITEMS_PER_COMPETENCY)
        for competency in self.competencies:
            code = competency["code"] or competency["identifier"]
            untagged = set(rng.sample(range(ITEMS_PER_COMPETENCY), aligned_only))
            bank[competency["uri"]] = [
                _Item(f"{DEMO_HOME}/items/{code}/{n + 1}", competency["uri"], code, n + 1, n not in untagged)
                for n in range(ITEMS_PER_COMPETENCY)
            ]
        return bank

    def alignments(self) -> tuple[dict[str, str], ...]:
        return tuple(
            {"activity": item.activity, "competency": item.competency, "weight": "1"}
            for competency in self.competencies
            for item in self.items[competency["uri"]]
            if not item.tagged
        )

    def _deliver(self, delivered_us: int, statement: dict[str, Any]) -> None:
        self.deliveries.append(_Delivery(delivered_us, len(self.deliveries), statement))

    def _order(self, choose: Callable[[list[str]], str]) -> list[str]:
        """An order of the competencies that respects ``precedes``, ``choose`` picking among the ready ones."""
        order: list[str] = []
        remaining = [c["uri"] for c in self.competencies]
        while remaining:
            ready = [uri for uri in remaining if self.prerequisites[uri].issubset(order)]
            chosen = choose(ready) if ready else remaining[0]
            order.append(chosen)
            remaining.remove(chosen)
        return order

    def _walk(self, rng: random.Random) -> list[str]:
        """A learner's order: ties drawn at random."""
        return self._order(rng.choice)

    def planned_order(self) -> list[str]:
        """The plan's order: ties in the framework's order."""
        return self._order(lambda ready: ready[0])

    def learner(self, number: int) -> LearnerTruth:
        if self.profiles:
            return self._district_learner(self.profiles[number - 1])
        settings = self.settings
        rng = random.Random(f"{settings.seed}:learner:{number}")
        name = f"learner-{number:03d}"
        agent = {"objectType": "Agent", "name": f"Demo learner {number}",
                 "account": {"homePage": DEMO_HOME, "name": name}}  # fmt: skip
        attendance = rng.uniform(0.7, 0.95)
        walk = self._walk(rng)
        truths: list[CompetencyTruth] = []
        day = settings.start if settings.start.weekday() < 5 else _next_school_day(settings.start)
        session: list[int] = []  # the timestamps of today's remaining attempts
        for competency in walk:
            parameters = settings.parameters_of(competency)
            known = rng.random() < parameters.prior
            mastered_at: int | None = None
            streak = attempts = 0
            while streak < settings.streak and attempts < settings.max_attempts:
                if attempts:  # learning happens between attempts
                    known = known or rng.random() < parameters.learn
                while not session:
                    session = _session(rng, day, attendance)
                    day = _next_school_day(day)
                moment = session.pop(0)
                if known and mastered_at is None:
                    mastered_at = moment
                correct = rng.random() < (1 - parameters.slip if known else parameters.guess)
                streak = streak + 1 if correct else 0
                attempts += 1
                self._attempt(rng, agent, rng.choice(self.items[competency]), moment, correct)
            code = self.items[competency][0].code
            truths.append(CompetencyTruth(competency, code, known, mastered_at, attempts))
        order = {c["uri"]: i for i, c in enumerate(self.competencies)}
        truths.sort(key=lambda t: order[t.competency])
        return LearnerTruth(name, agent, tuple(truths))

    def _district_learner(self, profile: Profile) -> LearnerTruth:
        """One district learner through the course: the walk, BKT and the tutor's streak as for the classic
        demo, but on her weekly schedule, with the planted gap, stall or disengagement applied."""
        settings, district = self.settings, self.settings.district
        assert district is not None
        rng = random.Random(f"{settings.seed}:learner:{profile.number}")
        agent = {"objectType": "Agent", "name": f"Demo learner {profile.number}", "mbox": f"mailto:{profile.email}"}
        attendance = rng.uniform(0.7, 0.95)
        walk = self._walk(rng)
        in_gap = profile.in_group(district.gap_factor, district.gap_value)
        learn_factor = district.gap_learn if in_gap else 1.0
        skip_rate = district.gap_skip_week_rate if in_gap else district.skip_week_rate
        sessions = _weekly_sessions(rng, settings.start, self.horizon, attendance, skip_rate, profile.stop_after)
        stall_from_us = None if profile.stall_from is None else _moment_us(profile.stall_from, 0)
        stuck_on: str | None = None
        stuck_since: int | None = None
        session: list[int] = []
        moments: list[int] = []
        found: dict[str, CompetencyTruth] = {}
        for competency in walk:
            parameters = settings.parameters_of(competency)
            known = rng.random() < parameters.prior
            mastered_at: int | None = None
            streak = attempts = 0
            while streak < settings.streak:  # mastery-based: no max_attempts
                session = session or next(sessions, [])
                if not session:
                    break  # the course is over, or she has stopped coming
                moment = session.pop(0)
                if stall_from_us is not None and stuck_on is None and not known and moment >= stall_from_us:
                    stuck_on, stuck_since = competency, moment
                if attempts and stuck_on != competency:
                    known = known or rng.random() < parameters.learn * learn_factor
                if known and mastered_at is None:
                    mastered_at = moment
                item = rng.choice(self.items[competency])
                if stuck_on == competency:
                    # Repeated attempts without gain: every score one level below mastery.
                    self._attempt(rng, agent, item, moment, False, rng.randint(*self.stuck_raw))
                    streak = 0
                else:
                    correct = rng.random() < (1 - parameters.slip if known else parameters.guess)
                    streak = streak + 1 if correct else 0
                    self._attempt(rng, agent, item, moment, correct)
                attempts += 1
                moments.append(moment)
            code = self.items[competency][0].code
            # Not reached (the course ended, or she stopped or got stuck before): no evidence, not mastered.
            found[competency] = CompetencyTruth(competency, code, known and attempts > 0, mastered_at, attempts)
        truths = tuple(found[c["uri"]] for c in self.competencies)
        pace = pace_truth([None if t.mastered_at_us is None else _day_of(t.mastered_at_us) for t in truths],
                          (_day_of(m) for m in moments), settings.start, self.target, self.as_of)  # fmt: skip
        learner = DistrictLearner(profile, stuck_on, stuck_since, max(moments, default=None), pace)
        return LearnerTruth(profile.learner, agent, truths, learner)

    def _raw_score(self, rng: random.Random, correct: bool) -> int:
        if correct:
            return rng.randint(self.pass_raw, RAW_MAX)
        return rng.randint(min(RAW_MAX // 5, self.pass_raw - 1), self.pass_raw - 1)

    def _attempt(
        self, rng: random.Random, agent: dict[str, Any], item: _Item, moment: int, correct: bool, raw: int | None = None
    ) -> None:
        settings = self.settings
        raw = self._raw_score(rng, correct) if raw is None else raw
        statement = self._answered(rng, agent, item, moment, raw, correct)
        if rng.random() < settings.late_rate:
            delivered = moment + rng.randint(1, 5) * DAY_US + rng.randint(0, 3600) * SECOND_US
        else:
            delivered = moment + rng.randint(1, 30) * SECOND_US
        self._deliver(delivered, statement)
        if rng.random() < settings.retry_rate:
            self._deliver(delivered + rng.randint(1, 3600) * SECOND_US, statement)
        if rng.random() < settings.void_rate:
            # The gradebook records a wrong score for the same attempt; the teacher voids it days later.
            wrong_raw = rng.randint(0, RAW_MAX)
            wrong = self._answered(rng, agent, item, moment + 30 * SECOND_US, wrong_raw, wrong_raw >= self.pass_raw)
            self._deliver(moment + 40 * SECOND_US, wrong)
            voided_at = moment + rng.randint(1, 3) * DAY_US
            voiding = {
                "id": _new_id(rng),
                "actor": TEACHER,
                "verb": VOIDED,
                "object": {"objectType": "StatementRef", "id": wrong["id"]},
                "timestamp": iso_timestamp(voided_at),
            }
            self._deliver(voided_at, voiding)

    def _answered(
        self, rng: random.Random, agent: dict[str, Any], item: _Item, moment: int, raw: int, correct: bool
    ) -> dict[str, Any]:
        context: dict[str, Any] = {"platform": "Proficio demo tutor", "language": "en-US"}
        if item.tagged:
            context["contextActivities"] = {
                "other": [
                    {
                        "objectType": "Activity",
                        "id": item.competency,
                        "definition": {"type": OBJECTIVE, "name": {"en-US": item.code}},
                    }
                ]
            }
        return {
            "id": _new_id(rng),
            "actor": agent,
            "verb": ANSWERED,
            "object": {
                "objectType": "Activity",
                "id": item.activity,
                "definition": {"type": ASSESSMENT, "name": {"en-US": f"{item.code} task {item.number}"}},
            },
            "result": {
                "score": {"scaled": float(Fraction(raw, RAW_MAX)), "raw": raw, "min": 0, "max": RAW_MAX},
                "success": correct,
                "completion": True,
                "duration": f"PT{rng.randint(1, 7)}M{rng.randint(0, 59)}S",
            },
            "context": context,
            "timestamp": iso_timestamp(moment),
        }

    def statements(self) -> tuple[dict[str, Any], ...]:
        """In delivery order; in a district, those delivered by the end of the judging day."""
        delivered = [d for d in self.deliveries if self.until_us is None or d.delivered_us <= self.until_us]
        return tuple(d.statement for d in sorted(delivered, key=lambda d: (d.delivered_us, d.sequence)))

    def district(self, truth: tuple[LearnerTruth, ...]) -> DistrictDemo:
        district = self.settings.district
        assert district is not None
        schools = school_ids(district.schools)
        course = Course(f"{self.framework.title}: demo course", f"course-{PLAN_ID}", "Graduate profile",
                        "08", self.settings.start, self.target, DISTRICT_ORG)  # fmt: skip
        roster = oneroster_files([roster_student(p) for p in self.profiles], schools, course)
        plan = plan_document(course.title, self.settings.start, self.target, schools, self.planned_order(),
                             district.weeks)  # fmt: skip
        paces = [learner.district.pace for learner in truth if learner.district is not None]
        return DistrictDemo(district, self.as_of, self.target, roster, plan, district_truth(self.profiles, paces))


def _moment_us(day: date, minutes_after_midnight: int, seconds: int = 0) -> int:
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=minutes_after_midnight)
    return (moment - EPOCH) // timedelta(microseconds=1) + seconds * SECOND_US


def _session(rng: random.Random, day: date, attendance: float) -> list[int]:
    """Today's attempt times: none when absent; else 2-5 attempts from a start between 08:00 and 14:00 UTC."""
    if rng.random() >= attendance:
        return []
    return _session_moments(rng, day)


def _session_moments(rng: random.Random, day: date) -> list[int]:
    minute = 8 * 60 + rng.randrange(6 * 60)
    moments: list[int] = []
    for _ in range(rng.randint(2, 5)):
        moments.append(_moment_us(day, minute, rng.randrange(60)))
        minute += rng.randint(3, 11)  # an attempt takes minutes; at most 55 after the start, so before 15:00
    return moments


def _weekly_sessions(
    rng: random.Random, start: date, end: date, attendance: float, skip_rate: float, stop_after: date | None
) -> Iterator[list[int]]:
    """A district learner's sessions, week by week from ``start`` to ``end`` (or ``stop_after``): a week after
    an active one is skipped with p = ``skip_rate`` (never two in a row, so a skip alone never looks like
    disengagement); in an active week she practises on each school day with p = ``attendance`` x
    COURSE_DAY_SHARE, at least once."""
    monday = monday_of(start)
    skipped = False
    while monday <= end and (stop_after is None or monday <= stop_after):
        days = [day for day in (monday + timedelta(days=n) for n in range(5))
                if start <= day <= end and (stop_after is None or day <= stop_after)]  # fmt: skip
        if days:
            skipped = not skipped and rng.random() < skip_rate
            if not skipped:
                present = [day for day in days if rng.random() < attendance * COURSE_DAY_SHARE] or [rng.choice(days)]
                for day in present:
                    yield _session_moments(rng, day)
        monday += timedelta(days=7)


def _day_of(moment_us: int) -> date:
    return (EPOCH + timedelta(microseconds=moment_us)).date()


def _stuck_raw_range(framework: Framework, pass_raw: int) -> tuple[int, int]:
    """Raw scores of the level just below mastery (a stalled learner's, so her level never rises)."""
    levels = [Decimal(v["points"]) for v in framework.data["scale"]]
    top = max(levels)
    below = [points for points in levels if Fraction(points) / Fraction(top) < Fraction(pass_raw, RAW_MAX)]
    low = math.ceil(Fraction(max(below)) / Fraction(top) * RAW_MAX) if below else 0
    return min(max(low, RAW_MAX // 5), pass_raw - 1), pass_raw - 1


def _next_school_day(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def generate_demo(package: bytes | Framework, settings: DemoSettings | None = None) -> Demo:
    """Simulate ``settings.learners`` learners on the framework of a CASE package (JSON bytes or parsed).

    Raises :class:`~proficio_projector.competency.FrameworkError` for a package that does not parse,
    ValueError for a framework without items or settings out of range.
    """
    settings = settings or DemoSettings()
    framework = package if isinstance(package, Framework) else parse_package(package)
    simulation = _Simulation(framework, settings)
    truth = tuple(simulation.learner(n) for n in range(1, settings.learners + 1))
    district = simulation.district(truth) if settings.district is not None else None
    return Demo(framework, settings, simulation.statements(), simulation.alignments(), truth, district)
