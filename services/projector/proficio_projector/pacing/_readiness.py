"""Graduation readiness: requirements with alternative demonstration options, judged per learner.

A menu (``GraduationMenuSet``) lists requirements (an area: English, mathematics, ...); a requirement is
met when **any** of its options is (competency-domain.md section 5, a Colorado-style menu). Options:

- ``competencies``: mastery of listed competencies (or a parent's children): ``all`` or ``k_of_n``;
- ``assessment``: a statement about an activity (a test, a course, a certificate) reaching a cut: a raw
  score (``min_raw``), a scaled score (``min_scaled``) or success (``success: true``);
- ``rating``: a teacher's rating of a competency (a capstone, a performance assessment scored on a
  rubric) at or above a level of its scale (``min_points``).

Each result names the option that met it, its evidence and when; the projected readiness date applies
the learner's mastery velocity to the competencies still needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from proficio_events import AppendResult, EventLog, NewEvent

from ..competency import Observation, Progress
from ._calendar import SchoolCalendar
from ._pace import day_of
from ._plans import MENU_SET, PacingDataError, _id, _iri

OPTION_KINDS = ("competencies", "assessment", "rating")
MAX_REQUIREMENTS = 50


def _number(value: Any, what: str) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise PacingDataError(f"{what} must be a number, not {value!r}") from None
    if not number.is_finite():
        raise PacingDataError(f"{what} must be a finite number")
    return str(number)


def _option(option: Any, where: str) -> dict[str, Any]:
    if not isinstance(option, Mapping):
        raise PacingDataError(f"{where} must be an object")
    kind = option.get("kind")
    checked: dict[str, Any] = {"id": _id(option.get("id"), f"{where}.id"), "kind": kind,
                               "title": str(option.get("title") or "")}  # fmt: skip
    if kind == "competencies":
        listed, parent = option.get("competencies"), option.get("parent")
        if (listed is None) == (parent is None):
            raise PacingDataError(f"{where}: give competencies (a list) or parent (a competency IRI), not both")
        if listed is not None:
            if not isinstance(listed, list) or not listed:
                raise PacingDataError(f"{where}.competencies must be a non-empty list of IRIs")
            checked["competencies"] = [_iri(c, f"{where}.competencies[{n}]") for n, c in enumerate(listed)]
        else:
            checked["parent"] = _iri(parent, f"{where}.parent")
        rule = option.get("rule", "all")
        if rule not in ("all", "k_of_n"):
            raise PacingDataError(f"{where}.rule is all or k_of_n, not {rule!r}")
        k = option.get("k")
        if (rule == "k_of_n") != (k is not None) or (k is not None and (not isinstance(k, int) or k < 1)):
            raise PacingDataError(f"{where}: k_of_n takes k (1 or more), and only k_of_n does")
        checked |= {"rule": rule, "k": k}
    elif kind == "assessment":
        checked["activity"] = _iri(option.get("activity"), f"{where}.activity")
        cuts = [name for name in ("min_raw", "min_scaled", "success") if option.get(name) is not None]
        if len(cuts) != 1:
            raise PacingDataError(f"{where}: give exactly one cut: min_raw, min_scaled or success")
        if cuts[0] == "success":
            if option["success"] is not True:
                raise PacingDataError(f"{where}.success must be true")
            checked["success"] = True
        else:
            checked[cuts[0]] = _number(option[cuts[0]], f"{where}.{cuts[0]}")
    elif kind == "rating":
        checked["competency"] = _iri(option.get("competency"), f"{where}.competency")
        checked["min_points"] = _number(option.get("min_points"), f"{where}.min_points")
    else:
        raise PacingDataError(f"{where}.kind is one of {', '.join(OPTION_KINDS)}, not {kind!r}")
    return checked


def menu_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a graduation menu as given and return its event payload; every problem is named."""
    if not isinstance(data, Mapping):
        raise PacingDataError("a graduation menu is a JSON object")
    requirements = data.get("requirements")
    if not isinstance(requirements, list) or not requirements:
        raise PacingDataError("requirements must be a non-empty list")
    if len(requirements) > MAX_REQUIREMENTS:
        raise PacingDataError(f"a menu holds at most {MAX_REQUIREMENTS} requirements")
    checked = []
    for n, requirement in enumerate(requirements):
        where = f"requirements[{n}]"
        if not isinstance(requirement, Mapping):
            raise PacingDataError(f"{where} must be an object")
        options = requirement.get("options")
        if not isinstance(options, list) or not options:
            raise PacingDataError(f"{where}.options must be a non-empty list")
        checked_options = [_option(o, f"{where}.options[{m}]") for m, o in enumerate(options)]
        if len({o["id"] for o in checked_options}) != len(checked_options):
            raise PacingDataError(f"{where}: option ids must be unique")
        checked.append({"area": _id(requirement.get("area"), f"{where}.area"),
                        "title": str(requirement.get("title") or ""), "options": checked_options})  # fmt: skip
    if len({r["area"] for r in checked}) != len(checked):
        raise PacingDataError("requirement areas must be unique")
    return {"menu": _id(data.get("menu"), "menu"), "title": str(data.get("title") or ""), "requirements": checked}


async def set_menu(log: EventLog, tenant: str, data: Mapping[str, Any]) -> AppendResult:
    checked = menu_data(data)
    return await log.append(tenant, [NewEvent.of(f"graduation:{checked['menu']}", MENU_SET, checked)])


@dataclass(frozen=True)
class OptionResult:
    option: str
    kind: str
    met: bool
    met_on: date | None
    evidence: tuple[str, ...]
    #: For a competencies option: how many more competencies it needs.
    still_needed: int | None = None


@dataclass(frozen=True)
class RequirementResult:
    area: str
    title: str
    met: bool
    met_by: str | None
    met_on: date | None
    options: tuple[OptionResult, ...]


@dataclass(frozen=True)
class Readiness:
    menu: str
    as_of: date
    requirements: tuple[RequirementResult, ...]
    ready: bool
    ready_on: date | None
    projected_ready: date | None


def _competencies_option(
    option: Mapping[str, Any], found: Mapping[str, Progress], children: Mapping[str, Sequence[str]]
) -> OptionResult:
    wanted = list(option.get("competencies") or children.get(option.get("parent") or "", ()))
    need = len(wanted) if option["rule"] == "all" else min(option["k"], len(wanted))
    days = sorted(
        (day_of(found[c].mastered_at_us), c)  # type: ignore[arg-type]
        for c in wanted
        if c in found and found[c].mastered and found[c].mastered_at_us is not None
    )
    met = bool(wanted) and len(days) >= need
    return OptionResult(option["id"], "competencies", met, days[need - 1][0] if met and need else None,
                        tuple(c for _, c in days), max(need - len(days), 0))  # fmt: skip


def _assessment_option(option: Mapping[str, Any], observations: Sequence[Observation]) -> OptionResult:
    hits = []
    for o in observations:
        if o.activity != option["activity"]:
            continue
        if "success" in option:
            ok = o.success is True
        elif "min_scaled" in option:
            ok = o.norm >= Decimal(option["min_scaled"])
        else:
            ok = o.raw is not None and o.raw >= Decimal(option["min_raw"])
        if ok:
            hits.append((o.timestamp_us, o.statement_id))
    hits.sort()
    return OptionResult(option["id"], "assessment", bool(hits), day_of(hits[0][0]) if hits else None,
                        tuple(s for _, s in hits[:1]))  # fmt: skip


def _rating_option(option: Mapping[str, Any], found: Mapping[str, Progress]) -> OptionResult:
    p = found.get(option["competency"])
    hits = sorted(
        (e.timestamp_us, e.statement_id)
        for e, points in (zip(p.evidence, p.scores, strict=True) if p else ())
        if e.source == "rating" and points >= Decimal(option["min_points"])
    )
    return OptionResult(option["id"], "rating", bool(hits), day_of(hits[0][0]) if hits else None,
                        tuple(s for _, s in hits[:1]))  # fmt: skip


def readiness(
    menu: Mapping[str, Any],
    found: Mapping[str, Progress],
    observations: Sequence[Observation],
    as_of: date,
    *,
    children: Mapping[str, Sequence[str]] | None = None,
    velocity: Decimal = Decimal(0),
    calendar: SchoolCalendar | None = None,
) -> Readiness:
    """A learner's standing on a menu: which requirements are met, by which option and evidence, and when
    she is projected to be ready (her ``velocity`` in competencies per school week over what is still
    needed; None when a requirement can only be met by a test or a rating, or at velocity 0)."""
    results = []
    for requirement in menu["requirements"]:
        options = []
        for option in requirement["options"]:
            if option["kind"] == "competencies":
                options.append(_competencies_option(option, found, children or {}))
            elif option["kind"] == "assessment":
                options.append(_assessment_option(option, observations))
            else:
                options.append(_rating_option(option, found))
        met = sorted((o.met_on, o.option) for o in options if o.met and o.met_on is not None)
        met_by, met_on = (met[0][1], met[0][0]) if met else (None, None)
        results.append(
            RequirementResult(requirement["area"], requirement["title"], bool(met), met_by, met_on, tuple(options))
        )
    ready = all(r.met for r in results)
    ready_on = max((r.met_on for r in results if r.met_on), default=None) if ready else None
    projected: date | None = ready_on
    if not ready:
        needed = []
        for r in results:
            if r.met:
                continue
            counts = [o.still_needed for o in r.options if o.kind == "competencies" and o.still_needed is not None]
            needed.append(min(counts) if counts else None)
        if any(n is None for n in needed) or velocity <= 0:
            projected = None
        else:
            cal = calendar or SchoolCalendar()
            weeks = math.ceil(sum(n for n in needed if n is not None) / float(velocity) - 1e-9)
            projected = cal.add_school_days(as_of, weeks * len(cal.weekdays))
    return Readiness(menu["menu"], as_of, tuple(results), ready, ready_on, projected)
