"""Student groups: effective-dated memberships derived from SIS demographics, as pure functions.

A membership is (learner, factor, value, effective_from, effective_to): the learner held ``value`` for
``factor`` from ``effective_from`` (inclusive) until ``effective_to`` (exclusive; None: still holds). Each
change is a ``GroupMembershipChanged`` event in the learner's protected stream (``protected:groups:<learner>``)
carrying the whole membership as it now stands, so the view is a plain replace by key. A membership whose
``effective_to`` equals its ``effective_from`` never held: it was withdrawn the day it was recorded (a
same-day correction), and the view drops it.

Groups come from the SIS only, never from xAPI statements (spec §6).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from ._oneroster import Demographics

GROUP_MEMBERSHIP_CHANGED = "GroupMembershipChanged"

RACE_ETHNICITY = "race_ethnicity"
GENDER = "gender"
ECONOMICALLY_DISADVANTAGED = "economically_disadvantaged"
ENGLISH_LEARNER = "english_learner"
DISABILITY = "disability"
#: Every factor, in the order reports list them.
FACTORS = (RACE_ETHNICITY, GENDER, ECONOMICALLY_DISADVANTAGED, ENGLISH_LEARNER, DISABILITY)

HISPANIC_OR_LATINO = "hispanic_or_latino"
TWO_OR_MORE_RACES = "two_or_more_races"
#: OneRoster race columns -> the values of the race_ethnicity factor.
RACE_VALUES = {
    "americanIndianOrAlaskaNative": "american_indian_or_alaska_native",
    "asian": "asian",
    "blackOrAfricanAmerican": "black_or_african_american",
    "nativeHawaiianOrOtherPacificIslander": "native_hawaiian_or_other_pacific_islander",
    "white": "white",
}
#: "unspecified" (or no sex) gives no gender membership.
GENDER_VALUES = frozenset({"female", "male", "other"})


def groups_stream(learner: str) -> str:
    """The learner's protected stream of group memberships."""
    return f"protected:groups:{learner}"


def race_ethnicity(demographics: Demographics) -> str | None:
    """The federal two-question rollup: Hispanic/Latino of any race, else two or more races, else the one race."""
    if demographics.hispanic_or_latino:
        return HISPANIC_OR_LATINO
    if demographics.two_or_more_races or len(demographics.races) > 1:
        return TWO_OR_MORE_RACES
    if len(demographics.races) == 1:
        return RACE_VALUES[next(iter(demographics.races))]
    return None


def group_values(demographics: Demographics | None, factors: Iterable[str]) -> dict[str, str | None]:
    """factor -> value (None: unknown, no membership) for each of ``factors``, from a demographics record."""
    values: dict[str, str | None] = {}
    for factor in factors:
        if demographics is None:
            values[factor] = None
        elif factor == RACE_ETHNICITY:
            values[factor] = race_ethnicity(demographics)
        elif factor == GENDER:
            values[factor] = demographics.sex if demographics.sex in GENDER_VALUES else None
        else:
            flag = demographics.extensions.get(factor)
            values[factor] = None if flag is None else str(flag).lower()
    return values


@dataclass(frozen=True)
class Membership:
    factor: str
    value: str
    effective_from: str
    effective_to: str | None

    def payload(self, learner: str) -> dict[str, Any]:
        return {"learner": learner, "factor": self.factor, "value": self.value,
                "effective_from": self.effective_from, "effective_to": self.effective_to}  # fmt: skip


def memberships_of(payloads: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Membership]:
    """A learner's memberships by (factor, effective_from), folded from their events' payloads in order."""
    held: dict[tuple[str, str], Membership] = {}
    for data in payloads:
        key = (data["factor"], data["effective_from"])
        if data["effective_to"] == data["effective_from"]:
            held.pop(key, None)
        else:
            held[key] = Membership(data["factor"], data["value"], data["effective_from"], data["effective_to"])
    return held


@dataclass(frozen=True)
class Backdated:
    """A change asked for on a date before the factor's latest recorded change (which would rewrite history)."""

    factor: str
    latest: str


def membership_changes(
    held: Mapping[tuple[str, str], Membership], wanted: Mapping[str, str | None], effective: str
) -> tuple[list[Membership], list[Backdated]]:
    """The memberships to record so that, from ``effective`` on, each factor in ``wanted`` has its value.

    A changed value closes the open membership on ``effective`` and opens the new one; on the day the open
    membership began, it is replaced instead (a same-day correction). Unknown (None) only closes.
    """
    changes: list[Membership] = []
    backdated: list[Backdated] = []
    for factor, value in wanted.items():
        mine = [m for m in held.values() if m.factor == factor]
        current = next((m for m in mine if m.effective_to is None), None)
        if (current.value if current else None) == value:
            continue
        latest = max((d for m in mine for d in (m.effective_from, m.effective_to) if d is not None), default=None)
        if latest is not None and effective < latest:
            backdated.append(Backdated(factor, latest))
            continue
        if current is not None and current.effective_from == effective:
            # Begun today: correct it in place (or withdraw it: a zero-length membership never held).
            if value is None:
                changes.append(Membership(factor, current.value, effective, effective))
            else:
                changes.append(Membership(factor, value, effective, None))
            continue
        if current is not None:
            changes.append(Membership(factor, current.value, current.effective_from, effective))
        if value is not None:
            changes.append(Membership(factor, value, effective, None))
    return changes, backdated


def groups_as_of(rows: Iterable[Mapping[str, Any]], on: date | str) -> dict[str, dict[str, str]]:
    """Each learner's group values on a date: learner -> factor -> value, from ``student_groups`` rows.

    A row counts when ``effective_from <= on < effective_to`` (no ``effective_to``: still open). Factors
    with no membership on that date are absent (unknown).
    """
    day = on.isoformat() if isinstance(on, date) else date.fromisoformat(on).isoformat()
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for row in rows:
        start, end = row["effective_from"], row["effective_to"]
        if start <= day and (end is None or day < end):
            mine = found.setdefault(row["learner"], {})
            # Memberships of one factor do not overlap; if data ever made them, the later start wins.
            if row["factor"] not in mine or mine[row["factor"]][0] < start:
                mine[row["factor"]] = (start, row["value"])
    return {learner: {f: v for f, (_s, v) in factors.items()} for learner, factors in found.items()}
