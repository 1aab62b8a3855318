"""The learner_activity fold, pure: no database, no clock."""

from __future__ import annotations

import copy

from proficio_events import StoredEvent
from proficio_projector import LearnerActivity, MemoryState, Put, fold

from .support import statement_event


def stored(position: int, learner: int, n: int, *, voiding: bool = False, recorded: int = 0) -> StoredEvent:
    new = statement_event(learner, n, voiding=voiding)
    return StoredEvent(
        position, "t", new.stream, n + 1, new.event_type, 1, recorded or 1000 + position, new.key, None,
        new.payload, None, None, b"", b"",
    )  # fmt: skip


def test_counts_statements_and_voiding_per_learner() -> None:
    events = [stored(1, 1, 0), stored(2, 2, 1), stored(3, 1, 2), stored(4, 1, 3, voiding=True)]

    state = fold(LearnerActivity(), events)

    one = state.get("learners", ("t", "learner:1"))
    two = state.get("learners", ("t", "learner:2"))
    assert one is not None
    assert two is not None
    assert (one["statements"], one["voiding"], one["first_stored_us"], one["last_stored_us"]) == (3, 1, 1001, 1004)
    assert one["last_verb"] == "http://adlnet.gov/expapi/verbs/voided"
    assert (two["statements"], two["voiding"]) == (1, 0)


def test_apply_reads_only_what_it_declares_and_does_not_mutate_state() -> None:
    projection = LearnerActivity()
    event = stored(7, 3, 0)
    state = MemoryState()
    state.set("learners", ("t", "learner:3"), {"tenant": "t", "learner": "learner:3", "statements": 4, "voiding": 0,
                                                "first_stored_us": 5, "last_stored_us": 6, "last_verb": None,
                                                "last_statement": None, "last_activity_us": 9})  # fmt: skip
    before = copy.deepcopy(state.rows)

    changes = projection.apply(state, event)

    assert [(r.table, r.key) for r in projection.reads(event)] == [("learners", ("t", "learner:3"))]
    assert state.rows == before
    assert len(changes) == 1
    change = changes[0]
    assert isinstance(change, Put)
    assert change.values["statements"] == 5
    assert change.values["first_stored_us"] == 5
    assert change.values["last_activity_us"] == max(9, event.recorded_us)  # the statement has no timestamp


def test_the_same_events_fold_to_the_same_view() -> None:
    events = [stored(p, p % 4, p) for p in range(1, 200)]
    assert fold(LearnerActivity(), events).rows == fold(LearnerActivity(), list(events)).rows
