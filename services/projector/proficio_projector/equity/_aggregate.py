"""From per-learner facts to the cells of the equity tables, and the partitions that tie them together.

One table per scope (a plan, or a competency). A cell is a group of learners at one level: the district,
or one school (each learner counted at her first school, or ``unassigned``), for one factor's value (or
all students). Cell keys are ``(level, scope, factor, value)``; all students are ``(level, scope, "all",
"all")``. Learners with no membership in a factor on the day count as ``unknown``, so a factor's values
always sum to all students; and a district is exactly the sum of its schools. Those two kinds of
partition are what complementary suppression protects.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ._facts import Fact
from ._suppression import Cell, CellKey, Partition, PartitionKind

ALL = "all"
DISTRICT = "district"
UNKNOWN = "unknown"
UNASSIGNED = "unassigned"
#: The factors of the equity views (competency-domain.md section 6: the ESSA subgroups and gender).
FACTORS = ("race_ethnicity", "economically_disadvantaged", "english_learner", "disability", "gender")


@dataclass(frozen=True)
class ScopeTable:
    scope: str
    cells: tuple[Cell, ...]
    partitions: tuple[Partition, ...]


def school_of(schools: Sequence[str]) -> str:
    return f"school:{sorted(schools)[0]}" if schools else f"school:{UNASSIGNED}"


def scope_tables(
    facts: Iterable[Fact],
    groups: Mapping[str, Mapping[str, str]],
    schools: Mapping[str, Sequence[str]],
    factors: Sequence[str] = FACTORS,
) -> list[ScopeTable]:
    """Every scope's cells and partitions (plans: mastered = done, on track, stalled, median velocity and
    percent mastered; competencies: mastered, stalled)."""
    by_scope: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        by_scope[fact.scope].append(fact)
    tables = []
    for scope in sorted(by_scope):
        members: dict[CellKey, list[Fact]] = defaultdict(list)
        for fact in by_scope[scope]:
            mine = groups.get(fact.learner, {})
            for level in (DISTRICT, school_of(schools.get(fact.learner, ()))):
                members[(level, scope, ALL, ALL)].append(fact)
                for factor in factors:
                    members[(level, scope, factor, mine.get(factor, UNKNOWN))].append(fact)
        is_plan = scope.startswith("plan:")
        cells = tuple(_cell(key, found, is_plan) for key, found in sorted(members.items()))
        tables.append(ScopeTable(scope, cells, tuple(_partitions(scope, members, factors))))
    return tables


def _cell(key: CellKey, facts: Sequence[Fact], is_plan: bool) -> Cell:
    counts = {"mastered": sum(f.mastered for f in facts), "stalled": sum(f.stalled for f in facts)}
    medians: dict[str, float | None] = {}
    if is_plan:
        counts["on_track"] = sum(bool(f.on_track) for f in facts)
        velocities = [float(f.velocity) for f in facts if f.velocity is not None]
        medians["velocity"] = statistics.median(velocities) if velocities else None
        medians["pct_mastered"] = statistics.median(float(f.pct_mastered) for f in facts) if facts else None
    return Cell(key, len(facts), counts, medians)


def _partitions(scope: str, members: Mapping[CellKey, Sequence[Fact]], factors: Sequence[str]) -> list[Partition]:
    levels = sorted({key[0] for key in members})
    schools = [level for level in levels if level != DISTRICT]
    found = []
    for level in levels:
        for factor in factors:
            parts = tuple(key for key in members if key[0] == level and key[2] == factor)
            if parts:
                found.append(Partition((level, scope, ALL, ALL), parts))
    # The district is its schools: every (factor, value) cell of the district sums its schools' cells.
    for key in members:
        if key[0] != DISTRICT:
            continue
        parts = tuple((school, *key[1:]) for school in schools if (school, *key[1:]) in members)
        if parts:
            found.append(Partition(key, parts, PartitionKind.UNITS))
    return found
