"""Evidence of competencies in xAPI statements (competency-domain.md section 2), as a pure function.

Where a statement names competencies:

- **A. about the competency**: the object is an activity of type objective or competency;
- **B. tagged**: activities of those types in ``context.contextActivities`` ``parent``, ``grouping`` or
  ``other`` (never ``category``, which names profiles);
- **C. aligned out of band**: an alignment map (activity IRI -> competency, weight), passed in by the
  caller (issue 6's alignments); the object's id is looked up in it.

Each (statement, competency) pair is one piece of evidence, its id ``(statement id, competency)``, so a
replay or a retried statement never counts twice. Its value: ``score.scaled`` clamped to 0..1, else
``(raw - min) / (max - min)``, else ``success`` as 1 or 0; a statement with none of these (a launch,
say) is no evidence. Evidence is ordered by ``(timestamp, stored, statement id)``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

COMPETENCY_TYPES = frozenset(
    {
        "http://adlnet.gov/expapi/activities/objective",
        "https://w3id.org/xapi/tla/activity-types/competency",
    }
)
TAGGING_CONTEXTS = ("parent", "grouping", "other")
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Evidence(NamedTuple):
    """One piece of evidence: immutable, and a tuple because a section grid builds thousands per read."""

    statement_id: str
    competency: str
    #: Normalized 0..1; multiply by the scale's points for a score.
    norm: Decimal
    success: bool | None
    #: "statement" (A or B), "alignment" (C), or "rating" (a teacher's rating recorded through the API).
    source: str
    weight: Decimal
    #: The statement's timestamp (µs since the epoch; stored when it has none) and stored time: the order.
    timestamp_us: int
    stored_us: int
    #: Who vouches for it: a rating's rater (the credential's authority name); None for statements.
    authority: str | None = None

    @property
    def order(self) -> tuple[int, int, str]:
        return (self.timestamp_us, self.stored_us, self.statement_id)

    def points(self, points_possible: Decimal) -> Decimal:
        return self.norm * points_possible


def normalized_result(statement: Mapping[str, Any]) -> tuple[Decimal, bool | None] | None:
    """(norm 0..1, success) from a statement's result, or None when it carries no evidence value.

    Statements here are decoded JSON, so their objects are dicts: ``isinstance(x, dict)`` rather than the
    much slower ``Mapping`` check on the fold's hot path.
    """
    result = statement.get("result")
    if not isinstance(result, dict):
        return None
    success = result.get("success") if isinstance(result.get("success"), bool) else None
    score = result.get("score")
    if isinstance(score, dict):
        scaled = score.get("scaled")
        if isinstance(scaled, int | float) and not isinstance(scaled, bool):
            return min(max(Decimal(str(scaled)), Decimal(0)), Decimal(1)), success
        numbers = [score.get(k) for k in ("raw", "min", "max")]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            raw, low, high = (Decimal(str(v)) for v in numbers)
            if high > low:
                return min(max((raw - low) / (high - low), Decimal(0)), Decimal(1)), success
    if success is not None:
        return (Decimal(1) if success else Decimal(0)), success
    return None


def statement_time_us(statement: Mapping[str, Any], fallback: int) -> int:
    """The statement's timestamp in µs since the epoch; ``fallback`` (its stored time) when it has none."""
    value = statement.get("timestamp")
    if not isinstance(value, str):
        return fallback
    found = _timestamp_us(value)
    return fallback if found is None else found


@functools.lru_cache(maxsize=1024)
def _timestamp_us(value: str) -> int | None:
    """An ISO 8601 timestamp with its offset in µs since the epoch (None: not one). Kept for the latest few: the
    statement projections, folded one after the other on each statement, parse the same timestamp."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - EPOCH) // timedelta(microseconds=1)  # exact, unlike a float timestamp


def _is_competency(activity: Any) -> bool:
    if not isinstance(activity, dict) or not isinstance(activity.get("id"), str):
        return False
    definition = activity.get("definition")
    return isinstance(definition, dict) and definition.get("type") in COMPETENCY_TYPES


def competencies_named(statement: Mapping[str, Any]) -> list[str]:
    """The competency IRIs a statement names itself (patterns A and B), in order of appearance, once each."""
    found: list[str] = []
    target = statement.get("object")
    if _is_competency(target) and (target.get("objectType") in (None, "Activity")):  # type: ignore[union-attr]
        found.append(target["id"])  # type: ignore[index]
    context = statement.get("context")
    activities = context.get("contextActivities") if isinstance(context, dict) else None
    if isinstance(activities, dict):
        for kind in TAGGING_CONTEXTS:
            listed = activities.get(kind)
            for activity in listed if isinstance(listed, list) else [listed] if listed else []:
                if _is_competency(activity) and activity["id"] not in found:
                    found.append(activity["id"])
    return found


def evidence_from_statement(
    statement: Mapping[str, Any],
    stored_us: int,
    alignments: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> list[Evidence]:
    """The evidence one stored statement gives (none for voiding statements; voiding withdraws it)."""
    verb = statement.get("verb")
    if isinstance(verb, Mapping) and verb.get("id") == VOIDED:
        return []
    value = normalized_result(statement)
    if value is None:
        return []
    norm, success = value
    statement_id = str(statement.get("id", "")).lower()
    when = statement_time_us(statement, stored_us)
    found: dict[str, Evidence] = {}
    for competency in competencies_named(statement):
        found[competency] = Evidence(statement_id, competency, norm, success, "statement", Decimal(1), when, stored_us)
    target = statement.get("object")
    activity = target.get("id") if isinstance(target, Mapping) else None
    for competency, weight in ((alignments or {}).get(activity, {}) if isinstance(activity, str) else {}).items():
        if competency not in found:
            found[competency] = Evidence(statement_id, competency, norm, success, "alignment", weight, when, stored_us)
    return list(found.values())
