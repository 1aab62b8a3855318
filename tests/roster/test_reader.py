"""Reading OneRoster 1.1 CSV packages: the sample (as a directory and zipped), and malformed packages refused
with every problem named by file, row and column."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from proficio_projector.roster import FACTORS, RosterError, group_values, race_ethnicity, read_package

from .support import SAMPLE, drop_column, drop_rows, edit, read_rows, sample_copy


def row_of(package: Path, file: str, sourced_id: str) -> int:
    """The row (the header is row 1) holding this sourcedId."""
    _columns, rows = read_rows(package, file)
    return next(n for n, row in enumerate(rows, start=2) if row["sourcedId"] == sourced_id)


def test_the_sample_package_reads_whole() -> None:
    package = read_package(SAMPLE)
    assert sorted(package.orgs) == ["org-district-mv", "org-school-birch", "org-school-cedar"]
    assert package.orgs["org-school-cedar"].parent == "org-district-mv"
    assert sorted(package.classes) == ["class-math-5", "class-math-7a", "class-science-7b"]
    assert package.classes["class-math-7a"].school == "org-school-cedar"
    students = [u for u in package.users.values() if u.role == "student"]
    teachers = [u for u in package.users.values() if u.role == "teacher"]
    assert (len(students), len(teachers), len(package.enrollments)) == (12, 2, 21)
    assert package.enrollments["enr-t101-math7a"].primary is True
    assert package.enrollments["enr-s201-math7a"].begin_date == "2025-08-18"
    assert package.demographics is not None
    assert package.extension_factors == {"economically_disadvantaged", "english_learner", "disability"}

    def groups(user: str) -> dict[str, str | None]:
        assert package.demographics is not None
        return group_values(package.demographics.get(user), FACTORS)

    # Hispanic/Latino of any race; two races; the two-or-more flag; one race; nothing known.
    assert groups("usr-s-201") == {"race_ethnicity": "hispanic_or_latino", "gender": "female",
                                   "economically_disadvantaged": "true", "english_learner": "true",
                                   "disability": "false"}  # fmt: skip
    assert groups("usr-s-204")["race_ethnicity"] == "two_or_more_races"
    assert groups("usr-s-207")["race_ethnicity"] == "two_or_more_races"
    assert groups("usr-s-206") == {"race_ethnicity": "american_indian_or_alaska_native", "gender": "other",
                                   "economically_disadvantaged": "true", "english_learner": "false",
                                   "disability": "false"}  # fmt: skip
    assert groups("usr-s-205")["english_learner"] is None  # empty: unknown
    assert groups("usr-s-212") == dict.fromkeys(FACTORS)  # sex unspecified, nothing else given
    assert groups("usr-t-101") == dict.fromkeys(FACTORS)  # no demographics row
    assert race_ethnicity(package.demographics["usr-s-208"]) == "native_hawaiian_or_other_pacific_islander"


@pytest.mark.parametrize("folder", [False, True], ids=["at-the-root", "in-a-folder"])
def test_a_zipped_package_reads_like_the_directory(tmp_path: Path, folder: bool) -> None:
    archive = tmp_path / "roster.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in SAMPLE.iterdir():
            zipped.write(file, f"export-2025-09-01/{file.name}" if folder else file.name)
    zipped_package, plain = read_package(archive), read_package(SAMPLE)
    assert (zipped_package.orgs, zipped_package.users, zipped_package.classes) == (
        plain.orgs, plain.users, plain.classes,
    )  # fmt: skip
    assert (zipped_package.enrollments, zipped_package.demographics) == (plain.enrollments, plain.demographics)


Breakage = Callable[[Path], None]


def _set_manifest(package: Path, name: str, value: str) -> None:
    columns, rows = read_rows(package, "manifest.csv")
    for row in rows:
        if row["propertyName"] == name:
            row["value"] = value
    from .support import write_rows

    write_rows(package, "manifest.csv", columns, rows)


CASES: list[tuple[str, Breakage, str]] = [
    ("missing-required-column", lambda p: drop_column(p, "users.csv", "role"),
     "users.csv row 1, column role: is a required column but the header does not have it"),
    ("unknown-class", lambda p: edit(p, "enrollments.csv", "enr-s205-math7a", classSourcedId="class-math-9z"),
     "enrollments.csv row {enrollments.csv:enr-s205-math7a}, column classSourcedId: no class 'class-math-9z' in "
     "classes.csv"),
    ("bad-boolean", lambda p: edit(p, "demographics.csv", "usr-s-203", hispanicOrLatinoEthnicity="yes"),
     "demographics.csv row {demographics.csv:usr-s-203}, column hispanicOrLatinoEthnicity: 'yes' is not a boolean"),
    ("bad-extension-boolean", lambda p: edit(p, "demographics.csv", "usr-s-203", **{"metadata.englishLearner": "Y"}),
     "demographics.csv row {demographics.csv:usr-s-203}, column metadata.englishLearner: 'Y' is not a boolean"),
    ("duplicate-sourcedId", lambda p: edit(p, "users.csv", "usr-s-205", sourcedId="usr-s-204"),
     "users.csv row {users.csv:usr-s-205}, column sourcedId: duplicate sourcedId 'usr-s-204' (first on row "
     "{users.csv:usr-s-204})"),
    ("bad-date", lambda p: edit(p, "enrollments.csv", "enr-s209-math5", beginDate="2025-02-30"),
     "enrollments.csv row {enrollments.csv:enr-s209-math5}, column beginDate: '2025-02-30' is not a date"),
    ("bad-birth-date", lambda p: edit(p, "demographics.csv", "usr-s-210", birthDate="10/21/2014"),
     "demographics.csv row {demographics.csv:usr-s-210}, column birthDate: '10/21/2014' is not a date"),
    ("ends-before-it-begins", lambda p: edit(p, "enrollments.csv", "enr-s209-math5", endDate="2025-08-01"),
     "enrollments.csv row {enrollments.csv:enr-s209-math5}, column endDate: ends (2025-08-01) before it begins"),
    ("unknown-org-type", lambda p: edit(p, "orgs.csv", "org-school-birch", type="campus"),
     "orgs.csv row {orgs.csv:org-school-birch}, column type: 'campus' is not one of"),
    ("parents-in-a-circle", lambda p: edit(p, "orgs.csv", "org-district-mv", parentSourcedId="org-school-cedar"),
     "column parentSourcedId: the parents of 'org-district-mv' go round in a circle"),
    ("unknown-org-of-a-user", lambda p: edit(p, "users.csv", "usr-s-210", orgSourcedIds="org-school-oak"),
     "users.csv row {users.csv:usr-s-210}, column orgSourcedIds: no org 'org-school-oak' in orgs.csv"),
    ("class-at-a-district", lambda p: edit(p, "classes.csv", "class-math-5", schoolSourcedId="org-district-mv"),
     "classes.csv row {classes.csv:class-math-5}, column schoolSourcedId: no school 'org-district-mv'"),
    ("teacher-enrolled-as-student", lambda p: edit(p, "enrollments.csv", "enr-t102-math5", role="student"),
     "enrollments.csv row {enrollments.csv:enr-t102-math5}, column role: enrols user 'usr-t-102' as a student"),
    ("unknown-user-in-demographics", lambda p: edit(p, "demographics.csv", "usr-s-212", sourcedId="usr-s-999"),
     "demographics.csv row {demographics.csv:usr-s-212}, column sourcedId: no user 'usr-s-999' in users.csv"),
    ("bad-sex", lambda p: edit(p, "demographics.csv", "usr-s-211", sex="m"),
     "demographics.csv row {demographics.csv:usr-s-211}, column sex: 'm' is not one of"),
    ("class-id-with-a-space", lambda p: edit(p, "classes.csv", "class-math-5", sourcedId="class math 5"),
     "column sourcedId: 'class math 5' cannot be a section id"),
    ("missing-value", lambda p: edit(p, "classes.csv", "class-math-5", title=""),
     "classes.csv row {classes.csv:class-math-5}, column title: a value is required"),
    ("bad-status", lambda p: edit(p, "orgs.csv", "org-school-birch", status="inactive"),
     "orgs.csv row {orgs.csv:org-school-birch}, column status: 'inactive' is not one of"),
    ("bad-email", lambda p: edit(p, "users.csv", "usr-s-201", email="yolanda at example.org"),
     "users.csv row {users.csv:usr-s-201}, column email: 'yolanda at example.org' is not an email address"),
    ("delta-package", lambda p: _set_manifest(p, "file.users", "delta"),
     "manifest.csv row 16, column value: file.users is delta; Proficio imports bulk packages only"),
    ("another-version", lambda p: _set_manifest(p, "oneroster.version", "1.2"),
     "manifest.csv row 3, column value: oneroster.version is '1.2'; Proficio reads OneRoster 1.1"),
    ("no-manifest", lambda p: (p / "manifest.csv").unlink(), "manifest.csv: the package has no manifest.csv"),
    ("listed-file-missing", lambda p: (p / "demographics.csv").unlink(),
     "demographics.csv: manifest.csv lists it as bulk but the package does not have it"),
    ("required-file-absent", lambda p: _set_manifest(p, "file.classes", "absent"),
     "manifest.csv: file.classes must be bulk (Proficio needs classes.csv)"),
    ("short-row", lambda p: (p / "orgs.csv").write_text((p / "orgs.csv").read_text() + "org-x,,,Oak\n"),
     "orgs.csv row 5: has 4 fields but the header has 7"),
    ("not-utf-8", lambda p: (p / "orgs.csv").write_bytes((p / "orgs.csv").read_bytes() + "Ñ\n".encode("latin-1")),
     "orgs.csv: is not UTF-8 text"),
]  # fmt: skip


def expected_message(package: Path, template: str) -> str:
    """The message with each {file:sourcedId} replaced by that row's number in the package."""
    return re.sub(r"\{([\w.]+):([\w-]+)\}", lambda m: str(row_of(package, m[1], m[2])), template)


@pytest.mark.parametrize(("break_it", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_malformed_package_is_refused_with_the_place_named(tmp_path: Path, break_it: Breakage, message: str) -> None:
    package = sample_copy(tmp_path)
    wanted = expected_message(SAMPLE, message)
    break_it(package)
    with pytest.raises(RosterError) as refused:
        read_package(package)
    assert any(wanted in str(problem) for problem in refused.value.problems), refused.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    package = sample_copy(tmp_path)
    edit(package, "orgs.csv", "org-school-birch", type="campus")
    edit(package, "demographics.csv", "usr-s-201", white="maybe", asian="perhaps")
    drop_rows(package, "classes.csv", lambda row: row["sourcedId"] == "class-math-5")
    with pytest.raises(RosterError) as refused:
        read_package(package)
    text = str(refused.value)
    for part in ("orgs.csv row 4, column type", "column white: 'maybe'", "column asian: 'perhaps'",
                 "no class 'class-math-5' in classes.csv"):  # fmt: skip
        assert part in text
    # The org type, the two race columns, and the five enrollments (a teacher, four students) of the removed class.
    assert len(refused.value.problems) == 1 + 2 + 5


def test_rows_to_be_deleted_are_left_out(tmp_path: Path) -> None:
    package = sample_copy(tmp_path)
    edit(package, "enrollments.csv", "enr-s212-math5", status="tobedeleted")
    assert "enr-s212-math5" not in read_package(package).enrollments


def test_what_is_not_a_package_is_named(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="no such directory or zip file"):
        read_package(tmp_path / "nothing")
    (tmp_path / "roster.zip").write_text("not a zip")
    with pytest.raises(RosterError, match="not a zip file or a directory"):
        read_package(tmp_path / "roster.zip")
