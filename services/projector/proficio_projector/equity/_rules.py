"""Disclosure-control rules as data: the thresholds of one jurisdiction's small-n rule, its presets, tenant overrides.

The presets follow the table in ``../shared/docs/competency-domain.md`` section 6; each preset's docstring below
names its source and every reading we had to make where the source is silent or ambiguous.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType


class SuppressionRulesError(ValueError):
    """Rules (or tenant overrides) that cannot be applied; the message names the setting and what it must be."""


@dataclass(frozen=True)
class CodingBand:
    """Top/bottom coding for cells of ``min_n`` students or more (up to the next band's ``min_n``).

    A shown percentage at or above ``top`` is published as the top label (e.g. "≥95%"), one at or below ``bottom``
    as the bottom label (e.g. "≤5%"); both bounds are inclusive so that the label is true of the hidden value.
    """

    min_n: int
    top: float
    bottom: float

    def __post_init__(self) -> None:
        if not _is_int(self.min_n) or self.min_n < 0:
            raise SuppressionRulesError(f"coding band min_n must be an integer >= 0, not {self.min_n!r}")
        for name in ("top", "bottom"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 100:
                raise SuppressionRulesError(f"coding band {name} must be a percentage from 0 to 100, not {value!r}")
        if not self.bottom < self.top:
            raise SuppressionRulesError(f"coding band bottom ({self.bottom}) must be below top ({self.top})")


@dataclass(frozen=True)
class SuppressionRules:
    """How aggregate cells are hidden from the suppressed audiences (everyone but staff with a legitimate interest).

    A cell's n is hidden (``primary``) when ``n < min_n`` (n = 0 only when ``suppress_empty``). A metric's value is
    hidden (``primary``) when its count, or its complement n - count, is from 1 to ``min_count - 1``; with
    ``min_count`` 1 there is no count rule. Shown percentages are top/bottom coded by the band for the cell's n.
    With ``complementary``, further cells (or values) are hidden until no hidden one can be worked out from the
    published cells of the partitions they sum in.
    """

    name: str
    #: Cells with fewer students are hidden (the primary rule).
    min_n: int
    #: Counts and complements (students meeting / not meeting a metric) from 1 to min_count - 1 hide the value.
    min_count: int = 1
    #: Whether a cell of 0 students falls under min_n too (California publishes empty cells).
    suppress_empty: bool = True
    #: Top/bottom coding bands by n, ascending by min_n; no bands, no coding.
    coding: tuple[CodingBand, ...] = ()
    #: Hide further cells until no hidden cell or value is derivable from the published ones.
    complementary: bool = True
    #: The hidden parts of a partition are published as their sum ("All Masked Values"), which must pass the
    #: primary rule itself; without this, two hidden parts suffice however small their sum.
    masked_sum: bool = False
    #: In a partition of units (schools in a district), hide the aggregate (the district) rather than a second
    #: unit when one unit is hidden.
    prefer_aggregate_for_units: bool = False
    #: What the suppressed audiences see in place of a hidden n or value.
    suppressed_label: str = "*"
    #: The labels of top- and bottom-coded values; {percent} is the band's bound.
    top_label: str = "≥{percent}%"
    bottom_label: str = "≤{percent}%"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SuppressionRulesError("name must be a non-empty string")
        if not _is_int(self.min_n) or self.min_n < 1:
            raise SuppressionRulesError(f"min_n must be an integer >= 1, not {self.min_n!r}")
        if not _is_int(self.min_count) or self.min_count < 1:
            raise SuppressionRulesError(f"min_count must be an integer >= 1 (1: no count rule), not {self.min_count!r}")
        for flag in ("suppress_empty", "complementary", "masked_sum", "prefer_aggregate_for_units"):
            if not isinstance(getattr(self, flag), bool):
                raise SuppressionRulesError(f"{flag} must be true or false, not {getattr(self, flag)!r}")
        if not isinstance(self.coding, tuple) or not all(isinstance(band, CodingBand) for band in self.coding):
            raise SuppressionRulesError("coding must be a tuple of CodingBand")
        starts = [band.min_n for band in self.coding]
        if starts != sorted(set(starts)):
            raise SuppressionRulesError(f"coding bands must have strictly ascending min_n, not {starts}")
        if not isinstance(self.suppressed_label, str) or not self.suppressed_label:
            raise SuppressionRulesError("suppressed_label must be a non-empty string")
        for name in ("top_label", "bottom_label"):
            _check_label(name, getattr(self, name))

    def band_for(self, n: int) -> CodingBand | None:
        """The coding band that applies to a cell of n students, if any."""
        applicable = [band for band in self.coding if band.min_n <= n]
        return applicable[-1] if applicable else None

    def n_is_small(self, n: int) -> bool:
        """Whether a cell of n students falls under the primary rule."""
        return n < self.min_n and (n > 0 or self.suppress_empty)

    def count_is_small(self, count: int) -> bool:
        """Whether a count of students (meeting a metric, or not meeting it) falls under the count rule."""
        return 1 <= count < self.min_count

    def to_mapping(self) -> dict[str, object]:
        """These rules as JSON-ready settings; ``from_mapping`` reads them back unchanged."""
        settings = asdict(self)
        settings["coding"] = [asdict(band) for band in self.coding]
        return settings

    @classmethod
    def from_mapping(cls, settings: Mapping[str, object]) -> SuppressionRules:
        """A tenant's rules: ``preset`` (one of PRESETS) and/or the fields of this class, e.g.
        ``{"preset": "CO", "min_n": 20}`` or ``{"name": "ours", "min_n": 11, "coding": [{"min_n": 0, "top": 95,
        "bottom": 5}]}``. Without a preset, ``min_n`` is required. Raises SuppressionRulesError."""
        if not isinstance(settings, Mapping):
            raise SuppressionRulesError(f"rules must be a mapping of settings, not {type(settings).__name__}")
        unknown = sorted(set(settings) - _SETTINGS.keys() - {"preset"})
        if unknown:
            raise SuppressionRulesError(f"unknown settings {unknown}; known: {sorted([*_SETTINGS, 'preset'])}")
        preset_name = settings.get("preset")
        overrides = {key: _parse(key, value) for key, value in settings.items() if key != "preset"}
        if preset_name is None:
            if "min_n" not in overrides:
                raise SuppressionRulesError(f"min_n is required without a preset (one of {sorted(PRESETS)})")
            return cls(**{"name": "custom", **overrides})  # type: ignore[arg-type]
        if not isinstance(preset_name, str) or preset_name not in PRESETS:
            raise SuppressionRulesError(f"preset must be one of {sorted(PRESETS)}, not {preset_name!r}")
        base = PRESETS[preset_name]
        if not overrides:
            return base
        if "name" not in overrides:
            overrides["name"] = f"{base.name} with tenant overrides"
        return replace(base, **overrides)  # type: ignore[arg-type]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_label(name: str, label: object) -> None:
    if not isinstance(label, str) or "{percent}" not in label:
        raise SuppressionRulesError(f"{name} must be a string with {{percent}} in it, not {label!r}")
    try:
        label.format(percent="95")
    except (KeyError, IndexError, ValueError) as error:
        raise SuppressionRulesError(f"{name} may hold no placeholder but {{percent}}: {label!r}") from error


def _parse_bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SuppressionRulesError(f"{key} must be true or false, not {value!r}")
    return value


def _parse_int(key: str, value: object) -> int:
    if not _is_int(value):
        raise SuppressionRulesError(f"{key} must be an integer, not {value!r}")
    assert isinstance(value, int)
    return value


def _parse_str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise SuppressionRulesError(f"{key} must be a string, not {value!r}")
    return value


def _parse_coding(key: str, value: object) -> tuple[CodingBand, ...]:
    if not isinstance(value, list | tuple):
        raise SuppressionRulesError(f"{key} must be a list of {{min_n, top, bottom}} bands, not {value!r}")
    bands = []
    for index, band in enumerate(value):
        if not isinstance(band, Mapping) or set(band) != {"min_n", "top", "bottom"}:
            raise SuppressionRulesError(f"{key}[{index}] must have exactly min_n, top and bottom, not {band!r}")
        try:
            bands.append(CodingBand(band["min_n"], band["top"], band["bottom"]))
        except SuppressionRulesError as error:
            raise SuppressionRulesError(f"{key}[{index}]: {error}") from error
    return tuple(bands)


_SETTINGS = {
    "name": _parse_str,
    "min_n": _parse_int,
    "min_count": _parse_int,
    "suppress_empty": _parse_bool,
    "coding": _parse_coding,
    "complementary": _parse_bool,
    "masked_sum": _parse_bool,
    "prefer_aggregate_for_units": _parse_bool,
    "suppressed_label": _parse_str,
    "top_label": _parse_str,
    "bottom_label": _parse_str,
}


def _parse(key: str, value: object) -> object:
    return _SETTINGS[key](key, value)


CO = SuppressionRules(name="CO", min_n=16, min_count=4)
"""Colorado (CDE): n < 16 hidden; any count of students, or its complement, below 4 hidden; complementary
suppression across a district's schools. Sources: https://www.denverpost.com/2019/06/03/colorado-school-performance-test/
and http://cde.state.co.us./cdereval/grad-drop-mobility_data-privacy-guidelines. Reading: CDE's "performance level
< 4" is applied to every counted metric (mastered, on track, stalled) and to its complement, as section 6's
algorithm says; CDE names no coding and no display, so none and "*"."""

DE = SuppressionRules(name="DE", min_n=16, coding=(CodingBand(0, 95, 5),), suppressed_label="-")
"""Delaware (DDOE, https://www.doe.k12.de.us/Page/2283): n <= 15 shown as "-"; complementary suppression;
percentages hidden when counts are derivable (our per-metric complementary step, which hides a value and keeps n);
top/bottom coding at 95 / 5 %. Reading: the source table says "> 95 % / < 5 %" while section 6's algorithm says
">= 95 %"; we code inclusively (exactly 95 % is shown as "≥95%"), which keeps every label true and is the stricter
choice. No count rule."""

CA = SuppressionRules(name="CA", min_n=10, suppress_empty=False, masked_sum=True)
"""California (Cal-PASS Plus LaunchBoard, https://www.calpassplus.org/Launchboard/Suppression): 0 < n < 10 hidden,
empty cells shown; masked groups are summed into "All Masked Values"; complementary suppression when only one group
is masked. Readings: the masked sum is derivable from a published total, so it must pass the primary rule itself
(masked_sum); LaunchBoard's "survey counts < 3" concerns survey respondents, which Proficio does not have, so no
count rule."""

WI = SuppressionRules(name="WI", min_n=6, prefer_aggregate_for_units=True)
"""Wisconsin (DPI, http://lbstat.dpi.wi.gov/lbstat_priv_more): n <= 5 hidden; in a two-category factor, if either
side is small both are hidden and the total reported (what complementary suppression does in a partition of two);
district-level suppression preferred over a second school. Reading: "preferred" applies to partitions of units (the
schools of a district): the district cell is hidden instead of another school; factor categories keep their total
shown, as the two-category rule requires. No count rule, no coding."""

UT = SuppressionRules(
    name="UT",
    min_n=11,
    coding=(
        CodingBand(10, 80, 20),
        CodingBand(20, 90, 10),
        CodingBand(40, 95, 5),
        CodingBand(100, 98, 2),
        CodingBand(300, 99, 1),
    ),
    suppressed_label="N<10",
)
"""Utah (Canyons School District procedure for public reporting, https://www.ccsdut.org/about-us/news-and-public-
information/policies/60000-finance-operations/6900-data-governance-and-information-technology-security-policy/
protecting-personally-identifiable-or-confidential-information-in-public-reporting-procedure): n <= 10 shown as
"N<10" (the domain doc's reading; the label says < 10, we hide n = 10 too, the stricter); top/bottom coding by n:
>= 300 at 99 / 1 %, 100-299 at 98 / 2 %, 40-99 at 95 / 5 %. Readings: the doc only says smaller bands are coarser;
we use 20-39 at 90 / 10 % and 10-19 at 80 / 20 %, the bands of the Utah State Board of Education rule the district
procedure follows (from memory of that rule, not checked against its text). The source names no complementary
suppression; we apply it anyway, since without it a published total minus the published others gives a hidden cell
back."""

PRESETS: Mapping[str, SuppressionRules] = MappingProxyType({rules.name: rules for rules in (CO, DE, CA, WI, UT)})
