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
