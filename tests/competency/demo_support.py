"""What the demo generator's output should become in the views, worked out from the statements themselves (not
through the projector's code), and how close a view comes to the hidden truth."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from proficio_cli._demo import Demo, LearnerTruth

VOIDED = "http://adlnet.gov/expapi/verbs/voided"
#: The sample framework's scale: points possible, and the first mastery level's points.
POINTS_POSSIBLE = Decimal(4)
MASTERY_POINTS = Decimal(3)
DAY_US = 86_400 * 1_000_000
#: The stated tolerance: the share of learner x competency pairs whose mastered/not mastered the view gets right,
#: and, of the pairs both call mastered, the share whose mastery date is within DATE_TOLERANCE_DAYS of the true one.
STATE_AGREEMENT = 0.85
DATE_AGREEMENT = 0.95
DATE_TOLERANCE_DAYS = 7


def expected_evidence(demo: Demo) -> dict[tuple[str, str], list[tuple[str, Decimal]]]:
    """(learner account name, competency) -> [(statement id, points)] in timestamp order: every statement that is
    not voiding or voided, once, for the competencies it names in ``other`` and those its activity is aligned to."""
    aligned: dict[str, list[str]] = {}
    for alignment in demo.alignments:
        aligned.setdefault(alignment["activity"], []).append(alignment["competency"])
    voided = {s["object"]["id"] for s in demo.statements if s["verb"]["id"] == VOIDED}
    seen: set[str] = set()
    found: dict[tuple[str, str], list[tuple[str, str, Decimal]]] = {}
    for statement in demo.statements:
        if statement["verb"]["id"] == VOIDED or statement["id"] in voided or statement["id"] in seen:
            continue
        seen.add(statement["id"])
        tagged = [a["id"] for a in statement.get("context", {}).get("contextActivities", {}).get("other", [])]
        points = Decimal(str(statement["result"]["score"]["scaled"])) * POINTS_POSSIBLE
        for competency in tagged + aligned.get(statement["object"]["id"], []):
            key = (statement["actor"]["account"]["name"], competency)
            found.setdefault(key, []).append((statement["timestamp"], statement["id"], points))
    return {key: [(sid, points) for _, sid, points in sorted(items)] for key, items in found.items()}


@dataclass(frozen=True)
class Recovery:
    pairs: int
    state_agreements: int
    both_mastered: int
    dates_within_tolerance: int

    @property
    def state_share(self) -> float:
        return self.state_agreements / self.pairs

    @property
    def date_share(self) -> float:
        return self.dates_within_tolerance / self.both_mastered

    def meets_tolerance(self) -> bool:
        return self.state_share >= STATE_AGREEMENT and self.date_share >= DATE_AGREEMENT

    def __str__(self) -> str:
        return (
            f"state right for {self.state_agreements}/{self.pairs} = {self.state_share:.3f} of the pairs; "
            f"date within {DATE_TOLERANCE_DAYS} days for {self.dates_within_tolerance}/{self.both_mastered} = "
            f"{self.date_share:.3f} of the pairs both call mastered"
        )


def recovery(truth: Iterable[LearnerTruth], views: Mapping[str, Mapping[str, tuple[bool, int | None]]]) -> Recovery:
    """How well views (learner -> competency -> (mastered, mastered_at_us)) recover the hidden truth."""
    pairs = agreements = both = within = 0
    for learner in truth:
        for competency in learner.competencies:
            mastered, mastered_at_us = views[learner.learner].get(competency.competency, (False, None))
            pairs += 1
            agreements += mastered == competency.mastered
            if mastered and competency.mastered:
                assert mastered_at_us is not None
                assert competency.mastered_at_us is not None
                both += 1
                within += abs(mastered_at_us - competency.mastered_at_us) <= DATE_TOLERANCE_DAYS * DAY_US
    return Recovery(pairs, agreements, both, within)
