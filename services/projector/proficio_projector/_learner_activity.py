"""``learner_activity``: per learner, how many statements, when first and last, and the latest verb.

The simplest useful view, and the one the runtime's tests and benchmarks run: rows are per learner
stream (the pseudonymous id ingest gives each actor), so it may be partitioned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from proficio_events import StoredEvent

from ._model import Change, Put, RowRef, State, ViewTable
from .competency._evidence import statement_time_us

STATEMENT_STORED = "StatementStored"
STATEMENT_VOIDED = "StatementVoided"
TABLE = "learners"


class LearnerActivity:
    name = "learner_activity"
    version = 2
    event_types: frozenset[str] | None = frozenset({STATEMENT_STORED, STATEMENT_VOIDED})
    partitioned = True
    tables: Sequence[ViewTable] = (
        ViewTable(
            TABLE,
            key=(sa.Column("tenant", sa.Text), sa.Column("learner", sa.Text)),
            values=(
                sa.Column("statements", sa.Integer, nullable=False),
                sa.Column("voiding", sa.Integer, nullable=False),
                sa.Column("first_stored_us", sa.BigInteger, nullable=False),
                sa.Column("last_stored_us", sa.BigInteger, nullable=False),
                sa.Column("last_verb", sa.Text, nullable=True),
                sa.Column("last_statement", sa.Text, nullable=True),
                # The latest statement timestamp (stored time when it has none): when the learner was last
                # active, also for statements sent late or backfilled.
                sa.Column("last_activity_us", sa.BigInteger, nullable=False),
            ),
        ),
    )

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        return (RowRef(TABLE, (event.tenant, event.stream)),)

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        statement: dict[str, Any] = event.data()["statement"]
        row = state.get(TABLE, (event.tenant, event.stream))
        before: dict[str, Any] = dict(row) if row is not None else {
            "statements": 0, "voiding": 0, "first_stored_us": event.recorded_us, "last_activity_us": 0,
        }  # fmt: skip
        return (
            Put(
                TABLE,
                (event.tenant, event.stream),
                {
                    "statements": before["statements"] + 1,
                    "voiding": before["voiding"] + (event.event_type == STATEMENT_VOIDED),
                    "first_stored_us": before["first_stored_us"],
                    "last_stored_us": event.recorded_us,
                    "last_verb": statement["verb"]["id"],
                    "last_statement": statement["id"],
                    "last_activity_us": max(
                        before["last_activity_us"], statement_time_us(statement, event.recorded_us)
                    ),
                },
            ),
        )


def default_projections() -> list[Any]:
    """The projections ``proficio project`` and ``proficio serve`` run."""
    from .competency import CompetencyEvidence, CompetencyReference, Frameworks
    from .pacing import PacingReferenceView
    from .roster import Roster, StudentGroups

    return [LearnerActivity(), Frameworks(), CompetencyEvidence(), CompetencyReference(), PacingReferenceView(),
            Roster(), StudentGroups()]  # fmt: skip
