"""Per-learner facts the equity views aggregate, as a pure function of a learner's progress on a day.

A fact is the learner's standing on one scope: a plan she follows (percent of its must-do competencies
mastered, on track or not, stalled or not, her window velocity) or one competency (mastered, stalled).
Facts are kept per learner (``equity_facts``) and refreshed when her evidence or the reference data
change, or the day does; aggregates over tens of thousands of learners then read one row per learner
and scope instead of recomputing everyone's progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from ..competency import Progress
from ..pacing import PacingPlan, PacingReference, pace


class Fact(NamedTuple):
    """A tuple: a refresher compares each learner's facts with the ones it kept (hundreds of thousands a round),
    and a tuple's equality runs in C."""

    learner: str
    #: ``plan:<id>`` or ``competency:<IRI>``.
    scope: str
    #: Percent of the plan's must-do competencies mastered; 100 or 0 for one competency.
    pct_mastered: Decimal
    mastered: bool
    on_track: bool | None
    stalled: bool
    velocity: Decimal | None


def learner_facts(
    learner: str,
    found: Mapping[str, Progress],
    plans: Iterable[PacingPlan],
    reference: PacingReference,
    as_of: date,
    *,
    last_activity: date | None = None,
) -> list[Fact]:
    """The learner's facts on ``as_of``: one per plan she follows, one per competency with evidence or in
    one of her plans."""
    facts: list[Fact] = []
    in_plans: set[str] = set()
    for plan in plans:
        p = pace(plan, reference.calendar_of(plan), reference.policy, found, as_of, last_activity=last_activity)
        in_plans |= {c.uri for c in plan.competencies}
        facts.append(
            Fact(
                learner,
                f"plan:{plan.plan}",
                p.pct_mastered,
                p.remaining == 0,
                p.status != "behind",
                bool(p.stalled) or p.stalled_learner,
                p.velocity_window,
            )
        )
    for competency in sorted(in_plans | set(found)):
        progress = found.get(competency)
        mastered = bool(progress and progress.mastered)
        facts.append(
            Fact(
                learner,
                f"competency:{competency}",
                Decimal(100 if mastered else 0),
                mastered,
                None,
                bool(progress and progress.stalled),
                None,
            )
        )
    return facts
