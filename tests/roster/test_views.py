"""The ``roster`` and ``student_groups`` projections run by the runtime on SQLite and PostgreSQL equal the pure
fold of the log; ``groups_as_of`` reads memberships on a date."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from proficio_events import EventLog
from proficio_projector import RunnerSettings, SqlProjector
from proficio_projector.roster import Roster, StudentGroups, groups_as_of
from tests.projector.support import FAST, caught_up, replayed_rows, running, view_rows

from .support import SAMPLE, drop_rows, edit, import_package, sample_copy


async def test_the_views_on_both_backends_equal_the_fold(log: EventLog, tmp_path: Path) -> None:
    roster, groups = Roster(), StudentGroups()
    await import_package(log, SAMPLE)
    async with running(
        SqlProjector(log, roster, RunnerSettings(owner="t", **FAST)),
        SqlProjector(log, groups, RunnerSettings(owner="t", **FAST)),
    ):
        await caught_up(log, "roster")
        await caught_up(log, "student_groups")
        # A second import while they run: a demographic change, a student and a class gone, a school renamed.
        package = sample_copy(tmp_path)
        edit(package, "demographics.csv", "usr-s-202", sex="female", **{"metadata.disability": "true"})
        edit(package, "orgs.csv", "org-school-birch", name="Birch Community School")
        edit(package, "users.csv", "usr-s-208", orgSourcedIds="org-school-cedar,org-school-birch")
        drop_rows(package, "users.csv", lambda row: row["sourcedId"] == "usr-s-210")
        drop_rows(package, "demographics.csv", lambda row: row["sourcedId"] == "usr-s-210")
        drop_rows(package, "enrollments.csv", lambda row: "s210" in row["sourcedId"] or "sci7b" in row["sourcedId"])
        drop_rows(package, "classes.csv", lambda row: row["sourcedId"] == "class-science-7b")
        await import_package(log, package, effective=date(2026, 1, 12))
        await caught_up(log, "roster")
        await caught_up(log, "student_groups")

    for table in ("orgs", "classes", "learners", "school_learners", "enrollments"):
        rows = await view_rows(log, roster, table)
        assert rows, table
        assert rows == await replayed_rows(log, roster, table), table
    memberships = await view_rows(log, groups, "memberships")
    assert memberships == await replayed_rows(log, groups, "memberships")
    assert {r["status"] for r in await view_rows(log, roster, "enrollments")} == {"active", "dropped"}
    assert len({r["school"] for r in await view_rows(log, roster, "school_learners")}) == 2
    # Closed memberships are kept: the view answers for any date.
    before, after = groups_as_of(memberships, "2025-12-01"), groups_as_of(memberships, "2026-01-12")
    assert len(before) == 12 - 1  # one student has no known group
    assert len(after) == 12 - 1 - 1  # and one has left


def membership(learner: str, factor: str, value: str, start: str, end: str | None) -> dict[str, str | None]:
    return {"tenant": "t", "learner": learner, "factor": factor, "value": value, "effective_from": start,
            "effective_to": end}  # fmt: skip


def test_groups_as_of_counts_a_membership_from_its_first_day_until_the_day_it_ends() -> None:
    rows = [
        membership("learner:a", "english_learner", "true", "2025-09-01", "2026-01-12"),
        membership("learner:a", "english_learner", "false", "2026-01-12", None),
        membership("learner:a", "gender", "female", "2025-09-01", None),
        membership("learner:b", "disability", "true", "2025-10-01", "2025-10-01"),  # withdrawn: never held
        membership("learner:c", "race_ethnicity", "asian", "2026-02-01", None),
    ]
    assert groups_as_of(rows, date(2025, 8, 31)) == {}
    assert groups_as_of(rows, "2025-09-01") == {"learner:a": {"english_learner": "true", "gender": "female"}}
    assert groups_as_of(rows, date(2026, 1, 11))["learner:a"]["english_learner"] == "true"
    assert groups_as_of(rows, date(2026, 1, 12))["learner:a"]["english_learner"] == "false"
    assert groups_as_of(rows, "2026-03-01") == {
        "learner:a": {"english_learner": "false", "gender": "female"},
        "learner:c": {"race_ethnicity": "asian"},
    }
