"""Equity views: groups of students against all students per school or district, plan or competency, with
small-n suppression, complementary suppression and top/bottom coding applied per audience when the view is
built (presets of competency-domain.md section 6 and per-tenant rules); and the refresher that builds them
from per-learner facts."""

from ._aggregate import (
    ALL,
    DISTRICT,
    FACTORS,
    UNASSIGNED,
    UNKNOWN,
    RunningCells,
    ScopeTable,
    school_of,
    scope_tables,
)
from ._facts import Fact, learner_facts
from ._refresh import EquityRefresher, RefreshReport, cell_rows
from ._rules import CA, CO, DE, PRESETS, UT, WI, CodingBand, SuppressionRules, SuppressionRulesError
from ._suppression import (
    Z_95,
    AggregateTableError,
    Audience,
    Cell,
    CellKey,
    CellView,
    MaskedSum,
    MetricView,
    Partition,
    PartitionKind,
    SuppressedTable,
    SuppressionReason,
    gap,
    suppress,
    wilson_ci95,
)

__all__ = [
    "ALL",
    "CA",
    "CO",
    "DE",
    "DISTRICT",
    "FACTORS",
    "PRESETS",
    "UNASSIGNED",
    "UNKNOWN",
    "UT",
    "WI",
    "Z_95",
    "AggregateTableError",
    "Audience",
    "Cell",
    "CellKey",
    "CellView",
    "CodingBand",
    "EquityRefresher",
    "Fact",
    "MaskedSum",
    "MetricView",
    "Partition",
    "PartitionKind",
    "RefreshReport",
    "RunningCells",
    "ScopeTable",
    "SuppressedTable",
    "SuppressionReason",
    "SuppressionRules",
    "SuppressionRulesError",
    "cell_rows",
    "gap",
    "learner_facts",
    "school_of",
    "scope_tables",
    "suppress",
    "wilson_ci95",
]
