"""Small-n suppression for the equity views (competency-domain.md section 6): the presets' worked examples, the
rules as tenant settings, and properties over random district tables (schools x factor categories, with their
margins), checked by code that shares nothing with the library's own: nothing hidden can be worked out from what
is published, everything under the primary rules is hidden, staff see everything, and the outcome is deterministic.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proficio_projector.equity import (
    CA,
    CO,
    DE,
    PRESETS,
    UT,
    WI,
    AggregateTableError,
    Audience,
    Cell,
    CellKey,
    CodingBand,
    Partition,
    PartitionKind,
    SuppressedTable,
    SuppressionReason,
    SuppressionRules,
    SuppressionRulesError,
    gap,
    suppress,
    wilson_ci95,
)

PRIMARY = SuppressionReason.PRIMARY
COMPLEMENTARY = SuppressionReason.COMPLEMENTARY
TOP_BOTTOM = SuppressionReason.TOP_BOTTOM
UNITS = PartitionKind.UNITS
COUNTED = ("mastered", "on_track")


def one(n: int, mastered: int | None = None, rules: SuppressionRules = CO) -> SuppressedTable:
    """A table of a single cell, with no partition."""
    counts = {} if mastered is None else {"mastered": mastered}
    return suppress([Cell(("school",), n, counts)], [], rules)


def breakdown(
    total: int,
    parts: Mapping[str, tuple[int, int]],
    rules: SuppressionRules,
    kind: PartitionKind = PartitionKind.CATEGORIES,
) -> SuppressedTable:
    """An all-students cell and its parts: name -> (n, mastered)."""
    cells = [Cell(("all",), total, {"mastered": sum(mastered for _, mastered in parts.values())})]
    cells += [Cell((name,), n, {"mastered": mastered}) for name, (n, mastered) in parts.items()]
    return suppress(cells, [Partition(("all",), tuple((name,) for name in parts), kind)], rules)


# --- worked examples per preset --------------------------------------------------------------------------------


def test_colorado_hides_fewer_than_16_students() -> None:
    hidden = one(15, 8).public[("school",)]
    assert (hidden.n, hidden.hidden, hidden.label) == (None, PRIMARY, "*")
    assert hidden.metrics["mastered"].value is None
    assert hidden.metrics["mastered"].hidden is PRIMARY
    shown = one(16, 8).public[("school",)]
    assert (shown.n, shown.hidden) == (16, None)
    assert shown.metrics["mastered"].value == 50.0
    assert shown.metrics["mastered"].count == 8


@pytest.mark.parametrize(
    ("mastered", "hidden"), [(0, False), (1, True), (3, True), (4, False), (16, False), (17, True), (20, False)]
)
def test_colorado_hides_counts_and_complements_under_4_but_keeps_n(mastered: int, hidden: bool) -> None:
    view = one(20, mastered).public[("school",)]
    assert view.n == 20
    assert (view.metrics["mastered"].hidden is PRIMARY) == hidden
    assert (view.metrics["mastered"].count is None) == hidden


def test_colorado_hides_a_second_school_so_the_district_total_gives_nothing_back() -> None:
    table = breakdown(152, {"a": (12, 6), "b": (40, 20), "c": (100, 50)}, CO, UNITS)
    assert table.public[("a",)].hidden is PRIMARY
    assert table.public[("b",)].hidden is COMPLEMENTARY  # the next-smallest
    assert table.public[("c",)].n == 100
    assert table.public[("all",)].n == 152


def test_delaware_hides_15_or_fewer_with_a_dash() -> None:
    assert one(15, 8, DE).public[("school",)].label == "-"
    assert one(16, 8, DE).public[("school",)].n == 16


@pytest.mark.parametrize(
    ("mastered", "label"), [(100, "≥95%"), (97, "≥95%"), (95, "≥95%"), (94, None), (6, None), (5, "≤5%"), (0, "≤5%")]
)
def test_delaware_codes_95_percent_and_over_and_5_percent_and_under(mastered: int, label: str | None) -> None:
    metric = one(100, mastered, DE).public[("school",)].metrics["mastered"]
    assert metric.label == label
    if label is None:
        assert metric.value == mastered
    else:
        assert (metric.value, metric.count, metric.ci95, metric.hidden) == (None, None, None, TOP_BOTTOM)


def test_delaware_hides_a_percentage_the_others_would_give_back_and_keeps_its_n() -> None:
    # 39 of 40 English learners is coded "≥95%"; 60 - 21 would give the 39 back, so the other percentage goes too.
    table = breakdown(100, {"el": (40, 39), "non_el": (60, 21)}, DE)
    assert table.public[("el",)].metrics["mastered"].label == "≥95%"
    non_el = table.public[("non_el",)]
    assert (non_el.n, non_el.metrics["mastered"].hidden, non_el.metrics["mastered"].label) == (60, COMPLEMENTARY, "-")
    assert table.public[("all",)].metrics["mastered"].value == 60.0


def test_delaware_hides_more_when_every_coded_group_is_at_100_percent() -> None:
    # Both 100 % groups coded, the rest shown: 90 - 50 = 40 = 20 + 20 would say that both are exactly 100 %.
    table = breakdown(100, {"a": (20, 20), "b": (20, 20), "c": (60, 50)}, DE)
    assert table.public[("c",)].metrics["mastered"].hidden is COMPLEMENTARY
    assert_nothing_derivable(table, [Partition(("all",), (("a",), ("b",), ("c",)))])


def test_wisconsin_hides_5_or_fewer() -> None:
    assert one(5, rules=WI).public[("school",)].hidden is PRIMARY
    assert one(6, rules=WI).public[("school",)].n == 6


def test_wisconsin_two_category_factor_with_one_small_side_hides_both_and_reports_the_total() -> None:
    table = breakdown(64, {"el": (4, 2), "non_el": (60, 30)}, WI)
    assert table.public[("el",)].hidden is PRIMARY
    assert table.public[("non_el",)].hidden is COMPLEMENTARY
    assert table.public[("all",)].n == 64


def test_wisconsin_hides_the_district_rather_than_a_second_school() -> None:
    schools = {"a": (4, 2), "b": (50, 25), "c": (60, 30)}
    wisconsin = breakdown(114, schools, WI, UNITS)
    assert wisconsin.public[("all",)].hidden is COMPLEMENTARY
    assert (wisconsin.public[("b",)].n, wisconsin.public[("c",)].n) == (50, 60)
    colorado_style = breakdown(
        114, schools, SuppressionRules.from_mapping({"preset": "WI", "prefer_aggregate_for_units": False}), UNITS
    )
    assert colorado_style.public[("b",)].hidden is COMPLEMENTARY
    assert colorado_style.public[("all",)].n == 114


def test_california_shows_empty_cells_and_hides_1_to_9() -> None:
    empty = one(0, 0, CA).public[("school",)]
    assert (empty.n, empty.hidden, empty.metrics["mastered"].value) == (0, None, None)
    assert one(9, 4, CA).public[("school",)].hidden is PRIMARY
    assert one(10, 4, CA).public[("school",)].n == 10


def test_california_publishes_all_masked_values_and_masks_until_their_sum_passes() -> None:
    table = breakdown(100, {"a": (5, 1), "b": (3, 2), "c": (40, 20), "d": (52, 30)}, CA)
    assert [table.public[(name,)].hidden for name in "abcd"] == [PRIMARY, PRIMARY, COMPLEMENTARY, None]
    (masked,) = table.masked_sums
    assert (masked.total, masked.parts, masked.n, dict(masked.counts)) == (
        ("all",),
        (("a",), ("b",), ("c",)),
        48,
        {"mastered": 23},
    )


def test_california_masks_a_second_group_when_one_is_masked() -> None:
    table = breakdown(60, {"a": (4, 1), "c": (20, 10), "d": (36, 30)}, CA)
    assert [table.public[(name,)].hidden for name in "acd"] == [PRIMARY, COMPLEMENTARY, None]
    assert [(m.n, m.counts["mastered"]) for m in table.masked_sums] == [(24, 11)]
    assert breakdown(60, {"a": (4, 1), "c": (20, 10), "d": (36, 30)}, CO).masked_sums == ()


def test_utah_hides_10_or_fewer_as_n_under_10() -> None:
    assert one(10, 5, UT).public[("school",)].label == "N<10"
    assert one(11, 5, UT).public[("school",)].n == 11


@pytest.mark.parametrize(
    ("n", "mastered", "label"),
    [
        (15, 13, "≥80%"),  # 86.7 % in the 10-19 band
        (15, 11, None),  # 73.3 %
        (25, 2, "≤10%"),  # 8 % in the 20-39 band
        (50, 2, "≤5%"),  # 4 % in the 40-99 band
        (50, 47, None),  # 94 %
        (150, 147, "≥98%"),  # exactly 98 % in the 100-299 band
        (150, 146, None),  # 97.3 %
        (350, 347, "≥99%"),  # 99.1 % at 300 and over
        (350, 345, None),  # 98.6 %
        (350, 3, "≤1%"),  # 0.86 %
    ],
)
def test_utah_codes_by_band_of_n(n: int, mastered: int, label: str | None) -> None:
    assert one(n, mastered, UT).public[("school",)].metrics["mastered"].label == label


def test_a_value_pinned_down_only_by_several_partitions_together_is_protected() -> None:
    # Schools s1..s4 by categories c1..c4 with both margins. The small cells form two 4-cycles joined by s2 x c3:
    # every row and column holds 0 or >= 2 of them, yet rows s1+s2 minus columns c1+c2 give s2 x c3 exactly.
    small = {(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (3, 4), (4, 3), (4, 4), (2, 3)}
    sizes = {(s, c): 5 if (s, c) in small else 30 for s in range(1, 5) for c in range(1, 5)}
    cells, partitions = grid_table(sizes)
    table = suppress(cells, partitions, CO)
    assert {key for key, view in table.public.items() if view.hidden is PRIMARY} == {
        (f"s{s}", f"c{c}") for s, c in small
    }
    assert any(view.hidden is COMPLEMENTARY for view in table.public.values())
    assert_nothing_derivable(table, partitions)


def test_staff_see_every_cell_exactly() -> None:
    table = breakdown(64, {"el": (4, 2), "non_el": (60, 30)}, CO)
    staff = table.view(Audience.STAFF)
    assert [staff[(name,)].n for name in ("all", "el", "non_el")] == [64, 4, 60]
    assert staff[("el",)].metrics["mastered"].value == 50.0
    assert all(view.hidden is None for view in staff.values())
    for audience in (Audience.CROSS_SCHOOL, Audience.BOARD, Audience.PUBLIC):
        assert table.view(audience) is table.public


def test_gaps_only_when_both_sides_are_shown_exactly() -> None:
    cells = [
        Cell(("all",), 200, {"mastered": 120}, {"velocity": 1.5}),
        Cell(("a",), 130, {"mastered": 65}, {"velocity": 1.0}),
        Cell(("b",), 60, {"mastered": 54}, {"velocity": 1.75}),
        Cell(("c",), 10, {"mastered": 1}, {"velocity": None}),
    ]
    table = suppress(cells, [Partition(("all",), (("a",), ("b",), ("c",)))], CO)
    public = table.public
    assert gap(public, "mastered", ("a",), ("all",)) == pytest.approx(50 - 60)
    assert gap(public, "velocity", ("a",), ("all",)) == pytest.approx(-0.5)
    assert gap(public, "mastered", ("c",), ("all",)) is None  # c is under 16
    assert gap(public, "mastered", ("a",), ("b",)) is None  # b hidden as c's complement
    assert gap(table.staff, "mastered", ("c",), ("all",)) == pytest.approx(10 - 60)
    coded = suppress([Cell(("x",), 100, {"m": 97}), Cell(("y",), 100, {"m": 50})], [], DE).public
    assert gap(coded, "m", ("x",), ("y",)) is None


def test_wilson_interval() -> None:
    # 8 of 10: centre (0.8 + z²/20) / (1 + z²/10), half-width z·sqrt(0.016 + z²/400) / (1 + z²/10).
    assert wilson_ci95(8, 10) == pytest.approx((49.016, 94.332), abs=1e-3)
    assert wilson_ci95(0, 10) == pytest.approx((0.0, 27.753), abs=1e-3)
    assert wilson_ci95(10, 10) == pytest.approx((72.247, 100.0), abs=1e-3)
    assert wilson_ci95(0, 10)[0] == 0.0
    assert wilson_ci95(10, 10)[1] == 100.0  # exactly, not 99.99999999999999
    assert one(20, 10).public[("school",)].metrics["mastered"].ci95 == wilson_ci95(10, 20)
    with pytest.raises(ValueError, match="count"):
        wilson_ci95(3, 0)


def test_without_complementary_suppression_only_the_primary_rule_hides() -> None:
    rules = SuppressionRules.from_mapping({"preset": "CO", "complementary": False})
    table = breakdown(64, {"el": (4, 2), "non_el": (60, 30)}, rules)
    assert table.public[("non_el",)].n == 60


# --- rules as tenant settings ----------------------------------------------------------------------------------


def test_presets_are_those_of_the_domain_doc() -> None:
    assert [(rules.name, rules.min_n) for rules in PRESETS.values()] == [
        ("CO", 16),
        ("DE", 16),
        ("CA", 10),
        ("WI", 6),
        ("UT", 11),
    ]
    assert CO.min_count == 4
    assert not CA.n_is_small(0)
    assert CO.n_is_small(0)


def test_tenant_overrides_a_preset() -> None:
    rules = SuppressionRules.from_mapping({"preset": "CO", "min_n": 20, "suppressed_label": "n<20"})
    assert (rules.name, rules.min_n, rules.min_count, rules.suppressed_label) == (
        "CO with tenant overrides",
        20,
        4,
        "n<20",
    )
    assert SuppressionRules.from_mapping({"preset": "DE"}) is DE


def test_tenant_rules_without_a_preset() -> None:
    rules = SuppressionRules.from_mapping({"min_n": 11, "coding": [{"min_n": 0, "top": 90, "bottom": 10}]})
    assert rules.coding == (CodingBand(0, 90, 10),)
    assert one(20, 19, rules).public[("school",)].metrics["mastered"].label == "≥90%"


@pytest.mark.parametrize("rules", PRESETS.values(), ids=PRESETS.keys())
def test_rules_round_trip_through_settings(rules: SuppressionRules) -> None:
    assert SuppressionRules.from_mapping(rules.to_mapping()) == rules


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"preset": "CO", "min_m": 3}, r"unknown settings \['min_m'\]"),
        ({"preset": "NY"}, "preset must be one of"),
        ({"name": "x"}, "min_n is required"),
        ({"preset": "CO", "min_n": 0}, "min_n must be an integer >= 1"),
        ({"preset": "CO", "min_n": "16"}, "min_n must be an integer"),
        ({"preset": "CO", "min_n": True}, "min_n must be an integer"),
        ({"preset": "CO", "min_count": 0}, "min_count must be an integer >= 1"),
        ({"preset": "CO", "complementary": "yes"}, "complementary must be true or false"),
        (
            {"preset": "CO", "coding": [{"min_n": 0, "top": 5, "bottom": 95}]},
            r"coding\[0\]: .*bottom \(95\) must be below top",
        ),
        ({"preset": "CO", "coding": [{"min_n": 0, "top": 95}]}, r"coding\[0\] must have exactly"),
        (
            {"preset": "CO", "coding": [{"min_n": 9, "top": 95, "bottom": 5}, {"min_n": 9, "top": 99, "bottom": 1}]},
            "ascending",
        ),
        ({"preset": "CO", "coding": [{"min_n": 0, "top": 101, "bottom": 5}]}, "percentage from 0 to 100"),
        ({"preset": "CO", "top_label": ">=95%"}, r"top_label must be a string with \{percent\}"),
        ({"preset": "CO", "top_label": "≥{percent}{n}%"}, "no placeholder but"),
        ({"preset": "CO", "suppressed_label": ""}, "suppressed_label must be a non-empty string"),
    ],
)
def test_bad_settings_say_what_is_wrong(settings: dict[str, object], message: str) -> None:
    with pytest.raises(SuppressionRulesError, match=message):
        SuppressionRules.from_mapping(settings)


@pytest.mark.parametrize(
    ("cells", "partitions", "message"),
    [
        ([Cell(("a",), 5), Cell(("a",), 6)], [], "two cells have the key"),
        ([Cell(("all",), 5), Cell(("a",), 4)], [Partition(("all",), (("a",),))], "hold 4 students, not 5"),
        (
            [Cell(("all",), 5, {"m": 2}), Cell(("a",), 5, {"m": 1})],
            [Partition(("all",), (("a",),))],
            "count 1 'm', not 2",
        ),
        ([Cell(("all",), 5)], [Partition(("all",), (("b",),))], r"no cell \('b',\)"),
        ([Cell(("a",), 5, {"m": 1}), Cell(("b",), 5)], [], "same counted and median metrics"),
    ],
)
def test_tables_that_cannot_be_suppressed_safely_are_refused(
    cells: list[Cell], partitions: list[Partition], message: str
) -> None:
    with pytest.raises(AggregateTableError, match=message):
        suppress(cells, partitions, CO)


def test_cells_and_partitions_are_checked_when_made() -> None:
    with pytest.raises(AggregateTableError, match="must be 0 to 5"):
        Cell(("a",), 5, {"m": 6})
    with pytest.raises(AggregateTableError, match="non-empty tuple of strings"):
        Cell("a", 5)  # type: ignore[arg-type]
    with pytest.raises(AggregateTableError, match="one of its own parts"):
        Partition(("a",), (("a",), ("b",)))
    with pytest.raises(AggregateTableError, match="listed twice"):
        Partition(("a",), (("b",), ("b",)))


# --- properties over random district tables --------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    cells: list[Cell]
    partitions: list[Partition]


def grid_table(sizes: Mapping[tuple[int, int], int]) -> tuple[list[Cell], list[Partition]]:
    """Schools s.. by categories c.. of one factor, with the schools' and the district's margins (n only)."""
    schools = sorted({s for s, _ in sizes})
    categories = sorted({c for _, c in sizes})
    cells = [Cell((f"s{s}", f"c{c}"), n) for (s, c), n in sizes.items()]
    cells += [Cell((f"s{s}", "all"), sum(sizes[s, c] for c in categories)) for s in schools]
    cells += [Cell(("district", f"c{c}"), sum(sizes[s, c] for s in schools)) for c in categories]
    cells.append(Cell(("district", "all"), sum(sizes.values())))
    partitions = [
        Partition((unit, "all"), tuple((unit, f"c{c}") for c in categories))
        for unit in ["district", *(f"s{s}" for s in schools)]
    ]
    partitions += [
        Partition(("district", column), tuple((f"s{s}", column) for s in schools), UNITS)
        for column in ["all", *(f"c{c}" for c in categories)]
    ]
    return cells, partitions


@st.composite
def district_tables(draw: st.DrawFn) -> Table:
    """A district's schools by the categories of one or two factors, from random students' cells: every school's
    and the district's all-students and per-category cells, the factor partitions within each unit, the schools
    within the district per column, and sometimes a group's "not in the group" cell with its own partitions."""
    schools = [f"school-{index}" for index in range(draw(st.integers(1, 4)))]
    factor_sizes = draw(st.lists(st.integers(2, 4), min_size=1, max_size=2))
    combinations = list(itertools.product(*(range(size) for size in factor_sizes)))
    students: dict[tuple[str, tuple[int, ...]], tuple[int, dict[str, int]]] = {}
    for school, combination in itertools.product(schools, combinations):
        n = draw(st.one_of(st.integers(0, 6), st.integers(0, 40)))
        counts = {metric: draw(st.one_of(st.sampled_from([0, n]), st.integers(0, n))) for metric in COUNTED}
        students[school, combination] = (n, counts)
    columns: dict[tuple[str, str], list[tuple[int, ...]]] = {("all", "all"): combinations}
    for factor, size in enumerate(factor_sizes):
        for category in range(size):
            columns[f"f{factor}", f"c{category}"] = [combo for combo in combinations if combo[factor] == category]
    with_not_group = draw(st.booleans())
    if with_not_group:
        columns["f0", "not-c0"] = [combo for combo in combinations if combo[0] != 0]
    units = {"district": schools, **{school: [school] for school in schools}}
    cells = []
    for (unit, members), (column, combos) in itertools.product(units.items(), columns.items()):
        n = sum(students[school, combo][0] for school in members for combo in combos)
        counts = {m: sum(students[school, combo][1][m] for school in members for combo in combos) for m in COUNTED}
        cells.append(Cell((unit, *column), n, counts, {"velocity": n / 10 if n else None}))
    partitions = []
    for unit in units:
        for factor, size in enumerate(factor_sizes):
            partitions.append(
                Partition((unit, "all", "all"), tuple((unit, f"f{factor}", f"c{c}") for c in range(size)))
            )
        if with_not_group:
            partitions.append(Partition((unit, "all", "all"), ((unit, "f0", "c0"), (unit, "f0", "not-c0"))))
    for column in columns:
        partitions.append(Partition(("district", *column), tuple((school, *column) for school in schools), UNITS))
    return Table(cells, partitions)


random_rules = st.builds(
    SuppressionRules,
    name=st.just("random"),
    min_n=st.integers(1, 20),
    min_count=st.integers(1, 5),
    suppress_empty=st.booleans(),
    coding=st.sampled_from([(), DE.coding, UT.coding]),
    masked_sum=st.booleans(),
    prefer_aggregate_for_units=st.booleans(),
)
any_rules = st.one_of(st.sampled_from(list(PRESETS.values())), random_rules)
PROPERTIES = settings(max_examples=60, deadline=None)


def counted_metrics(table: SuppressedTable) -> list[str]:
    """The metrics that count students (staff see a count for them; medians have none)."""
    first = next(iter(table.staff.values()), None)
    return [] if first is None else [m for m, view in first.metrics.items() if view.count is not None]


def hidden_values(table: SuppressedTable) -> dict[str, set[CellKey]]:
    """Per quantity (n, then each counted metric), the cells whose exact value the public view does not give."""
    public = table.public
    hidden = {"n": {key for key, view in public.items() if view.n is None}}
    for metric in counted_metrics(table):
        hidden[metric] = {key for key, view in public.items() if view.metrics[metric].count is None}
    return hidden


def exact_values(table: SuppressedTable) -> dict[str, dict[CellKey, int]]:
    staff = table.staff
    values = {"n": {key: view.n or 0 for key, view in staff.items()}}
    for metric in counted_metrics(table):
        values[metric] = {key: view.metrics[metric].count or 0 for key, view in staff.items()}
        values[f"not {metric}"] = {key: values["n"][key] - values[metric][key] for key in staff}
    return values


def determined_by_combining(partitions: Sequence[Partition], hidden: set[CellKey]) -> set[CellKey]:
    """The hidden values that the partitions' equations pin down, however combined: those every null-space vector
    of the equations restricted to the hidden values leaves at 0 (dense Gauss-Jordan over the rationals)."""
    columns = sorted(hidden)
    matrix = [
        [Fraction(1 if key == p.total else -1 if key in p.parts else 0) for key in columns]
        for p in partitions
        if any(key in hidden for key in p.members)
    ]
    pivot_of_row: list[int] = []
    row = 0
    for column in range(len(columns)):
        found = next((r for r in range(row, len(matrix)) if matrix[r][column] != 0), None)
        if found is None:
            continue
        matrix[row], matrix[found] = matrix[found], matrix[row]
        matrix[row] = [value / matrix[row][column] for value in matrix[row]]
        for other in range(len(matrix)):
            if other != row and matrix[other][column] != 0:
                factor = matrix[other][column]
                matrix[other] = [a - factor * b for a, b in zip(matrix[other], matrix[row], strict=True)]
        pivot_of_row.append(column)
        row += 1
    free = [column for column in range(len(columns)) if column not in pivot_of_row]
    moved = set(free)
    for free_column in free:
        for r, pivot in enumerate(pivot_of_row):
            if matrix[r][free_column] != 0:
                moved.add(pivot)
    return {columns[column] for column in range(len(columns)) if column not in moved}


def assert_nothing_derivable(table: SuppressedTable, partitions: Sequence[Partition]) -> None:
    hidden = hidden_values(table)
    values = exact_values(table)
    for quantity, hidden_cells in hidden.items():
        for partition in partitions:
            members = [key for key in partition.members if key in hidden_cells]
            # A published total minus the published others, or the published parts summed.
            assert len(members) != 1, f"{quantity} of {members[0]} follows from the partition of {partition.total}"
            if partition.total in hidden_cells or not members:
                continue
            for name in (quantity, f"not {quantity}") if quantity != "n" else ("n",):
                # Hidden parts that sum to 0 under a non-empty published total are each 0.
                masked = sum(values[name][key] for key in members)
                assert masked > 0 or values[name][partition.total] == 0, f"{name} of {members} is 0"
        assert not determined_by_combining(partitions, hidden_cells), f"{quantity} is pinned down by the partitions"


@PROPERTIES
@given(district_tables(), any_rules)
def test_no_hidden_value_can_be_derived_from_the_published_ones(table: Table, rules: SuppressionRules) -> None:
    assert_nothing_derivable(suppress(table.cells, table.partitions, rules), table.partitions)


@st.composite
def school_by_category_grids(draw: st.DrawFn) -> Table:
    """Larger schools-by-categories grids (n only) with many small cells, where a hidden cell is sometimes pinned
    down only by several rows and columns together (a few in a hundred)."""
    schools, categories = draw(st.integers(3, 6)), draw(st.integers(3, 6))
    small_or_not = st.one_of(st.integers(1, 15), st.integers(16, 40))
    sizes = {(s, c): draw(small_or_not) for s in range(1, schools + 1) for c in range(1, categories + 1)}
    return Table(*grid_table(sizes))


@settings(max_examples=200, deadline=None)
@given(school_by_category_grids(), st.sampled_from(list(PRESETS.values())))
def test_no_hidden_cell_of_a_grid_can_be_derived_by_combining_rows_and_columns(
    table: Table, rules: SuppressionRules
) -> None:
    assert_nothing_derivable(suppress(table.cells, table.partitions, rules), table.partitions)


@PROPERTIES
@given(district_tables(), any_rules)
def test_every_cell_and_value_under_the_primary_rules_is_hidden(table: Table, rules: SuppressionRules) -> None:
    public = suppress(table.cells, table.partitions, rules).public
    for cell in table.cells:
        view = public[cell.key]
        if cell.n < rules.min_n and (cell.n > 0 or rules.suppress_empty):
            assert (view.n, view.hidden, view.label) == (None, PRIMARY, rules.suppressed_label)
            assert all(metric.value is None for metric in view.metrics.values())
            continue
        bands = [band for band in rules.coding if band.min_n <= cell.n]
        for metric, count in cell.counts.items():
            shown = view.metrics[metric]
            if 1 <= count < rules.min_count or 1 <= cell.n - count < rules.min_count:
                assert (shown.value, shown.hidden) == (None, PRIMARY)
            elif view.n is None:  # hidden as a complement, with all its values
                assert (shown.value, shown.hidden) == (None, COMPLEMENTARY)
            elif cell.n and bands and not bands[-1].bottom * cell.n < 100 * count < bands[-1].top * cell.n:
                assert (shown.value, shown.hidden) == (None, TOP_BOTTOM)
            elif shown.hidden is None and cell.n:
                assert shown.value == pytest.approx(100 * count / cell.n)


@PROPERTIES
@given(district_tables(), any_rules)
def test_staff_see_everything(table: Table, rules: SuppressionRules) -> None:
    staff = suppress(table.cells, table.partitions, rules).view(Audience.STAFF)
    for cell in table.cells:
        view = staff[cell.key]
        assert (view.n, view.hidden, view.label) == (cell.n, None, None)
        assert {m: v.count for m, v in view.metrics.items() if m in cell.counts} == cell.counts
        assert {m: v.value for m, v in view.metrics.items() if m in cell.medians} == cell.medians
        assert all(v.hidden is None and v.label is None for v in view.metrics.values())


@PROPERTIES
@given(district_tables(), any_rules, st.randoms(use_true_random=False))
def test_the_same_table_in_any_order_gives_the_same_result(
    table: Table, rules: SuppressionRules, shuffler: random.Random
) -> None:
    cells = shuffler.sample(table.cells, len(table.cells))
    partitions = [Partition(p.total, tuple(shuffler.sample(p.parts, len(p.parts))), p.kind) for p in table.partitions]
    partitions = shuffler.sample(partitions, len(partitions))
    first = suppress(table.cells, table.partitions, rules)
    again = suppress(cells, partitions, rules)
    assert again == first
    assert list(again.public) == list(first.public)
