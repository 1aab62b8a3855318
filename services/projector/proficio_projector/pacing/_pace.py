"""Seat-time-free pacing of one learner on one plan, as a pure function of her progress and the calendar.

Definitions follow competency-domain.md section 4 (Edgenuity, Summit, Modern Classrooms, Waterford
precedents); where the doc leaves a choice, ours is said here:

- Active weeks are school weeks with evidence on the plan's competencies (never time logged in).
- Velocity counts each required competency once, at its first mastery (a later regression flags, never
  subtracts). The window velocity divides by the active weeks in the window, at most W, so a learner
  in her third week is not judged as if she had six.
- The projected completion date adds ceil(remaining / velocity) school weeks to the day it is judged on;
  its range uses the 75th and 25th percentiles of the weekly mastery counts in the window.
- Stalled competencies are those progress flags as stalled (attempts without a level gain, or idle
  school days since their last evidence); a required competency never started is "behind" once its
  planned week has passed, not stalled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from ..competency import Progress, is_mastered
from ._calendar import SchoolCalendar
from ._plans import PacingPlan, PacingPolicy, Tier

ONE_PLACE = Decimal("0.1")
TWO_PLACES = Decimal("0.01")


_DAY_US = 86_400_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def day_of(us: int) -> date:
    """The UTC day of a moment in µs since the epoch (in whole days: no datetime per piece of evidence)."""
    return date.fromordinal(_EPOCH_ORDINAL + us // _DAY_US)


@dataclass(frozen=True)
class TimeToMastery:
    competency: str
    days: int
    attempts: int


@dataclass(frozen=True)
class Pace:
    plan: str
    as_of: date
    required: int
    mastered: int
    pct_mastered: Decimal
    expected_pct: Decimal
    status: str  # ahead | on_track | behind
    active_weeks: int
    last_active_week: date | None
    velocity_window: Decimal
    velocity_lifetime: Decimal
    velocity_ewma: Decimal
    required_velocity: Decimal | None
    projected_completion: date | None
    projected_early: date | None
    projected_late: date | None
    behind: tuple[str, ...]
    stalled: tuple[str, ...]
    stalled_learner: bool
    disengaged: bool
    last_activity: date | None
    time_to_mastery: tuple[TimeToMastery, ...] = field(default=())

    @property
    def remaining(self) -> int:
        return self.required - self.mastered

    @property
    def behind_bucket(self) -> str:
        n = len(self.behind)
        return "0" if n == 0 else "1-2" if n <= 2 else "3-4" if n <= 4 else "5+"


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _per_week(count: int | float, weeks: int) -> Decimal:
    return (Decimal(str(count)) / weeks).quantize(TWO_PLACES, ROUND_HALF_UP) if weeks else Decimal(0)


def _finish(calendar: SchoolCalendar, start: date, remaining: int, velocity: float) -> date | None:
    """The day ``remaining`` competencies are done at ``velocity`` per school week (None at 0)."""
    if remaining <= 0:
        return start
    if velocity <= 0:
        return None
    weeks = math.ceil(remaining / velocity - 1e-9)
    return calendar.add_school_days(start, weeks * len(calendar.weekdays))


def planned_date(plan: PacingPlan, calendar: SchoolCalendar, week: int) -> date | None:
    """The last school day of the plan's ``week``-th school week."""
    return calendar.add_school_days(plan.start - timedelta(days=1), week * len(calendar.weekdays))


def pace(
    plan: PacingPlan,
    calendar: SchoolCalendar,
    policy: PacingPolicy,
    found: Mapping[str, Progress],
    as_of: date,
    *,
    last_activity: date | None = None,
) -> Pace:
    """One learner's pace on ``plan`` judged on ``as_of``, from her progress on the evidence up to that day
    (the caller leaves later evidence out; ``last_activity`` is her last statement of any kind)."""
    planned = {c.uri: c for c in plan.competencies}
    required = plan.required
    mine = {c: p for c, p in found.items() if c in planned}
    mastered_now = [c for c in required if c in mine and mine[c].mastered]
    firsts = sorted(
        (day_of(mine[c].mastered_at_us), c)  # type: ignore[arg-type]
        for c in required
        if c in mine and mine[c].mastered_at_us is not None and day_of(mine[c].mastered_at_us) <= as_of  # type: ignore[arg-type]
    )
    # Days as whole days since the epoch first: a set of ints, then a date per distinct day.
    last_day = as_of.toordinal() - _EPOCH_ORDINAL
    days = {e.timestamp_us // _DAY_US for p in mine.values() for e in p.evidence}
    evidence_days = sorted(date.fromordinal(_EPOCH_ORDINAL + d) for d in days if d <= last_day)
    active = sorted({calendar.week_of(d) for d in evidence_days})
    window = active[-policy.window_weeks :]
    weekly = {week: 0 for week in active}
    for when, _ in firsts:
        week = calendar.week_of(when)
        weekly[week] = weekly.get(week, 0) + 1
    in_window = [weekly.get(week, 0) for week in window]
    velocity_window = _per_week(sum(in_window), len(window))
    velocity_lifetime = _per_week(len(firsts), len(active))
    smoothed = 0.0
    for n, week in enumerate(active):
        count = weekly.get(week, 0)
        smoothed = count if n == 0 else float(policy.ewma_alpha) * count + (1 - float(policy.ewma_alpha)) * smoothed
    remaining = len(required) - len(mastered_now)
    days_left = calendar.school_days(as_of, plan.target)
    weeks_left = Decimal(days_left) / len(calendar.weekdays)
    required_velocity = (Decimal(remaining) / weeks_left).quantize(TWO_PLACES, ROUND_HALF_UP) if weeks_left else None
    total_days = calendar.school_days(plan.start - timedelta(days=1), plan.target)
    elapsed = calendar.school_days(plan.start - timedelta(days=1), min(as_of, plan.target))
    expected = (Decimal(100) * elapsed / total_days if total_days else Decimal(100)).quantize(ONE_PLACE, ROUND_HALF_UP)
    pct = (Decimal(100) * len(mastered_now) / len(required)).quantize(ONE_PLACE, ROUND_HALF_UP)
    status = (
        "ahead" if pct > expected + policy.band_pct else "behind" if pct < expected - policy.band_pct else "on_track"
    )
    behind = tuple(
        c.uri
        for c in plan.competencies
        if c.tier is Tier.MUST and c.week is not None and c.uri not in mastered_now
        and (due := planned_date(plan, calendar, c.week)) is not None and due < as_of
    )  # fmt: skip
    stalled = tuple(c for c in required if c in mine and mine[c].stalled)
    recent_weeks = calendar.school_weeks(as_of - timedelta(days=21), as_of)[-3:]
    active_recently = sum(week in set(active) for week in recent_weeks)
    last_three_active = set(active[-3:])
    new_recently = any(calendar.week_of(when) in last_three_active for when, _ in firsts)
    last_seen = max([d for d in (last_activity, evidence_days[-1] if evidence_days else None) if d is not None],
                    default=None)  # fmt: skip
    idle_from = last_seen or plan.start - timedelta(days=1)
    # A learner done with the plan is not disengaged from it, however quiet she is.
    disengaged = (
        remaining > 0 and as_of >= plan.start and calendar.school_days(idle_from, as_of) >= policy.disengaged_days
    )
    times = []
    for c in required:
        p = mine.get(c)
        if p is None or p.mastered_at_us is None:
            continue
        attempts = p.attempts_to_mastery or next(n + 1 for n, s in enumerate(p.running) if is_mastered(p.policy, s))
        times.append(TimeToMastery(c, (day_of(p.mastered_at_us) - day_of(p.first_at_us)).days, attempts))
    weekly_in_window = [float(c) for c in in_window] or [0.0]
    return Pace(
        plan.plan, as_of, len(required), len(mastered_now), pct, expected, status, len(active),
        active[-1] if active else None, velocity_window, velocity_lifetime,
        Decimal(str(smoothed)).quantize(TWO_PLACES, ROUND_HALF_UP), required_velocity,
        _finish(calendar, as_of, remaining, float(velocity_window)),
        _finish(calendar, as_of, remaining, _quantile(weekly_in_window, 0.75)),
        _finish(calendar, as_of, remaining, _quantile(weekly_in_window, 0.25)),
        behind, stalled, active_recently >= 2 and not new_recently, disengaged, last_seen, tuple(times),
    )  # fmt: skip


def learners_of(plan: PacingPlan, rosters: Mapping[str, Iterable[str]]) -> list[str]:
    """Who follows a plan: its learners and its sections' learners, once each, sorted."""
    found = set(plan.learners)
    for section in plan.sections:
        found |= set(rosters.get(section, ()))
    return sorted(found)
