"""Small-n suppression of one aggregate table of an equity view (competency-domain.md section 6).

A table is a set of cells, each a group of students somewhere (a school's English learners, a district's students
with disabilities, a school's all-students): its n, how many of its students meet each counted metric (mastered, on
track, stalled), and the medians of the others (velocity). Partitions say which cells sum to which: the categories of
one factor within a school sum to the school's all-students cell; a district's schools sum to the district. For the
suppressed audiences (cross-school, board, public) ``suppress`` decides, deterministically:

1. **Primary:** a cell's n is hidden when it is under the rules' ``min_n``; a metric's value is hidden when its count
   or the complement (n - count) is from 1 to ``min_count - 1`` (n stays shown: "percentages hidden").
2. **Top/bottom coding:** a shown percentage in a coding band's extremes is published as a label ("≥95%").
3. **Complementary:** in every partition, a hidden n (or count) that the published cells give back is protected
   by hiding the next-smallest cell (or value) of that partition, until no partition gives one back: not when
   exactly one member is hidden (a published total minus the published others), not when the hidden parts sum to
   0 (each is then 0), and with ``masked_sum`` not when their sum is itself small. Then an exact linear-algebra
   check over all partitions at once (a hidden value pinned down by combining several partitions' totals) hides
   more until nothing hidden is determined. Counts get the same treatment; top/bottom-coded counts are hidden
   values too, so coding cannot be undone by subtraction either.

Staff with a legitimate educational interest see every cell exactly. Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

from ._rules import SuppressionRules

#: A cell's identity in its table, e.g. ("school-12", "ell", "yes"); also the deterministic tie-break.
CellKey = tuple[str, ...]

#: The 97.5th percentile of the standard normal distribution (two-sided 95 %).
Z_95 = 1.959963984540054


class Audience(enum.StrEnum):
    #: Staff with a legitimate educational interest in these students: nothing is hidden.
    STAFF = "staff"
    #: Staff looking across schools, the board, and the public: the suppressed view.
    CROSS_SCHOOL = "cross_school"
    BOARD = "board"
    PUBLIC = "public"

    @property
    def suppressed(self) -> bool:
        return self is not Audience.STAFF


class SuppressionReason(enum.StrEnum):
    PRIMARY = "primary"
    COMPLEMENTARY = "complementary"
    TOP_BOTTOM = "top_bottom"


class PartitionKind(enum.StrEnum):
    #: The categories of one factor within one unit (a school's EL / non-EL students).
    CATEGORIES = "categories"
    #: Units within an aggregate (a district's schools); WI hides the aggregate rather than a second unit.
    UNITS = "units"


class AggregateTableError(ValueError):
    """A table that cannot be suppressed safely as given (unknown keys, partitions that do not sum, ...)."""


@dataclass(frozen=True)
class Cell:
    """One group's aggregate: n students, of whom ``counts[metric]`` meet each counted metric; ``medians`` are
    published as they are when n is (None: no value, e.g. nobody has a velocity yet)."""

    key: CellKey
    n: int
    counts: Mapping[str, int] = field(default_factory=dict)
    medians: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_key(self.key)
        if not _is_count(self.n):
            raise AggregateTableError(f"cell {self.key}: n must be an integer >= 0, not {self.n!r}")
        for metric, count in self.counts.items():
            if not _is_count(count) or count > self.n:
                raise AggregateTableError(f"cell {self.key}: {metric!r} must be 0 to {self.n}, not {count!r}")
        for metric, value in self.medians.items():
            if value is not None and (not isinstance(value, int | float) or not math.isfinite(value)):
                raise AggregateTableError(f"cell {self.key}: median {metric!r} must be a finite number or None")
        if shared := sorted(self.counts.keys() & self.medians.keys()):
            raise AggregateTableError(f"cell {self.key}: {shared} cannot be both a count and a median")


@dataclass(frozen=True)
class Partition:
    """``total`` is exactly the sum of ``parts`` (in n and in every count): the parts do not overlap and cover it."""

    total: CellKey
    parts: tuple[CellKey, ...]
    kind: PartitionKind = PartitionKind.CATEGORIES

    def __post_init__(self) -> None:
        for key in (self.total, *self.parts):
            _check_key(key)
        object.__setattr__(self, "parts", tuple(sorted(self.parts)))  # any order in, one order kept
        if not self.parts:
            raise AggregateTableError(f"partition of {self.total}: no parts")
        if len(set(self.parts)) != len(self.parts):
            raise AggregateTableError(f"partition of {self.total}: a part is listed twice")
        if self.total in self.parts:
            raise AggregateTableError(f"partition of {self.total}: the total is one of its own parts")

    @property
    def members(self) -> tuple[CellKey, ...]:
        return (self.total, *self.parts)


@dataclass(frozen=True)
class MetricView:
    """One metric of one cell as an audience sees it. ``value`` is the percentage (0-100) of a counted metric or
    the median, None unless shown exactly (or when there is none: an empty cell, a median of nobody); ``ci95`` is
    the Wilson 95 % interval of a shown percentage; ``hidden`` says why not shown and ``label`` what to show
    instead ("*", "≥95%")."""

    value: float | None
    count: int | None = None
    ci95: tuple[float, float] | None = None
    hidden: SuppressionReason | None = None
    label: str | None = None


@dataclass(frozen=True)
class CellView:
    """One cell as an audience sees it: n (None when hidden, with the reason and the label), and its metrics."""

    key: CellKey
    n: int | None
    metrics: Mapping[str, MetricView]
    hidden: SuppressionReason | None = None
    label: str | None = None


@dataclass(frozen=True)
class MaskedSum:
    """The cells of a partition hidden from the public, summed (California's "All Masked Values"); published only
    where a shown total makes it derivable anyway. A count is None where the shown cells do not give it."""

    total: CellKey
    parts: tuple[CellKey, ...]
    n: int
    counts: Mapping[str, int | None]


@dataclass(frozen=True)
class SuppressedTable:
    """What ``suppress`` decided, per audience; ``view(audience)`` picks the right one."""

    rules: SuppressionRules
    #: Every cell exactly, for staff with a legitimate educational interest.
    staff: Mapping[CellKey, CellView]
    #: Every cell as the suppressed audiences (cross-school, board, public) may see it.
    public: Mapping[CellKey, CellView]
    #: With ``rules.masked_sum``: each partition's hidden parts summed, for the suppressed audiences.
    masked_sums: tuple[MaskedSum, ...] = ()

    def view(self, audience: Audience) -> Mapping[CellKey, CellView]:
        return self.public if audience.suppressed else self.staff


def suppress(cells: Iterable[Cell], partitions: Iterable[Partition], rules: SuppressionRules) -> SuppressedTable:
    """What each audience sees of these cells. Every partition the published cells obey must be given: a
    relation left out is one the suppression cannot protect. Raises AggregateTableError on an inconsistent table."""
    table = _Table.build(cells, partitions, rules)
    n_space = _Space(
        values={key: cell.n for key, cell in table.cells.items()},
        complements=None,
        hidden={key: SuppressionReason.PRIMARY for key, cell in table.cells.items() if rules.n_is_small(cell.n)},
    )
    if rules.complementary:
        _protect(n_space, table)
    count_spaces = {metric: _count_space(metric, n_space.hidden, table) for metric in table.count_metrics}
    if rules.complementary:
        for space in count_spaces.values():
            _protect(space, table)
    public = {key: _public_view(cell, n_space.hidden, count_spaces, rules) for key, cell in table.cells.items()}
    return SuppressedTable(
        rules=rules,
        staff=MappingProxyType({key: _staff_view(cell) for key, cell in table.cells.items()}),
        public=MappingProxyType(public),
        masked_sums=_masked_sums(table, n_space.hidden, count_spaces) if rules.masked_sum else (),
    )


def gap(view: Mapping[CellKey, CellView], metric: str, group: CellKey, reference: CellKey) -> float | None:
    """metric(group) - metric(reference) in percentage points (or the median's unit), e.g. a group against all
    students or against the other students; None unless both sides are shown exactly in this view. "The other
    students" must be a cell of the table, in a partition with the group summing to all students, or its n and
    counts would follow from the two unprotected."""
    group_value = view[group].metrics[metric].value
    reference_value = view[reference].metrics[metric].value
    if group_value is None or reference_value is None:
        return None
    return group_value - reference_value


def wilson_ci95(count: int, n: int) -> tuple[float, float]:
    """The Wilson score 95 % interval of count / n, in percent (good at small n and near 0 or 100 %)."""
    if n <= 0 or not 0 <= count <= n:
        raise ValueError(f"a proportion needs 0 <= count <= n and n > 0, not {count} of {n}")
    proportion = count / n
    z_squared = Z_95 * Z_95
    denominator = 1 + z_squared / n
    centre = (proportion + z_squared / (2 * n)) / denominator
    half_width = Z_95 * math.sqrt(proportion * (1 - proportion) / n + z_squared / (4 * n * n)) / denominator
    # At 0 and at n the interval ends exactly at 0 % and 100 %; rounding would leave 99.99999999999999.
    low = 0.0 if count == 0 else max(0.0, centre - half_width) * 100
    high = 100.0 if count == n else min(1.0, centre + half_width) * 100
    return low, high


# --- the table -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    cells: Mapping[CellKey, Cell]
    #: Sorted, so that the order cells and partitions came in never changes the outcome.
    partitions: tuple[Partition, ...]
    containing: Mapping[CellKey, tuple[Partition, ...]]
    count_metrics: tuple[str, ...]
    rules: SuppressionRules

    @classmethod
    def build(cls, cells: Iterable[Cell], partitions: Iterable[Partition], rules: SuppressionRules) -> _Table:
        by_key: dict[CellKey, Cell] = {}
        for cell in cells:
            if cell.key in by_key:
                raise AggregateTableError(f"two cells have the key {cell.key}")
            by_key[cell.key] = cell
        ordered = dict(sorted(by_key.items()))
        count_metrics = _count_metrics(ordered.values())
        unique = sorted(set(partitions), key=lambda p: (p.total, p.parts, p.kind))
        containing: dict[CellKey, list[Partition]] = {}
        for partition in unique:
            _check_sums(partition, ordered, count_metrics)
            for key in partition.members:
                containing.setdefault(key, []).append(partition)
        return cls(
            cells=ordered,
            partitions=tuple(unique),
            containing={key: tuple(found) for key, found in containing.items()},
            count_metrics=count_metrics,
            rules=rules,
        )

    def preference(self, partition: Partition, key: CellKey) -> tuple[bool, bool, int, bool, CellKey]:
        """Which shown member of a partition to hide first: the smallest cell (an empty one last, since hiding
        it hides nothing), the total last, ties by key; WI's aggregate first in a partition of units."""
        n = self.cells[key].n
        is_total = key == partition.total
        aggregate_first = self.rules.prefer_aggregate_for_units and partition.kind is PartitionKind.UNITS and is_total
        return not aggregate_first, n == 0, n, is_total, key


def _count_metrics(cells: Iterable[Cell]) -> tuple[str, ...]:
    """The counted metrics of the table, which every cell must have (and the same medians)."""
    names = {(frozenset(cell.counts), frozenset(cell.medians)) for cell in cells}
    if len(names) > 1:
        raise AggregateTableError("every cell of a table must have the same counted and median metrics")
    return tuple(sorted(names.pop()[0])) if names else ()


def _check_sums(partition: Partition, cells: Mapping[CellKey, Cell], count_metrics: tuple[str, ...]) -> None:
    missing = [key for key in partition.members if key not in cells]
    if missing:
        raise AggregateTableError(f"partition of {partition.total}: no cell {missing[0]}")
    total = cells[partition.total]
    parts = [cells[key] for key in partition.parts]
    if sum(part.n for part in parts) != total.n:
        raise AggregateTableError(
            f"partition of {partition.total}: its parts hold {sum(part.n for part in parts)} students, not {total.n}"
        )
    for metric in count_metrics:
        counted = sum(part.counts[metric] for part in parts)
        if counted != total.counts[metric]:
            raise AggregateTableError(
                f"partition of {partition.total}: its parts count {counted} {metric!r}, not {total.counts[metric]}"
            )


# --- complementary suppression ---------------------------------------------------------------------------------


@dataclass
class _Space:
    """One additive quantity of every cell (n, or one metric's count) and which cells' values are hidden."""

    values: Mapping[CellKey, int]
    #: n - count for a count, whose sums are as derivable as the counts'; None for n itself.
    complements: Mapping[CellKey, int] | None
    hidden: dict[CellKey, SuppressionReason]

    @property
    def is_count(self) -> bool:
        return self.complements is not None


def _count_space(metric: str, hidden_n: Mapping[CellKey, SuppressionReason], table: _Table) -> _Space:
    """A metric's counts with their primary suppression and top/bottom coding (a coded count is hidden too)."""
    hidden: dict[CellKey, SuppressionReason] = {}
    for key, cell in table.cells.items():
        count = cell.counts[metric]
        # The most telling reason first: a small count is primary even in a cell hidden as a complement.
        if table.rules.count_is_small(count) or table.rules.count_is_small(cell.n - count):
            hidden[key] = SuppressionReason.PRIMARY
        elif key in hidden_n:
            hidden[key] = hidden_n[key]
        elif _coded_label(table.rules, count, cell.n) is not None:
            hidden[key] = SuppressionReason.TOP_BOTTOM
    return _Space(
        values={key: cell.counts[metric] for key, cell in table.cells.items()},
        complements={key: cell.n - cell.counts[metric] for key, cell in table.cells.items()},
        hidden=hidden,
    )


def _protect(space: _Space, table: _Table) -> None:
    """Hide values until no hidden one is derivable: partition by partition, then over all partitions at once."""
    while True:
        _protect_partitions(space, table)
        if not _protect_combinations(space, table):
            return


def _protect_partitions(space: _Space, table: _Table) -> None:
    changed = True
    while changed:
        changed = False
        for partition in table.partitions:
            key = _complement_for(partition, space, table)
            if key is not None:
                space.hidden[key] = SuppressionReason.COMPLEMENTARY
                changed = True


def _complement_for(partition: Partition, space: _Space, table: _Table) -> CellKey | None:
    """The cell to hide so that this partition gives no hidden value back, or None when it gives none."""
    hidden = [key for key in partition.members if key in space.hidden]
    if not hidden:
        return None
    if len(hidden) == 1:  # the published total minus the published others, or the published parts summed
        return _pick(partition, space, table, _anything)
    if partition.total in space.hidden:
        return None
    rules = table.rules
    is_small = rules.count_is_small if space.is_count else rules.n_is_small
    for values in (space.values, space.complements):
        if values is None:
            continue
        masked = sum(values[key] for key in hidden)
        if masked == 0 and values[partition.total] > 0:  # hidden parts summing to 0 are each 0
            return _pick(partition, space, table, _adds_to(values))
        if rules.masked_sum and is_small(masked):  # the masked sum is published, so it must pass the primary rule
            return _pick(partition, space, table, _adds_to(values, besides=partition.total))
    return None


def _anything(key: CellKey) -> bool:
    return True


def _adds_to(values: Mapping[CellKey, int], besides: CellKey | None = None) -> Callable[[CellKey], bool]:
    """Cells whose hiding changes a sum of hidden values (an empty one would not), other than ``besides``."""
    return lambda key: values[key] > 0 and key != besides


def _pick(partition: Partition, space: _Space, table: _Table, eligible: Callable[[CellKey], bool]) -> CellKey | None:
    shown = [key for key in partition.members if key not in space.hidden and eligible(key)]
    return min(shown, key=lambda key: table.preference(partition, key)) if shown else None


def _protect_combinations(space: _Space, table: _Table) -> bool:
    """Hide one more value if some hidden one is pinned down by the partitions together; False when none is."""
    determined = _determined(table.partitions, space.hidden.keys())
    if not determined:
        return False
    # Widen the search to every partition only if a determined value's own partitions are all hidden already.
    nearby = [partition for key in determined for partition in table.containing.get(key, ())]
    for partition in [*nearby, *table.partitions]:
        chosen = _pick(partition, space, table, _anything)
        if chosen is not None:
            space.hidden[chosen] = SuppressionReason.COMPLEMENTARY
            return True
    return False  # everything is hidden: the rest is what the partitions' own definitions force


def _determined(partitions: Iterable[Partition], hidden: Iterable[CellKey]) -> list[CellKey]:
    """The hidden cells whose value follows exactly from the published ones through the partitions' equations.

    Each partition is the equation total - sum(parts) = 0; moving the published values to the right leaves a
    linear system in the hidden ones. A hidden value is determined iff its unit vector lies in the row space of
    that system, i.e. iff its pivot row in the reduced row echelon form has no other entry. The elimination is
    fraction-free (integer rows divided by their gcd), which is exact and much faster than Fractions.
    """
    hidden_keys = set(hidden)
    pivots: dict[CellKey, dict[CellKey, int]] = {}
    for partition in partitions:
        row = {key: 1 if key == partition.total else -1 for key in partition.members if key in hidden_keys}
        for pivot, pivot_row in pivots.items():
            if pivot in row:  # pivot rows hold no other pivot column, so one pass reduces the row fully
                row = _eliminate(row, pivot_row, pivot)
        if not row:
            continue
        pivot = min(row)
        for other_pivot, other_row in pivots.items():
            if pivot in other_row:
                pivots[other_pivot] = _eliminate(other_row, row, pivot)
        pivots[pivot] = row
    return sorted(pivot for pivot, row in pivots.items() if len(row) == 1)


def _eliminate(row: Mapping[CellKey, int], pivot_row: Mapping[CellKey, int], pivot: CellKey) -> dict[CellKey, int]:
    """pivot_row[pivot]·row - row[pivot]·pivot_row, which has no pivot entry, divided by the gcd of its entries."""
    scale, factor = pivot_row[pivot], row[pivot]
    combined = {key: scale * value for key, value in row.items()}
    for key, value in pivot_row.items():
        combined[key] = combined.get(key, 0) - factor * value
    reduced = {key: value for key, value in combined.items() if value}
    divisor = math.gcd(*reduced.values())
    return {key: value // divisor for key, value in reduced.items()} if divisor > 1 else reduced


# --- what each audience sees -----------------------------------------------------------------------------------


def _coded_label(rules: SuppressionRules, count: int, n: int) -> str | None:
    band = rules.band_for(n) if n > 0 else None
    if band is None:
        return None
    percent = Fraction(100 * count, n)
    if percent >= Fraction(str(band.top)):
        return rules.top_label.format(percent=f"{band.top:g}")
    if percent <= Fraction(str(band.bottom)):
        return rules.bottom_label.format(percent=f"{band.bottom:g}")
    return None


def _shown_count(count: int, n: int) -> MetricView:
    if n == 0:
        return MetricView(value=None, count=0)
    return MetricView(value=100 * count / n, count=count, ci95=wilson_ci95(count, n))


def _staff_view(cell: Cell) -> CellView:
    metrics = {metric: _shown_count(count, cell.n) for metric, count in sorted(cell.counts.items())}
    metrics.update({metric: MetricView(value=value) for metric, value in sorted(cell.medians.items())})
    return CellView(key=cell.key, n=cell.n, metrics=MappingProxyType(metrics))


def _public_view(
    cell: Cell,
    hidden_n: Mapping[CellKey, SuppressionReason],
    count_spaces: Mapping[str, _Space],
    rules: SuppressionRules,
) -> CellView:
    metrics: dict[str, MetricView] = {}
    for metric, count in sorted(cell.counts.items()):
        reason = count_spaces[metric].hidden.get(cell.key)
        if reason is None:
            metrics[metric] = _shown_count(count, cell.n)
        elif reason is SuppressionReason.TOP_BOTTOM:
            metrics[metric] = MetricView(value=None, hidden=reason, label=_coded_label(rules, count, cell.n))
        else:
            metrics[metric] = MetricView(value=None, hidden=reason, label=rules.suppressed_label)
    n_reason = hidden_n.get(cell.key)
    for metric, value in sorted(cell.medians.items()):
        if n_reason is None:
            metrics[metric] = MetricView(value=value)
        else:
            metrics[metric] = MetricView(value=None, hidden=n_reason, label=rules.suppressed_label)
    if n_reason is None:
        return CellView(key=cell.key, n=cell.n, metrics=MappingProxyType(metrics))
    return CellView(
        key=cell.key, n=None, metrics=MappingProxyType(metrics), hidden=n_reason, label=rules.suppressed_label
    )


def _masked_sums(
    table: _Table, hidden_n: Mapping[CellKey, SuppressionReason], count_spaces: Mapping[str, _Space]
) -> tuple[MaskedSum, ...]:
    sums = []
    for partition in table.partitions:
        masked = tuple(key for key in partition.parts if key in hidden_n)
        if partition.total in hidden_n or not masked:
            continue
        counts: dict[str, int | None] = {}
        for metric, space in count_spaces.items():
            # Derivable (so publishable) only when the total's count and every shown part's count are published.
            known = [partition.total, *(key for key in partition.parts if key not in hidden_n)]
            derivable = not any(key in space.hidden for key in known)
            counts[metric] = sum(space.values[key] for key in masked) if derivable else None
        sums.append(
            MaskedSum(
                total=partition.total,
                parts=masked,
                n=sum(table.cells[key].n for key in masked),
                counts=MappingProxyType(counts),
            )
        )
    return tuple(sums)


def _check_key(key: object) -> None:
    if not isinstance(key, tuple) or not key or not all(isinstance(part, str) for part in key):
        raise AggregateTableError(f"a cell key must be a non-empty tuple of strings, not {key!r}")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
