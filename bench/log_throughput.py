"""Append and read throughput of the event log on SQLite and PostgreSQL.

    .venv/bin/python -m bench.log_throughput            # both backends (starts PostgreSQL 15 itself)
    .venv/bin/python -m bench.log_throughput --sqlite   # SQLite only

Prints events/s for appends in batches of 1, 100 and 1,000 (unkeyed and keyed, as statement ingest
appends them), a sequential read of the whole log, and `verify`. The single-event append is the
floor that batching is compared with, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from proficio_events import EventLog, NewEvent, open_event_log, sqlite_url

TENANT = "district-bench"


def statement(n: int) -> dict[str, object]:
    """A typical xAPI statement of about 600 bytes."""
    return {
        "id": str(uuid.UUID(int=n)),
        "actor": {"objectType": "Agent", "mbox": f"mailto:learner{n % 5000}@example.org", "name": f"Learner {n}"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}},
        "object": {
            "id": f"https://example.org/activities/item/{n % 300}",
            "definition": {
                "name": {"en-US": "Fractions item"},
                "type": "http://adlnet.gov/expapi/activities/cmi.interaction",
            },
        },
        "result": {"score": {"scaled": (n % 100) / 100}, "success": n % 3 != 0, "duration": "PT41S"},
        "context": {"contextActivities": {"parent": [{"id": "https://example.org/competency/math.fractions"}]}},
        "timestamp": "2026-11-22T10:00:00.000Z",
    }


def make_batch(start: int, size: int, keyed: bool) -> list[NewEvent]:
    return [
        NewEvent.of(
            f"learner:{(start + i) % 5000}",
            "StatementStored",
            statement(start + i),
            key=str(uuid.UUID(int=start + i)) if keyed else None,
        )
        for i in range(size)
    ]


async def measure_appends(log: EventLog, batch_size: int, total: int, keyed: bool, counter: list[int]) -> float:
    batches = [make_batch(counter[0] + b * batch_size, batch_size, keyed) for b in range(total // batch_size)]
    counter[0] += total
    started = time.perf_counter()
    for batch in batches:
        await log.append(TENANT, batch)
    return total / (time.perf_counter() - started)


async def measure_read(log: EventLog) -> tuple[float, int]:
    started = time.perf_counter()
    position, count = 0, 0
    while batch := await log.read_after(position, 1000):
        count += len(batch)
        position = batch[-1].position
    return count / (time.perf_counter() - started), count


async def run_backend(name: str, url: str, report: Callable[[str, str, float], None], scale: float) -> None:
    log = await open_event_log(url)
    counter = [0]
    try:
        single = await measure_appends(log, 1, int(2000 * scale), False, counter)
        report(name, "append, batch of 1", single)
        report(name, "append, batch of 100", await measure_appends(log, 100, int(20_000 * scale), False, counter))
        batched = await measure_appends(log, 1000, int(50_000 * scale), False, counter)
        report(name, "append, batch of 1,000", batched)
        report(
            name, "append, batch of 1,000, keyed", await measure_appends(log, 1000, int(50_000 * scale), True, counter)
        )
        report(name, "  batching gain (x, 1,000 vs 1)", batched / single)
        rate, count = await measure_read(log)
        report(name, f"sequential read ({count:,} events)", rate)
        started = time.perf_counter()
        checked = (await log.verify()).events_checked
        report(name, "verify (hash chain walk)", checked / (time.perf_counter() - started))
    finally:
        await log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", action="store_true", help="SQLite only")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    args = parser.parse_args()
    rows: list[tuple[str, str, float]] = []

    def report(backend: str, what: str, value: float) -> None:
        rows.append((backend, what, value))
        unit = "" if what.strip().startswith("batching") else " events/s"
        print(f"  {backend:<10} {what:<38} {value:>12,.1f}{unit}", flush=True)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.platform()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_backend("sqlite", sqlite_url(Path(tmp)), report, args.scale))
    if not args.sqlite:
        from tests.support.postgres import running_postgres

        with running_postgres() as server:
            asyncio.run(run_backend("postgresql", server.url, report, args.scale))


if __name__ == "__main__":
    main()
