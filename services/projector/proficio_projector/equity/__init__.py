"""Equity views' disclosure control: small-n suppression, complementary suppression and top/bottom coding of
aggregate tables per audience, with the presets of competency-domain.md section 6 and per-tenant rules."""

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
    "CA",
    "CO",
    "DE",
    "PRESETS",
    "UT",
    "WI",
    "Z_95",
    "AggregateTableError",
    "Audience",
    "Cell",
    "CellKey",
    "CellView",
    "CodingBand",
    "MaskedSum",
    "MetricView",
    "Partition",
    "PartitionKind",
    "SuppressedTable",
    "SuppressionReason",
    "SuppressionRules",
    "SuppressionRulesError",
    "gap",
    "suppress",
    "wilson_ci95",
]
