"""Importing OneRoster packages into the log (SQLite and PostgreSQL): events without PII, only what changed,
effective-dated group memberships, and packages refused whole."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from proficio_events import ConcurrencyError, EventLog, NewEvent, StoredEvent, forget_learners, identifier_secret
from proficio_ingest import enroll_learner_ids, find_learner_id
from proficio_projector import fold
from proficio_projector.competency import CompetencyReference, section_roster_event
from proficio_projector.roster import (
    ActorMapping,
    ActorSource,
    Roster,
    RosterError,
    StudentGroups,
    groups_as_of,
    groups_stream,
    import_roster,
    read_package,
    student_enrollment_key,
)
from tests.projector.support import rows_of, whole_log

from .support import (
    EFFECTIVE,
    SAMPLE,
    TENANT,
    drop_column,
    drop_rows,
    edit,
    import_package,
    learner_of,
    read_rows,
    sample_copy,
    student_emails,
    write_rows,
)

NEW_TERM = date(2026, 1, 12)


def counts(events: list[StoredEvent]) -> dict[str, int]:
    return dict(sorted(collections.Counter(e.event_type for e in events).items()))


def personal_data() -> set[str]:
    """Every name, email, username, SIS identifier, birth date and birthplace in the sample."""
    _columns, users = read_rows(SAMPLE, "users.csv")
    _columns, demographics = read_rows(SAMPLE, "demographics.csv")
    found = {row[c] for row in users for c in ("givenName", "familyName", "username", "identifier", "email")}
    found |= {row["email"].split("@")[0] for row in users}
    found |= {row[c] for row in demographics for c in ("birthDate", "cityOfBirth")}
    return {value for value in found if value}


def student_keys() -> set[str]:
    """The sourcedIds of the sample's students and of their enrollments: the SIS maps them to names."""
    _columns, enrollments = read_rows(SAMPLE, "enrollments.csv")
    return set(student_emails()) | {row["sourcedId"] for row in enrollments if row["role"] == "student"}


async def enrollment_keys(log: EventLog, sourced_ids: list[str]) -> dict[str, str]:
    """Enrollment sourcedId -> its key in events and views (a keyed digest of a student's enrollment)."""
    secret = await identifier_secret(log, TENANT)
    return {key: student_enrollment_key(secret, key) if key.startswith("enr-s") else key for key in sourced_ids}


async def test_the_sample_imports_as_events_with_learner_ids_and_no_personal_data(log: EventLog) -> None:
    result = await import_package(log, SAMPLE)

    events = await whole_log(log)
    assert (
        counts(events)
        == result.appended
        == {
            "GroupMembershipChanged": 54,  # 12 students x 5 factors, less 5 unknown for one and 1 for another
            "RosterClassSet": 3,
            "RosterEnrollmentSet": 21,
            "RosterLearnerSet": 12,
            "RosterOrgSet": 3,
            "SectionRosterSet": 3,
        }
    )
    assert (result.first_position, result.last_position) == (1, 96)
    emails = student_emails()
    learners = {user: await learner_of(log, email) for user, email in emails.items()}
    # Each student is the learner ingest files their statements under (actor = their email).
    roster = fold(Roster(), events)
    assert {row["learner"] for row in rows_of(roster, "learners")} == set(learners.values())
    assert all("user_sourced_id" not in row for row in rows_of(roster, "learners"))  # no student sourcedId
    school_of = {row["learner"]: row["schools"] for row in rows_of(roster, "learners")}
    assert school_of[learners["usr-s-201"]] == '["org-school-cedar"]'
    enrollments = {row["enrollment"]: row for row in rows_of(roster, "enrollments")}
    keys = await enrollment_keys(log, ["enr-s201-math7a", "enr-t101-math7a"])
    student = enrollments[keys["enr-s201-math7a"]]  # keyed by a keyed digest, not the sourcedId
    assert keys["enr-s201-math7a"].startswith("enrollment:")
    assert (student["learner"], student["user_sourced_id"]) == (learners["usr-s-201"], None)
    assert (enrollments["enr-t101-math7a"]["learner"], enrollments["enr-t101-math7a"]["user_sourced_id"]) == (
        None, "usr-t-101",
    )  # fmt: skip
    # Every class is a section of the competency API, with its students.
    sections = {row["section"]: row for row in rows_of(fold(CompetencyReference(), events), "sections")}
    assert sections["class-math-5"]["title"] == "Mathematics 5"
    assert orjson.loads(sections["class-math-5"]["learners"]) == sorted(
        learners[u] for u in ("usr-s-209", "usr-s-210", "usr-s-211", "usr-s-212")
    )
    # Group memberships live in each learner's protected stream.
    groups = [e for e in events if e.event_type == "GroupMembershipChanged"]
    assert all(e.stream == groups_stream(e.data()["learner"]) for e in groups)
    assert groups_as_of(rows_of(fold(StudentGroups(), events), "memberships"), EFFECTIVE)[learners["usr-s-209"]] == {
        "race_ethnicity": "hispanic_or_latino", "gender": "male", "economically_disadvantaged": "true",
        "english_learner": "true", "disability": "false",
    }  # fmt: skip

    stored = [(e.stream, e.key or "", e.payload.decode()) for e in events]
    # Nor the sourcedIds of students and of their enrollments (the SIS maps them to names); staff's stay.
    for value in personal_data() | student_keys():
        leaks = [s for s in stored if any(value in part for part in s)]
        assert not leaks, f"{value!r} is in the log: {leaks[:2]}"
    for value in ("usr-t-101", "enr-t101-math7a", "class-math-7a"):
        assert any(value in part for s in stored for part in s), value


async def test_an_unchanged_reimport_appends_nothing(log: EventLog, tmp_path: Path) -> None:
    await import_package(log, SAMPLE)
    head = await log.max_position()
    again = await import_package(log, SAMPLE)
    later = await import_package(log, SAMPLE, effective=NEW_TERM)
    # Rows in another order, in a zip, make no difference either.
    package = sample_copy(tmp_path)
    columns, rows = read_rows(package, "enrollments.csv")
    write_rows(package, "enrollments.csv", columns, rows[::-1])
    reordered = await import_package(log, package, effective=NEW_TERM)
    assert (again.changed, later.changed, reordered.changed) == (False, False, False)
    assert again.appended == {}
    assert await log.max_position() == head


async def test_a_changed_demographic_closes_the_membership_and_opens_another(log: EventLog, tmp_path: Path) -> None:
    await import_package(log, SAMPLE)
    package = sample_copy(tmp_path)
    edit(package, "demographics.csv", "usr-s-203", blackOrAfricanAmerican="false", white="true",
         **{"metadata.englishLearner": "true"})  # fmt: skip
    head = await log.max_position()

    result = await import_package(log, package, effective=NEW_TERM)

    changed = [e.data() for e in await log.read_after(head)]
    learner = await learner_of(log, student_emails()["usr-s-203"])
    assert result.appended == {"GroupMembershipChanged": 4}
    assert changed == [
        {"learner": learner, "factor": "race_ethnicity", "value": "black_or_african_american",
         "effective_from": "2025-09-01", "effective_to": "2026-01-12"},
        {"learner": learner, "factor": "race_ethnicity", "value": "white", "effective_from": "2026-01-12",
         "effective_to": None},
        {"learner": learner, "factor": "english_learner", "value": "false", "effective_from": "2025-09-01",
         "effective_to": "2026-01-12"},
        {"learner": learner, "factor": "english_learner", "value": "true", "effective_from": "2026-01-12",
         "effective_to": None},
    ]  # fmt: skip

    def as_of(day: str) -> dict[str, str]:
        return groups_as_of(rows, day).get(learner, {})

    rows = rows_of(fold(StudentGroups(), await whole_log(log)), "memberships")
    assert as_of("2025-08-31") == {}
    assert as_of("2025-09-01")["race_ethnicity"] == as_of("2026-01-11")["race_ethnicity"] == "black_or_african_american"
    assert (as_of("2026-01-12")["race_ethnicity"], as_of("2026-01-12")["english_learner"]) == ("white", "true")

    # Corrected the same day: the membership that began today is replaced, or withdrawn when now unknown.
    edit(package, "demographics.csv", "usr-s-203", **{"metadata.englishLearner": "", "metadata.disability": "false"})
    edit(package, "demographics.csv", "usr-s-203", white="false", asian="true")
    await import_package(log, package, effective=NEW_TERM)
    rows = rows_of(fold(StudentGroups(), await whole_log(log)), "memberships")
    assert as_of("2026-01-12") == {"race_ethnicity": "asian", "gender": "female", "economically_disadvantaged": "true",
                                   "disability": "false"}  # fmt: skip
    assert as_of("2026-01-11")["english_learner"] == "false"
    mine = {(r["factor"], r["effective_from"]): r["effective_to"] for r in rows if r["learner"] == learner}
    assert ("english_learner", "2026-01-12") not in mine


async def test_students_and_classes_that_leave_end_their_enrollments_sections_and_groups(
    log: EventLog, tmp_path: Path
) -> None:
    await import_package(log, SAMPLE)
    package = sample_copy(tmp_path)
    gone = {"usr-s-211", "usr-s-212"}
    for file, column in (("users.csv", "sourcedId"), ("demographics.csv", "sourcedId"),
                         ("enrollments.csv", "userSourcedId")):  # fmt: skip
        drop_rows(package, file, lambda row, column=column: row[column] in gone)
    drop_rows(package, "classes.csv", lambda row: row["sourcedId"] == "class-science-7b")
    drop_rows(package, "enrollments.csv", lambda row: row["classSourcedId"] == "class-science-7b")
    head = await log.max_position()

    result = await import_package(log, package, effective=NEW_TERM)

    assert result.appended == {
        "GroupMembershipChanged": 5,  # usr-s-211's five memberships close; usr-s-212 had none
        "RosterClassRemoved": 1,
        "RosterEnrollmentDropped": 2 + 7,  # the two students in math-5; science-7b's teacher and six students
        "RosterLearnerRemoved": 2,
        "SectionRosterSet": 2,  # math-5 without the two; science-7b emptied
    }
    added = [e.data() for e in await log.read_after(head) if e.event_type == "GroupMembershipChanged"]
    assert {(m["effective_from"], m["effective_to"]) for m in added} == {("2025-09-01", "2026-01-12")}
    events = await whole_log(log)
    roster = fold(Roster(), events)
    leaving = {await learner_of(log, student_emails()[u]) for u in gone}
    assert not leaving & {row["learner"] for row in rows_of(roster, "learners")}
    assert not leaving & {row["learner"] for row in rows_of(roster, "school_learners")}
    dropped = {row["enrollment"]: row["dropped_on"] for row in rows_of(roster, "enrollments")
               if row["status"] == "dropped"}  # fmt: skip
    keys = await enrollment_keys(log, ["enr-s211-math5", "enr-s212-math5", "enr-t101-sci7b",
                                       *(f"enr-s{n}-sci7b" for n in (201, 203, 205, 206, 207, 208))])  # fmt: skip
    assert dropped == dict.fromkeys(keys.values(), "2026-01-12")
    assert len({k for k in keys.values() if k.startswith("enrollment:")}) == 8
    assert "class-science-7b" not in {row["class"] for row in rows_of(roster, "classes")}
    sections = {row["section"]: row["learners"] for row in rows_of(fold(CompetencyReference(), events), "sections")}
    assert sections["class-science-7b"] == "[]"
    assert not any(learner in sections["class-math-5"] for learner in leaving)
    assert not (await import_package(log, package, effective=NEW_TERM)).changed


async def test_a_factor_without_its_column_is_left_as_it_was(log: EventLog, tmp_path: Path) -> None:
    await import_package(log, SAMPLE)
    package = sample_copy(tmp_path)
    drop_column(package, "demographics.csv", "metadata.disability")
    assert not (await import_package(log, package, effective=NEW_TERM)).changed
    (package / "demographics.csv").unlink()
    manifest = (package / "manifest.csv").read_text().replace("file.demographics,bulk", "file.demographics,absent")
    (package / "manifest.csv").write_text(manifest)
    assert not (await import_package(log, package, effective=NEW_TERM)).changed


async def test_account_actors_give_the_learner_ids_of_account_statements(log: EventLog) -> None:
    home = "https://lms.maplevalley.example.org"
    await import_package(log, SAMPLE, actor=ActorMapping(ActorSource.SOURCED_ID, home))
    rows = rows_of(fold(Roster(), await whole_log(log)), "learners")
    found = await find_learner_id(
        log, TENANT, {"objectType": "Agent", "account": {"homePage": home, "name": "usr-s-201"}}
    )
    assert found in {r["learner"] for r in rows}
    with pytest.raises(ValueError, match="give the LMS's home page"):
        ActorMapping(ActorSource.USERNAME)
    with pytest.raises(ValueError, match="must be an http"):
        ActorMapping(ActorSource.USERNAME, "lms.example.org")
    with pytest.raises(ValueError, match="not email"):
        ActorMapping(ActorSource.EMAIL, home)


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda p: drop_column(p, "enrollments.csv", "userSourcedId"), "enrollments.csv row 1, column userSourcedId"),
        (lambda p: edit(p, "enrollments.csv", "enr-s201-math7a", classSourcedId="class-art"),
         "no class 'class-art' in classes.csv"),
        (lambda p: edit(p, "demographics.csv", "usr-s-201", white="Yes please"), "is not a boolean"),
        (lambda p: edit(p, "orgs.csv", "org-school-birch", sourcedId="org-school-cedar"), "duplicate sourcedId"),
        (lambda p: edit(p, "enrollments.csv", "enr-s201-math7a", endDate="2026-06-31"), "is not a date"),
        (lambda p: edit(p, "users.csv", "usr-s-204", email=""), "users.csv row 7, column email: a student needs"),
        (lambda p: edit(p, "users.csv", "usr-s-204", email="kenji.watanabe@students.maplevalley.example.org"),
         "users.csv row 7, column email: the same xAPI actor as row 5"),
    ],
    ids=["missing-column", "unknown-class", "bad-boolean", "duplicate-sourcedId", "bad-date", "no-email",
         "shared-email"],
)  # fmt: skip
async def test_a_bad_package_appends_nothing(
    log: EventLog, tmp_path: Path, break_it: Callable[[Path], None], message: str
) -> None:
    package = sample_copy(tmp_path)
    break_it(package)
    with pytest.raises(RosterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await import_package(log, package)
    assert await log.max_position() == 0


async def test_group_changes_dated_before_the_recorded_ones_are_refused(log: EventLog, tmp_path: Path) -> None:
    await import_package(log, SAMPLE, effective=NEW_TERM)
    head = await log.max_position()
    package = sample_copy(tmp_path)
    edit(package, "demographics.csv", "usr-s-202", **{"metadata.economicallyDisadvantaged": "true"})
    edit(package, "classes.csv", "class-math-5", title="Mathematics 5 (renamed)")
    with pytest.raises(RosterError, match=r"user 'usr-s-202': the effective date 2025-09-01 is before the latest "
                       r"economically_disadvantaged change recorded for them \(2026-01-12\)"):  # fmt: skip
        await import_package(log, package, effective=EFFECTIVE)
    assert await log.max_position() == head  # not even the class's new title


async def test_an_import_racing_another_change_appends_nothing(
    log: EventLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await import_package(log, SAMPLE)
    package = sample_copy(tmp_path)
    edit(package, "classes.csv", "class-math-5", title="Mathematics 5 (spring)")
    original = log.append

    async def append_after_a_section_edit(tenant: str, events: Any, **kwargs: Any) -> Any:
        # Someone sets a section's roster between the import's reads and its append.
        await original(tenant, [section_roster_event("class-math-5", "Mathematics 5", [])])
        return await original(tenant, events, **kwargs)

    monkeypatch.setattr(log, "append", append_after_a_section_edit)
    head = await log.max_position()
    with pytest.raises(ConcurrencyError):
        await import_package(log, package, effective=NEW_TERM)
    assert await log.max_position() == head + 1  # the section edit only


async def test_a_student_erased_while_the_roster_is_imported_fails_the_import_whole(log: EventLog) -> None:
    """The import enrolls its students in the learner directory, then appends: an erasure committing in between
    (her directory row deleted) must not leave the roster naming her erased id."""
    erased: list[str] = []

    async def enroll_then_erase(log_: EventLog, tenant: str, actors: Sequence[Any]) -> list[str]:
        ids = await enroll_learner_ids(log_, tenant, actors)
        if not erased:
            async with log_.transaction() as conn:  # what erasure does to the directory, committed meanwhile
                await forget_learners(conn, tenant, [ids[0]])
            erased.append(ids[0])
        return ids

    with pytest.raises(RosterError, match="was erased while the roster was imported"):
        await import_roster(log, TENANT, read_package(SAMPLE), learner_ids=enroll_then_erase, effective=EFFECTIVE)
    assert await log.max_position() == 0  # nothing appended
    assert (await import_package(log, SAMPLE)).changed  # run again: she is enrolled afresh
    roster = fold(Roster(), await whole_log(log))
    learners = {row["learner"] for row in rows_of(roster, "learners")}
    assert len(learners) == 12
    assert erased[0] not in learners


async def test_a_roster_imported_before_student_keys_were_digested_is_taken_over_once(
    log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log written before students' sourcedIds were left out (simulated: enrollments keyed by their sourcedIds, a
    ``RosterLearnerSet`` with ``user``): the next import keeps the learners, drops each old student enrollment and
    sets it anew under its keyed digest, once; the import after appends nothing."""
    from proficio_projector.roster import _import

    monkeypatch.setattr(_import, "student_enrollment_key", lambda _secret, sourced_id: sourced_id)
    await import_package(log, SAMPLE)
    monkeypatch.undo()
    last = (await log.read_stream(TENANT, "roster:learners"))[-1]
    legacy = {**last.data(), "user": "usr-s-legacy", "removed_schools": []}
    await log.append(TENANT, [NewEvent.of("roster:learners", "RosterLearnerSet", legacy)])

    result = await import_package(log, SAMPLE)

    assert result.appended == {"RosterEnrollmentDropped": 18, "RosterEnrollmentSet": 18}  # 21, less 3 teachers'
    assert not (await import_package(log, SAMPLE)).changed
    roster = fold(Roster(), await whole_log(log))
    enrollments = rows_of(roster, "enrollments")
    active = {row["enrollment"] for row in enrollments if row["status"] == "active"}
    assert len(active) == 21
    assert not {key for key in active if key.startswith("enr-s")}  # students' under their keyed digests
    assert all("user_sourced_id" not in row for row in rows_of(roster, "learners"))
