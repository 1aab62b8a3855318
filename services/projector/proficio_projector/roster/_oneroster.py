"""Reading a OneRoster 1.1 CSV package (a directory or a zip) into checked, typed records.

Only the files Proficio uses are read: ``manifest.csv``, ``orgs.csv``, ``users.csv``, ``classes.csv``,
``enrollments.csv`` and (optionally) ``demographics.csv``; the package's other files are left alone.
Everything is checked before anything is returned, and every problem is reported at once with its file,
row (the header is row 1) and column: a package with any problem yields no records at all.

OneRoster 1.1 has no economic-disadvantage, English-learner or disability fields. Proficio reads them
from 1.1 extension columns of ``demographics.csv`` (extension columns are prefixed ``metadata.``):
``metadata.economicallyDisadvantaged``, ``metadata.englishLearner`` and ``metadata.disability``, each
``true``, ``false`` or empty (unknown).

Names (givenName, familyName, middleName), phone numbers and birthplaces are never read into the records, and
birth dates are only checked: the records hold what the import needs, and the actor fields (email, username,
identifier) only in memory, to compute learner ids (see ``User``).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar

#: Larger files are refused rather than read (a zip's declared size is checked before inflating).
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Problems listed in an error message; the count of the rest follows.
MAX_PROBLEMS_SHOWN = 25

ORG_TYPES = frozenset({"department", "school", "district", "local", "state", "national"})
USER_ROLES = frozenset({"administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher"})
ENROLLMENT_ROLES = USER_ROLES
CLASS_TYPES = frozenset({"homeroom", "scheduled"})
#: 1.1 lists male and female; 1.2's other and unspecified are common in 1.1 exports too.
SEXES = frozenset({"male", "female", "other", "unspecified"})
STATUSES = frozenset({"", "active", "tobedeleted"})
RACE_COLUMNS = (
    "americanIndianOrAlaskaNative",
    "asian",
    "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander",
    "white",
)
EXTENSION_COLUMNS = {
    "metadata.economicallyDisadvantaged": "economically_disadvantaged",
    "metadata.englishLearner": "english_learner",
    "metadata.disability": "disability",
}
#: The files read, with the columns each must have (the ones Proficio needs; others may be absent).
REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "manifest.csv": ("propertyName", "value"),
    "orgs.csv": ("sourcedId", "name", "type"),
    "users.csv": ("sourcedId", "orgSourcedIds", "role"),
    "classes.csv": ("sourcedId", "title", "courseSourcedId", "classType", "schoolSourcedId"),
    "enrollments.csv": ("sourcedId", "classSourcedId", "schoolSourcedId", "userSourcedId", "role"),
    "demographics.csv": (
        "sourcedId",
        "sex",
        *RACE_COLUMNS,
        "demographicRaceTwoOrMoreRaces",
        "hispanicOrLatinoEthnicity",
    ),
}
REQUIRED_FILES = ("orgs.csv", "users.csv", "classes.csv", "enrollments.csv")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a package, and where."""

    file: str
    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.column is not None:
            where += f", column {self.column}"
        return f"{where}: {self.message}"


class RosterError(ValueError):
    """A package that cannot be imported; ``problems`` says everything found wrong with it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in self.problems[:MAX_PROBLEMS_SHOWN])
        rest = len(self.problems) - MAX_PROBLEMS_SHOWN
        super().__init__(shown + (f"; and {rest} more problem(s)" if rest > 0 else ""))


@dataclass(frozen=True)
class Org:
    sourced_id: str
    name: str
    type: str
    identifier: str | None
    parent: str | None


@dataclass(frozen=True)
class User:
    """A user, with the identifiers an LMS may send as the xAPI actor: kept in memory, never in events."""

    sourced_id: str
    role: str
    orgs: tuple[str, ...]
    grades: tuple[str, ...]
    email: str | None
    username: str | None
    identifier: str | None
    row: int


@dataclass(frozen=True)
class RosterClass:
    sourced_id: str
    title: str
    school: str
    course: str
    class_code: str | None
    class_type: str
    grades: tuple[str, ...]
    row: int


@dataclass(frozen=True)
class Enrollment:
    sourced_id: str
    class_id: str
    school: str
    user: str
    role: str
    primary: bool | None
    begin_date: str | None
    end_date: str | None


@dataclass(frozen=True)
class Demographics:
    """What the group factors are computed from (no birth date or birthplace is kept)."""

    user: str
    sex: str | None
    races: frozenset[str]
    two_or_more_races: bool | None
    hispanic_or_latino: bool | None
    #: Extension factor (economically_disadvantaged, ...) -> true/false/None, for the columns present.
    extensions: Mapping[str, bool | None]


@dataclass(frozen=True)
class RosterPackage:
    source: str
    orgs: Mapping[str, Org]
    users: Mapping[str, User]
    classes: Mapping[str, RosterClass]
    enrollments: Mapping[str, Enrollment]
    #: None when the package has no demographics.csv (group memberships are then left as they are).
    demographics: Mapping[str, Demographics] | None
    #: The extension factors whose columns demographics.csv has (factors without a column are not touched).
    extension_factors: frozenset[str] = field(default_factory=frozenset)


class _Files:
    """The files of a package, from a directory or from a zip (at its root or in its one top folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if path.is_file():
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise RosterError([Problem(path.name, f"not a zip file or a directory ({exc})")]) from None
            names = set(self._zip.namelist())
            if "manifest.csv" not in names:
                tops = [n for n in names if n.count("/") == 1 and n.endswith("/manifest.csv")]
                if len(tops) == 1:
                    self._prefix = tops[0].removesuffix("manifest.csv")
        elif not path.is_dir():
            raise RosterError([Problem(str(path), "no such directory or zip file")])

    def read(self, name: str) -> bytes | None:
        if self._zip is not None:
            try:
                info = self._zip.getinfo(self._prefix + name)
            except KeyError:
                return None
            if info.file_size > MAX_FILE_BYTES:
                raise RosterError([Problem(name, f"larger than {MAX_FILE_BYTES} bytes")])
            try:
                return self._zip.read(info)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise RosterError([Problem(name, f"cannot be read from the zip ({exc})")]) from None
        file = self.path / name
        if not file.is_file():
            return None
        if file.stat().st_size > MAX_FILE_BYTES:
            raise RosterError([Problem(name, f"larger than {MAX_FILE_BYTES} bytes")])
        return file.read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


@dataclass
class _Table:
    """One CSV file's data rows (row number, column -> stripped value)."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[int, dict[str, str]]]


class _Checker:
    """Collects problems while the files are read and checked."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, file: str, message: str, row: int | None = None, column: str | None = None) -> None:
        self.problems.append(Problem(file, message, row, column))

    def table(self, name: str, raw: bytes) -> _Table | None:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.add(name, f"is not UTF-8 text (byte {exc.start})")
            return None
        records = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(records, None)
        except csv.Error as exc:
            self.add(name, f"is not valid CSV: {exc}", 1)
            return None
        if not header or not any(h.strip() for h in header):
            self.add(name, "has no header row")
            return None
        columns = tuple(h.strip() for h in header)
        for column in {c for c in columns if columns.count(c) > 1}:
            self.add(name, "appears more than once in the header", 1, column)
        missing = [c for c in REQUIRED_COLUMNS[name] if c not in columns]
        for column in missing:
            self.add(name, "is a required column but the header does not have it", 1, column)
        rows: list[tuple[int, dict[str, str]]] = []
        number = 1
        try:
            for record in records:
                number += 1
                if not record or all(not value.strip() for value in record):
                    continue  # a blank line
                if len(record) != len(columns):
                    self.add(name, f"has {len(record)} fields but the header has {len(columns)}", number)
                    continue
                rows.append((number, {c: v.strip() for c, v in zip(columns, record, strict=True)}))
        except csv.Error as exc:
            self.add(name, f"is not valid CSV: {exc}", number)
            return None
        return None if missing else _Table(name, columns, rows)

    def required(self, table: _Table, row: int, values: Mapping[str, str], column: str) -> str:
        value = values.get(column, "")
        if not value:
            self.add(table.name, "a value is required", row, column)
        return value

    def choice(self, table: _Table, row: int, values: Mapping[str, str], column: str, allowed: frozenset[str]) -> str:
        value = values.get(column, "")
        if value and value not in allowed:
            self.add(table.name, f"{value!r} is not one of {', '.join(sorted(allowed))}", row, column)
        return value

    def boolean(self, table: _Table, row: int, values: Mapping[str, str], column: str) -> bool | None:
        value = values.get(column, "")
        if not value:
            return None
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.add(table.name, f"{value!r} is not a boolean (true or false)", row, column)
        return None

    def date(self, table: _Table, row: int, values: Mapping[str, str], column: str) -> str | None:
        value = values.get(column, "")
        if not value:
            return None
        try:
            if not _DATE.fullmatch(value):
                raise ValueError
            return date.fromisoformat(value).isoformat()
        except ValueError:
            self.add(table.name, f"{value!r} is not a date (YYYY-MM-DD)", row, column)
            return None

    def timestamp(self, table: _Table, row: int, values: Mapping[str, str], column: str) -> None:
        value = values.get(column, "")
        if not value:
            return
        try:
            if not _DATE.match(value):
                raise ValueError
            datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            self.add(table.name, f"{value!r} is not an ISO 8601 date and time", row, column)


def _list(value: str) -> tuple[str, ...]:
    """A OneRoster list field: comma-separated values in one (quoted) field."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


R = TypeVar("R")


def _records(
    checker: _Checker, table: _Table, build: Callable[[_Table, int, dict[str, str]], R | None]
) -> dict[str, tuple[int, R]]:
    """The rows of ``table`` built into records by sourcedId, with status, dates and duplicates checked.

    Rows whose status is ``tobedeleted`` are left out: a bulk file lists what exists.
    """
    found: dict[str, tuple[int, R]] = {}
    for row, values in table.rows:
        status = checker.choice(table, row, values, "status", STATUSES)
        checker.timestamp(table, row, values, "dateLastModified")
        sourced_id = checker.required(table, row, values, "sourcedId")
        record = build(table, row, values)
        if status == "tobedeleted" or not sourced_id or record is None:
            continue
        if sourced_id in found:
            checker.add(table.name, f"duplicate sourcedId {sourced_id!r} (first on row {found[sourced_id][0]})",
                        row, "sourcedId")  # fmt: skip
            continue
        found[sourced_id] = (row, record)
    return found


def read_package(path: str | Path) -> RosterPackage:
    """Read and check a OneRoster 1.1 CSV package; raise ``RosterError`` naming every problem found."""
    path = Path(path)
    files = _Files(path)
    try:
        return _read(files, str(path))
    finally:
        files.close()


def _read(files: _Files, source: str) -> RosterPackage:
    checker = _Checker()
    manifest_raw = files.read("manifest.csv")
    if manifest_raw is None:
        raise RosterError([Problem("manifest.csv", "the package has no manifest.csv (is this a OneRoster package?)")])
    modes = _manifest(checker, checker.table("manifest.csv", manifest_raw))
    tables: dict[str, _Table | None] = {}
    for name in REQUIRED_COLUMNS:
        if name == "manifest.csv":
            continue
        mode = modes.get(name)
        raw = files.read(name)
        if mode == "bulk" and raw is None:
            checker.add(name, "manifest.csv lists it as bulk but the package does not have it")
        elif mode in (None, "absent") and name in REQUIRED_FILES:
            checker.add("manifest.csv", f"file.{name.removesuffix('.csv')} must be bulk (Proficio needs {name})")
        tables[name] = checker.table(name, raw) if raw is not None and mode == "bulk" else None
    orgs = _orgs(checker, tables["orgs.csv"])
    users = _users(checker, tables["users.csv"], orgs)
    classes = _classes(checker, tables["classes.csv"], orgs)
    enrollments = _enrollments(checker, tables["enrollments.csv"], orgs, users, classes)
    demographics, extensions = _demographics(checker, tables["demographics.csv"], users)
    if checker.problems:
        raise RosterError(checker.problems)
    # Without problems, every required file was there and read.
    assert orgs is not None and users is not None  # noqa: PT018
    assert classes is not None and enrollments is not None  # noqa: PT018
    return RosterPackage(
        source=source,
        orgs=orgs,
        users=users,
        classes=classes,
        enrollments=enrollments,
        demographics=demographics,
        extension_factors=extensions,
    )


def _manifest(checker: _Checker, table: _Table | None) -> dict[str, str]:
    """file name -> bulk, delta or absent, as the manifest lists them (delta is a problem: bulk only)."""
    if table is None:
        return {}
    properties: dict[str, tuple[int, str]] = {}
    for row, values in table.rows:
        name = checker.required(table, row, values, "propertyName")
        if name in properties:
            checker.add(table.name, f"property {name!r} is listed twice (first on row {properties[name][0]})",
                        row, "propertyName")  # fmt: skip
        properties[name] = (row, values.get("value", ""))
    version = properties.get("oneroster.version")
    if version is None:
        checker.add(table.name, "has no oneroster.version property (it must be 1.1)")
    elif version[1] != "1.1":
        checker.add(table.name, f"oneroster.version is {version[1]!r}; Proficio reads OneRoster 1.1", version[0],
                    "value")  # fmt: skip
    modes: dict[str, str] = {}
    for name, (row, value) in properties.items():
        if not name.startswith("file."):
            continue
        mode = value.lower()
        if mode not in ("bulk", "delta", "absent"):
            checker.add(table.name, f"{value!r} is not bulk, delta or absent", row, "value")
            continue
        elif mode == "delta":
            checker.add(table.name, f"{name} is delta; Proficio imports bulk packages only (export a full roster)",
                        row, "value")  # fmt: skip
        modes[name.removeprefix("file.") + ".csv"] = mode
    return modes


def _orgs(checker: _Checker, table: _Table | None) -> dict[str, Org] | None:
    def build(table: _Table, row: int, values: dict[str, str]) -> Org | None:
        name = checker.required(table, row, values, "name")
        kind = checker.required(table, row, values, "type")
        checker.choice(table, row, values, "type", ORG_TYPES)
        return Org(values.get("sourcedId", ""), name, kind, values.get("identifier") or None,
                   values.get("parentSourcedId") or None)  # fmt: skip

    if table is None:
        return None
    found = _records(checker, table, build)
    orgs = {key: org for key, (_row, org) in found.items()}
    for key, (row, org) in found.items():
        if org.parent is None:
            continue
        if org.parent not in orgs:
            checker.add("orgs.csv", f"no org {org.parent!r} in orgs.csv", row, "parentSourcedId")
            continue
        seen = {key}
        parent: str | None = org.parent
        while parent is not None and parent in orgs:
            if parent in seen:
                checker.add("orgs.csv", f"the parents of {key!r} go round in a circle", row, "parentSourcedId")
                break
            seen.add(parent)
            parent = orgs[parent].parent
    return orgs


def _users(checker: _Checker, table: _Table | None, orgs: Mapping[str, Org] | None) -> dict[str, User] | None:
    def build(table: _Table, row: int, values: dict[str, str]) -> User | None:
        role = checker.required(table, row, values, "role")
        checker.choice(table, row, values, "role", USER_ROLES)
        member_of = _list(checker.required(table, row, values, "orgSourcedIds"))
        checker.boolean(table, row, values, "enabledUser")
        for org in member_of:
            if orgs is not None and org not in orgs:
                checker.add(table.name, f"no org {org!r} in orgs.csv", row, "orgSourcedIds")
        email = values.get("email") or None
        if email is not None and (email.count("@") != 1 or any(c.isspace() for c in email)):
            checker.add(table.name, f"{email!r} is not an email address", row, "email")
        return User(values.get("sourcedId", ""), role, member_of, _list(values.get("grades", "")), email,
                    values.get("username") or None, values.get("identifier") or None, row)  # fmt: skip

    if table is None:
        return None
    return {key: user for key, (_row, user) in _records(checker, table, build).items()}


def _classes(checker: _Checker, table: _Table | None, orgs: Mapping[str, Org] | None) -> dict[str, RosterClass] | None:
    def build(table: _Table, row: int, values: dict[str, str]) -> RosterClass | None:
        sourced_id = values.get("sourcedId", "")
        if sourced_id and (len(sourced_id) > 200 or any(c.isspace() or c == "/" for c in sourced_id)):
            # The class becomes a section of the competency API, whose ids are path segments.
            checker.add(table.name, f"{sourced_id!r} cannot be a section id (at most 200 characters, no spaces or /)",
                        row, "sourcedId")  # fmt: skip
        title = checker.required(table, row, values, "title")
        course = checker.required(table, row, values, "courseSourcedId")
        class_type = checker.required(table, row, values, "classType")
        checker.choice(table, row, values, "classType", CLASS_TYPES)
        school = checker.required(table, row, values, "schoolSourcedId")
        if school and orgs is not None and (school not in orgs or orgs[school].type != "school"):
            checker.add(table.name, f"no school {school!r} in orgs.csv", row, "schoolSourcedId")
        return RosterClass(sourced_id, title, school, course, values.get("classCode") or None, class_type,
                           _list(values.get("grades", "")), row)  # fmt: skip

    if table is None:
        return None
    return {key: found for key, (_row, found) in _records(checker, table, build).items()}


def _enrollments(
    checker: _Checker,
    table: _Table | None,
    orgs: Mapping[str, Org] | None,
    users: Mapping[str, User] | None,
    classes: Mapping[str, RosterClass] | None,
) -> dict[str, Enrollment] | None:
    def build(table: _Table, row: int, values: dict[str, str]) -> Enrollment | None:
        class_id = checker.required(table, row, values, "classSourcedId")
        school = checker.required(table, row, values, "schoolSourcedId")
        user = checker.required(table, row, values, "userSourcedId")
        role = checker.required(table, row, values, "role")
        checker.choice(table, row, values, "role", ENROLLMENT_ROLES)
        primary = checker.boolean(table, row, values, "primary")
        begin = checker.date(table, row, values, "beginDate")
        end = checker.date(table, row, values, "endDate")
        if begin and end and end < begin:
            checker.add(table.name, f"ends ({end}) before it begins ({begin})", row, "endDate")
        if class_id and classes is not None and class_id not in classes:
            checker.add(table.name, f"no class {class_id!r} in classes.csv", row, "classSourcedId")
        if school and orgs is not None and school not in orgs:
            checker.add(table.name, f"no org {school!r} in orgs.csv", row, "schoolSourcedId")
        if user and users is not None and user not in users:
            checker.add(table.name, f"no user {user!r} in users.csv", row, "userSourcedId")
        elif user and users is not None and role == "student" and users[user].role != "student":
            checker.add(table.name, f"enrols user {user!r} as a student, but users.csv gives the role "
                        f"{users[user].role!r}", row, "role")  # fmt: skip
        return Enrollment(values.get("sourcedId", ""), class_id, school, user, role, primary, begin, end)

    if table is None:
        return None
    return {key: found for key, (_row, found) in _records(checker, table, build).items()}


def _demographics(
    checker: _Checker, table: _Table | None, users: Mapping[str, User] | None
) -> tuple[dict[str, Demographics] | None, frozenset[str]]:
    if table is None:
        return None, frozenset()
    present = table.columns
    extensions = {column: factor for column, factor in EXTENSION_COLUMNS.items() if column in present}

    def build(table: _Table, row: int, values: dict[str, str]) -> Demographics | None:
        user = values.get("sourcedId", "")
        if user and users is not None and user not in users:
            checker.add(table.name, f"no user {user!r} in users.csv", row, "sourcedId")
        checker.date(table, row, values, "birthDate")
        sex = values.get("sex", "").lower() or None
        if sex is not None and sex not in SEXES:
            checker.add(table.name, f"{values['sex']!r} is not one of {', '.join(sorted(SEXES))}", row, "sex")
        races = frozenset(c for c in RACE_COLUMNS if checker.boolean(table, row, values, c))
        two_or_more = checker.boolean(table, row, values, "demographicRaceTwoOrMoreRaces")
        hispanic = checker.boolean(table, row, values, "hispanicOrLatinoEthnicity")
        flags = {factor: checker.boolean(table, row, values, column) for column, factor in extensions.items()}
        return Demographics(user, sex, races, two_or_more, hispanic, flags)

    found = {key: record for key, (_row, record) in _records(checker, table, build).items()}
    return found, frozenset(extensions.values())
