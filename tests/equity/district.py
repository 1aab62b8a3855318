"""A small district for equity tests: a OneRoster 1.1 package written from a list of students (by the demo
generator's writer, which the district demo uses too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from proficio_cli._demo_district import Course, RosterStudent, oneroster_files

DISTRICT_ORG = Course().district


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


def write_oneroster(directory: Path, students: Sequence[Student], schools: Sequence[str]) -> Path:
    """Orgs (a district and its schools), one class per school with its students enrolled, users, demographics."""
    directory.mkdir(parents=True, exist_ok=True)
    listed = [
        RosterStudent(s.sourced_id, s.school, s.email, s.sex, "hispanic_or_latino" if s.hispanic else "white",
                      s.economically_disadvantaged, s.english_learner, s.disability)
        for s in students
    ]  # fmt: skip
    for name, content in oneroster_files(listed, schools, Course()).items():
        (directory / name).write_bytes(content)
    return directory
