"""The sample OneRoster package, and copies of it edited the way a SIS export might go wrong or change."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from proficio_events import EventLog
from proficio_ingest import enroll_learner_ids, find_learner_id
from proficio_projector.roster import ActorMapping, RosterImportResult, import_roster, read_package

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "oneroster"
TENANT = "district-7"
EFFECTIVE = date(2025, 9, 1)


def sample_copy(tmp_path: Path, name: str = "package") -> Path:
    target = tmp_path / name
    shutil.copytree(SAMPLE, target)
    return target


def read_rows(package: Path, file: str) -> tuple[list[str], list[dict[str, str]]]:
    with (package / file).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write_rows(package: Path, file: str, columns: list[str], rows: list[dict[str, str]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (package / file).write_text(out.getvalue(), encoding="utf-8")


def edit(package: Path, file: str, sourced_id: str, **values: str) -> None:
    """Set columns of the row with this sourcedId."""
    columns, rows = read_rows(package, file)
    found = [row for row in rows if row["sourcedId"] == sourced_id]
    assert found, f"no {sourced_id} in {file}"
    found[0].update(values)
    write_rows(package, file, columns, rows)


def drop_rows(package: Path, file: str, unwanted: Callable[[dict[str, str]], bool]) -> None:
    columns, rows = read_rows(package, file)
    write_rows(package, file, columns, [row for row in rows if not unwanted(row)])


def drop_column(package: Path, file: str, column: str) -> None:
    columns, rows = read_rows(package, file)
    write_rows(package, file, [c for c in columns if c != column], [{k: v for k, v in r.items() if k != column}
                                                                     for r in rows])  # fmt: skip


async def learner_of(log: EventLog, email: str, tenant: str = TENANT) -> str:
    """The learner id ingest gives statements whose actor is this email (the learner directory's, which the roster
    import filled)."""
    found = await find_learner_id(log, tenant, {"mbox": f"mailto:{email}"})
    assert found is not None, email
    return found


def student_emails() -> dict[str, str]:
    """Student sourcedId -> email, from the sample."""
    _columns, rows = read_rows(SAMPLE, "users.csv")
    return {row["sourcedId"]: row["email"] for row in rows if row["role"] == "student"}


async def import_package(
    log: EventLog, package: Path, *, effective: date = EFFECTIVE, actor: ActorMapping | None = None, **kwargs: Any
) -> RosterImportResult:
    return await import_roster(log, TENANT, read_package(package), learner_ids=enroll_learner_ids, actor=actor,
                               effective=effective, **kwargs)  # fmt: skip
