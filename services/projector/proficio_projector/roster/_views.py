"""The ``roster`` and ``student_groups`` projections.

``roster`` (unpartitioned: its events are tenant-wide streams) keeps orgs, classes, learners with their
schools, and enrollments. ``student_groups`` keeps effective-dated group memberships; its rows are per
learner stream, so it may be partitioned. Its data is protected (``PROTECTED_VIEWS``): the generic views
API serves it only to credentials with the ``all`` scope.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from proficio_events import StoredEvent

from .._model import Change, Put, Remove, RowRef, State, ViewTable
from ._groups import GROUP_MEMBERSHIP_CHANGED

ORG_SET = "RosterOrgSet"
ORG_REMOVED = "RosterOrgRemoved"
CLASS_SET = "RosterClassSet"
CLASS_REMOVED = "RosterClassRemoved"
LEARNER_SET = "RosterLearnerSet"
LEARNER_REMOVED = "RosterLearnerRemoved"
ENROLLMENT_SET = "RosterEnrollmentSet"
ENROLLMENT_DROPPED = "RosterEnrollmentDropped"

STUDENT_GROUPS = "student_groups"
#: Views holding protected data (group memberships): readable through the generic views API only with ``all``.
PROTECTED_VIEWS = frozenset({STUDENT_GROUPS})


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class Roster:
    """Orgs, classes, learners (pseudonymous ids) with their schools, and enrollments, as the SIS last sent them.

    A student's sourcedId is not kept (version 2 dropped the learners' ``user_sourced_id``), and her enrollments are
    keyed by their keyed digest (``student_enrollment_key``); staff enrollments keep their sourcedIds."""

    name = "roster"
    version = 2
    event_types: frozenset[str] | None = frozenset(
        {ORG_SET, ORG_REMOVED, CLASS_SET, CLASS_REMOVED, LEARNER_SET, LEARNER_REMOVED, ENROLLMENT_SET,
         ENROLLMENT_DROPPED}
    )  # fmt: skip
    partitioned = False
    tables: Sequence[ViewTable] = (
        ViewTable(
            "orgs",
            key=(sa.Column("tenant", sa.Text), sa.Column("org", sa.Text)),
            values=(
                sa.Column("name", sa.Text, nullable=False),
                sa.Column("type", sa.Text, nullable=False),
                sa.Column("identifier", sa.Text, nullable=True),
                sa.Column("parent", sa.Text, nullable=True),
                sa.Column("changed_us", sa.BigInteger, nullable=False),
            ),
        ),
        ViewTable(
            "classes",
            key=(sa.Column("tenant", sa.Text), sa.Column("class", sa.Text)),
            values=(
                sa.Column("title", sa.Text, nullable=False),
                sa.Column("school", sa.Text, nullable=False),
                sa.Column("course", sa.Text, nullable=False),
                sa.Column("class_code", sa.Text, nullable=True),
                sa.Column("class_type", sa.Text, nullable=False),
                sa.Column("grades", sa.Text, nullable=False),  # JSON array
                sa.Column("changed_us", sa.BigInteger, nullable=False),
            ),
            indexes=(("tenant", "school"),),
        ),
        ViewTable(
            "learners",
            key=(sa.Column("tenant", sa.Text), sa.Column("learner", sa.Text)),
            values=(
                sa.Column("schools", sa.Text, nullable=False),  # JSON array of org sourcedIds
                sa.Column("grades", sa.Text, nullable=False),  # JSON array
                sa.Column("changed_us", sa.BigInteger, nullable=False),
            ),
        ),
        # The same learners by school, for views that aggregate per school.
        ViewTable(
            "school_learners",
            key=(sa.Column("tenant", sa.Text), sa.Column("school", sa.Text), sa.Column("learner", sa.Text)),
            values=(sa.Column("changed_us", sa.BigInteger, nullable=False),),
        ),
        ViewTable(
            "enrollments",
            # enrollment: the sourcedId of a staff enrollment, a keyed digest of a student's (never her sourcedId)
            key=(sa.Column("tenant", sa.Text), sa.Column("enrollment", sa.Text)),
            values=(
                sa.Column("class", sa.Text, nullable=False),
                sa.Column("school", sa.Text, nullable=False),
                sa.Column("role", sa.Text, nullable=False),
                sa.Column("learner", sa.Text, nullable=True),  # students
                sa.Column("user_sourced_id", sa.Text, nullable=True),  # teachers and other staff
                sa.Column("is_primary", sa.Boolean, nullable=True),
                sa.Column("begin_date", sa.Text, nullable=True),
                sa.Column("end_date", sa.Text, nullable=True),
                sa.Column("status", sa.Text, nullable=False),  # active | dropped
                sa.Column("dropped_on", sa.Text, nullable=True),
                sa.Column("changed_us", sa.BigInteger, nullable=False),
            ),
            indexes=(("tenant", "class"), ("tenant", "learner")),
        ),
    )

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        data = event.data()
        kind = event.event_type
        if kind in (ORG_SET, ORG_REMOVED):
            return (RowRef("orgs", (event.tenant, data["org"])),)
        if kind in (CLASS_SET, CLASS_REMOVED):
            return (RowRef("classes", (event.tenant, data["class"])),)
        if kind in (ENROLLMENT_SET, ENROLLMENT_DROPPED):
            return (RowRef("enrollments", (event.tenant, data["enrollment"])),)
        schools = data["schools"] + data.get("removed_schools", [])
        return (
            RowRef("learners", (event.tenant, data["learner"])),
            *(RowRef("school_learners", (event.tenant, school, data["learner"])) for school in schools),
        )

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        data = event.data()
        tenant, kind, at = event.tenant, event.event_type, event.recorded_us
        if kind == ORG_SET:
            values = {"name": data["name"], "type": data["type"], "identifier": data["identifier"],
                      "parent": data["parent"], "changed_us": at}  # fmt: skip
            return [Put("orgs", (tenant, data["org"]), values)]
        if kind == ORG_REMOVED:
            return [Remove("orgs", (tenant, data["org"]))]
        if kind == CLASS_SET:
            values = {"title": data["title"], "school": data["school"], "course": data["course"],
                      "class_code": data["class_code"], "class_type": data["class_type"],
                      "grades": _json(data["grades"]), "changed_us": at}  # fmt: skip
            return [Put("classes", (tenant, data["class"]), values)]
        if kind == CLASS_REMOVED:
            return [Remove("classes", (tenant, data["class"]))]
        if kind == ENROLLMENT_SET:
            values = {"class": data["class"], "school": data["school"], "role": data["role"],
                      "learner": data["learner"], "user_sourced_id": data["user"], "is_primary": data["primary"],
                      "begin_date": data["begin_date"], "end_date": data["end_date"], "status": "active",
                      "dropped_on": None, "changed_us": at}  # fmt: skip
            return [Put("enrollments", (tenant, data["enrollment"]), values)]
        if kind == ENROLLMENT_DROPPED:
            key = (tenant, data["enrollment"])
            row = state.get("enrollments", key)
            if row is None:
                return []
            kept = {k: v for k, v in row.items() if k not in ("tenant", "enrollment")}
            return [Put("enrollments", key, {**kept, "status": "dropped", "dropped_on": data["dropped_on"],
                                             "changed_us": at})]  # fmt: skip
        learner = data["learner"]
        if kind == LEARNER_REMOVED:
            return [Remove("learners", (tenant, learner)),
                    *(Remove("school_learners", (tenant, s, learner)) for s in data["schools"])]  # fmt: skip
        # (events written before students' sourcedIds were left out also hold ``user``: not shown)
        values = {"schools": _json(data["schools"]), "grades": _json(data["grades"]), "changed_us": at}
        return [
            Put("learners", (tenant, learner), values),
            *(Put("school_learners", (tenant, s, learner), {"changed_us": at}) for s in data["schools"]),
            *(Remove("school_learners", (tenant, s, learner)) for s in data["removed_schools"]),
        ]


class StudentGroups:
    """Effective-dated group memberships (protected): one row per learner, factor and start date."""

    name = STUDENT_GROUPS
    version = 1
    event_types: frozenset[str] | None = frozenset({GROUP_MEMBERSHIP_CHANGED})
    partitioned = True
    tables: Sequence[ViewTable] = (
        ViewTable(
            "memberships",
            key=(
                sa.Column("tenant", sa.Text),
                sa.Column("learner", sa.Text),
                sa.Column("factor", sa.Text),
                sa.Column("effective_from", sa.Text),  # YYYY-MM-DD, inclusive
            ),
            values=(
                sa.Column("value", sa.Text, nullable=False),
                sa.Column("effective_to", sa.Text, nullable=True),  # YYYY-MM-DD, exclusive; None: open
                sa.Column("changed_us", sa.BigInteger, nullable=False),
            ),
            indexes=(("tenant", "factor", "value"),),
        ),
    )

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        data = event.data()
        return (RowRef("memberships", (event.tenant, data["learner"], data["factor"], data["effective_from"])),)

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        data = event.data()
        key = (event.tenant, data["learner"], data["factor"], data["effective_from"])
        if data["effective_to"] == data["effective_from"]:
            return [Remove("memberships", key)]  # withdrawn the day it began: it never held
        values = {"value": data["value"], "effective_to": data["effective_to"], "changed_us": event.recorded_us}
        return [Put("memberships", key, values)]
