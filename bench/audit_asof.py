"""A learner's views as of a moment, replayed from the log, over a long history (issue 8's target: 10,000
statements in under 1 s).

    .venv/bin/python -m bench.audit_asof                  # SQLite, 10,000 statements
    .venv/bin/python -m bench.audit_asof --postgres       # PostgreSQL 15 (started here)

One learner with ``--statements`` statements spread over ``--competencies`` competencies (a few voided),
folded by the evidence projector; then the history read, the as-of view at the end and at the middle of
her history, each timed over several runs (the best and the median are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tests.projector.support import FAST, caught_up, running

from proficio_events import EventLog, NewEvent, open_event_log, sqlite_url
from proficio_projector import RunnerSettings, SqlProjector, migrate_runtime
from proficio_projector.audit import learner_events, views_as_of
from proficio_projector.competency import CompetencyEvidence

TENANT = "district-7"
LEARNER = "learner:bench"
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"


def statement(n: int, competencies: int) -> dict[str, object]:
    competency = f"https://district.example.org/competencies/c{n % competencies}"
    return {
        "id": str(uuid.UUID(int=n + 1)), "actor": {"mbox": "mailto:bench@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"}, "object": {"id": f"{competency}/item/{n}"},
        "result": {"score": {"scaled": (n * 37 % 100) / 100}},
        "context": {"contextActivities": {"other": [{"id": competency, "definition": {"type": OBJECTIVE}}]}},
        "timestamp": f"2026-{1 + n // 1000 % 12:02d}-{1 + n % 28:02d}T10:00:00Z",
    }  # fmt: skip


async def fill(log: EventLog, statements: int, competencies: int) -> None:
    batch: list[NewEvent] = []
    for n in range(statements):
        batch.append(NewEvent.of(LEARNER, "StatementStored", {"statement": statement(n, competencies)},
                                 key=f"statement:{uuid.UUID(int=n + 1)}"))  # fmt: skip
        if n % 50 == 49:  # a few voided, by a teacher
            voiding = {"id": str(uuid.uuid4()), "actor": {"mbox": "mailto:teacher@example.org"},
                       "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
                       "object": {"objectType": "StatementRef", "id": str(uuid.UUID(int=n + 1))}}  # fmt: skip
            batch.append(NewEvent.of("learner:teacher", "StatementVoided", {"statement": voiding},
                                     key=f"statement:{voiding['id']}"))  # fmt: skip
        if len(batch) >= 1000:
            await log.append(TENANT, batch)
            batch = []
    if batch:
        await log.append(TENANT, batch)


async def measure(url: str, statements: int, competencies: int, runs: int) -> None:
    log = await open_event_log(url)
    try:
        await migrate_runtime(log)
        started = time.perf_counter()
        await fill(log, statements, competencies)
        async with running(SqlProjector(log, CompetencyEvidence(), RunnerSettings(owner="bench", **FAST))):
            await caught_up(log, CompetencyEvidence.name, timeout=600)
        print(f"  log of {statements:,} statements over {competencies} competencies, folded: "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        events = await learner_events(log, TENANT, LEARNER)
        end = events[-1].recorded_us
        middle = events[len(events) // 2].recorded_us
        for label, work in (
            ("history (her events, voids found)", lambda: learner_events(log, TENANT, LEARNER)),
            ("views as of the end (history included)", lambda: views_as_of(log, TENANT, LEARNER, end)),
            ("views as of the middle", lambda: views_as_of(log, TENANT, LEARNER, middle, events=events)),
        ):
            times = []
            for _ in range(runs):
                began = time.perf_counter()
                await work()
                times.append(time.perf_counter() - began)
            print(f"  {label:<42} best {min(times) * 1000:7.1f} ms   median {statistics.median(times) * 1000:7.1f} ms")
    finally:
        await log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--competencies", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}, "
          f"{'PostgreSQL' if args.postgres else 'SQLite'}")  # fmt: skip
    if args.postgres:
        from tests.support.postgres import running_postgres

        with running_postgres() as pg:
            asyncio.run(measure(pg.url, args.statements, args.competencies, args.runs))
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(sqlite_url(Path(tmp)), args.statements, args.competencies, args.runs))


if __name__ == "__main__":
    main()
