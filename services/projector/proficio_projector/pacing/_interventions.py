"""The intervention queue of a section: who needs help first, and why (competency-domain.md section 4).

Learners are ranked by how many required competencies are past their planned week, then by their stalled
prerequisites weighted by what those block (each stalled competency counts 1 plus every competency that
follows it through ``precedes``, transitively), then by the school days left to the target. Learners
with nothing to act on (not behind, not stalled, not disengaged; or done with the plan) are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ._pace import Pace


@dataclass(frozen=True)
class Intervention:
    learner: str
    plan: str
    rank: int
    behind: int
    stalled: tuple[str, ...]
    #: Each stalled competency, 1 plus what it blocks.
    blocked_weight: int
    school_days_to_target: int
    pace_status: str
    disengaged: bool
    reasons: tuple[str, ...]


def dependants(precedes: Mapping[str, Sequence[str]], competency: str) -> set[str]:
    """Every competency that ``competency`` precedes, directly or through others."""
    found: set[str] = set()
    todo = list(precedes.get(competency, ()))
    while todo:
        c = todo.pop()
        if c not in found and c != competency:
            found.add(c)
            todo.extend(precedes.get(c, ()))
    return found


def intervention_queue(
    paces: Mapping[str, Pace],
    precedes: Mapping[str, Sequence[str]],
    school_days_to_target: int,
    label: Callable[[str], str] = str,
) -> list[Intervention]:
    """The learners to see first, with the reasons (one plan; ``paces`` by learner)."""
    rows = []
    for learner, p in paces.items():
        if p.remaining <= 0 or not (p.behind or p.stalled or p.disengaged or p.stalled_learner or p.status == "behind"):
            continue
        blocks = {c: len(dependants(precedes, c)) for c in p.stalled}
        weight = sum(1 + n for n in blocks.values())
        reasons = []
        if p.behind:
            reasons.append(f"{len(p.behind)} required competenc{'y' if len(p.behind) == 1 else 'ies'} past the "
                           f"planned week ({', '.join(label(c) for c in p.behind[:5])})")  # fmt: skip
        for c, n in sorted(blocks.items(), key=lambda item: (-item[1], item[0])):
            reasons.append(f"stalled on {label(c)}" + (f", which {n} others build on" if n else ""))
        if p.status == "behind":
            reasons.append(f"{p.pct_mastered}% mastered where {p.expected_pct}% is expected by now")
        if p.disengaged:
            reasons.append(f"no activity since {p.last_activity.isoformat() if p.last_activity else 'the start'}")
        elif p.stalled_learner:
            reasons.append("active but no new mastery in the last 3 active weeks")
        reasons.append(f"{school_days_to_target} school days to the target")
        rows.append((len(p.behind), weight, learner, p, tuple(reasons)))
    rows.sort(key=lambda r: (-r[0], -r[1], r[2]))
    return [
        Intervention(
            learner, p.plan, n + 1, behind, p.stalled, weight, school_days_to_target, p.status, p.disengaged, reasons
        )
        for n, (behind, weight, learner, p, reasons) in enumerate(rows)
    ]
