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
"""

from __future__ import annotations

import dataclasses
import math
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson

from proficio_projector.competency import BktParameters, Framework, Level, parse_package

DEMO_HOME = "https://demo.proficio.example.org"
ANSWERED = {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}}
VOIDED = {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}}
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
ASSESSMENT = "http://adlnet.gov/expapi/activities/assessment"
TEACHER = {"objectType": "Agent", "name": "Demo teacher", "account": {"homePage": DEMO_HOME, "name": "teacher-1"}}
#: Points an item is scored out of (a 20-point task; a twentieth is 0.05, so scaled scores are exact decimals).
RAW_MAX = 20
ITEMS_PER_COMPETENCY = 6
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
class LearnerTruth:
    learner: str
    agent: dict[str, Any]
    competencies: tuple[CompetencyTruth, ...]


@dataclass(frozen=True)
class Demo:
    framework: Framework
    settings: DemoSettings
    #: xAPI statements in delivery order; a retried statement appears twice.
    statements: tuple[dict[str, Any], ...]
    #: ``{"activity", "competency", "weight"}``: what the aligned-only items count for.
    alignments: tuple[dict[str, str], ...]
    truth: tuple[LearnerTruth, ...]

    def statements_ndjson(self) -> bytes:
        return b"".join(orjson.dumps(s, option=orjson.OPT_SORT_KEYS) + b"\n" for s in self.statements)

    def alignments_json(self) -> bytes:
        return orjson.dumps(list(self.alignments), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    def truth_json(self) -> bytes:
        settings = self.settings
        document = {
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
                }
                for learner in self.truth
            ],
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


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

    def _walk(self, rng: random.Random) -> list[str]:
        """An order of the competencies that respects ``precedes``; ties drawn at random."""
        order: list[str] = []
        remaining = [c["uri"] for c in self.competencies]
        while remaining:
            ready = [uri for uri in remaining if self.prerequisites[uri].issubset(order)]
            chosen = rng.choice(ready) if ready else remaining[0]
            order.append(chosen)
            remaining.remove(chosen)
        return order

    def learner(self, number: int) -> LearnerTruth:
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

    def _raw_score(self, rng: random.Random, correct: bool) -> int:
        if correct:
            return rng.randint(self.pass_raw, RAW_MAX)
        return rng.randint(min(RAW_MAX // 5, self.pass_raw - 1), self.pass_raw - 1)

    def _attempt(self, rng: random.Random, agent: dict[str, Any], item: _Item, moment: int, correct: bool) -> None:
        settings = self.settings
        raw = self._raw_score(rng, correct)
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
        return tuple(d.statement for d in sorted(self.deliveries, key=lambda d: (d.delivered_us, d.sequence)))


def _moment_us(day: date, minutes_after_midnight: int, seconds: int = 0) -> int:
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=minutes_after_midnight)
    return (moment - EPOCH) // timedelta(microseconds=1) + seconds * SECOND_US


def _session(rng: random.Random, day: date, attendance: float) -> list[int]:
    """Today's attempt times: none when absent; else 2-5 attempts from a start between 08:00 and 14:00 UTC."""
    if rng.random() >= attendance:
        return []
    minute = 8 * 60 + rng.randrange(6 * 60)
    moments: list[int] = []
    for _ in range(rng.randint(2, 5)):
        moments.append(_moment_us(day, minute, rng.randrange(60)))
        minute += rng.randint(3, 11)  # an attempt takes minutes; at most 55 after the start, so before 15:00
    return moments


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
    return Demo(framework, settings, simulation.statements(), simulation.alignments(), truth)
