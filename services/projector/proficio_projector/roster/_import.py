"""Importing a OneRoster package: what changed since the previous import, as events, appended in one batch.

The previous import is read back from the log (the roster streams, each class's section stream and each
learner's protected group stream), compared with the package, and only the differences are appended; an
unchanged package appends nothing. Every stream touched is appended with the version it was read at, so an
import racing another (or a section edited meanwhile) fails whole instead of interleaving.

Students become learners under the id ingest gives the xAPI actor the tenant's LMS sends for them (see
``ActorMapping``): names, emails, usernames, SIS identifiers and birth dates never reach the log. Nor do a student's
sourcedId and her enrollments' sourcedIds: the district's SIS maps them to her name, so they would re-identify her
learner id after an erasure. Her ``RosterLearnerSet`` names her by learner id only, and her enrollments are keyed
by ``student_enrollment_key`` (a keyed digest, HMAC-SHA256 with the tenant secret), so an unchanged re-import still
compares equal and a dropped enrollment is still found. Staff (teachers...), classes and orgs keep their sourcedIds.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from hashlib import sha256
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog, InlineHandler, NewEvent, StoredEvent, directory_rows_of, identifier_secret

from ..competency._reference import MAX_SECTION, SECTION_SET, section_roster_event, section_stream
from ._groups import (
    FACTORS,
    GENDER,
    GROUP_MEMBERSHIP_CHANGED,
    RACE_ETHNICITY,
    Membership,
    group_values,
    groups_stream,
    membership_changes,
    memberships_of,
)
from ._oneroster import Problem, RosterError, RosterPackage, User
from ._views import (
    CLASS_REMOVED,
    CLASS_SET,
    ENROLLMENT_DROPPED,
    ENROLLMENT_SET,
    LEARNER_REMOVED,
    LEARNER_SET,
    ORG_REMOVED,
    ORG_SET,
)

ORGS_STREAM = "roster:orgs"
CLASSES_STREAM = "roster:classes"
LEARNERS_STREAM = "roster:learners"
ENROLLMENTS_STREAM = "roster:enrollments"
_ENROLLMENT_DOMAIN = b"proficio:roster-enrollment:1\x00"

#: Turns (log, tenant, xAPI actors) into the views' learner ids, enrolling in the learner directory the actors it
#: does not know (a roster names students before they send anything): ``proficio_ingest.enroll_learner_ids``.
LearnerIds = Callable[[EventLog, str, Sequence[Any]], Awaitable[list[str]]]


def student_enrollment_key(secret: bytes, sourced_id: str) -> str:
    """What a student's enrollment is keyed by in events and views: ``enrollment:`` + hex HMAC-SHA256 of its sourcedId
    with the tenant secret (domain-separated from the other keyed digests). The same sourcedId gives the same key, so
    imports still diff by it; without the tenant secret nobody can test a sourcedId from the SIS against it."""
    return "enrollment:" + hmac.new(secret, _ENROLLMENT_DOMAIN + sourced_id.encode(), sha256).hexdigest()


class ActorSource(StrEnum):
    """Which users.csv field the tenant's LMS sends as the student's xAPI actor."""

    EMAIL = "email"  # mbox mailto:<email>
    SOURCED_ID = "sourcedId"  # account {homePage, name: sourcedId}
    USERNAME = "username"  # account {homePage, name: username}
    IDENTIFIER = "identifier"  # account {homePage, name: identifier}


@dataclass(frozen=True)
class ActorMapping:
    """How a student maps to an xAPI actor: an mbox from the email, or an account on ``home_page``."""

    source: ActorSource = ActorSource.EMAIL
    home_page: str | None = None

    def __post_init__(self) -> None:
        if self.source is ActorSource.EMAIL:
            if self.home_page is not None:
                raise ValueError("a home page is for account actors (sourcedId, username, identifier), not email")
            return
        if self.home_page is None:
            raise ValueError(f"actors from {self.source.value} are accounts: give the LMS's home page (a URL)")
        parts = urlsplit(self.home_page)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the home page must be an http(s) URL, not {self.home_page!r}")

    def actor(self, user: User) -> dict[str, Any] | None:
        """The xAPI agent the LMS sends for ``user`` (None: the user has no value in that column)."""
        if self.source is ActorSource.EMAIL:
            return {"objectType": "Agent", "mbox": f"mailto:{user.email}"} if user.email else None
        name = {ActorSource.SOURCED_ID: user.sourced_id, ActorSource.USERNAME: user.username,
                ActorSource.IDENTIFIER: user.identifier}[self.source]  # fmt: skip
        return {"objectType": "Agent", "account": {"homePage": self.home_page, "name": name}} if name else None


@dataclass(frozen=True)
class RosterImportResult:
    tenant: str
    effective: str
    orgs: int
    classes: int
    learners: int
    enrollments: int
    #: Event type -> how many were appended (empty: the package changed nothing).
    appended: Mapping[str, int] = field(default_factory=dict)
    first_position: int | None = None
    last_position: int | None = None

    @property
    def changed(self) -> bool:
        return bool(self.appended)


@dataclass
class _Previous:
    """What the log says the previous imports left: entity id -> its data as last set."""

    orgs: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    learners: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Enrollments with their status: active, or dropped.
    enrollments: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    memberships: dict[str, dict[tuple[str, str], Membership]] = field(default_factory=dict)
    #: Stream -> its version when read, for the appends' concurrency check.
    versions: dict[str, int] = field(default_factory=dict)


async def import_roster(
    log: EventLog,
    tenant: str,
    package: RosterPackage,
    *,
    learner_ids: LearnerIds,
    actor: ActorMapping | None = None,
    effective: date,
) -> RosterImportResult:
    """Append what ``package`` changes since the previous import; group changes take effect on ``effective``.

    Raises ``RosterError`` (and appends nothing) when students cannot be mapped to actors, a class is too
    large for a section, or a group change would be dated before the learner's latest recorded change.
    """
    mapping = actor or ActorMapping()
    learners = await _learner_ids(log, package, tenant, mapping, learner_ids)
    previous = _Previous()
    for stream in (ORGS_STREAM, CLASSES_STREAM, LEARNERS_STREAM, ENROLLMENTS_STREAM):
        await _load_roster_stream(log, tenant, stream, previous)
    for class_id in sorted(set(package.classes) | set(previous.classes)):
        history = await log.read_stream(tenant, section_stream(class_id))
        previous.versions[section_stream(class_id)] = history[-1].stream_version if history else 0
        sets = [e for e in history if e.event_type == SECTION_SET]
        if sets:
            previous.sections[class_id] = sets[-1].data()
    for learner in sorted(set(learners.values()) | set(previous.learners)):
        history = await log.read_stream(tenant, groups_stream(learner))
        previous.versions[groups_stream(learner)] = history[-1].stream_version if history else 0
        previous.memberships[learner] = memberships_of(
            e.data() for e in history if e.event_type == GROUP_MEMBERSHIP_CHANGED
        )
    secret = await identifier_secret(log, tenant)
    planned = _plan(package, learners, effective.isoformat(), previous, secret)
    events = _with_expected_versions(planned, previous.versions)
    counts = collections.Counter(e.event_type for e in events)
    result = RosterImportResult(
        tenant=tenant,
        effective=effective.isoformat(),
        orgs=len(package.orgs),
        classes=len(package.classes),
        learners=len(learners),
        enrollments=len(package.enrollments),
        appended=dict(sorted(counts.items())),
    )
    if not events:
        return result
    appended = await log.append(tenant, events, inline=_still_enrolled(tenant, learners))
    positions = [e.position for e in appended.events]
    return dataclasses.replace(result, first_position=min(positions), last_position=max(positions))


def _still_enrolled(tenant: str, learners: Mapping[str, str]) -> InlineHandler:
    """A check in the append's transaction, under the log's lock: every student's learner id is still in the learner
    directory. The ids were enrolled before (in a transaction of their own); a student erased since would have the
    roster name her erased id, which her next statements no longer get: the import fails whole instead (run again,
    it enrolls her afresh)."""

    async def check(conn: AsyncConnection, _events: Sequence[StoredEvent]) -> None:
        known = set(await directory_rows_of(conn, tenant, learners.values()))
        gone = sorted(user for user, learner in learners.items() if learner not in known)
        if gone:
            raise RosterError([Problem("users.csv", f"student {user!r} was erased while the roster was imported;"
                                       " import it again") for user in gone])  # fmt: skip

    return check


async def _learner_ids(
    log: EventLog, package: RosterPackage, tenant: str, mapping: ActorMapping, learner_ids: LearnerIds
) -> dict[str, str]:
    """Student sourcedId -> learner id; every student needs an actor, and no two students the same one."""
    column = mapping.source.value
    problems: list[Problem] = []
    found: dict[str, str] = {}
    owner: dict[str, User] = {}
    students: list[tuple[User, Any]] = []
    for user in sorted(package.users.values(), key=lambda u: u.row):
        if user.role != "student":
            continue
        agent = mapping.actor(user)
        if agent is None:
            problems.append(Problem("users.csv", f"a student needs a value here to be an xAPI actor (--actor "
                                    f"{column})", user.row, column))  # fmt: skip
            continue
        students.append((user, agent))
    if problems:
        raise RosterError(problems)
    ids = await learner_ids(log, tenant, [agent for _user, agent in students]) if students else []
    for (user, _agent), learner in zip(students, ids, strict=True):
        if learner in owner:
            problems.append(Problem("users.csv", f"the same xAPI actor as row {owner[learner].row}: two students "
                                    "would be one learner", user.row, column))  # fmt: skip
            continue
        owner[learner] = user
        found[user.sourced_id] = learner
    if problems:
        raise RosterError(problems)
    return found


async def _load_roster_stream(log: EventLog, tenant: str, stream: str, previous: _Previous) -> None:
    history = await log.read_stream(tenant, stream)
    previous.versions[stream] = history[-1].stream_version if history else 0
    for event in history:
        data = dict(event.data())
        kind = event.event_type
        if kind == ORG_SET:
            previous.orgs[data["org"]] = data
        elif kind == ORG_REMOVED:
            previous.orgs.pop(data["org"], None)
        elif kind == CLASS_SET:
            previous.classes[data["class"]] = data
        elif kind == CLASS_REMOVED:
            previous.classes.pop(data["class"], None)
        elif kind == LEARNER_SET:
            data.pop("removed_schools", None)  # how the view catches up, not part of the learner
            data.pop("user", None)  # her sourcedId, in events written before it was left out
            previous.learners[data["learner"]] = data
        elif kind == LEARNER_REMOVED:
            previous.learners.pop(data["learner"], None)
        elif kind == ENROLLMENT_SET:
            previous.enrollments[data["enrollment"]] = {**data, "status": "active"}
        elif kind == ENROLLMENT_DROPPED and data["enrollment"] in previous.enrollments:
            previous.enrollments[data["enrollment"]]["status"] = "dropped"


#: An event to append: (stream, type, data).
_Planned = tuple[str, str, dict[str, Any]]


def _plan(
    package: RosterPackage, learners: Mapping[str, str], effective: str, previous: _Previous, secret: bytes
) -> list[_Planned]:
    """The events that take the log's roster to the package's, in a stable order (``secret``: the tenant's, for the
    keys of students' enrollments)."""
    problems: list[Problem] = []
    planned: list[_Planned] = []
    orgs = {key: {"org": key, "name": o.name, "type": o.type, "identifier": o.identifier, "parent": o.parent}
            for key, o in package.orgs.items()}  # fmt: skip
    planned += _diff(ORGS_STREAM, ORG_SET, ORG_REMOVED, "org", orgs, previous.orgs)

    classes = {key: {"class": key, "title": c.title, "school": c.school, "course": c.course,
                     "class_code": c.class_code, "class_type": c.class_type, "grades": list(c.grades)}
               for key, c in package.classes.items()}  # fmt: skip
    planned += _diff(CLASSES_STREAM, CLASS_SET, CLASS_REMOVED, "class", classes, previous.classes)

    schools = {key for key, o in package.orgs.items() if o.type == "school"}
    enrolled_at: dict[str, set[str]] = collections.defaultdict(set)
    for e in package.enrollments.values():
        if e.role == "student" and e.school in schools:
            enrolled_at[e.user].add(e.school)
    wanted_learners: dict[str, dict[str, Any]] = {}
    for user_id, learner in learners.items():
        user = package.users[user_id]
        at = sorted({org for org in user.orgs if org in schools} | enrolled_at[user_id])
        wanted_learners[learner] = {"learner": learner, "schools": at, "grades": list(user.grades)}
    for learner, data in sorted(wanted_learners.items()):
        before = previous.learners.get(learner)
        if before != data:
            left = sorted(set(before["schools"]) - set(data["schools"])) if before else []
            planned.append((LEARNERS_STREAM, LEARNER_SET, {**data, "removed_schools": left}))
    for learner in sorted(set(previous.learners) - set(wanted_learners)):
        planned.append((LEARNERS_STREAM, LEARNER_REMOVED,
                        {"learner": learner, "schools": previous.learners[learner]["schools"]}))  # fmt: skip

    enrollments: dict[str, dict[str, Any]] = {}
    for sourced_id, e in package.enrollments.items():
        student = e.role == "student"
        key = student_enrollment_key(secret, sourced_id) if student else sourced_id
        enrollments[key] = {"enrollment": key, "class": e.class_id, "school": e.school, "role": e.role,
                            "learner": learners[e.user] if student else None, "user": None if student else e.user,
                            "primary": e.primary, "begin_date": e.begin_date, "end_date": e.end_date}  # fmt: skip
    for key, data in sorted(enrollments.items()):
        if previous.enrollments.get(key) != {**data, "status": "active"}:
            planned.append((ENROLLMENTS_STREAM, ENROLLMENT_SET, data))
    for key, before in sorted(previous.enrollments.items()):
        if key not in enrollments and before["status"] == "active":
            planned.append((ENROLLMENTS_STREAM, ENROLLMENT_DROPPED,
                            {"enrollment": key, "class": before["class"], "dropped_on": effective}))  # fmt: skip

    # Each class is a section of the competency API (its grid), holding its enrolled students.
    students_of: dict[str, set[str]] = collections.defaultdict(set)
    for data in enrollments.values():
        if data["learner"]:
            students_of[data["class"]].add(data["learner"])
    for key, c in sorted(package.classes.items()):
        members = sorted(students_of[key])
        if len(members) > MAX_SECTION:
            problems.append(Problem("classes.csv", f"{len(members)} students are enrolled; a section holds at most "
                                    f"{MAX_SECTION}", c.row, "sourcedId"))  # fmt: skip
        section = {"section": key, "title": c.title, "learners": members}
        if previous.sections.get(key) != section:
            planned.append((section_stream(key), SECTION_SET, section))
    for key in sorted(set(previous.classes) - set(package.classes)):
        before_section = previous.sections.get(key)
        if before_section is not None and before_section["learners"]:
            planned.append((section_stream(key), SECTION_SET, {**before_section, "learners": []}))

    planned += _group_changes(package, learners, wanted_learners, effective, previous, problems)
    if problems:
        raise RosterError(problems)
    return planned


def _diff(
    stream: str,
    set_type: str,
    removed_type: str,
    id_field: str,
    wanted: Mapping[str, dict[str, Any]],
    before: Mapping[str, dict[str, Any]],
) -> list[_Planned]:
    changed = [(stream, set_type, data) for key, data in sorted(wanted.items()) if before.get(key) != data]
    gone = [(stream, removed_type, {id_field: key}) for key in sorted(set(before) - set(wanted))]
    return changed + gone


def _group_changes(
    package: RosterPackage,
    learners: Mapping[str, str],
    wanted_learners: Mapping[str, dict[str, Any]],
    effective: str,
    previous: _Previous,
    problems: list[Problem],
) -> list[_Planned]:
    planned: list[_Planned] = []
    # Without demographics.csv the package says nothing about groups; extension factors without their column
    # are left as they are too (a SIS that does not export them has not said they ended).
    spoken_for = (
        (RACE_ETHNICITY, GENDER, *sorted(package.extension_factors)) if package.demographics is not None else ()
    )
    user_of = {learner: user_id for user_id, learner in learners.items()}
    for learner in sorted(set(wanted_learners) | set(previous.learners)):
        held = previous.memberships.get(learner, {})
        if learner in wanted_learners:
            record = package.demographics.get(user_of[learner]) if package.demographics is not None else None
            wanted = group_values(record, spoken_for)
        else:
            wanted = dict.fromkeys(FACTORS)  # no longer a student of the tenant: every membership ends
        changes, backdated = membership_changes(held, wanted, effective)
        for late in backdated:
            who = user_of.get(learner) or learner  # a student no longer in the package: her learner id
            problems.append(Problem("demographics.csv", f"user {who!r}: the effective date {effective} is before "
                                    f"the latest {late.factor} change recorded for them ({late.latest})"))  # fmt: skip
        planned += [(groups_stream(learner), GROUP_MEMBERSHIP_CHANGED, m.payload(learner)) for m in changes]
    return planned


def _with_expected_versions(planned: Sequence[_Planned], versions: Mapping[str, int]) -> list[NewEvent]:
    """NewEvents, the first of each stream expecting the version the import read it at."""
    events: list[NewEvent] = []
    seen: set[str] = set()
    for stream, event_type, data in planned:
        expected = None if stream in seen else versions.get(stream, 0)
        seen.add(stream)
        if event_type == SECTION_SET:
            events.append(section_roster_event(data["section"], data["title"], data["learners"],
                                               expected_version=expected))  # fmt: skip
        else:
            events.append(NewEvent.of(stream, event_type, data, expected_version=expected))
    return events
