"""Which competencies a statement gives evidence of, and how much (competency-domain.md section 2)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from proficio_projector.competency import competencies_named, evidence_from_statement, normalized_result

OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
TLA_COMPETENCY = "https://w3id.org/xapi/tla/activity-types/competency"
FRACTIONS = "https://proficio.example.org/case/CFItems/fractions"
RATIOS = "https://proficio.example.org/case/CFItems/ratios"
STORED = 1_795_000_000_000_000


def competency(iri: str, kind: str = OBJECTIVE) -> dict[str, Any]:
    return {"id": iri, "definition": {"type": kind}}


def statement(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "6F1C0D8E-0000-4000-8000-000000000001",
        "actor": {"mbox": "mailto:ada@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": "https://example.org/items/17"},
        "result": {"score": {"scaled": 0.8}, "success": True},
        "timestamp": "2026-11-20T09:30:00Z",
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"score": {"scaled": 0.8}}, (Decimal("0.8"), None)),
        ({"score": {"scaled": 1.4}, "success": True}, (Decimal(1), True)),  # clamped
        ({"score": {"scaled": -0.5}}, (Decimal(0), None)),
        ({"score": {"raw": 7, "min": 0, "max": 10}}, (Decimal("0.7"), None)),
        ({"score": {"raw": 15, "min": 10, "max": 20}, "success": False}, (Decimal("0.5"), False)),
        ({"score": {"raw": 3, "min": 5, "max": 5}, "success": True}, (Decimal(1), True)),  # no range: success
        ({"success": False}, (Decimal(0), False)),
        ({"completion": True}, None),
        ({"score": {"raw": 3}}, None),
    ],
)
def test_the_evidence_value_of_a_result(result: dict[str, Any], expected: tuple[Decimal, bool | None] | None) -> None:
    assert normalized_result({"result": result}) == expected


def test_competencies_come_from_the_object_and_from_parent_grouping_other_but_never_category() -> None:
    tagged = statement(
        object=competency(FRACTIONS),
        context={
            "contextActivities": {
                "parent": [{"id": "https://example.org/courses/math-7"}],  # a course, not a competency
                "grouping": [competency(RATIOS, TLA_COMPETENCY)],
                "other": [competency(FRACTIONS)],  # named twice: once
                "category": [competency("https://example.org/profile-as-objective")],
            }
        },
    )
    assert competencies_named(tagged) == [FRACTIONS, RATIOS]


def test_evidence_per_statement_and_competency_with_its_order() -> None:
    found = evidence_from_statement(
        statement(context={"contextActivities": {"other": [competency(FRACTIONS), competency(RATIOS)]}}), STORED
    )
    assert [(e.competency, e.norm, e.success, e.source) for e in found] == [
        (FRACTIONS, Decimal("0.8"), True, "statement"),
        (RATIOS, Decimal("0.8"), True, "statement"),
    ]
    assert {e.statement_id for e in found} == {"6f1c0d8e-0000-4000-8000-000000000001"}
    assert found[0].timestamp_us == 1_795_167_000_000_000  # 2026-11-20T09:30:00Z
    assert found[0].order == (1_795_167_000_000_000, STORED, "6f1c0d8e-0000-4000-8000-000000000001")
    assert found[0].points(Decimal(4)) == Decimal("3.2")


def test_alignments_give_evidence_for_untagged_statements() -> None:
    alignments = {"https://example.org/items/17": {RATIOS: Decimal("0.5")}}
    found = evidence_from_statement(statement(), STORED, alignments)
    assert [(e.competency, e.source, e.weight) for e in found] == [(RATIOS, "alignment", Decimal("0.5"))]
    assert evidence_from_statement(statement(), STORED) == []  # neither tagged nor aligned


def test_no_evidence_without_a_value_from_voiding_or_with_a_bad_timestamp_falls_back_to_stored() -> None:
    tagged = {"contextActivities": {"other": [competency(FRACTIONS)]}}
    assert evidence_from_statement(statement(context=tagged, result={"completion": True}), STORED) == []
    voiding = statement(verb={"id": "http://adlnet.gov/expapi/verbs/voided"},
                        object={"objectType": "StatementRef", "id": "x"}, context=tagged)  # fmt: skip
    assert evidence_from_statement(voiding, STORED) == []
    undated = evidence_from_statement(statement(context=tagged, timestamp=None), STORED)
    assert undated[0].timestamp_us == STORED
