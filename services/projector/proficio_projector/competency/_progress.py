"""Competency progress: the evidence fold (a projection) and the progress computed from it when read.

The fold, ``competency_evidence``, keeps per learner one *observation* per statement that carries an
evidence value (its activity, the competencies it names, its normalized value, success and times), and
per voided statement a *void* row. It is per learner stream, so it is partitioned like the log; a void
row is keyed by the voided statement and written only by the voiding statement's event.

Which competencies an observation counts for (the ones it names, plus the alignment map of its
activity) and what the evidence adds up to (the mastery policy, the scale) are applied when progress
is read (:func:`progress`). Frameworks, alignments and policies are tenant-wide reference data living in
other streams: applying them at read time keeps the fold deterministic under any interleaving of
partitions, and a policy or alignment change shows at once, with no rebuild.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from proficio_events import StoredEvent

from .._model import Change, Put, RowRef, State, ViewTable
from ._case import DEFAULT_SCALE, Level
from ._evidence import Evidence, competencies_named, normalized_result, statement_time_us
from ._mastery import MasteryPolicy, is_mastered, mastery_score

STATEMENT_STORED = "StatementStored"
STATEMENT_VOIDED = "StatementVoided"


class CompetencyEvidence:
    name = "competency_evidence"
    version = 1
    event_types: frozenset[str] | None = frozenset({STATEMENT_STORED, STATEMENT_VOIDED})
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
            ),
        ),
        ViewTable(
            "voids",
            key=(sa.Column("tenant", sa.Text), sa.Column("statement_id", sa.Text)),
            values=(sa.Column("voided_by", sa.Text, nullable=False),),
        ),
    )

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        # None: apply() never looks at a row. Each observation row is written by its statement's event
        # alone, and a void row by the voiding statements' events, and the upsert keeps the row of the
        # latest position; so a repeated event changes nothing, and the runtime skips loading rows.
        return ()

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        statement: dict[str, Any] = event.data()["statement"]
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
                },
            )
        ]


def _activity(statement: Mapping[str, Any]) -> str | None:
    target = statement.get("object")
    if isinstance(target, Mapping) and target.get("objectType", "Activity") == "Activity":
        activity = target.get("id")
        return activity if isinstance(activity, str) else None
    return None


@dataclass(frozen=True)
class Observation:
    statement_id: str
    activity: str | None
    competencies: tuple[str, ...]
    norm: Decimal
    success: bool | None
    timestamp_us: int
    stored_us: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Observation:
        return cls(
            row["statement_id"], row["activity"], tuple(orjson.loads(row["competencies"])), Decimal(row["norm"]),
            row["success"], int(row["timestamp_us"]), int(row["stored_us"]),
        )  # fmt: skip


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
    scores: tuple[Decimal, ...] = field(default=())


def evidence_of(
    observations: Iterable[Observation],
    voided: Iterable[str],
    alignments: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> dict[str, list[Evidence]]:
    """Evidence per competency, in evidence order, without voided statements."""
    gone = set(voided)
    found: dict[str, list[Evidence]] = {}
    for o in observations:
        if o.statement_id in gone:
            continue
        named = dict.fromkeys(o.competencies, (Decimal(1), "statement"))
        for competency, weight in (alignments or {}).get(o.activity or "", {}).items():
            named.setdefault(competency, (weight, "alignment"))
        for competency, (weight, source) in named.items():
            found.setdefault(competency, []).append(
                Evidence(o.statement_id, competency, o.norm, o.success, source, weight, o.timestamp_us, o.stored_us)
            )
    for items in found.values():
        items.sort(key=lambda e: e.order)
    return found


def on_scale(policy: MasteryPolicy, scale: Sequence[Level]) -> MasteryPolicy:
    """The policy on a scale: points possible = the top level's, mastery = the first mastery level's."""
    top = max(level.points for level in scale)
    mastery = [level.points for level in scale if level.mastery]
    return dataclasses.replace(policy, points_possible=top, mastery_points=min(mastery) if mastery else top)


def level_for(score: Decimal | None, scale: Sequence[Level]) -> Level | None:
    """The highest level whose points the score reaches (None below the lowest)."""
    if score is None:
        return None
    reached = [level for level in scale if score >= level.points]
    return max(reached, key=lambda level: level.points) if reached else None


def progress(
    observations: Iterable[Observation],
    voided: Iterable[str],
    default_policy: MasteryPolicy,
    *,
    alignments: Mapping[str, Mapping[str, Decimal]] | None = None,
    scale: Sequence[Level] = DEFAULT_SCALE,
    policy_of: Callable[[str], MasteryPolicy] | None = None,
    scale_of: Callable[[str], Sequence[Level]] | None = None,
) -> dict[str, Progress]:
    """Each competency's progress from a learner's observations, under a policy on a scale.

    ``policy_of`` gives each competency its policy (the most specific one configured); else every
    competency is scored under ``default_policy``. ``scale_of`` gives each competency its scale (its
    framework's rubric); the scale's top is the points possible and its first mastery level the threshold.

    Scores are the policy's method over the evidence points (norm times the scale's top points), oldest
    first; mastered_at is the first evidence after which that score reached mastery (a later drop does
    not undo the date, and ``mastered`` says where the learner stands now).
    """
    result: dict[str, Progress] = {}
    for competency, items in evidence_of(observations, voided, alignments).items():
        levels = scale_of(competency) if scale_of is not None else scale
        policy = on_scale(policy_of(competency) if policy_of is not None else default_policy, levels)
        top = policy.points_possible
        points = [e.norm * top for e in items]
        mastered_at: int | None = None
        running: list[Decimal] = []
        for evidence, value in zip(items, points, strict=True):
            running.append(value)
            if mastered_at is None and is_mastered(policy, mastery_score(policy, running)):
                mastered_at = evidence.timestamp_us
        score = mastery_score(policy, points)
        result[competency] = Progress(
            competency, tuple(items), score, level_for(score, levels), is_mastered(policy, score), mastered_at,
            items[0].timestamp_us, items[-1].timestamp_us, tuple(points),
        )  # fmt: skip
    return result
