"""Pacing reference data, each change an event: school calendars, pacing plans, the tenant's pacing
thresholds and graduation menus; and ``pacing_reference``, the unpartitioned view that holds them.

- ``SchoolCalendarSet``: school days (first and last day, breaks, weekdays).
- ``PacingPlanSet``: a course's or pathway's competencies in must-do / should-do / aspire tiers, each
  with an optional planned school week, its start and target dates, its calendar, and who follows it
  (sections and/or learners).
- ``PacingPolicyChanged``: the tenant's thresholds (the band around the expected percentage, the window
  of active weeks, the smoothing, the stall and disengagement rules).
- ``GraduationMenuSet``: requirements, each met by any one of its demonstration options (see
  ``_readiness``).
- ``SuppressionRulesSet``: the tenant's small-n suppression rules for the equity views.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import sqlalchemy as sa

from proficio_events import AppendResult, EventLog, NewEvent, StoredEvent

from .._model import Change, Put, RowRef, State, ViewTable
from ..competency import StallRule
from ._calendar import SchoolCalendar, calendar_from_data

CALENDAR_SET = "SchoolCalendarSet"
PLAN_SET = "PacingPlanSet"
PACING_POLICY_CHANGED = "PacingPolicyChanged"
MENU_SET = "GraduationMenuSet"
#: The tenant's small-n suppression rules for the equity views (checked by ``proficio_projector.equity``).
SUPPRESSION_SET = "SuppressionRulesSet"
MAX_PLAN = 500
MAX_LEARNERS = 5000


class PacingDataError(ValueError):
    """A calendar, plan, policy or menu that cannot be recorded, and why."""


class Tier(enum.StrEnum):
    MUST = "must"
    SHOULD = "should"
    ASPIRE = "aspire"


@dataclass(frozen=True)
class PlannedCompetency:
    uri: str
    tier: Tier
    #: The school week (1 = the plan's first) by which it is planned to be mastered, if any.
    week: int | None = None


@dataclass(frozen=True)
class PacingPlan:
    plan: str
    title: str
    start: date
    target: date
    competencies: tuple[PlannedCompetency, ...]
    calendar: str | None = None
    sections: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        """R_C: the must-do competencies, those pace and readiness are measured on."""
        return tuple(c.uri for c in self.competencies if c.tier is Tier.MUST)


@dataclass(frozen=True)
class PacingPolicy:
    """Every threshold is a district setting (competency-domain.md section 4); these are the defaults."""

    band_pct: Decimal = Decimal(3)
    window_weeks: int = 6
    ewma_alpha: Decimal = Decimal("0.3")
    stall_attempts: int = 4
    #: No gain in level over this many of the latest attempts (with at least stall_attempts) is a stall.
    stall_window: int = 3
    stall_idle_days: int = 15
    disengaged_days: int = 10

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.band_pct <= Decimal(50):
            raise PacingDataError(f"band_pct is 0 to 50, not {self.band_pct}")
        if not Decimal(0) < self.ewma_alpha <= Decimal(1):
            raise PacingDataError(f"ewma_alpha is in (0, 1], not {self.ewma_alpha}")
        for name in ("window_weeks", "stall_attempts", "stall_window", "stall_idle_days", "disengaged_days"):
            value = getattr(self, name)
            if not 1 <= value <= 400:
                raise PacingDataError(f"{name} is 1 to 400, not {value}")

    def stall_rule(self) -> StallRule:
        """The stall thresholds as progress applies them to each competency."""
        return StallRule(attempts=self.stall_attempts, window=self.stall_window, idle_school_days=self.stall_idle_days)

    def as_data(self) -> dict[str, Any]:
        return {"band_pct": str(self.band_pct), "window_weeks": self.window_weeks, "ewma_alpha": str(self.ewma_alpha),
                "stall_attempts": self.stall_attempts, "stall_window": self.stall_window,
                "stall_idle_days": self.stall_idle_days,
                "disengaged_days": self.disengaged_days}  # fmt: skip

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PacingPolicy:
        known = {f.name for f in cls.__dataclass_fields__.values()}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PacingDataError(f"unknown pacing setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        try:
            for name, value in data.items():
                values[name] = Decimal(str(value)) if name in ("band_pct", "ewma_alpha") else int(value)
        except (InvalidOperation, ValueError, TypeError):
            raise PacingDataError(f"pacing setting {name} is not a number: {value!r}") from None
        return cls(**values)


def _iri(value: Any, what: str) -> str:
    if not isinstance(value, str) or ":" not in value or any(c.isspace() for c in value):
        raise PacingDataError(f"{what} must be an IRI, not {value!r}")
    return value


def _id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200 or any(c.isspace() or c == "/" for c in value):
        raise PacingDataError(f"{what} is 1 to 200 characters without spaces or '/', not {value!r}")
    return value


def _date(value: Any, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise PacingDataError(f"{what} must be a date (YYYY-MM-DD), not {value!r}") from None


def plan_from_data(data: Mapping[str, Any]) -> PacingPlan:
    """Check a plan as given (API, CLI or event) and build it; every problem is named."""
    if not isinstance(data, Mapping):
        raise PacingDataError("a plan is a JSON object")
    start, target = _date(data.get("start"), "start"), _date(data.get("target"), "target")
    if target <= start:
        raise PacingDataError("target must come after start")
    listed = data.get("competencies")
    if not isinstance(listed, list) or not listed:
        raise PacingDataError("competencies must be a non-empty list of {uri, tier, week}")
    if len(listed) > MAX_PLAN:
        raise PacingDataError(f"a plan holds at most {MAX_PLAN} competencies")
    competencies = []
    for n, item in enumerate(listed):
        if not isinstance(item, Mapping):
            raise PacingDataError(f"competencies[{n}] must be an object")
        try:
            tier = Tier(item.get("tier", "must"))
        except ValueError:
            raise PacingDataError(
                f"competencies[{n}].tier is must, should or aspire, not {item.get('tier')!r}"
            ) from None
        week = item.get("week")
        if week is not None and (not isinstance(week, int) or isinstance(week, bool) or week < 1):
            raise PacingDataError(f"competencies[{n}].week is a school week number (1 or more), not {week!r}")
        competencies.append(PlannedCompetency(_iri(item.get("uri"), f"competencies[{n}].uri"), tier, week))
    if len({c.uri for c in competencies}) != len(competencies):
        raise PacingDataError("a competency is listed twice")
    if not any(c.tier is Tier.MUST for c in competencies):
        raise PacingDataError("a plan needs at least one must-do competency (pace is measured on them)")
    sections, learners = data.get("sections") or [], data.get("learners") or []
    if not isinstance(sections, list) or not isinstance(learners, list):
        raise PacingDataError("sections and learners are lists of ids")
    if len(learners) > MAX_LEARNERS:
        raise PacingDataError(f"a plan names at most {MAX_LEARNERS} learners; use sections")
    calendar = data.get("calendar")
    return PacingPlan(
        _id(data.get("plan"), "plan"), str(data.get("title") or ""), start, target, tuple(competencies),
        _id(calendar, "calendar") if calendar is not None else None,
        tuple(_id(s, "a section id") for s in sections), tuple(_id(x, "a learner id") for x in learners),
    )  # fmt: skip


def plan_data(plan: PacingPlan) -> dict[str, Any]:
    return {
        "plan": plan.plan, "title": plan.title, "start": plan.start.isoformat(), "target": plan.target.isoformat(),
        "calendar": plan.calendar, "sections": list(plan.sections), "learners": list(plan.learners),
        "competencies": [{"uri": c.uri, "tier": c.tier.value, "week": c.week} for c in plan.competencies],
    }  # fmt: skip


def calendar_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a calendar as given and return its event payload."""
    calendar = _id(data.get("calendar"), "calendar")
    breaks = data.get("breaks") or []
    if not isinstance(breaks, list):
        raise PacingDataError("breaks is a list of {first, last, name}")
    checked = {
        "calendar": calendar,
        "first_day": _date(data["first_day"], "first_day").isoformat() if data.get("first_day") else None,
        "last_day": _date(data["last_day"], "last_day").isoformat() if data.get("last_day") else None,
        "breaks": [
            {"first": _date(b.get("first"), f"breaks[{n}].first").isoformat(),
             "last": _date(b.get("last"), f"breaks[{n}].last").isoformat(), "name": str(b.get("name") or "")}
            if isinstance(b, Mapping) else _not_a_break(n)
            for n, b in enumerate(breaks)
        ],
        "weekdays": data.get("weekdays", [0, 1, 2, 3, 4]),
    }  # fmt: skip
    try:
        calendar_from_data(checked)
    except (ValueError, TypeError) as exc:
        raise PacingDataError(f"calendar {calendar}: {exc}") from None
    return checked


def _not_a_break(n: int) -> dict[str, Any]:
    raise PacingDataError(f"breaks[{n}] must be an object {{first, last, name}}")


async def set_calendar(log: EventLog, tenant: str, data: Mapping[str, Any]) -> AppendResult:
    checked = calendar_data(data)
    return await log.append(tenant, [NewEvent.of(f"calendar:{checked['calendar']}", CALENDAR_SET, checked)])


async def set_plan(log: EventLog, tenant: str, data: Mapping[str, Any]) -> AppendResult:
    plan = plan_from_data(data)
    return await log.append(tenant, [NewEvent.of(f"plan:{plan.plan}", PLAN_SET, plan_data(plan))])


async def set_pacing_policy(log: EventLog, tenant: str, settings: Mapping[str, Any]) -> AppendResult:
    policy = PacingPolicy.from_data(settings)
    data = {"scope": "tenant", **policy.as_data()}
    return await log.append(tenant, [NewEvent.of("pacing:policy", PACING_POLICY_CHANGED, data)])


@dataclass
class PacingReference:
    """A tenant's pacing reference data, as read from the view."""

    calendars: dict[str, SchoolCalendar] = field(default_factory=dict)
    plans: dict[str, PacingPlan] = field(default_factory=dict)
    policy: PacingPolicy = field(default_factory=PacingPolicy)
    menus: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The suppression settings as recorded (a preset and overrides), None: the default preset.
    suppression: dict[str, Any] | None = None

    def calendar_of(self, plan: PacingPlan) -> SchoolCalendar:
        return self.calendars.get(plan.calendar or "", SchoolCalendar())


class PacingReferenceView:
    name = "pacing_reference"
    version = 1
    event_types: frozenset[str] | None = frozenset(
        {CALENDAR_SET, PLAN_SET, PACING_POLICY_CHANGED, MENU_SET, SUPPRESSION_SET}
    )
    partitioned = False
    tables: Sequence[ViewTable] = tuple(
        ViewTable(
            table,
            key=(sa.Column("tenant", sa.Text), sa.Column("id", sa.Text)),
            values=(sa.Column("data", sa.Text, nullable=False), sa.Column("changed_us", sa.BigInteger, nullable=False)),
        )
        for table in ("calendars", "plans", "policies", "menus", "suppression")
    )
    _table_of = {CALENDAR_SET: ("calendars", "calendar"), PLAN_SET: ("plans", "plan"),
                 PACING_POLICY_CHANGED: ("policies", "scope"), MENU_SET: ("menus", "menu"),
                 SUPPRESSION_SET: ("suppression", "scope")}  # fmt: skip

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        table, field_name = self._table_of[event.event_type]
        return (RowRef(table, (event.tenant, event.data()[field_name])),)

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        table, field_name = self._table_of[event.event_type]
        data = event.data()
        values = {"data": orjson.dumps(data).decode(), "changed_us": event.recorded_us}
        return [Put(table, (event.tenant, data[field_name]), values)]


def reference_from_rows(rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> PacingReference:
    """The reference data from the view's rows (table -> rows)."""
    found = PacingReference()
    for row in rows.get("calendars", ()):
        found.calendars[row["id"]] = calendar_from_data(orjson.loads(row["data"]))
    for row in rows.get("plans", ()):
        found.plans[row["id"]] = plan_from_data(orjson.loads(row["data"]))
    for row in rows.get("policies", ()):
        data = orjson.loads(row["data"])
        data.pop("scope", None)
        found.policy = PacingPolicy.from_data(data)
    for row in rows.get("menus", ()):
        found.menus[row["id"]] = orjson.loads(row["data"])
    for row in rows.get("suppression", ()):
        found.suppression = orjson.loads(row["data"])["settings"]
    return found
