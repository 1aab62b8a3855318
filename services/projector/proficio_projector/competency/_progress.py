"""Competency progress: the evidence fold (a projection) and the progress computed from it when read.

The fold, ``competency_evidence``, keeps per learner one *observation* per statement that carries an
evidence value (its activity, the competencies it names, its normalized value, success and times) and
per teacher rating, and per voided statement or withdrawn rating a *void* row. It is per learner
stream, so it is partitioned like the log; a void row is keyed by the voided statement and written only
by the voiding event.

Which competencies an observation counts for (the ones it names, plus the alignment map of its
activity) and what the evidence adds up to (the mastery policy, the scale, the rollup rules) are applied
when progress is read (:func:`progress`, :func:`rollups`). Frameworks, alignments and policies are
tenant-wide reference data living in other streams: applying them at read time keeps the fold
deterministic under any interleaving of partitions, and a policy or alignment change shows at once,
with no rebuild.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple, Protocol

import orjson
import sqlalchemy as sa

from proficio_events import StoredEvent

from .._model import Change, Put, RowRef, State, ViewIndex, ViewTable
from ._case import DEFAULT_SCALE, Level
from ._evidence import Evidence, competencies_named, normalized_result, statement_time_us
from ._mastery import MasteryPolicy, Method, is_mastered, power_law, round_half_up, running_scores

STATEMENT_STORED = "StatementStored"
STATEMENT_VOIDED = "StatementVoided"
RATING_RECORDED = "TeacherRatingRecorded"
RATING_WITHDRAWN = "TeacherRatingWithdrawn"
#: Ratings share the observations' key space with statements; the prefix keeps them apart.
RATING_PREFIX = "rating:"


class CompetencyEvidence:
    name = "competency_evidence"
    #: 3: the observations' indexes (BRIN on last_position, hash on statement_id) instead of two btrees.
    version = 3
    event_types: frozenset[str] | None = frozenset(
        {STATEMENT_STORED, STATEMENT_VOIDED, RATING_RECORDED, RATING_WITHDRAWN}
    )
    partitioned = True
    tables: Sequence[ViewTable] = (
        ViewTable(
            "observations",
            key=(sa.Column("tenant", sa.Text), sa.Column("learner", sa.Text), sa.Column("statement_id", sa.Text)),
            values=(
                sa.Column("activity", sa.Text, nullable=True),
                sa.Column("competencies", sa.Text, nullable=False),  # JSON array of the IRIs it names
                sa.Column("norm", sa.Text, nullable=False),  # a decimal 0..1, exact
                sa.Column("success", sa.Boolean, nullable=True),
                sa.Column("timestamp_us", sa.BigInteger, nullable=False),
                sa.Column("stored_us", sa.BigInteger, nullable=False),
                sa.Column("source", sa.Text, nullable=False),  # statement | rating
                sa.Column("authority", sa.Text, nullable=True),  # a rating's rater
                sa.Column("raw", sa.Text, nullable=True),  # score.raw, exact: a test's cut is on its raw score
            ),
            # What changed since a position (the equity refresher), and a voided statement's learner. Rows come
            # in log order and statement ids are random: a BRIN and a hash index cost an insert far less than
            # btrees (a fold of 50,000 learners' statements: 21 -> 16 µs a row in PostgreSQL).
            indexes=(ViewIndex(("last_position",), "brin"), ViewIndex(("statement_id",), "hash")),
        ),
        ViewTable(
            "voids",
            key=(sa.Column("tenant", sa.Text), sa.Column("statement_id", sa.Text)),
            values=(sa.Column("voided_by", sa.Text, nullable=False),),
            indexes=(("tenant", "last_position"),),
        ),
    )

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        # None: apply() never looks at a row. Each observation row is written by the events of its
        # statement or rating alone, a void row by its voiding (withdrawing) events, and the upsert keeps
        # the row of the latest position; so a repeated event changes nothing, and the runtime need not
        # load any rows for this fold.
        return ()

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        data: dict[str, Any] = event.data()
        if event.event_type == RATING_RECORDED:
            return [
                Put(
                    "observations",
                    (event.tenant, event.stream, RATING_PREFIX + data["rating_id"]),
                    {
                        "activity": None, "competencies": orjson.dumps([data["competency"]]).decode(),
                        "norm": data["norm"], "success": None, "timestamp_us": data["timestamp_us"],
                        "stored_us": event.recorded_us, "source": "rating", "authority": data["authority"],
                        "raw": data["points"],
                    },
                )
            ]  # fmt: skip
        if event.event_type == RATING_WITHDRAWN:
            key = (event.tenant, RATING_PREFIX + data["rating_id"])
            return [Put("voids", key, {"voided_by": f"withdrawn by {data['authority']}"})]
        statement: dict[str, Any] = data["statement"]
        statement_id = str(statement["id"]).lower()
        if event.event_type == STATEMENT_VOIDED:
            target = statement.get("object", {}).get("id")
            return [Put("voids", (event.tenant, str(target).lower()), {"voided_by": statement_id})] if target else []
        value = normalized_result(statement)
        if value is None:
            return []  # a launch, a completion without a score: no evidence value
        norm, success = value
        return [
            Put(
                "observations",
                (event.tenant, event.stream, statement_id),
                {
                    "activity": _activity(statement),
                    "competencies": orjson.dumps(competencies_named(statement)).decode(),
                    "norm": str(norm),
                    "success": success,
                    "timestamp_us": statement_time_us(statement, event.recorded_us),
                    "stored_us": event.recorded_us,
                    "source": "statement",
                    "authority": None,
                    "raw": _raw(statement),
                },
            )
        ]


def _raw(statement: Mapping[str, Any]) -> str | None:
    score = statement.get("result", {}).get("score")
    raw = score.get("raw") if isinstance(score, dict) else None
    return str(Decimal(str(raw))) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


def _activity(statement: Mapping[str, Any]) -> str | None:
    target = statement.get("object")
    if isinstance(target, dict) and target.get("objectType", "Activity") == "Activity":
        activity = target.get("id")
        return activity if isinstance(activity, str) else None
    return None


class Observation(NamedTuple):
    """One evidence-bearing statement or rating of a learner, as the evidence view keeps it (a tuple: cheap
    to build by the thousand)."""

    statement_id: str
    activity: str | None
    competencies: tuple[str, ...]
    norm: Decimal
    success: bool | None
    timestamp_us: int
    stored_us: int
    source: str = "statement"
    authority: str | None = None
    raw: Decimal | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Observation:
        return cls(
            row["statement_id"], row["activity"], tuple(orjson.loads(row["competencies"])), Decimal(row["norm"]),
            row["success"], int(row["timestamp_us"]), int(row["stored_us"]), row.get("source") or "statement",
            row.get("authority"), Decimal(row["raw"]) if row.get("raw") is not None else None,
        )  # fmt: skip


@dataclass(frozen=True)
class StallRule:
    """When a competency not yet mastered counts as stalled (competency-domain.md section 4).

    Stalled: at least ``attempts`` pieces of evidence and no gain in standing (level; p(L) under BKT)
    over the last ``window`` of them, or ``idle_school_days`` school days (Monday to Friday, until a
    district calendar says otherwise) without evidence.
    """

    attempts: int = 4
    window: int = 3
    idle_school_days: int = 15


DEFAULT_STALL = StallRule()


@dataclass(frozen=True)
class Progress:
    competency: str
    evidence: tuple[Evidence, ...]
    score: Decimal | None
    level: Level | None
    mastered: bool
    #: The timestamp (µs) of the evidence with which the score first reached mastery.
    mastered_at_us: int | None
    first_at_us: int
    last_at_us: int
    #: Each piece of evidence in points on the scale, and the score after it (what the trail shows).
    scores: tuple[Decimal, ...] = field(default=())
    running: tuple[Decimal | None, ...] = field(default=())
    #: The policy the score was computed under, on the competency's scale.
    policy: MasteryPolicy = field(default=MasteryPolicy())
    #: The power-law exponent over the evidence points (3 or more): > 0 rising, < 0 falling.
    trend_b: Decimal | None = None
    stalled: bool = False
    #: Mastered once (mastered_at) but not now.
    regressed: bool = False
    #: How many pieces of evidence it took to reach mastery first (None: never reached; unknown when built
    #: elsewhere than ``progress``: then the running scores tell).
    attempts_to_mastery: int | None = None

    @property
    def n_evidence(self) -> int:
        return len(self.evidence)

    @property
    def norm_score(self) -> Decimal | None:
        """The score as a share of the scale (p(L) itself under BKT)."""
        if self.score is None:
            return None
        return self.score if self.policy.method is Method.BKT else self.score / self.policy.points_possible


def evidence_of(
    observations: Iterable[Observation],
    voided: Iterable[str],
    alignments: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> dict[str, list[Evidence]]:
    """Evidence per competency, in evidence order, without voided statements and withdrawn ratings."""
    gone = set(voided)
    found: dict[str, list[Evidence]] = {}
    one = Decimal(1)
    new = tuple.__new__  # Evidence(...) without the named tuple's Python-level __new__: thousands per grid
    for statement_id, activity, named, norm, success, timestamp_us, stored_us, source, authority, _ in observations:
        if statement_id in gone:
            continue
        for competency in named if len(named) < 2 else dict.fromkeys(named):
            piece = new(Evidence, (statement_id, competency, norm, success, source, one, timestamp_us, stored_us,
                                   authority))  # fmt: skip
            mine = found.get(competency)
            if mine is None:
                found[competency] = [piece]
            else:
                mine.append(piece)
        aligned = alignments.get(activity) if alignments and activity else None
        if aligned:
            for competency, weight in aligned.items():
                if competency not in named:  # a competency the statement names counts once, at full weight
                    piece = new(Evidence, (statement_id, competency, norm, success, "alignment", weight, timestamp_us,
                                           stored_us, authority))  # fmt: skip
                    mine = found.get(competency)
                    if mine is None:
                        found[competency] = [piece]
                    else:
                        mine.append(piece)
    for items in found.values():
        items.sort(key=EVIDENCE_ORDER)
    return found


#: (timestamp, stored, statement id): the order of evidence, as a C-level key.
EVIDENCE_ORDER = operator.itemgetter(6, 7, 0)


def on_scale(policy: MasteryPolicy, scale: Sequence[Level]) -> MasteryPolicy:
    """The policy on a scale: points possible = the top level's, mastery = the first mastery level's."""
    return _on_scale(policy, tuple(scale))


@functools.lru_cache(maxsize=1024)
def _on_scale(policy: MasteryPolicy, scale: tuple[Level, ...]) -> MasteryPolicy:
    # Every competency of a framework shares its policy and scale: one replace() per pair, not per read.
    top = max(level.points for level in scale)
    mastery = [level.points for level in scale if level.mastery]
    return dataclasses.replace(policy, points_possible=top, mastery_points=min(mastery) if mastery else top)


def level_for(score: Decimal | None, scale: Sequence[Level]) -> Level | None:
    """The highest level whose points the score reaches (None below the lowest)."""
    if score is None:
        return None
    for level in _highest_first(scale):
        if score >= level.points:
            return level
    return None


def _highest_first(scale: Sequence[Level]) -> tuple[Level, ...]:
    # By identity for the tuples the reference data hands out (hashing a tuple of Levels on every call was
    # a few percent of a grid); the entry holds the tuple, so its id cannot be reused while it is cached.
    if type(scale) is tuple:
        hit = _HIGHEST_FIRST.get(id(scale))
        if hit is not None and hit[0] is scale:
            return hit[1]
        ordered = _highest_first_of(scale)
        if len(_HIGHEST_FIRST) >= 256:
            _HIGHEST_FIRST.clear()
        _HIGHEST_FIRST[id(scale)] = (scale, ordered)
        return ordered
    return _highest_first_of(tuple(scale))


_HIGHEST_FIRST: dict[int, tuple[tuple[Level, ...], tuple[Level, ...]]] = {}


@functools.lru_cache(maxsize=256)
def _highest_first_of(scale: tuple[Level, ...]) -> tuple[Level, ...]:
    return tuple(sorted(scale, key=lambda level: level.points, reverse=True))


def school_days_between(start_us: int, end_us: int) -> int:
    """Monday-to-Friday days after ``start_us``'s date up to and including ``end_us``'s date (UTC)."""
    # In whole days since the epoch (a Thursday): no date objects, as this runs per competency per learner.
    first, last = start_us // _DAY_US, end_us // _DAY_US
    if last <= first:
        return 0
    days = last - first
    weeks, rest = divmod(days, 7)
    count = weeks * 5
    weekday = (first + 3) % 7  # the days counted are first+1 .. first+days
    for offset in range(1, rest + 1):
        count += (weekday + offset) % 7 < 5
    return count


_DAY_US = 86_400_000_000


def progress(
    observations: Iterable[Observation],
    voided: Iterable[str],
    default_policy: MasteryPolicy,
    *,
    alignments: Mapping[str, Mapping[str, Decimal]] | None = None,
    scale: Sequence[Level] = DEFAULT_SCALE,
    policy_of: Callable[[str], MasteryPolicy] | None = None,
    scale_of: Callable[[str], Sequence[Level]] | None = None,
    now_us: int | None = None,
    stall: StallRule = DEFAULT_STALL,
    trend: bool = True,
    rules: dict[str, tuple[Sequence[Level], MasteryPolicy]] | None = None,
) -> dict[str, Progress]:
    """Each competency's progress from a learner's observations, under a policy on a scale.

    ``policy_of`` gives each competency its policy (the most specific one configured); else every
    competency is scored under ``default_policy``. ``scale_of`` gives each competency its scale (its
    framework's rubric); the scale's top is the points possible and its first mastery level the threshold.

    Scores are the policy's method over the evidence points (norm times the scale's top points, weighted
    by the alignment's weight in the means), oldest first; mastered_at is the first evidence after which
    that score reached mastery (a later drop does not undo the date, and ``mastered`` says where the
    learner stands now). ``now_us`` is the moment the idle rule of ``stall`` is judged at (None: only the
    attempts rule applies, so the result depends on the evidence alone). ``trend=False`` leaves trend_b out
    (a section grid shows no trend). ``rules``: a dict shared by calls with the same policies and scales (one
    request's reference data, for many learners), where each competency's scale and policy on it are kept.
    """
    result: dict[str, Progress] = {}
    for competency, items, policy, points, running, level, mastered, stalled in _scored(
        observations, voided, default_policy, alignments, scale, policy_of, scale_of, now_us, stall, rules
    ):
        if policy.method is Method.BKT:
            reached = (n for n, s in enumerate(running) if is_mastered(policy, s))
        else:  # is_mastered, inline: a comparison per piece of evidence
            threshold = policy.mastery_points
            reached = (n for n, s in enumerate(running) if s is not None and s >= threshold)
        first = next(reached, None)
        mastered_at = None if first is None else items[first].timestamp_us
        fitted = power_law(points, policy.points_possible) if trend else None
        trend_b = Decimal(str(fitted[1])).quantize(Decimal("0.0001"), ROUND_HALF_UP) if fitted else None
        result[competency] = Progress(
            competency, tuple(items), running[-1], level, mastered, mastered_at, items[0].timestamp_us,
            items[-1].timestamp_us, tuple(points), running, policy, trend_b, stalled,
            mastered_at is not None and not mastered, None if first is None else first + 1,
        )  # fmt: skip
    return result


def grid_cells(
    observations: Iterable[Observation],
    voided: Iterable[str],
    default_policy: MasteryPolicy,
    *,
    alignments: Mapping[str, Mapping[str, Decimal]] | None = None,
    scale: Sequence[Level] = DEFAULT_SCALE,
    policy_of: Callable[[str], MasteryPolicy] | None = None,
    scale_of: Callable[[str], Sequence[Level]] | None = None,
    now_us: int | None = None,
    stall: StallRule = DEFAULT_STALL,
    rules: dict[str, tuple[Sequence[Level], MasteryPolicy]] | None = None,
) -> dict[str, GridCell]:
    """What a section grid shows of ``progress(..., trend=False)``: each competency's score, level, mastered
    and stalled, without the rest (mastery date, evidence and score lists) that a grid never shows."""
    return {
        competency: GridCell(running[-1], level, mastered, stalled)
        for competency, _, _, _, running, level, mastered, stalled in _scored(
            observations, voided, default_policy, alignments, scale, policy_of, scale_of, now_us, stall, rules
        )
    }


def _scored(
    observations: Iterable[Observation],
    voided: Iterable[str],
    default_policy: MasteryPolicy,
    alignments: Mapping[str, Mapping[str, Decimal]] | None,
    scale: Sequence[Level],
    policy_of: Callable[[str], MasteryPolicy] | None,
    scale_of: Callable[[str], Sequence[Level]] | None,
    now_us: int | None,
    stall: StallRule,
    rules: dict[str, tuple[Sequence[Level], MasteryPolicy]] | None,
) -> Iterator[
    tuple[str, list[Evidence], MasteryPolicy, list[Decimal], tuple[Decimal | None, ...], Level | None, bool, bool]
]:
    """Per competency with evidence: (competency, its evidence, the policy on its scale, the evidence points,
    the running scores, the level reached, mastered, stalled): what ``progress`` and ``grid_cells`` share."""
    for competency, items in evidence_of(observations, voided, alignments).items():
        ruled = rules.get(competency) if rules is not None else None
        if ruled is None:
            levels = scale_of(competency) if scale_of is not None else scale
            ruled = levels, on_scale(policy_of(competency) if policy_of is not None else default_policy, levels)
            if rules is not None:
                rules[competency] = ruled
        levels, policy = ruled
        points = [e.norm * policy.points_possible for e in items]
        weights = [e.weight for e in items]
        running = tuple(running_scores(policy, points, weights))
        score = running[-1]
        mastered = is_mastered(policy, score)
        stuck = len(items) >= max(stall.attempts, stall.window + 1) and _standing(
            policy, running[-1], levels
        ) <= _standing(policy, running[-1 - stall.window], levels)
        idle = now_us is not None and school_days_between(items[-1].timestamp_us, now_us) >= stall.idle_school_days
        level = None if policy.method is Method.BKT else level_for(score, levels)
        yield competency, items, policy, points, running, level, mastered, not mastered and (stuck or idle)


def _standing(policy: MasteryPolicy, score: Decimal | None, scale: Sequence[Level]) -> Decimal:
    """What a gain is measured in: the level reached (p(L) under BKT); -1 for none."""
    if score is None:
        return _NO_STANDING
    if policy.method is Method.BKT:
        return score
    level = level_for(score, scale)
    return level.points if level else _NO_STANDING


_NO_STANDING = Decimal(-1)


class RollupRule(enum.StrEnum):
    """How a parent competency (or a framework: the graduate profile) is judged from its children."""

    ALL_CHILDREN_MASTERED = "all_children_mastered"
    #: At least k children mastered.
    K_OF_N = "k_of_n"
    #: The mean of the children's scores (as shares of their scales; 0 without evidence) reaches the
    #: parent's mastery share.
    MEAN_OF_CHILDREN = "mean_of_children"


@dataclass(frozen=True)
class RollupPolicy:
    rule: RollupRule = RollupRule.ALL_CHILDREN_MASTERED
    k: int | None = None

    def __post_init__(self) -> None:
        if (self.rule is RollupRule.K_OF_N) != (self.k is not None):
            raise ValueError("k_of_n takes k (1 or more), and only k_of_n does")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be 1 or more, not {self.k}")


@dataclass(frozen=True)
class Rollup:
    competency: str
    policy: RollupPolicy
    children_total: int
    children_started: int
    children_mastered: int
    #: The mean of the children's scores as shares of their scales (0 for a child without evidence).
    mean_share: Decimal
    mastered: bool

    @property
    def status(self) -> str:
        if self.mastered:
            return "mastered"
        return "in_progress" if self.children_started else "not_started"


def rollups(
    found: Mapping[str, Progress],
    children: Mapping[str, Sequence[str]],
    *,
    policy_of: Callable[[str], RollupPolicy] | None = None,
    threshold_of: Callable[[str], Decimal] | None = None,
) -> dict[str, Rollup]:
    """Every parent's rollup, bottom up: a child that is itself a parent counts as mastered when its own
    evidence or its rollup says so. ``threshold_of`` gives a parent's mastery share (default 0.75: 3 of 4).
    """
    done: dict[str, Rollup] = {}

    def child_state(child: str, path: frozenset[str]) -> tuple[bool, bool, Decimal]:
        own = found.get(child)
        below = visit(child, path) if child in children else None  # noqa: F821 (deleted when done)
        started = own is not None or (below is not None and below.children_started > 0)
        mastered = (own is not None and own.mastered) or (below is not None and below.mastered)
        share = own.norm_score if own is not None and own.norm_score is not None else None
        if share is None:
            share = below.mean_share if below is not None else Decimal(0)
        return started, mastered, min(share, Decimal(1))

    def visit(parent: str, path: frozenset[str]) -> Rollup | None:
        if parent in done:
            return done[parent]
        if parent in path:  # the importer refuses cycles; a guard all the same
            return None
        states = [child_state(c, path | {parent}) for c in children[parent]]  # noqa: F821 (deleted when done)
        policy = policy_of(parent) if policy_of is not None else RollupPolicy()
        mastered_count = sum(m for _, m, _ in states)
        mean = round_half_up(sum((s for _, _, s in states), Decimal(0)) / len(states)) if states else Decimal(0)
        if policy.rule is RollupRule.K_OF_N:
            assert policy.k is not None
            mastered = mastered_count >= policy.k
        elif policy.rule is RollupRule.MEAN_OF_CHILDREN:
            mastered = bool(states) and mean >= (threshold_of(parent) if threshold_of else Decimal("0.75"))
        else:
            mastered = bool(states) and mastered_count == len(states)
        done[parent] = Rollup(parent, policy, len(states), sum(s for s, _, _ in states), mastered_count, mean, mastered)
        return done[parent]

    try:
        for parent in children:
            visit(parent, frozenset())
        return done
    finally:
        # child_state and visit refer to each other: unbound here, or the pair and all they hold (every
        # Progress, the reference data) are garbage only the cycle collector frees. Under serve's
        # thresholds it did so every ~80 progress reads, in 30-70 ms: the read API's p99.
        del child_state, visit


@dataclass(frozen=True)
class GridColumn:
    """One competency across a section: how many learners at each level, mastered, and the score's centre."""

    competency: str
    levels: dict[str, int]
    no_evidence: int
    mastered: int
    mean: Decimal | None
    median: Decimal | None


class Standing(Protocol):
    """What a grid shows of a competency's progress (a ``Progress``, or a grid's ``GridCell``)."""

    @property
    def score(self) -> Decimal | None: ...
    @property
    def level(self) -> Level | None: ...
    @property
    def mastered(self) -> bool: ...
    @property
    def stalled(self) -> bool: ...


class GridCell(NamedTuple):
    """A grid's cell: what a section grid shows of a learner's progress on a competency (and keeps cached)."""

    score: Decimal | None
    level: Level | None
    mastered: bool
    stalled: bool

    @classmethod
    def of(cls, p: Progress) -> GridCell:
        return cls(p.score, p.level, p.mastered, p.stalled)


def grid_columns(
    by_learner: Mapping[str, Mapping[str, Standing]],
    competencies: Sequence[str],
    scale_of: Callable[[str], Sequence[Level]],
) -> list[GridColumn]:
    """The level distribution of each competency over the learners (every level listed, 0 included)."""
    columns = []
    for competency in competencies:
        counts = {level.label: 0 for level in sorted(scale_of(competency), key=lambda lv: lv.points)}
        scores: list[Decimal] = []
        mastered = missing = 0
        for learner_progress in by_learner.values():
            p = learner_progress.get(competency)
            if p is None:
                missing += 1
                continue
            if p.level is not None:
                counts[p.level.label] = counts.get(p.level.label, 0) + 1
            if p.score is not None:
                scores.append(p.score)
            mastered += p.mastered
        mean = round_half_up(sum(scores, Decimal(0)) / len(scores)) if scores else None
        median = round_half_up(statistics.median(scores)) if scores else None
        columns.append(GridColumn(competency, counts, missing, mastered, mean, median))
    return columns
