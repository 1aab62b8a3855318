"""Alignments and mastery policies as events: checked before they are recorded, folded into the reference
view, and the most specific policy winning."""

from __future__ import annotations

import pytest

from proficio_events import EventLog
from proficio_projector import fold
from proficio_projector.competency import (
    CompetencyReference,
    MasteryPolicy,
    Method,
    ReferenceDataError,
    define_alignment,
    policy_for,
    remove_alignment,
    set_policy,
    set_rollup_rule,
    set_section,
)
from tests.projector.support import whole_log

ITEM = "https://example.org/items/ratio-quiz"
RATIOS = "https://proficio.example.org/case/CFItems/ratios"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (lambda log: define_alignment(log, "t", "not an iri", RATIOS), "activity must be an IRI"),
        (lambda log: define_alignment(log, "t", ITEM, RATIOS, weight="1.5"), "weight must be in (0, 1]"),
        (lambda log: define_alignment(log, "t", ITEM, RATIOS, weight="heavy"), "weight must be a number"),
        (lambda log: set_policy(log, "t", "school:7", "highest"), "scope must be tenant"),
        (lambda log: set_policy(log, "t", "tenant", "wishful"), "mastery policy"),
        (lambda log: set_policy(log, "t", "tenant", "decaying_average", 20), "from 50 to 99"),
        (lambda log: set_rollup_rule(log, "t", "tenant", "most_children"), "rollup rule"),
        (lambda log: set_rollup_rule(log, "t", "tenant", "k_of_n", 0), "k must be 1 or more"),
        (lambda log: set_rollup_rule(log, "t", "school:7", "k_of_n", 2), "scope must be tenant"),
        (lambda log: set_section(log, "t", "7 A", "Math", ["learner:1"]), "section id"),
        (lambda log: set_section(log, "t", "7a", "Math", [""]), "learner ids"),
    ],
)
async def test_bad_reference_data_is_refused_and_nothing_recorded(log: EventLog, record: object, message: str) -> None:
    with pytest.raises(ReferenceDataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        await record(log)  # type: ignore[operator]
    assert await log.max_position() == 0


async def test_the_reference_view_follows_the_events(log: EventLog) -> None:
    await define_alignment(log, "t", ITEM, RATIOS, weight="0.5")
    await define_alignment(log, "t", ITEM, "https://proficio.example.org/case/CFItems/fractions")
    await remove_alignment(log, "t", ITEM, "https://proficio.example.org/case/CFItems/fractions")
    await set_policy(log, "t", "tenant", "latest")
    await set_policy(log, "t", "tenant", "decaying_average", 75)  # replaces the tenant's policy
    await set_policy(log, "t", f"competency:{RATIOS}", "n_mastery", 2)

    state = fold(CompetencyReference(), await whole_log(log))

    alignments = {k[1:]: v for k, v in state.rows["alignments"].items() if v is not None}
    assert alignments == {(ITEM, RATIOS): {"tenant": "t", "activity": ITEM, "competency": RATIOS, "weight": "0.5",
                                           "source": "api"}}  # fmt: skip
    policies = {k[1]: (v["method"], v["parameter"]) for k, v in state.rows["policies"].items() if v is not None}
    assert policies == {"tenant": ("decaying_average", 75), f"competency:{RATIOS}": ("n_mastery", 2)}


async def test_rollup_rules_and_section_rosters_follow_their_events(log: EventLog) -> None:
    await set_rollup_rule(log, "t", "framework:gp", "k_of_n", 2)
    await set_rollup_rule(log, "t", "framework:gp", "mean_of_children")  # replaces it
    await set_section(log, "t", "math-7a", "Math 7A", ["learner:2", "learner:1", "learner:2"])
    await set_section(log, "t", "math-7b", "Math 7B", ["learner:3"])
    await set_section(log, "t", "math-7a", "Math 7A", ["learner:1"])  # a new roster replaces the old one

    state = fold(CompetencyReference(), await whole_log(log))

    rules = {k[1]: (v["rule"], v["k"]) for k, v in state.rows["rollup_rules"].items() if v is not None}
    assert rules == {"framework:gp": ("mean_of_children", None)}
    sections = {k[1]: (v["title"], v["learners"]) for k, v in state.rows["sections"].items() if v is not None}
    assert sections == {"math-7a": ("Math 7A", '["learner:1"]'), "math-7b": ("Math 7B", '["learner:3"]')}


def test_the_most_specific_policy_wins() -> None:
    configured = {
        "tenant": MasteryPolicy(Method.LATEST),
        "framework:gp": MasteryPolicy(Method.AVERAGE),
        f"competency:{RATIOS}": MasteryPolicy(Method.N_MASTERY, 2),
    }
    default = MasteryPolicy()
    assert policy_for(configured, RATIOS, "gp", default).method is Method.N_MASTERY
    assert policy_for(configured, "other", "gp", default).method is Method.AVERAGE
    assert policy_for(configured, "other", None, default).method is Method.LATEST
    assert policy_for({}, "other", None, default) is default
