"""``proficio roster import`` as an operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .support import SAMPLE, edit, sample_copy

PROFICIO = [sys.executable, "-m", "proficio_cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROFICIO, *args], capture_output=True, text=True, timeout=120, check=False)


def test_roster_import_appends_what_changed_and_refuses_a_bad_package(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data"), "--tenant", "district-7"]
    first = run("roster", "import", str(SAMPLE), *data, "--effective", "2025-09-01", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["learners"], report["classes"], report["changed"]) == (12, 3, True)
    assert report["appended"]["GroupMembershipChanged"] == 54
    assert (report["first_position"], report["last_position"]) == (1, 96)

    again = run("roster", "import", str(SAMPLE), *data)
    assert again.returncode == 0, again.stderr
    assert "unchanged since the previous import; nothing appended" in again.stdout

    package = sample_copy(tmp_path)
    edit(package, "demographics.csv", "usr-s-203", hispanicOrLatinoEthnicity="si")
    edit(package, "enrollments.csv", "enr-s201-math7a", classSourcedId="class-art")
    refused = run("roster", "import", str(package), *data)
    assert refused.returncode == 1
    assert "2 problem(s); nothing imported" in refused.stderr
    assert "demographics.csv row 4, column hispanicOrLatinoEthnicity: 'si' is not a boolean" in refused.stderr
    assert "enrollments.csv row 5, column classSourcedId: no class 'class-art' in classes.csv" in refused.stderr

    status = run("log", "status", "--data-dir", str(tmp_path / "data"), "--json")
    assert json.loads(status.stdout)["position"] == 96

    changed = sample_copy(tmp_path, "changed")
    edit(changed, "classes.csv", "class-math-5", title="Mathematics 5 (spring)")
    text = run("roster", "import", str(changed), *data, "--effective", "2026-01-12")
    assert text.returncode == 0, text.stderr
    assert "appended 2 events at log positions 97-98:" in text.stdout
    assert "1  SectionRosterSet" in text.stdout

    usage = run("roster", "import", str(SAMPLE), *data, "--actor", "username")
    assert usage.returncode == 2
    assert "give the LMS's home page" in usage.stderr
