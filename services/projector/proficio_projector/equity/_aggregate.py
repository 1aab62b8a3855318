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
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

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
        ordered = dict(sorted(members.items()))  # the partitions in key order: whatever order the facts came in
        cells = tuple(_cell(key, found, is_plan) for key, found in ordered.items())
        tables.append(ScopeTable(scope, cells, tuple(_partitions(scope, ordered, factors))))
    return tables


class _Totals:
    """One cell's running aggregate: n, the counts, and the multisets its medians are taken from."""

    __slots__ = ("mastered", "n", "on_track", "pcts", "stalled", "velocities")

    def __init__(self) -> None:
        self.n = self.mastered = self.stalled = self.on_track = 0
        self.velocities: Counter[float] = Counter()
        self.pcts: Counter[float] = Counter()


class RunningCells:
    """``scope_tables`` kept up to date fact by fact: ``add`` a learner's new fact, ``discard`` the one it replaces,
    and ``tables()`` gives what ``scope_tables`` gives for the facts held, cell for cell.

    A refresh round changes the facts of the learners with new evidence only; the cells of 50,000 learners'
    ~450,000 facts were rebuilt on every round (~3 s). Kept this way a round costs in proportion to the facts that
    changed. Medians are taken from multisets of values (few distinct: velocities and percentages are rounded), so
    they are exact. Built for one day's student groups and schools: a change in those builds it again.
    """

    def __init__(
        self,
        groups: Mapping[str, Mapping[str, str]],
        schools: Mapping[str, Sequence[str]],
        factors: Sequence[str] = FACTORS,
    ) -> None:
        self.groups, self.schools, self.factors = groups, schools, tuple(factors)
        self._slots: dict[str, tuple[tuple[str, str, str], ...]] = {}
        #: scope -> (level, factor, value) -> totals
        self._cells: dict[str, dict[tuple[str, str, str], _Totals]] = {}

    def _slots_of(self, learner: str) -> tuple[tuple[str, str, str], ...]:
        found = self._slots.get(learner)
        if found is None:
            mine = self.groups.get(learner, {})
            found = tuple(
                slot
                for level in (DISTRICT, school_of(self.schools.get(learner, ())))
                for slot in ((level, ALL, ALL), *((level, f, mine.get(f, UNKNOWN)) for f in self.factors))
            )
            self._slots[learner] = found
        return found

    def add(self, fact: Fact) -> None:
        self._change(fact.scope, self._slots_of(fact.learner), fact, 1)

    def discard(self, fact: Fact) -> None:
        """Take back a fact added before."""
        self._change(fact.scope, self._slots_of(fact.learner), fact, -1)

    def add_all(self, facts: Iterable[Fact]) -> None:
        """``add`` each of ``facts``: those alike (same scope, same cells, same values) at once. A whole district's
        facts fall into a few thousand kinds: building its cells takes a fraction of a second, not seconds."""
        alike: Counter[tuple[str, tuple[tuple[str, str, str], ...], bool, bool, bool | None, Decimal | None, Decimal]]
        alike = Counter(
            (f.scope, self._slots_of(f.learner), f.mastered, f.stalled, f.on_track, f.velocity, f.pct_mastered)
            for f in facts
        )
        for (scope, slots, mastered, stalled, on_track, velocity, pct), count in alike.items():
            self._change(scope, slots, Fact("", scope, pct, mastered, on_track, stalled, velocity), count)

    def _change(self, scope_name: str, slots: tuple[tuple[str, str, str], ...], fact: Fact, by: int) -> None:
        scope = self._cells.get(scope_name)
        if scope is None:
            scope = self._cells[scope_name] = {}
        is_plan = scope_name.startswith("plan:")
        velocity = float(fact.velocity) if is_plan and fact.velocity is not None else None
        pct = float(fact.pct_mastered) if is_plan else None
        mastered, stalled, on_track = by * fact.mastered, by * fact.stalled, by * bool(fact.on_track)
        for slot in slots:
            totals = scope.get(slot)
            if totals is None:
                totals = scope[slot] = _Totals()
            totals.n += by
            totals.mastered += mastered
            totals.stalled += stalled
            if is_plan:
                totals.on_track += on_track
                if velocity is not None:
                    _count(totals.velocities, velocity, by)
                _count(totals.pcts, pct, by)
            if totals.n == 0:
                del scope[slot]
        if not scope:
            del self._cells[scope_name]

    def tables(self) -> list[ScopeTable]:
        tables = []
        for scope in sorted(self._cells):
            is_plan = scope.startswith("plan:")
            members: dict[CellKey, _Totals] = {(level, scope, factor, value): totals
                       for (level, factor, value), totals in sorted(self._cells[scope].items())}  # fmt: skip
            cells = tuple(_cell_of(key, totals, is_plan) for key, totals in members.items())
            tables.append(ScopeTable(scope, cells, tuple(_partitions(scope, members, self.factors))))
        return tables


def _count(values: Counter[float], value: float | None, by: int) -> None:
    assert value is not None
    left = values[value] + by
    if left:
        values[value] = left
    else:
        del values[value]


def _median_of(values: Counter[float]) -> float | None:
    """``statistics.median`` of the multiset (the middle value, or the mean of the two middle ones)."""
    total = sum(values.values())
    if not total:
        return None
    low_at, high_at = (total - 1) // 2, total // 2
    low = high = None
    seen = 0
    for value in sorted(values):
        seen += values[value]
        if low is None and seen > low_at:
            low = value
        if seen > high_at:
            high = value
            break
    assert low is not None
    assert high is not None
    return low if low_at == high_at else (low + high) / 2


def _cell_of(key: CellKey, totals: _Totals, is_plan: bool) -> Cell:
    counts = {"mastered": totals.mastered, "stalled": totals.stalled}
    medians: dict[str, float | None] = {}
    if is_plan:
        counts["on_track"] = totals.on_track
        medians["velocity"] = _median_of(totals.velocities)
        medians["pct_mastered"] = _median_of(totals.pcts)
    return Cell(key, totals.n, counts, medians)


def _cell(key: CellKey, facts: Sequence[Fact], is_plan: bool) -> Cell:
    counts = {"mastered": sum(f.mastered for f in facts), "stalled": sum(f.stalled for f in facts)}
    medians: dict[str, float | None] = {}
    if is_plan:
        counts["on_track"] = sum(bool(f.on_track) for f in facts)
        velocities = [float(f.velocity) for f in facts if f.velocity is not None]
        medians["velocity"] = statistics.median(velocities) if velocities else None
        medians["pct_mastered"] = statistics.median(float(f.pct_mastered) for f in facts) if facts else None
    return Cell(key, len(facts), counts, medians)


def _partitions(scope: str, members: Mapping[CellKey, object], factors: Sequence[str]) -> list[Partition]:
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
