"""A small district for equity tests: a OneRoster 1.1 package written from a list of students."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DISTRICT_ORG = "org-district"
BULK = ("orgs", "users", "classes", "enrollments", "demographics")


@dataclass(frozen=True)
class Student:
    sourced_id: str
    school: str
    email: str
    english_learner: bool = False
    sex: str = "female"
    hispanic: bool = False
    economically_disadvantaged: bool = False
    disability: bool = False


def _write(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row])


def write_oneroster(directory: Path, students: Sequence[Student], schools: Sequence[str]) -> Path:
    """Orgs (a district and its schools), one class per school with its students enrolled, users, demographics."""
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / "manifest.csv", ["propertyName", "value"],
           [["manifest.version", "1.0"], ["oneroster.version", "1.1"],
            *[[f"file.{name}", "bulk"] for name in BULK]])  # fmt: skip
    _write(directory / "orgs.csv", ["sourcedId", "status", "dateLastModified", "name", "type", "identifier",
                                    "parentSourcedId"],
           [[DISTRICT_ORG, "", "", "District", "district", "", ""],
            *[[school, "", "", school.title(), "school", "", DISTRICT_ORG] for school in schools]])  # fmt: skip
    _write(directory / "users.csv", ["sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role",
                                     "username", "userIds", "givenName", "familyName", "middleName", "identifier",
                                     "email", "sms", "phone", "agentSourcedIds", "grades", "password"],
           [[s.sourced_id, "", "", "true", s.school, "student", s.sourced_id, "", "Given", "Family", "", "",
             s.email, "", "", "", "08", ""] for s in students])  # fmt: skip
    _write(directory / "classes.csv", ["sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId",
                                       "classCode", "classType", "location", "schoolSourcedId", "termSourcedIds",
                                       "subjects", "subjectCodes", "periods"],
           [[f"class-{school}", "", "", f"Math 8 at {school}", "08", "course-math-8", "", "scheduled", "", school,
             "term-1", "Mathematics", "", "1"] for school in schools])  # fmt: skip
    _write(directory / "enrollments.csv", ["sourcedId", "status", "dateLastModified", "classSourcedId",
                                           "schoolSourcedId", "userSourcedId", "role", "primary", "beginDate",
                                           "endDate"],
           [[f"enr-{s.sourced_id}", "", "", f"class-{s.school}", s.school, s.sourced_id, "student", "false",
             "2026-08-24", "2027-05-28"] for s in students])  # fmt: skip
    _write(directory / "demographics.csv", ["sourcedId", "status", "dateLastModified", "birthDate", "sex",
                                            "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                                            "nativeHawaiianOrOtherPacificIslander", "white",
                                            "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity",
                                            "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth",
                                            "publicSchoolResidenceStatus", "metadata.economicallyDisadvantaged",
                                            "metadata.englishLearner", "metadata.disability"],
           [[s.sourced_id, "", "", "2012-01-01", s.sex, False, False, False, False, not s.hispanic, False,
             s.hispanic, "", "", "", "", s.economically_disadvantaged, s.english_learner, s.disability]
            for s in students])  # fmt: skip
    return directory
