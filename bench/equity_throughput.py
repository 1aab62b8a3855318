"""Equity and pacing views (issue 7): a district's full refresh, the equity reads, and keeping up with input.

    .venv/bin/python -m bench.equity_throughput                              # PostgreSQL, 50,000 learners, 20 schools
    .venv/bin/python -m bench.equity_throughput --learners 5000 --schools 4  # smaller, for development
    .venv/bin/python -m bench.equity_throughput --skip-reads --load-seconds 0
    .venv/bin/python -m bench.equity_throughput --keep-up one,split          # also the refresher in its own process
    .venv/bin/python -m bench.equity_throughput --skip-reads --load-seconds 0 --compare-reads 2  # reading by type

Targets (issue 7): pacing and equity projections keep up with 20,000 statements/s of input; the equity view
for a district of 50,000 learners answers in p99 under 200 ms.

On a PostgreSQL database created and dropped here:

1. a district set up directly in the log (batched appends): learners in schools (``RosterLearnerSet``), their
   student groups (``GroupMembershipChanged``, five factors, realistic shares), sections of at most 500
   learners, one pacing plan over 8 competencies following every section, and about 4 evidence statements
   per learner (keyed ``StatementStored`` events, as ingest appends them); the default projections fold it
   (in this process): seconds;
2. one full refresh of the equity views (everyone: the first one of the day): seconds, learners/s, cells,
   and how much of it is the cells (aggregation and suppression, pure CPU, timed apart on the same facts);
3. ``proficio serve`` (projectors off) answers ``GET /equity`` over many (scope, factor, level) combinations
   and ``GET /equity/scopes``, 1 and 8 clients (wrk): p50/p99;
4. keep-up: a worker process does what ``proficio project`` does (every default projection from the SQL log
   and the equity refresher, in one process) and writes each refresher round to a file; this process appends
   statements at ``--rate`` (batches of 1,000 on a schedule) for ``--load-seconds``; then reports the
   rounds, how far behind the views were when the load stopped, and how long until the equity views
   reflected every appended statement. ``--keep-up split`` runs the projectors and the refresher in two
   processes instead (``one,split``: both, one after the other on the same log).

Pacing itself is computed when read (``/pacing``), so "pacing keeps up" is the evidence fold keeping up
(also in bench/competency_throughput.py) and the refresher's facts, which use the same pace computation.
Results and how to read them: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from bench import _wrk as wrk
from bench.competency_throughput import (
    TENANT,
    ReadTarget,
    analyze_log,
    folded_through,
    measure_gets,
    process_cpu_s,
    server_pid,
    serving,
)
from proficio_cli._demo_district import FLAG_SHARES, RACE_SHARES, SMALL_GROUPS
from proficio_events import EventLog, NewEvent, open_event_log
from proficio_ingest import enroll_learner_ids
from proficio_ingest._statements import STATEMENT_KEY
from proficio_projector import RunnerSettings, SqlProjector, build, default_projections, migrate_runtime
from proficio_projector.competency import CompetencyEvidence
from proficio_projector.competency._reference import section_roster_event
from proficio_projector.equity import EquityRefresher, RefreshReport, RunningCells, cell_rows, scope_tables
from proficio_projector.equity._refresh import _groups_and_schools, _stored_facts, suppression_rules
from proficio_projector.equity._tables import equity_state
from proficio_projector.pacing import set_plan

PLAN = "grade-8-math"
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
INTERACTION = "http://adlnet.gov/expapi/activities/cmi.interaction"
BASE = "https://district.example.org"
COMPETENCIES = [f"{BASE}/competencies/math-8/{k + 1}" for k in range(8)]
GROUPS_FROM = "2026-08-24"
#: Learners per section (a section holds at most 1,000).
SECTION_SIZE = 500
#: Events per append, as a batched POST of 1,000 statements would be.
APPEND_BATCH = 1000
AUTHORITY = {"objectType": "Agent", "account": {"homePage": "https://proficio.example.org", "name": "bench"}}


# -- the district -------------------------------------------------------------------------------


def actor(n: int) -> dict[str, Any]:
    return {"objectType": "Agent", "mbox": f"mailto:learner{n}@district.example.org"}


def school_name(k: int) -> str:
    return f"school-{k + 1:02d}"


@dataclass(frozen=True)
class District:
    learners: list[str]
    #: learner index -> her schools (1% are at two).
    schools: list[list[str]]
    #: learner index -> factor -> value (a factor missing: no membership, counted as unknown).
    groups: list[dict[str, str]]
    school_names: list[str]


def make_district(learner_ids: list[str], schools: int, seed: int = 7) -> District:
    """``learner_ids`` (learner ``n`` is ``actor(n)``, her id the learner directory's) in schools of unequal size;
    groups drawn from the demo district's shares (roughly a US district's), with 1.5% in the two small race groups,
    1% of gender "other", and 2% with no race recorded (unknown)."""
    rng = random.Random(seed)
    names = [school_name(k) for k in range(schools)]
    weights = [rng.uniform(0.4, 1.6) for _ in names]
    race = [*RACE_SHARES, (SMALL_GROUPS[0], 0.01), (SMALL_GROUPS[1], 0.005)]
    placed: list[list[str]] = []
    groups: list[dict[str, str]] = []
    for _ in learner_ids:
        first = rng.choices(names, weights)[0]
        placed.append([first, rng.choice(names)] if rng.random() < 0.01 else [first])
        mine: dict[str, str] = {}
        if rng.random() >= 0.02:
            mine["race_ethnicity"] = _draw(rng, race)
        mine["gender"] = _draw(rng, (("female", 0.49), ("male", 0.50), ("other", 0.01)))
        for flag, share in FLAG_SHARES.items():
            mine[flag] = "true" if rng.random() < share else "false"
        groups.append(mine)
    return District(list(learner_ids), placed, groups, names)


def _draw(rng: random.Random, shares: Sequence[tuple[str, float]]) -> str:
    return rng.choices([v for v, _ in shares], [s for _, s in shares])[0]


def roster_events(district: District) -> Iterator[NewEvent]:
    for n, learner in enumerate(district.learners):
        data = {"learner": learner, "schools": district.schools[n], "grades": ["08"], "removed_schools": []}
        yield NewEvent.of("roster:learners", "RosterLearnerSet", data)


def group_events(district: District) -> Iterator[NewEvent]:
    for n, learner in enumerate(district.learners):
        for factor, value in district.groups[n].items():
            data = {"learner": learner, "factor": factor, "value": value, "effective_from": GROUPS_FROM,
                    "effective_to": None}  # fmt: skip
            yield NewEvent.of(f"protected:groups:{learner}", "GroupMembershipChanged", data)


def sections(district: District) -> dict[str, list[str]]:
    """Each school's learners (by first school) in sections of at most SECTION_SIZE."""
    by_school: dict[str, list[str]] = {}
    for n, learner in enumerate(district.learners):
        by_school.setdefault(sorted(district.schools[n])[0], []).append(learner)
    found = {}
    for school, members in sorted(by_school.items()):
        for k in range(0, len(members), SECTION_SIZE):
            found[f"{school}-math-8-{k // SECTION_SIZE + 1}"] = members[k : k + SECTION_SIZE]
    return found


def plan_start(today: date) -> date:
    """The Monday twelve weeks before ``today``: the plan is well under way when the views judge it."""
    monday = today - timedelta(days=today.weekday())
    return monday - timedelta(weeks=12)


class Statements:
    """Keyed ``StatementStored`` events of ~700 bytes: an assessment item naming one competency of the plan
    (earlier ones more often, as a class moves through the plan) in ``context.contextActivities.other``, with a
    scaled score, so every statement is evidence."""

    def __init__(self, district: District, seed: int) -> None:
        self.district = district
        self.rng = random.Random(seed)
        self.weights = [1.0 / (k + 1) for k in range(len(COMPETENCIES))]

    def event(self, n: int, moment: datetime) -> NewEvent:
        rng = self.rng
        statement_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        competency = rng.choices(COMPETENCIES, self.weights)[0]
        item = rng.randrange(400)
        statement = {
            "id": statement_id, "actor": actor(n),
            "verb": {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}},
            "object": {"id": f"{BASE}/items/{item}", "definition": {"name": {"en-US": f"Item {item}"},
                                                                  "type": INTERACTION}},
            "result": {"score": {"scaled": round(rng.random(), 2)}, "success": rng.random() > 0.3,
                       "duration": "PT42S"},
            "context": {"registration": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        "contextActivities": {"parent": [{"id": f"{BASE}/courses/math-8"}],
                                              "other": [{"id": competency, "definition": {"type": OBJECTIVE}}]}},
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "authority": AUTHORITY, "version": "1.0.0",
        }  # fmt: skip
        # No ``decoded``: the load keeps hundreds of thousands of these in memory before appending them.
        payload = orjson.dumps({"statement": statement, "credential": "bench", "define": False})
        return NewEvent(self.district.learners[n], "StatementStored", payload, key=STATEMENT_KEY + statement_id)


async def append_all(log: EventLog, events: Iterator[NewEvent]) -> int:
    appended = 0
    batch: list[NewEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) == APPEND_BATCH:
            await log.append(TENANT, batch)
            appended += len(batch)
            batch = []
            if appended in (10_000, 50_000) or appended % 250_000 == 0:
                await analyze_log(log)  # see analyze_log: the append's plans go bad on a fast-growing table
    if batch:
        await log.append(TENANT, batch)
        appended += len(batch)
    return appended


async def set_up(log: EventLog, district: District, per_learner: int, today: date) -> None:
    started = time.perf_counter()
    events = await append_all(log, roster_events(district))
    events += await append_all(log, group_events(district))
    rosters = sections(district)
    events += await append_all(log, (section_roster_event(s, s, m) for s, m in rosters.items()))
    start = plan_start(today)
    await set_plan(log, TENANT, {
        "plan": PLAN, "title": "Math 8", "start": start.isoformat(),
        "target": (start + timedelta(weeks=38)).isoformat(), "sections": sorted(rosters),
        "competencies": [{"uri": c, "tier": "must", "week": 3 * (k + 1)} for k, c in enumerate(COMPETENCIES)],
    })  # fmt: skip
    source = Statements(district, seed=11)
    rng = random.Random(13)
    begin = datetime(start.year, start.month, start.day, 8, tzinfo=UTC)
    span = (datetime.now(UTC) - timedelta(hours=1) - begin).total_seconds()
    total = per_learner * len(district.learners)
    # Random learners, in time order: about ``per_learner`` each (some have none: only the plan judges them).
    statements = (
        source.event(rng.randrange(len(district.learners)), begin + timedelta(seconds=span * k / total))
        for k in range(total)
    )
    events += 1 + await append_all(log, statements)
    await analyze_log(log)
    print(f"  log filled: {len(district.learners):,} learners in {len(district.school_names)} schools, "
          f"{len(rosters)} sections, {total:,} statements; {events:,} events in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip


async def catch_up(log: EventLog) -> None:
    """Every default projection folds the log to its head in this process, as ``proficio project`` would."""
    head = await log.max_position()
    projections = default_projections()
    settings = RunnerSettings(owner="bench", idle_timeout=0.1)
    stop = asyncio.Event()
    started = time.perf_counter()
    tasks = [asyncio.create_task(SqlProjector(log, p, settings).run(stop)) for p in projections]
    try:
        while min([await folded_through(log, p.name) for p in projections]) < head:
            for task in tasks:
                if task.done():
                    task.result()
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    print(f"  projectors caught up ({len(projections)} default projections, one process): {seconds:.0f} s "
          f"for {head:,} events ({head / seconds:,.0f} events/s)")  # fmt: skip


async def compare_reads(url: str, rounds: int) -> None:
    """Rebuild every default projection from position 0 at once, in this process, reading the log two ways
    in turn: every event (each projection skipping what it does not fold, as before ``scan_after`` filtered
    by type) and each projection's own event types."""
    for n in range(rounds):
        for every in (True, False):
            log = await open_event_log(url, migrate=False)
            try:
                if every:
                    # The base implementation reads every event and filters in Python.
                    log.scan_after = functools.partial(EventLog.scan_after, log)  # type: ignore[method-assign]
                head = await log.max_position()
                settings = RunnerSettings(owner="bench", idle_timeout=0.1)
                cpu, started = time.process_time(), time.perf_counter()
                await asyncio.gather(*(build(log, p, settings) for p in default_projections()))
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            finally:
                await log.close()
            how = "every event read, skipped in Python" if every else "each projection's own types read"
            print(f"  rebuild of the {len(default_projections())} default projections at once, round {n + 1}, "
                  f"{how}: {seconds:.1f} s for {head:,} events ({head / seconds:,.0f} events/s), "
                  f"{cpu:.1f} s of this process's CPU; load average {os.getloadavg()[0]:.1f}")  # fmt: skip


# -- the full refresh ---------------------------------------------------------------------------


async def full_refresh(log: EventLog, today: date) -> None:
    [report] = await EquityRefresher(log).refresh(today)
    print(f"  full refresh: {report.learners_refreshed:,} learners in {report.seconds:.1f} s "
          f"({report.learners_refreshed / report.seconds:,.0f} learners/s), {report.cells:,} cells stored "
          f"(both audiences)")  # fmt: skip
    # The cells part again on the stored facts, timed apart: the pure-CPU aggregation and suppression.
    async with log.engine.connect() as conn:
        facts = [fact for listed in (await _stored_facts(conn, TENANT)).values() for fact in listed]
        groups, schools = await _groups_and_schools(conn, TENANT, today)
        rules = await suppression_rules(conn, TENANT)
    started = time.perf_counter()
    tables = scope_tables(facts, groups, schools)
    aggregated = time.perf_counter()
    stored = cell_rows(TENANT, tables, rules, today)
    suppressed = time.perf_counter()
    running = RunningCells(groups, schools)
    running.add_all(facts)
    kept = time.perf_counter()
    assert running.tables() == tables
    print(
        f"    of which, on the same {len(facts):,} facts: aggregation {aggregated - started:.2f} s, "
        f"suppression of {len(tables)} scope tables {suppressed - aggregated:.2f} s ({len(stored):,} rows); "
        f"the refresher's kept cells built from them in {kept - suppressed:.2f} s"
    )


# -- the reads ----------------------------------------------------------------------------------


def equity_paths(district: District, rng: random.Random, count: int = 200) -> list[str]:
    """The plan and each competency, each factor, the district and every school; public views, some staff."""
    scopes = [f"plan:{PLAN}", *(f"competency:{c}" for c in COMPETENCIES)]
    factors = ["race_ethnicity", "gender", "economically_disadvantaged", "english_learner", "disability"]
    levels = ["district", *(f"school:{s}" for s in district.school_names)]
    every = [(s, f, lv) for s in scopes for f in factors for lv in levels]
    chosen = rng.sample(every, min(count, len(every)))
    return [
        f"/equity?scope={s}&factor={f}&level={lv}" + ("&audience=staff" if k % 5 == 0 else "")
        for k, (s, f, lv) in enumerate(chosen)
    ]


def measure_reads(target: ReadTarget, district: District, seconds: float) -> None:
    server = target.server
    paths = equity_paths(district, random.Random(3))
    district_plan = f"/equity?scope=plan:{PLAN}&factor=english_learner&level=district"
    sizes = []
    for path in [district_plan, *paths[:20]]:
        response = httpx.get(server.base_url + path, headers=server.headers, timeout=60)
        response.raise_for_status()
        sizes.append(len(response.content))
    print(f"  (a response: {sizes[0]:,} bytes for the plan's English learners in the district; "
          f"{min(sizes):,}-{max(sizes):,} bytes over the mix)")  # fmt: skip
    measure_gets(target, "GET /equity, the plan x English learners x district", [district_plan], seconds)
    measure_gets(target, f"GET /equity, {len(paths)} (scope, factor, level) in turn", paths, seconds)
    scopes = httpx.get(server.base_url + "/equity/scopes", headers=server.headers, timeout=60)
    scopes.raise_for_status()
    print(f"  (/equity/scopes: {len(scopes.json()['scopes'])} scopes, {len(scopes.content):,} bytes)")
    measure_gets(target, "GET /equity/scopes", ["/equity/scopes"], seconds)


# -- keeping up ---------------------------------------------------------------------------------


class ReportingRefresher(EquityRefresher):
    """The refresher ``proficio project`` runs, writing each round (and the evidence mark it reached) to a file."""

    def __init__(self, log: EventLog, rounds: Path) -> None:
        super().__init__(log)
        self.rounds = rounds

    async def refresh(self, as_of: date | None = None) -> list[RefreshReport]:
        reports = await super().refresh(as_of)
        with self.rounds.open("ab") as out:
            out.write(orjson.dumps({"ready": True, "at": time.time()}) + b"\n")
        return reports

    async def refresh_tenant(self, tenant: str, as_of: date) -> RefreshReport | None:
        started = time.time()
        report = await super().refresh_tenant(tenant, as_of)
        if report is not None:
            async with self.log.engine.connect() as conn:
                mark = await conn.scalar(sa.select(equity_state.c.evidence_mark).where(equity_state.c.tenant == tenant))
            line = {"start": started, "end": time.time(), "learners": report.learners_refreshed,
                    "total": report.learners_total, "cells": report.cells, "mark": mark}  # fmt: skip
            with self.rounds.open("ab") as out:
                out.write(orjson.dumps(line) + b"\n")
        return report


#: What each kind of keep-up worker process runs.
PARTS = ("all", "projectors", "refresher")


async def worker(url: str, rounds: Path, part: str) -> None:
    """``all``: what ``proficio project`` runs (``run_projectors``, SQL source: every default projection and the
    equity refresher in one process), with the refresher reporting its rounds; or only one of the two."""
    log = await open_event_log(url, migrate=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runners: list[Any] = []
    if part in ("all", "projectors"):
        runners += [SqlProjector(log, p, RunnerSettings()) for p in default_projections()]
    if part in ("all", "refresher"):
        runners.append(ReportingRefresher(log, rounds))
    try:
        await asyncio.gather(*(r.run(stop) for r in runners))
    finally:
        await log.close()


@contextlib.contextmanager
def running_workers(url: str, rounds: Path, parts: Sequence[str]) -> Iterator[dict[str, int]]:
    """One worker process per part: part -> pid."""
    processes = {
        part: subprocess.Popen(
            [sys.executable, "-m", "bench.equity_throughput", "--worker", url, "--part", part, "--rounds", str(rounds)],
            stderr=subprocess.DEVNULL,
        )
        for part in parts
    }
    try:
        yield {part: process.pid for part, process in processes.items()}
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=60)


def read_rounds(path: Path) -> tuple[bool, list[dict[str, Any]]]:
    if not path.exists():
        return False, []
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    return any(x.get("ready") for x in lines), [x for x in lines if "mark" in x]


async def equity_mark(log: EventLog) -> int:
    async with log.engine.connect() as conn:
        found = await conn.scalar(sa.select(equity_state.c.evidence_mark).where(equity_state.c.tenant == TENANT))
    return int(found or 0)


@dataclass
class Appended:
    """When each batch of the load was committed: its last position and the wall-clock time."""

    positions: list[int]
    times: list[float]

    def first_after(self, mark: int) -> float | None:
        """When the oldest appended statement past ``mark`` was committed (None: nothing past it)."""
        k = bisect.bisect_right(self.positions, mark)
        return self.times[k] if k < len(self.times) else None


@dataclass(frozen=True)
class Sample:
    at: float
    head: int
    folded: int
    mark: int


async def sample(log: EventLog) -> Sample:
    return Sample(time.time(), await log.max_position(), await folded_through(log, CompetencyEvidence.name),
                  await equity_mark(log))  # fmt: skip


async def load(
    url: str, district: District, args: argparse.Namespace, rounds: Path, workers: dict[str, int], seed: int
) -> None:
    rate, seconds = args.rate, args.load_seconds
    log = await open_event_log(url, migrate=False)
    try:
        # The worker's projectors hold their leases and its refresher ran once (polled: another process's file).
        while not read_rounds(rounds)[0]:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        initial_mark = await equity_mark(log)
        total = int(rate * seconds)
        source = Statements(district, seed=seed)  # a seed of its own: new statement ids
        rng = random.Random(seed + 1)
        now = datetime.now(UTC)
        prepared = time.perf_counter()
        # Timestamped when each is due (about when it is appended).
        batches = [
            [source.event(rng.randrange(len(district.learners)), now + timedelta(seconds=(k + j) / rate))
             for j in range(min(APPEND_BATCH, total - k))]
            for k in range(0, total, APPEND_BATCH)
        ]  # fmt: skip
        print(f"  load: {total:,} statements prepared in {time.perf_counter() - prepared:.0f} s; appending "
              f"{rate:,}/s in batches of {APPEND_BATCH:,} for {seconds:.0f} s", flush=True)  # fmt: skip
        done: list[tuple[int, float]] = []
        pending: set[asyncio.Task[None]] = set()
        samples: list[Sample] = []
        sampling = asyncio.Event()

        async def append(batch: list[NewEvent]) -> None:
            result = await log.append(TENANT, batch)
            done.append((result.last_position, time.time()))

        async def sampler() -> None:
            while not sampling.is_set():
                samples.append(await sample(log))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sampling.wait(), 1.0)

        cpu_before = {part: process_cpu_s(pid) or 0.0 for part, pid in workers.items()}
        sampled = asyncio.create_task(sampler())
        start = time.perf_counter()
        started_wall = time.time()
        late = 0.0
        for k, batch in enumerate(batches):
            wait = start + k * APPEND_BATCH / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late = max(late, -wait)
            task = asyncio.create_task(append(batch))
            pending.add(task)
            task.add_done_callback(pending.discard)
            while len(pending) >= 4:  # the log groups concurrent appends into one commit; more only queues
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - start
        ended = time.time()
        cores = {part: ((process_cpu_s(pid) or 0.0) - cpu_before[part]) / (ended - started_wall)
                 for part, pid in workers.items()}  # fmt: skip
        done.sort()
        appended = Appended([p for p, _ in done], [t for _, t in done])
        last = appended.positions[-1]
        at_end = await sample(log)
        print(
            f"  appended {total:,} statements in {elapsed:.1f} s: {total / elapsed:,.0f}/s (the schedule slipped "
            f"by up to {late:.1f} s); CPU cores used meanwhile: "
            + ", ".join(f"{part} worker {used:.2f}" for part, used in cores.items())
        )
        behind_since = appended.first_after(at_end.mark)
        print(f"  when the load stopped: the evidence fold {last - min(last, at_end.folded):,} events behind; the "
              f"equity views' evidence mark {last - min(last, at_end.mark):,} behind (the oldest statement not in "
              f"them appended {ended - behind_since if behind_since else 0:.1f} s earlier)")  # fmt: skip
        deadline = time.perf_counter() + args.drain_seconds
        while (mark := await equity_mark(log)) < last and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # the refresher runs in another process: polled
        if mark >= last:
            print(f"  the equity views reflected every appended statement {time.time() - ended:.1f} s after the "
                  f"load stopped")  # fmt: skip
        else:
            print(f"  after {args.drain_seconds:.0f} s the equity views were still {last - mark:,} events behind")
        sampling.set()
        await sampled
        report_samples(samples, appended, started_wall)
        # The worker writes a round's line just after committing it: give the last one a moment to arrive.
        for _ in range(50):
            found = read_rounds(rounds)[1]
            if mark < last or (found and found[-1]["mark"] >= last):
                break
            await asyncio.sleep(0.1)
        report_rounds(found, appended, initial_mark, started_wall, ended)
    finally:
        await log.close()


def report_samples(samples: list[Sample], appended: Appended, load_start: float) -> None:
    """About 25 moments: what had been appended, how far the evidence fold and the equity views trailed it."""
    print("  timeline (t from the load's start; behind = appended by then and not yet in):")
    step = max(5.0, (samples[-1].at - load_start) / 25) if samples else 5.0
    next_at = 0.0
    for s in samples:
        t = s.at - load_start
        if t < next_at:
            continue
        next_at = t + step
        k = bisect.bisect_right(appended.times, s.at)
        appended_by = appended.positions[k - 1] if k else s.head
        fold_behind = max(0, appended_by - s.folded)
        mark_behind = max(0, appended_by - s.mark)
        oldest = appended.first_after(s.mark)
        age = s.at - oldest if oldest is not None and oldest < s.at else 0.0
        print(f"    t {t:6.1f} s: fold {fold_behind:>9,} behind, equity views {mark_behind:>9,} behind "
              f"(oldest missing statement {age:5.1f} s old)")  # fmt: skip


def report_rounds(
    found: list[dict[str, Any]], appended: Appended, mark: int, load_start: float, load_end: float
) -> None:
    """Each round during and after the load: learners, seconds, and how stale the views were."""
    print("  refresher rounds (t from the load's start):")
    previous = mark
    for r in found:
        if r["end"] < load_start:
            continue
        # Just before this round's views replaced the last ones, they reflected everything up to the last mark.
        oldest_before = appended.first_after(previous)
        oldest_after = appended.first_after(r["mark"])
        stale_before = r["end"] - oldest_before if oldest_before and oldest_before < r["end"] else 0.0
        stale_after = r["end"] - oldest_after if oldest_after and oldest_after < r["end"] else 0.0
        print(
            f"    t {r['start'] - load_start:6.1f}-{r['end'] - load_start:6.1f} s: {r['learners']:>7,} learners "
            f"in {r['end'] - r['start']:5.1f} s ({r['learners'] / max(1e-9, r['end'] - r['start']):,.0f}/s), "
            f"{r['cells']:,} cells; views' staleness {stale_before:5.1f} s before, {stale_after:5.1f} s after"
        )
        previous = r["mark"]
        if r["start"] > load_end and r["mark"] >= appended.positions[-1]:
            break


# -- running it ---------------------------------------------------------------------------------


async def prepare(url: str, args: argparse.Namespace, today: date) -> District:
    log = await open_event_log(url)
    try:
        # Their ids from the learner directory, as ingest (or the roster import) would give them.
        district = make_district(
            await enroll_learner_ids(log, TENANT, [actor(n) for n in range(args.learners)]), args.schools
        )
        await migrate_runtime(log)
        await set_up(log, district, args.per_learner, today)
        await catch_up(log)
        await full_refresh(log, today)
    finally:
        await log.close()
    return district


def run(url: str, data_dir: Path, args: argparse.Namespace) -> None:
    today = datetime.now(UTC).date()
    district = asyncio.run(prepare(url, args, today))
    if args.compare_reads:
        asyncio.run(compare_reads(url, args.compare_reads))
    if not args.skip_reads:
        if not wrk.available():
            print("  reads: wrk is not installed (apt-get install wrk); not measured")
        else:
            with serving(data_dir, url) as server:
                measure_reads(ReadTarget(server, url, server_pid(data_dir)), district, args.seconds)
    for n, mode in enumerate(args.keep_up if args.load_seconds > 0 else []):
        rounds = data_dir / f"rounds-{n}.jsonl"
        if mode == "one":
            print("  keep-up: the default projections and the equity refresher in one worker process (what proficio "
                  "project runs); the load appended from this process")  # fmt: skip
        else:
            print("  keep-up: the default projections in one worker process, the equity refresher in another; the "
                  "load appended from this process")  # fmt: skip
        parts = ["all"] if mode == "one" else ["projectors", "refresher"]
        with running_workers(url, rounds, parts) as pids:
            asyncio.run(load(url, district, args, rounds, pids, seed=17 + 2 * n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=50_000)
    parser.add_argument("--schools", type=int, default=20)
    parser.add_argument("--per-learner", type=int, default=4, help="evidence statements per learner in the set-up")
    parser.add_argument("--seconds", type=float, default=10, help="length of each read measurement")
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument(
        "--compare-reads", type=int, default=0, metavar="ROUNDS",
        help="rebuild the default projections reading every event, then only their types, ROUNDS times",
    )  # fmt: skip
    parser.add_argument("--rate", type=int, default=20_000, help="statements/s appended during the keep-up load")
    parser.add_argument("--load-seconds", type=float, default=30, help="length of the load (0: no keep-up run)")
    parser.add_argument("--drain-seconds", type=float, default=900, help="how long to wait for the views after it")
    parser.add_argument(
        "--keep-up", type=lambda v: v.split(","), default=["one"],
        help="one: projectors and refresher in one process (as proficio project); split: in two; one,split: both, "
             "one after the other on the same log",
    )  # fmt: skip
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)  # a keep-up worker process
    parser.add_argument("--part", choices=PARTS, default="all", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.rounds, args.part))
        return
    if not set(args.keep_up) <= {"one", "split"}:
        parser.error("--keep-up is one, split or one,split")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
    from tests.support.postgres import running_postgres

    with running_postgres() as pg, tempfile.TemporaryDirectory() as tmp:
        run(pg.url, Path(tmp), args)


if __name__ == "__main__":
    main()
