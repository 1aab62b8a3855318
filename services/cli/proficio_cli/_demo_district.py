"""The demo district: schools, students with the equity views' group attributes, planted effects, and what a
district's SIS and curriculum office would hand over, with the truth of what was planted (competency-domain.md
sections 4, 6 and 9). Pure functions: the simulation itself is ``_demo``'s.

- **Schools:** ``school-1`` .. ``school-N``, in contiguous blocks of learners, the first the largest (sizes in
  the ratio N+1 : N : ... : 2), all in one district; one class (section) per school follows the course.
- **Groups (the five factors):** race/ethnicity (federal rollup) drawn from realistic shares, gender, and the
  economically disadvantaged, English learner and disability flags, each learner drawn from her own seeded
  random stream. Each school also gets one deliberately small group: its first three learners belong to a
  race that is otherwise absent (American Indian or Alaska Native, Native Hawaiian or Other Pacific Islander,
  in turn), small enough to trip every preset's primary rule.
- **The planted gap:** learners in the gap group (English learners by default) learn with BKT ``learn`` x0.7
  and skip more school weeks (30 % instead of 10 % of the weeks after an active one; never two in a row).
- **Planted stalled learners:** from a day in their 2nd to (judging week - 4)th week, on the first competency
  they do not yet know, they never learn: they keep attempting it with scores one level below mastery,
  without gain, for the rest of the simulation.
- **Planted disengaged learners:** they stop for good after a day in their 2nd to (judging week - 3)th week.
- **Pace truth:** on the judging day, from the true (hidden-state) mastery dates: percent of the plan
  mastered, on track or not, active weeks, velocity over the last 6 active weeks, the projected completion
  date that velocity gives, stalled and disengaged by the definitions (section 4); and the day she truly
  finishes the plan, if she does within twice the course's length.
- **Gaps:** per factor value, the medians of percent mastered and velocity and the percent on track, and
  their gaps against all learners and against the rest.
"""

from __future__ import annotations

import csv
import io
import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

#: The district's OneRoster org, the plan's id, and the domain of the students' emails (their xAPI mbox).
DISTRICT_ORG = "district"
PLAN_ID = "demo-course"
EMAIL_DOMAIN = "demo.proficio.example.org"
COURSE = "course-demo"
STALLED = "stalled"
DISENGAGED = "disengaged"

RACE_ETHNICITY = "race_ethnicity"
GENDER = "gender"
FLAGS = ("economically_disadvantaged", "english_learner", "disability")
#: Each factor's values, as the roster import names them (the flags are "true"/"false").
FACTOR_VALUES: Mapping[str, tuple[str, ...]] = {
    RACE_ETHNICITY: (
        "hispanic_or_latino", "white", "black_or_african_american", "asian", "two_or_more_races",
        "american_indian_or_alaska_native", "native_hawaiian_or_other_pacific_islander",
    ),
    GENDER: ("female", "male"),
    **{flag: ("true", "false") for flag in FLAGS},
}  # fmt: skip
#: Race/ethnicity shares of the learners outside the small groups (roughly a US public-school district's).
RACE_SHARES: tuple[tuple[str, float], ...] = (
    ("hispanic_or_latino", 0.28), ("white", 0.46), ("black_or_african_american", 0.15), ("asian", 0.06),
    ("two_or_more_races", 0.05),
)  # fmt: skip
FLAG_SHARES: Mapping[str, float] = {"economically_disadvantaged": 0.45, "english_learner": 0.22, "disability": 0.14}
#: The small group of each school in turn, and its size: under every preset's minimum n (Wisconsin's 6 the lowest).
SMALL_GROUPS = ("american_indian_or_alaska_native", "native_hawaiian_or_other_pacific_islander")
SMALL_GROUP_SIZE = 3
#: The pacing views' defaults (competency-domain.md section 4): the velocity window (active weeks), the band
#: around the expected percentage, the weeks a stalled learner goes without a mastery, the school days without a
#: statement that make a learner disengaged.
WINDOW_WEEKS = 6
BAND_PCT = 3
STALL_WEEKS = 3
DISENGAGED_DAYS = 10
#: The equity views' default rules (Colorado): a cell of fewer learners is hidden from the public.
PRIMARY_MIN_N = 16
#: Per-school rows of the truth need at least these learners per school (the small group and a few more).
MIN_LEARNERS_PER_SCHOOL = 8


@dataclass(frozen=True)
class DistrictSettings:
    """A district of ``schools`` following one course; out-of-range values are a ValueError."""

    schools: int = 2
    #: The course's length in school weeks (its target date is the last school day of the last one).
    weeks: int = 18
    #: The judging day: statements delivered by its end are output, and the pace truth is judged on it.
    #: None: the Friday of week ``weeks // 2``.
    as_of: date | None = None
    #: The planted gap: members of this group learn with BKT learn x ``gap_learn`` and skip more weeks.
    gap_factor: str = "english_learner"
    gap_value: str = "true"
    gap_learn: float = 0.7
    #: The chance of skipping a school week after an active one (never two in a row), others and the gap group.
    skip_week_rate: float = 0.1
    gap_skip_week_rate: float = 0.3
    stalled_share: float = 0.08
    disengaged_share: float = 0.06

    def __post_init__(self) -> None:
        if not 1 <= self.schools <= 50:
            raise ValueError(f"schools must be 1 to 50, not {self.schools}")
        if not 6 <= self.weeks <= 60:
            raise ValueError(f"weeks must be 6 to 60, not {self.weeks}")
        if self.gap_factor not in FACTOR_VALUES:
            raise ValueError(f"the gap factor is one of {', '.join(FACTOR_VALUES)}, not {self.gap_factor!r}")
        if self.gap_value not in FACTOR_VALUES[self.gap_factor]:
            values = ", ".join(FACTOR_VALUES[self.gap_factor])
            raise ValueError(f"{self.gap_factor} is one of {values}, not {self.gap_value!r}")
        for name in ("gap_learn", "skip_week_rate", "gap_skip_week_rate", "stalled_share", "disengaged_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.stalled_share + self.disengaged_share > 0.5:
            raise ValueError("stalled_share and disengaged_share add up to at most 0.5")

    def target(self, start: date) -> date:
        """The course's last day: its ``weeks``-th school week's Friday (the start's week is the first)."""
        return monday_of(start) + timedelta(weeks=self.weeks - 1, days=4)

    def judging_day(self, start: date) -> date:
        return self.as_of or monday_of(start) + timedelta(weeks=self.weeks // 2 - 1, days=4)

    def check(self, learners: int, start: date) -> None:
        """What depends on the other settings: enough learners per school, a judging day within the course."""
        least = self.schools * MIN_LEARNERS_PER_SCHOOL
        if learners < least:
            raise ValueError(f"{self.schools} schools need at least {least} learners, not {learners}")
        as_of, target = self.judging_day(start), self.target(start)
        if not start <= as_of <= target:
            raise ValueError(f"the judging day {as_of} must fall within the course, {start} to {target}")
        if (self.stalled_share or self.disengaged_share) and week_number(start, as_of) < 6:
            raise ValueError(f"planting stalled or disengaged learners needs a judging day in week 6 or later, "
                             f"not {as_of} (week {week_number(start, as_of)})")  # fmt: skip


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_number(start: date, day: date) -> int:
    """The course week ``day`` falls in: 1 for the start's week (weeks run Monday to Sunday)."""
    return (monday_of(day) - monday_of(start)).days // 7 + 1


def school_days(after: date, through: date) -> int:
    """School days (Monday to Friday) in (after, through]."""
    return sum((after + timedelta(days=n)).weekday() < 5 for n in range(1, (through - after).days + 1))


def add_school_days(day: date, count: int) -> date:
    """The day ``count`` school days (Monday to Friday) after ``day``."""
    while count > 0:
        day += timedelta(days=1)
        count -= day.weekday() < 5
    return day


def school_ids(schools: int) -> list[str]:
    return [f"school-{k}" for k in range(1, schools + 1)]


def planted_small_groups(district: DistrictSettings) -> list[tuple[str, str]]:
    """(school, race_ethnicity value) of each school's deliberately small group."""
    return [(school, SMALL_GROUPS[k % len(SMALL_GROUPS)]) for k, school in enumerate(school_ids(district.schools))]


def class_of(school: str) -> str:
    """The course's class (section) at a school: its OneRoster class sourcedId."""
    return f"class-{school}"


@dataclass(frozen=True)
class Profile:
    """A learner as the district knows her, and what was planted in her."""

    number: int
    learner: str
    email: str
    school: str
    #: factor -> value, every factor of FACTOR_VALUES.
    groups: Mapping[str, str]
    #: STALLED, DISENGAGED or None.
    planted: str | None = None
    #: A planted stalled learner stops learning from this day on; a disengaged one stops after this day.
    stall_from: date | None = None
    stop_after: date | None = None

    def in_group(self, factor: str, value: str) -> bool:
        return self.groups[factor] == value


def _school_sizes(learners: int, schools: int) -> list[int]:
    """Contiguous block sizes in the ratio N+1 : N : ... : 2 (largest remainders, earlier schools first)."""
    weights = [schools + 1 - k for k in range(schools)]
    exact = [learners * w / sum(weights) for w in weights]
    sizes = [math.floor(x) for x in exact]
    by_remainder = sorted(range(schools), key=lambda k: (-(exact[k] - sizes[k]), k))
    for k in by_remainder[: learners - sum(sizes)]:
        sizes[k] += 1
    return sizes


def _draw_share(rng: random.Random, shares: Sequence[tuple[str, float]]) -> str:
    point = rng.random() * sum(share for _, share in shares)
    for value, share in shares:
        point -= share
        if point < 0:
            return value
    return shares[-1][0]


def _day_in_weeks(rng: random.Random, start: date, first_week: int, last_week: int) -> date:
    """A school day drawn from the course weeks ``first_week`` to ``last_week``."""
    week = rng.randint(first_week, last_week)
    return monday_of(start) + timedelta(weeks=week - 1, days=rng.randrange(5))


def district_profiles(learners: int, seed: int, start: date, district: DistrictSettings) -> list[Profile]:
    """Every learner's school, groups and planted role (learner numbers 1..learners)."""
    schools = school_ids(district.schools)
    school_of: list[tuple[str, int]] = []  # (school, position within it), by learner number - 1
    for k, size in enumerate(_school_sizes(learners, district.schools)):
        school_of += [(schools[k], position) for position in range(size)]
    roles_rng = random.Random(f"{seed}:district:planted")
    stalled = round(district.stalled_share * learners)
    disengaged = round(district.disengaged_share * learners)
    chosen = roles_rng.sample(range(1, learners + 1), stalled + disengaged)
    role_of = {n: STALLED for n in chosen[:stalled]} | {n: DISENGAGED for n in chosen[stalled:]}
    judging_week = week_number(start, district.judging_day(start))
    small_group_of = dict(planted_small_groups(district))
    profiles = []
    for number in range(1, learners + 1):
        rng = random.Random(f"{seed}:district:learner:{number}")
        school, position = school_of[number - 1]
        small = small_group_of[school]
        groups = {
            RACE_ETHNICITY: small if position < SMALL_GROUP_SIZE else _draw_share(rng, RACE_SHARES),
            GENDER: rng.choice(FACTOR_VALUES[GENDER]),
            **{flag: "true" if rng.random() < FLAG_SHARES[flag] else "false" for flag in FLAGS},
        }
        role = role_of.get(number)
        # Early enough that by the judging day a stalled learner has gone 3 active weeks without a mastery,
        # and a disengaged one 10 school days without a statement (the views' default thresholds).
        stall_from = _day_in_weeks(rng, start, 2, judging_week - 4) if role == STALLED else None
        stop_after = _day_in_weeks(rng, start, 2, judging_week - 3) if role == DISENGAGED else None
        name = f"learner-{number:03d}"
        profiles.append(Profile(number, name, f"{name}@{EMAIL_DOMAIN}", school, groups, role, stall_from, stop_after))
    return profiles


# --- what the district hands over: a OneRoster 1.1 package and a pacing plan ------------------------------------


@dataclass(frozen=True)
class RosterStudent:
    """A student as OneRoster lists her: school, email (the xAPI mbox), and the demographics of the groups."""

    sourced_id: str
    school: str
    email: str
    sex: str = "female"
    race_ethnicity: str = "white"
    economically_disadvantaged: bool = False
    english_learner: bool = False
    disability: bool = False


@dataclass(frozen=True)
class Course:
    """The course each school's one class teaches, and its enrollment dates."""

    title: str = "Math 8"
    course: str = "course-math-8"
    subject: str = "Mathematics"
    grade: str = "08"
    begin: date = date(2026, 8, 24)
    end: date = date(2027, 5, 28)
    district: str = "org-district"


MANIFESTED = ("orgs", "users", "classes", "enrollments", "demographics")
RACE_COLUMNS = ("americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                "nativeHawaiianOrOtherPacificIslander", "white")  # fmt: skip
#: race_ethnicity -> the race columns set (two or more races: two of them and the two-or-more flag).
RACE_COLUMNS_OF: Mapping[str, tuple[str, ...]] = {
    "hispanic_or_latino": (), "white": ("white",), "black_or_african_american": ("blackOrAfricanAmerican",),
    "asian": ("asian",), "two_or_more_races": ("white", "blackOrAfricanAmerican"),
    "american_indian_or_alaska_native": ("americanIndianOrAlaskaNative",),
    "native_hawaiian_or_other_pacific_islander": ("nativeHawaiianOrOtherPacificIslander",),
}  # fmt: skip


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row])
    return out.getvalue().encode()


def oneroster_files(students: Sequence[RosterStudent], schools: Sequence[str], course: Course) -> dict[str, bytes]:
    """A OneRoster 1.1 CSV package (file name -> content): the district and its schools, one class per school
    with its students enrolled, the students, and their demographics with Proficio's extension columns."""
    title = course.title
    return {
        "manifest.csv": _csv(["propertyName", "value"], [["manifest.version", "1.0"], ["oneroster.version", "1.1"],
                             *[[f"file.{name}", "bulk"] for name in MANIFESTED]]),
        "orgs.csv": _csv(["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"],
                         [[course.district, "", "", "District", "district", "", ""],
                          *[[school, "", "", school.replace("-", " ").title(), "school", "", course.district]
                            for school in schools]]),
        "users.csv": _csv(["sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role",
                           "username", "userIds", "givenName", "familyName", "middleName", "identifier", "email",
                           "sms", "phone", "agentSourcedIds", "grades", "password"],
                          [[s.sourced_id, "", "", "true", s.school, "student", s.sourced_id, "", "Given", "Family",
                            "", "", s.email, "", "", "", course.grade, ""] for s in students]),
        "classes.csv": _csv(["sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId",
                             "classCode", "classType", "location", "schoolSourcedId", "termSourcedIds", "subjects",
                             "subjectCodes", "periods"],
                            [[class_of(school), "", "", f"{title} at {school}", course.grade, course.course, "",
                              "scheduled", "", school, "term-1", course.subject, "", "1"] for school in schools]),
        "enrollments.csv": _csv(["sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId",
                                 "userSourcedId", "role", "primary", "beginDate", "endDate"],
                                [[f"enr-{s.sourced_id}", "", "", class_of(s.school), s.school, s.sourced_id,
                                  "student", "false", course.begin.isoformat(), course.end.isoformat()]
                                 for s in students]),
        "demographics.csv": _csv(["sourcedId", "status", "dateLastModified", "birthDate", "sex", *RACE_COLUMNS,
                                  "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity", "countryOfBirthCode",
                                  "stateOfBirthAbbreviation", "cityOfBirth", "publicSchoolResidenceStatus",
                                  "metadata.economicallyDisadvantaged", "metadata.englishLearner",
                                  "metadata.disability"],
                                 [[s.sourced_id, "", "", "2012-01-01", s.sex,
                                   *[c in RACE_COLUMNS_OF[s.race_ethnicity] for c in RACE_COLUMNS],
                                   s.race_ethnicity == "two_or_more_races", s.race_ethnicity == "hispanic_or_latino",
                                   "", "", "", "", s.economically_disadvantaged, s.english_learner, s.disability]
                                  for s in students]),
    }  # fmt: skip


def roster_student(profile: Profile) -> RosterStudent:
    groups = profile.groups
    return RosterStudent(profile.learner, profile.school, profile.email, groups[GENDER], groups[RACE_ETHNICITY],
                         *(groups[flag] == "true" for flag in FLAGS))  # fmt: skip


def plan_document(
    title: str, start: date, target: date, schools: Sequence[str], planned_order: Sequence[str], weeks: int
) -> dict[str, Any]:
    """The pacing plan: every practised competency must-do, planned evenly over the course's weeks in an order
    that respects ``precedes``; followed by each school's class."""
    count = len(planned_order)
    return {
        "plan": PLAN_ID, "title": title, "start": start.isoformat(), "target": target.isoformat(),
        "sections": [class_of(school) for school in schools], "learners": [],
        "competencies": [{"uri": uri, "tier": "must", "week": math.ceil((k + 1) * weeks / count)}
                         for k, uri in enumerate(planned_order)],
    }  # fmt: skip


# --- the truth of pace and of the gaps --------------------------------------------------------------------------


@dataclass(frozen=True)
class PaceTruth:
    """A learner's pace on the judging day from her true mastery dates (the definitions of section 4)."""

    required: int
    mastered: int
    pct_mastered: float
    #: Percent mastered at or above the expected percentage (school days elapsed) less the band.
    on_track: bool
    active_weeks: int
    #: First true masteries in her last WINDOW_WEEKS active weeks, per active week among them.
    velocity: float
    #: The judging day plus ceil(remaining / velocity) school weeks; None at velocity 0.
    projected_completion: date | None
    #: The day of her last first true mastery, when she truly masters the whole plan (within twice the course).
    completed_on: date | None
    #: By the definitions, on her true mastery dates: active in 2 of the last 3 weeks without a first mastery in
    #: her last 3 active weeks; no attempt for DISENGAGED_DAYS school days. Planted learners are these and more:
    #: learners slow by chance can be stalled too.
    stalled: bool
    disengaged: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "required": self.required, "mastered": self.mastered, "pct_mastered": self.pct_mastered,
            "on_track": self.on_track, "active_weeks": self.active_weeks, "velocity": self.velocity,
            "projected_completion": _text(self.projected_completion), "completed_on": _text(self.completed_on),
            "stalled": self.stalled, "disengaged": self.disengaged,
        }  # fmt: skip


def _text(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def pace_truth(
    mastery_days: Sequence[date | None], attempt_days: Iterable[date], start: date, target: date, as_of: date
) -> PaceTruth:
    """``mastery_days``: the true first-mastery day of each required competency (None: never)."""
    required = len(mastery_days)
    firsts = [day for day in mastery_days if day is not None and day <= as_of]
    attempted = [day for day in attempt_days if day <= as_of]
    active = sorted({monday_of(day) for day in attempted})
    window = set(active[-WINDOW_WEEKS:])
    velocity = sum(monday_of(day) in window for day in firsts) / len(window) if window else 0.0
    remaining = required - len(firsts)
    if remaining == 0:
        projected: date | None = as_of
    elif velocity > 0:
        projected = add_school_days(as_of, math.ceil(remaining / velocity - 1e-9) * 5)
    else:
        projected = None
    reached = [day for day in mastery_days if day is not None]
    completed = max(reached) if required and len(reached) == required else None
    pct = round(100 * len(firsts) / required, 1)
    expected = 100 * school_days(start - timedelta(days=1), as_of) / school_days(start - timedelta(days=1), target)
    recent = {monday_of(as_of) - timedelta(weeks=n) for n in range(STALL_WEEKS)}
    last_active = set(active[-STALL_WEEKS:])
    stalled = len(recent & set(active)) >= 2 and not any(monday_of(day) in last_active for day in firsts)
    disengaged = school_days(max(attempted, default=start - timedelta(days=1)), as_of) >= DISENGAGED_DAYS
    return PaceTruth(required, len(firsts), pct, pct >= round(expected, 1) - BAND_PCT, len(active),
                     round(velocity, 2), projected, completed, stalled, disengaged)  # fmt: skip


@dataclass(frozen=True)
class GroupTruth:
    n: int
    #: Medians over the group's learners, as the equity views aggregate (percent of the plan, velocity), and the
    #: percent of them on track.
    pct_mastered: float
    velocity: float
    on_track: float

    def gap(self, other: GroupTruth) -> dict[str, float]:
        return {"pct_mastered": round(self.pct_mastered - other.pct_mastered, 1),
                "velocity": round(self.velocity - other.velocity, 2),
                "on_track": round(self.on_track - other.on_track, 1)}  # fmt: skip

    def as_json(self, everyone: GroupTruth, rest: GroupTruth | None = None) -> dict[str, Any]:
        """With the gaps against all learners, and against the rest (the learners outside the group)."""
        found = {"n": self.n, "pct_mastered_median": self.pct_mastered, "velocity_median": self.velocity,
                 "on_track_pct": self.on_track, "gap_vs_all": self.gap(everyone)}  # fmt: skip
        return found if rest is None else {**found, "gap_vs_rest": self.gap(rest)}


def group_truth(paces: Sequence[PaceTruth]) -> GroupTruth:
    return GroupTruth(len(paces), round(statistics.median(p.pct_mastered for p in paces), 1),
                      round(statistics.median(p.velocity for p in paces), 2),
                      round(100 * sum(p.on_track for p in paces) / len(paces), 1))  # fmt: skip


@dataclass(frozen=True)
class DistrictTruth:
    """The truth of a district beyond each learner's: group sizes, small groups, and the gaps on the judging day."""

    levels: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)
    #: factor -> value -> the group's figures, and those of the learners outside it.
    gaps: Mapping[str, Mapping[str, GroupTruth]] = field(default_factory=dict)
    rest: Mapping[str, Mapping[str, GroupTruth]] = field(default_factory=dict)
    everyone: GroupTruth = GroupTruth(0, 0.0, 0.0, 0.0)


def district_truth(profiles: Sequence[Profile], paces: Sequence[PaceTruth]) -> DistrictTruth:
    """Group sizes per level (``district`` and ``school:<id>``) and factor, and every factor value's medians
    at the district level."""
    levels: dict[str, dict[str, dict[str, int]]] = {}
    for profile in profiles:
        for level in ("district", f"school:{profile.school}"):
            sizes = levels.setdefault(level, {})
            sizes.setdefault("all", {}).setdefault("all", 0)
            sizes["all"]["all"] += 1
            for factor, value in profile.groups.items():
                sizes.setdefault(factor, {}).setdefault(value, 0)
                sizes[factor][value] += 1
    pairs = list(zip(profiles, paces, strict=True))
    gaps: dict[str, dict[str, GroupTruth]] = {}
    rest: dict[str, dict[str, GroupTruth]] = {}
    for factor, values in FACTOR_VALUES.items():
        for value in values:
            inside = [p for profile, p in pairs if profile.groups[factor] == value]
            outside = [p for profile, p in pairs if profile.groups[factor] != value]
            if inside:
                gaps.setdefault(factor, {})[value] = group_truth(inside)
            if inside and outside:
                rest.setdefault(factor, {})[value] = group_truth(outside)
    return DistrictTruth(levels, gaps, rest, group_truth(paces))


def expected_primary_cells(truth: DistrictTruth, min_n: int = PRIMARY_MIN_N) -> list[tuple[str, str, str]]:
    """(level, factor, value) of every group cell with fewer than ``min_n`` learners: what the default rules hide
    from the public on the plan's table (each learner follows the plan, so a cell's n is its group's size)."""
    return sorted((level, factor, value) for level, factors in truth.levels.items()
                  for factor, values in factors.items() for value, n in values.items() if 0 < n < min_n)  # fmt: skip
