"""Seat-time-free pacing, graduation readiness and intervention queues, built on competency progress.

Plans, calendars, thresholds and graduation menus are events (``pacing_reference`` view); a learner's
pace and readiness are computed when read, on a day (``as_of``), from her progress: pacing depends on
the date by nature, and computing it when read keeps every view a pure function of the log and the day.
"""

from ._calendar import Break, SchoolCalendar, calendar_from_data
from ._interventions import Intervention, dependants, intervention_queue
from ._pace import Pace, TimeToMastery, day_of, learners_of, pace, planned_date
from ._plans import (
    CALENDAR_SET,
    MENU_SET,
    PACING_POLICY_CHANGED,
    PLAN_SET,
    PacingDataError,
    PacingPlan,
    PacingPolicy,
    PacingReference,
    PacingReferenceView,
    PlannedCompetency,
    Tier,
    calendar_data,
    plan_data,
    plan_from_data,
    reference_from_rows,
    set_calendar,
    set_pacing_policy,
    set_plan,
)
from ._readiness import OptionResult, Readiness, RequirementResult, menu_data, readiness, set_menu

__all__ = [
    "CALENDAR_SET",
    "MENU_SET",
    "PACING_POLICY_CHANGED",
    "PLAN_SET",
    "Break",
    "Intervention",
    "OptionResult",
    "Pace",
    "PacingDataError",
    "PacingPlan",
    "PacingPolicy",
    "PacingReference",
    "PacingReferenceView",
    "PlannedCompetency",
    "Readiness",
    "RequirementResult",
    "SchoolCalendar",
    "Tier",
    "TimeToMastery",
    "calendar_data",
    "calendar_from_data",
    "day_of",
    "dependants",
    "intervention_queue",
    "learners_of",
    "menu_data",
    "pace",
    "plan_data",
    "plan_from_data",
    "planned_date",
    "readiness",
    "reference_from_rows",
    "set_calendar",
    "set_menu",
    "set_pacing_policy",
    "set_plan",
]
