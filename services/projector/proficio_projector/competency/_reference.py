"""Alignments and mastery policies: tenant-wide reference data, each change an event.

- ``AlignmentDefined`` / ``AlignmentRemoved``: an activity IRI counts as evidence of a competency, with a
  weight (an aligned item bank, a teacher's mapping). Statements that name their competencies need none.
- ``MasteryPolicyChanged``: the method (and its parameter) for a scope: the tenant, a framework, or one
  competency; the most specific scope wins when progress is read.
- ``RollupRuleChanged``: how a parent competency (or a framework's graduate profile) is judged from its
  children, for the same scopes.
- ``SectionRosterSet``: a section (a class) and the learners in it, whose mastery grid dashboards read.

The ``competency_reference`` projection keeps the current alignments and policies; it is unpartitioned
(its rows are tenant-wide). Progress is computed when read, so a change applies at once, no rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa

from proficio_events import AppendResult, EventLog, NewEvent, StoredEvent

from .._model import Change, Put, Remove, RowRef, State, ViewTable
from ._mastery import MasteryPolicy, Method
from ._progress import RollupPolicy, RollupRule

ALIGNMENT_DEFINED = "AlignmentDefined"
ALIGNMENT_REMOVED = "AlignmentRemoved"
POLICY_CHANGED = "MasteryPolicyChanged"
ROLLUP_CHANGED = "RollupRuleChanged"
SECTION_SET = "SectionRosterSet"
REFERENCE_STREAM = "competency:reference"
MAX_SECTION = 1000


class ReferenceDataError(ValueError):
    """An alignment or a policy that cannot be recorded, and why."""


def _iri(value: str, what: str) -> str:
    if not value or ":" not in value or any(c.isspace() for c in value):
        raise ReferenceDataError(f"{what} must be an IRI, not {value!r}")
    return value


def check_scope(scope: str) -> str:
    """``tenant``, ``framework:<identifier>`` or ``competency:<IRI>``."""
    if scope == "tenant":
        return scope
    kind, _, rest = scope.partition(":")
    if kind in ("framework", "competency") and rest:
        return scope
    raise ReferenceDataError(f"scope must be tenant, framework:<identifier> or competency:<IRI>, not {scope!r}")


async def define_alignment(
    log: EventLog, tenant: str, activity: str, competency: str, *, weight: str | Decimal = "1", source: str = "api"
) -> AppendResult:
    try:
        value = Decimal(str(weight))
    except InvalidOperation:
        raise ReferenceDataError(f"weight must be a number, not {weight!r}") from None
    if not Decimal(0) < value <= Decimal(1):
        raise ReferenceDataError(f"weight must be in (0, 1], not {value}")
    data = {"activity": _iri(activity, "activity"), "competency": _iri(competency, "competency"),
            "weight": str(value), "source": source}  # fmt: skip
    return await log.append(tenant, [NewEvent.of(REFERENCE_STREAM, ALIGNMENT_DEFINED, data)])


async def remove_alignment(log: EventLog, tenant: str, activity: str, competency: str) -> AppendResult:
    data = {"activity": _iri(activity, "activity"), "competency": _iri(competency, "competency")}
    return await log.append(tenant, [NewEvent.of(REFERENCE_STREAM, ALIGNMENT_REMOVED, data)])


async def set_policy(log: EventLog, tenant: str, scope: str, method: str, parameter: int | None = None) -> AppendResult:
    try:
        policy = MasteryPolicy(Method(method), parameter)
    except ValueError as exc:
        raise ReferenceDataError(f"mastery policy: {exc}") from None
    data = {"scope": check_scope(scope), "method": policy.method.value, "parameter": parameter}
    return await log.append(tenant, [NewEvent.of(REFERENCE_STREAM, POLICY_CHANGED, data)])


async def set_rollup_rule(log: EventLog, tenant: str, scope: str, rule: str, k: int | None = None) -> AppendResult:
    try:
        policy = RollupPolicy(RollupRule(rule), k)
    except ValueError as exc:
        choices = ", ".join(r.value for r in RollupRule)
        raise ReferenceDataError(f"rollup rule ({choices}): {exc}") from None
    data = {"scope": check_scope(scope), "rule": policy.rule.value, "k": k}
    return await log.append(tenant, [NewEvent.of(REFERENCE_STREAM, ROLLUP_CHANGED, data)])


def check_section(section: str) -> str:
    if not section or len(section) > 200 or any(c.isspace() or c == "/" for c in section):
        raise ReferenceDataError(f"a section id is 1 to 200 characters, no spaces or '/', not {section!r}")
    return section


def section_stream(section: str) -> str:
    return f"section:{section}"


def section_roster_event(
    section: str, title: str, learners: Sequence[str], *, expected_version: int | None = None
) -> NewEvent:
    """The ``SectionRosterSet`` event replacing a section's roster, checked (for callers batching it with others)."""
    roster = list(dict.fromkeys(learners))
    if len(roster) > MAX_SECTION:
        raise ReferenceDataError(f"a section holds at most {MAX_SECTION} learners, not {len(roster)}")
    if any(not isinstance(learner, str) or not learner for learner in roster):
        raise ReferenceDataError("learners must be learner ids (non-empty strings)")
    data = {"section": check_section(section), "title": title, "learners": roster}
    return NewEvent.of(section_stream(section), SECTION_SET, data, expected_version=expected_version)


async def set_section(log: EventLog, tenant: str, section: str, title: str, learners: Sequence[str]) -> AppendResult:
    """Replace a section's roster (learner ids, the views' pseudonymous ids) in one event."""
    return await log.append(tenant, [section_roster_event(section, title, learners)])


class CompetencyReference:
    name = "competency_reference"
    version = 2
    event_types: frozenset[str] | None = frozenset(
        {ALIGNMENT_DEFINED, ALIGNMENT_REMOVED, POLICY_CHANGED, ROLLUP_CHANGED, SECTION_SET}
    )
    partitioned = False
    tables: Sequence[ViewTable] = (
        ViewTable(
            "alignments",
            key=(sa.Column("tenant", sa.Text), sa.Column("activity", sa.Text), sa.Column("competency", sa.Text)),
            values=(sa.Column("weight", sa.Text, nullable=False), sa.Column("source", sa.Text, nullable=False)),
        ),
        ViewTable(
            "policies",
            key=(sa.Column("tenant", sa.Text), sa.Column("scope", sa.Text)),
            values=(
                sa.Column("method", sa.Text, nullable=False),
                sa.Column("parameter", sa.Integer, nullable=True),
                sa.Column("changed_us", sa.BigInteger, nullable=False),
            ),
        ),
        ViewTable(
            "rollup_rules",
            key=(sa.Column("tenant", sa.Text), sa.Column("scope", sa.Text)),
            values=(
                sa.Column("rule", sa.Text, nullable=False),
                sa.Column("k", sa.Integer, nullable=True),
                sa.Column("changed_us", sa.BigInteger, nullable=False),
            ),
        ),
        ViewTable(
            "sections",
            key=(sa.Column("tenant", sa.Text), sa.Column("section", sa.Text)),
            values=(
                sa.Column("title", sa.Text, nullable=False),
                sa.Column("learners", sa.Text, nullable=False),  # JSON array of learner ids
                sa.Column("changed_us", sa.BigInteger, nullable=False),
            ),
        ),
    )

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        data = event.data()
        if event.event_type == POLICY_CHANGED:
            return (RowRef("policies", (event.tenant, data["scope"])),)
        if event.event_type == ROLLUP_CHANGED:
            return (RowRef("rollup_rules", (event.tenant, data["scope"])),)
        if event.event_type == SECTION_SET:
            return (RowRef("sections", (event.tenant, data["section"])),)
        return (RowRef("alignments", (event.tenant, data["activity"], data["competency"])),)

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        data = event.data()
        if event.event_type == POLICY_CHANGED:
            values = {"method": data["method"], "parameter": data["parameter"], "changed_us": event.recorded_us}
            return [Put("policies", (event.tenant, data["scope"]), values)]
        if event.event_type == ROLLUP_CHANGED:
            values = {"rule": data["rule"], "k": data["k"], "changed_us": event.recorded_us}
            return [Put("rollup_rules", (event.tenant, data["scope"]), values)]
        if event.event_type == SECTION_SET:
            values = {"title": data["title"], "learners": orjson.dumps(data["learners"]).decode(),
                      "changed_us": event.recorded_us}  # fmt: skip
            return [Put("sections", (event.tenant, data["section"]), values)]
        key = (event.tenant, data["activity"], data["competency"])
        if event.event_type == ALIGNMENT_REMOVED:
            return [Remove("alignments", key)]
        return [Put("alignments", key, {"weight": data["weight"], "source": data["source"]})]


P = TypeVar("P")


def policy_for(policies: Mapping[str, P], competency: str, framework: str | None, default: P) -> P:
    """The most specific policy: the competency's, its framework's, the tenant's, else ``default``."""
    for scope in (f"competency:{competency}", f"framework:{framework}" if framework else None, "tenant"):
        if scope is not None and scope in policies:
            return policies[scope]
    return default


def policies_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, MasteryPolicy]:
    return {row["scope"]: MasteryPolicy(Method(row["method"]), row["parameter"]) for row in rows}


def rollup_rules_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, RollupPolicy]:
    return {row["scope"]: RollupPolicy(RollupRule(row["rule"]), row["k"]) for row in rows}
