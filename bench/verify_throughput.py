"""`verify` throughput: the hash-chain walk against the way it was done before, in the same run.

    .venv/bin/python -m bench.verify_throughput                 # SQLite, then PostgreSQL 15 (started here)
    .venv/bin/python -m bench.verify_throughput --sqlite --events 100000

Fills a log with ~600-byte xAPI-like statements (batches of 1,000, three tenants), then times, in
alternation, `EventLog.verify()` (raw driver rows, batches read one ahead, one sha256 call per event)
and the previous walk (`read_after` pages of 5,000 `StoredEvent`s, `expected_hash()` per event),
each --rounds times; prints the median and best events/s of each and the ratio of the medians. Also
one tenant's walk and a walk with signed checkpoints to meet. "per CPU-s" divides by this process's CPU
time (all its threads) rather than the wall clock: on a shared machine it says what a free core would
do (on PostgreSQL the server's own CPU is not in it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.log_throughput import make_batch
from proficio_events import GENESIS, EventLog, Signer, open_event_log, sqlite_url

TENANTS = ("district-a", "district-b", "district-c")


async def previous_verify(log: EventLog, tenant: str | None = None) -> int:
    """The walk `verify` did before this change (kept here to compare with, not in the library)."""
    heads: dict[str, bytes] = {}
    checked = 0
    position = 0
    while batch := await log.read_after(position, 5000, tenant=tenant):
        for event in batch:
            if event.prev_hash != heads.get(event.tenant, GENESIS) or event.expected_hash() != event.hash:
                raise AssertionError(f"the benchmark's log does not verify at {event.position}")
            heads[event.tenant] = event.hash
            checked += 1
        position = batch[-1].position
    return checked


async def fill(log: EventLog, events: int) -> None:
    for start in range(0, events, 1000):
        await log.append(TENANTS[(start // 1000) % len(TENANTS)], make_batch(start, 1000, keyed=False))


async def rate(walk: Callable[[], Awaitable[int]]) -> tuple[float, float]:
    """Events per second of wall time, and per second of this process's CPU time."""
    started, cpu = time.perf_counter(), time.process_time()
    checked = await walk()
    return checked / (time.perf_counter() - started), checked / (time.process_time() - cpu)


def show(backend: str, label: str, figures: list[tuple[float, float]]) -> float:
    wall = statistics.median(w for w, _ in figures)
    cpu = statistics.median(c for _, c in figures)
    best = max(w for w, _ in figures)
    print(f"  {backend:<10} {label:<44} median {wall:>9,.0f}  best {best:>9,.0f}  per CPU-s {cpu:>9,.0f}")
    return wall


async def new_verify(log: EventLog, tenant: str | None = None) -> int:
    report = await log.verify(tenant)
    if not report.ok:
        raise AssertionError(f"the benchmark's log does not verify: {report.problem}")
    return report.events_checked


async def run_backend(name: str, url: str, events: int, rounds: int) -> None:
    log = await open_event_log(url)
    try:
        await fill(log, events)
        await new_verify(log)  # warm the caches both walks read from
        previous: list[tuple[float, float]] = []
        current: list[tuple[float, float]] = []
        for _ in range(rounds):
            previous.append(await rate(lambda: previous_verify(log)))
            current.append(await rate(lambda: new_verify(log)))
        before = show(name, "verify, before (read_after + expected_hash)", previous)
        now = show(name, "verify, now", current)
        print(f"  {name:<10} {'ratio of the medians (wall)':<44} {now / before:>10.2f}x")
        show(name, "verify --tenant (a third of the log), now", [
            await rate(lambda: new_verify(log, TENANTS[0])) for _ in range(rounds)
        ])  # fmt: skip
        signer = Signer(Ed25519PrivateKey.generate())
        for tenant in TENANTS:
            await log.record_checkpoint(tenant, signer)
        show(name, "verify, 3 signed checkpoints to meet, now", [
            await rate(lambda: _verify_signed(log, signer)) for _ in range(rounds)
        ])  # fmt: skip
    finally:
        await log.close()


async def _verify_signed(log: EventLog, signer: Signer) -> int:
    report = await log.verify(public_key=signer.public_key)
    if not report.ok or report.signatures_verified != len(TENANTS):
        raise AssertionError(f"the benchmark's checkpoints do not verify: {report}")
    return report.events_checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", action="store_true", help="SQLite only")
    parser.add_argument("--events", type=int, default=200_000, help="events in the log (default 200,000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed walks of each kind (default 3)")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f},"
        f" {platform.python_implementation()} {platform.python_version()}, {platform.platform()};"
        f" {args.events:,} events, events/s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run_backend("sqlite", sqlite_url(Path(tmp)), args.events, args.rounds))
    if not args.sqlite:
        from tests.support.postgres import running_postgres

        with running_postgres() as server:
            asyncio.run(run_backend("postgresql", server.url, args.events, args.rounds))


if __name__ == "__main__":
    main()
