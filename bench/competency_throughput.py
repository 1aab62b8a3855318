"""Competency progress (issue 6): the evidence fold, a rebuild, and the progress and section-grid reads.

    .venv/bin/python -m bench.competency_throughput                          # PostgreSQL 1,000,000; SQLite 100,000
    .venv/bin/python -m bench.competency_throughput --statements 100000      # a smaller log
    .venv/bin/python -m bench.competency_throughput --sqlite-statements 0    # PostgreSQL only
    .venv/bin/python -m bench.competency_throughput --skip-reads             # the fold and the rebuild only
    .venv/bin/python -m bench.competency_throughput --statements 100000 --sqlite-statements 0 \
        --keep-database bench_competency_100k --reads grid                   # the grid only, on a kept log

Each backend gets a log of its own (PostgreSQL: a database created and dropped here; SQLite: a file in
a temporary directory) filled the way ingest stores statements (one ``StatementStored`` event per
statement in the learner's stream, keyed by statement id, 1,000 per append): a 50-competency CASE
framework, alignments of an item bank, and statements from learners who have about 250 each (tagged
assessment items, aligned-only items, completions, launches, a few voids by instructors). Then:

1. one ``competency_evidence`` SqlProjector folds the log from position 0: statements/s;
2. ``build()`` of a new generation (what ``proficio rebuild competency_evidence`` does): seconds;
3. ``proficio serve`` (one worker, projectors off: the views are built here first) answers
   ``GET /competency/progress?learner=`` for random learners, 1 and 8 clients (wrk): p50/p99;
4. sections of 30 learners set with ``PUT /competency/sections/{id}`` (folded into the reference view
   here), then ``GET /competency/sections/{id}/grid`` (30 learners x 50 competencies) the same way: once
   with the server's per-learner cache of grid cells (every grid read again and again: warm), once from a
   server started without it (``PROFICIO_GRID_CACHE_LEARNERS=0``: every learner scored on every read).

Besides rates and latencies it prints CPU time per statement (fold) or per request (reads), of the
process doing the work and of its PostgreSQL backends: on a busy shared machine the steadier measure
for comparing two versions of the code. Results and how to read them: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from tests.support.server import RunningServer, create_credential, running_server

from bench import _wrk as wrk
from bench.stream_throughput import timed
from proficio_events import EventLog, NewEvent, open_event_log, sqlite_url
from proficio_ingest import enroll_learner_ids, find_learner_ids
from proficio_ingest._statements import STATEMENT_KEY
from proficio_projector import Projection, RunnerSettings, SqlProjector, active_generation, build, migrate_runtime
from proficio_projector._runtime import sql_checkpoints
from proficio_projector.competency import (
    CompetencyEvidence,
    CompetencyReference,
    Frameworks,
    define_alignment,
    import_framework,
    parse_package,
)

TENANT = "district-bench"
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
INTERACTION = "http://adlnet.gov/expapi/activities/cmi.interaction"
COURSE = "https://district.example.org/courses/grade-10"
CASE_BASE = "https://district.example.org/case"
ITEM_BANK = "https://district.example.org/items"
ALIGNED_BANK = "https://district.example.org/aligned-items"
VERB = "http://adlnet.gov/expapi/verbs/"
SEMESTER_START = datetime(2026, 9, 1, tzinfo=UTC)
INSTRUCTORS = 20
#: Statements appended per call, as a batched POST of 1,000 would be.
APPEND_BATCH = 1000


# -- the framework and the workload -------------------------------------------------------------


def _case_id(kind: str, name: str) -> tuple[str, str]:
    """A stable CASE identifier and its URI."""
    identifier = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{CASE_BASE}/{kind}/{name}"))
    return identifier, f"{CASE_BASE}/{kind}/{identifier}"


def framework_package(competencies: int, strands: int = 5) -> bytes:
    """A CASE 1.0 package: a document, ``strands`` strands, ``competencies`` competencies in them, a 4-level rubric."""
    changed = "2026-11-22T00:00:00+00:00"
    doc_id, doc_uri = _case_id("CFDocuments", "bench-profile")
    document = {"identifier": doc_id, "uri": doc_uri, "creator": "Proficio bench", "title": "Bench graduate profile",
                "lastChangeDateTime": changed, "version": "1.0"}  # fmt: skip
    items: list[dict[str, Any]] = []
    associations: list[dict[str, Any]] = []

    def child_of(origin: dict[str, Any], parent_id: str, parent_uri: str, sequence: int) -> None:
        identifier, uri = _case_id("CFAssociations", f"{origin['identifier']}-parent")
        associations.append({
            "identifier": identifier, "uri": uri, "associationType": "isChildOf", "lastChangeDateTime": changed,
            "originNodeURI": {"title": origin.get("humanCodingScheme", ""), "identifier": origin["identifier"],
                              "uri": origin["uri"]},
            "destinationNodeURI": {"title": "", "identifier": parent_id, "uri": parent_uri},
            "sequenceNumber": sequence,
        })  # fmt: skip

    for s in range(strands):
        strand_id, strand_uri = _case_id("CFItems", f"strand-{s}")
        strand = {"identifier": strand_id, "uri": strand_uri, "fullStatement": f"Strand {s + 1}",
                  "humanCodingScheme": f"B.{s + 1}", "CFItemType": "Strand", "lastChangeDateTime": changed}  # fmt: skip
        items.append(strand)
        child_of(strand, doc_id, doc_uri, s + 1)
    for c in range(competencies):
        identifier, uri = _case_id("CFItems", f"competency-{c}")
        strand = items[c % strands]
        item = {"identifier": identifier, "uri": uri, "humanCodingScheme": f"{strand['humanCodingScheme']}.{c + 1}",
                "fullStatement": f"Competency {c + 1}: reasons about the {c + 1}th idea of strand {c % strands + 1}.",
                "CFItemType": "Competency", "lastChangeDateTime": changed}  # fmt: skip
        items.append(item)
        child_of(item, strand["identifier"], strand["uri"], c // strands + 1)
    levels = []
    for points, quality in enumerate(("Beginning", "Developing", "Proficient", "Advanced"), start=1):
        identifier, uri = _case_id("CFRubricCriterionLevels", quality)
        levels.append({"identifier": identifier, "uri": uri, "quality": quality, "score": points, "position": points,
                       "lastChangeDateTime": changed})  # fmt: skip
    rubric_id, rubric_uri = _case_id("CFRubrics", "scale")
    criterion_id, criterion_uri = _case_id("CFRubricCriteria", "scale")
    rubric = {"identifier": rubric_id, "uri": rubric_uri, "title": "Proficiency scale", "lastChangeDateTime": changed,
              "CFRubricCriteria": [{"identifier": criterion_id, "uri": criterion_uri, "position": 1,
                                    "lastChangeDateTime": changed, "CFRubricCriterionLevels": levels}]}  # fmt: skip
    package = {"CFDocument": document, "CFItems": items, "CFAssociations": associations, "CFRubrics": [rubric]}
    return orjson.dumps(package)


@dataclass(frozen=True)
class Workload:
    """What the statements name: the framework's competencies and an item bank aligned to them."""

    competencies: list[str]
    #: Aligned-only activity -> the competencies it is aligned to (statements about it name none).
    aligned: dict[str, list[str]]
    learners: int

    @classmethod
    def make(cls, competency_uris: list[str], learners: int, aligned_items: int = 200) -> Workload:
        rng = random.Random(7)
        aligned = {f"{ALIGNED_BANK}/{i}": rng.sample(competency_uris, 1 if i % 4 else 2) for i in range(aligned_items)}
        return cls(competency_uris, aligned, learners)


def actor(n: int) -> dict[str, Any]:
    return {"objectType": "Agent", "mbox": f"mailto:learner{n}@district.example.org", "name": f"Learner {n}"}


def instructor(n: int) -> dict[str, Any]:
    return {"objectType": "Agent", "mbox": f"mailto:teacher{n}@district.example.org", "name": f"Teacher {n}"}


AUTHORITY = {"objectType": "Agent", "account": {"homePage": "https://proficio.example.org", "name": "bench"}}


def _objective(uri: str) -> dict[str, Any]:
    return {"id": uri, "definition": {"type": OBJECTIVE}}


class StatementSource:
    """Statements of learners over a semester, in the order an LRS would receive them.

    About 65% tagged assessment items (1-2 competencies in ``context.contextActivities.other``, a scaled
    score), 10% aligned-only items (raw/min/max score), 5% completions with success only, 19% launches
    (tagged, no result: no evidence) and 1 in 500 a void of an earlier statement by an instructor; 1% of
    statements arrive late (a timestamp days before the ones around them).
    """

    def __init__(self, workload: Workload, seed: int = 11) -> None:
        self.workload = workload
        self.rng = random.Random(seed)
        self.made = 0
        self._recent: list[str] = []  # statement ids with evidence, for voids to pick from
        self._aligned = list(workload.aligned)

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next(self, total: int) -> dict[str, Any]:
        rng, workload = self.rng, self.workload
        n = self.made
        self.made += 1
        moment = SEMESTER_START + timedelta(days=120 * n / max(1, total))
        if rng.random() < 0.01:
            moment -= timedelta(days=rng.uniform(1, 10))
        statement: dict[str, Any] = {
            "id": self._new_id(),
            "actor": actor(rng.randrange(workload.learners)),
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "authority": AUTHORITY,
            "version": "1.0.0",
        }
        roll = rng.random()
        if roll < 0.002 and self._recent:
            statement["actor"] = instructor(rng.randrange(INSTRUCTORS))
            statement["verb"] = {"id": VERB + "voided", "display": {"en-US": "voided"}}
            statement["object"] = {"objectType": "StatementRef", "id": rng.choice(self._recent)}
            return statement
        named = rng.sample(workload.competencies, 1 if rng.random() < 0.7 else 2)
        context: dict[str, Any] = {
            "registration": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "contextActivities": {"parent": [{"id": COURSE}], "other": [_objective(c) for c in named]},
        }
        if roll < 0.652:
            item = rng.randrange(2000)
            statement["verb"] = {"id": VERB + "answered", "display": {"en-US": "answered"}}
            statement["object"] = {"id": f"{ITEM_BANK}/{item}",
                                   "definition": {"name": {"en-US": f"Item {item}"}, "type": INTERACTION}}  # fmt: skip
            statement["result"] = {"score": {"scaled": round(rng.random(), 2)}, "success": rng.random() > 0.3,
                                   "duration": "PT42S"}  # fmt: skip
            statement["context"] = context
        elif roll < 0.752:
            activity = rng.choice(self._aligned)
            statement["verb"] = {"id": VERB + "scored", "display": {"en-US": "scored"}}
            statement["object"] = {"id": activity, "definition": {"type": INTERACTION}}
            statement["result"] = {"score": {"raw": rng.randrange(11), "min": 0, "max": 10}}
            statement["context"] = {"contextActivities": {"parent": [{"id": COURSE}]}}
        elif roll < 0.802:
            statement["verb"] = {"id": VERB + "completed", "display": {"en-US": "completed"}}
            statement["object"] = {"id": f"{COURSE}/tasks/{rng.randrange(300)}"}
            statement["result"] = {"success": rng.random() > 0.2, "completion": True}
            statement["context"] = context
        else:
            statement["verb"] = {"id": VERB + "launched", "display": {"en-US": "launched"}}
            statement["object"] = {"id": f"{COURSE}/lessons/{rng.randrange(300)}"}
            statement["context"] = context
            return statement
        self._recent.append(statement["id"])
        if len(self._recent) > 5000:
            self._recent = self._recent[-2500:]
        return statement


def statement_event(statement: dict[str, Any], learner_ids: dict[str, str]) -> NewEvent:
    """The event ingest appends for a statement (see ``StatementService.store``), on its learner's stream
    (``learner_ids``: mbox -> the learner directory's id)."""
    voiding = statement["verb"]["id"] == VERB + "voided"
    return NewEvent.of(
        learner_ids[statement["actor"]["mbox"]],
        "StatementVoided" if voiding else "StatementStored",
        {"statement": statement, "credential": "bench", "define": False},
        key=STATEMENT_KEY + statement["id"],
    )


async def fill(log: EventLog, workload: Workload, statements: int, package: bytes) -> None:
    """The framework, the alignments, then the statements in appends of 1,000."""
    await import_framework(log, TENANT, package, source="bench")
    for activity, competencies in workload.aligned.items():
        for competency in competencies:
            await define_alignment(log, TENANT, activity, competency, weight="1" if len(competencies) == 1 else "0.5")
    source = StatementSource(workload)
    # The learners' ids, as ingest gets them: from the learner directory (created for new identities).
    actors = [actor(n) for n in range(workload.learners)]
    ids = dict(zip([a["mbox"] for a in actors], await enroll_learner_ids(log, TENANT, actors), strict=True))
    for start in range(0, statements, APPEND_BATCH):
        size = min(APPEND_BATCH, statements - start)
        await log.append(TENANT, [statement_event(source.next(statements), ids) for _ in range(size)])
        if start in ANALYZE_AT or (start and start % 250_000 == 0):
            await analyze_log(log)


#: When the log's statistics are refreshed during the fill (statements appended so far; and every 250,000).
ANALYZE_AT = frozenset({2_000, 10_000, 50_000})


async def analyze_log(log: EventLog) -> None:
    """Fresh planner statistics for the events table (PostgreSQL).

    The append's prepared statements are planned generically (PostgreSQL's plan cache) while the table is
    still nearly empty, and keep a plan whose cost grows with the table until autovacuum analyzes it: a
    fill of 100,000 statements took 81 s instead of 7 s. A fill far faster than autovacuum's rhythm
    needs the statistics refreshed by hand; a live LRS gets there by autovacuum within a minute or so.
    """
    if log.engine.dialect.name == "postgresql":
        async with log.engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE events"))


# -- the fold and the rebuild -------------------------------------------------------------------


async def folded_through(log: EventLog, name: str) -> int:
    """How far the active generation of ``name`` has folded the log (its slowest segment).

    Two small queries, not ``status()``: this is polled every 20 ms while the fold is timed, in the
    same process.
    """
    async with log.engine.connect() as conn:
        generation = await active_generation(conn, name)
        if generation is None:
            return 0
        return min((await sql_checkpoints(conn, generation)).values())


@dataclass(frozen=True)
class CpuSample:
    process_s: float
    #: The PostgreSQL backends serving this log's database (None on SQLite).
    backends_s: float | None
    backends: dict[int, float]


async def cpu_sample(log: EventLog) -> CpuSample:
    """CPU seconds spent so far by this process and by the database's backends.

    On a busy shared machine elapsed time varies by tens of percent between runs; CPU time per
    statement is the steadier measure for comparing two versions of the code. Backends are found in
    ``pg_stat_activity`` and read from /proc (a local server); the connection pool keeps them alive.
    """
    process = time.process_time()
    backends = await backend_cpu(log)
    return CpuSample(process, None if backends is None else sum(backends.values()), backends or {})


async def backend_cpu(log: EventLog) -> dict[int, float] | None:
    """CPU seconds of each PostgreSQL backend serving the log's database but this one (None on SQLite)."""
    if log.engine.dialect.name != "postgresql":
        return None
    async with log.engine.connect() as conn:
        pids = (await conn.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ))).scalars().all()  # fmt: skip
    return {pid: seconds for pid in pids if (seconds := process_cpu_s(pid)) is not None}


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a local process (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_statement(log: EventLog, before: CpuSample, statements: int) -> str:
    after = await cpu_sample(log)
    process = (after.process_s - before.process_s) / statements * 1e6
    if after.backends_s is None:
        return f"CPU {process:.0f} µs/statement in this process"
    # Backends that started meanwhile count from 0; the pool's connections outlive the measure.
    backends = sum(v - before.backends.get(pid, 0.0) for pid, v in after.backends.items()) / statements * 1e6
    return f"CPU {process:.0f} µs/statement in this process, {backends:.0f} µs in PostgreSQL"


async def fold_and_rebuild(log: EventLog, statements: int, label: str) -> None:
    head = await log.max_position()
    settings = RunnerSettings(owner="bench", idle_timeout=0.1)
    projector = SqlProjector(log, CompetencyEvidence(), settings)

    async def folded() -> int:
        return await folded_through(log, CompetencyEvidence.name)

    before = await cpu_sample(log)
    rate, start_up = await timed(projector, folded, head)
    cpu = await cpu_per_statement(log, before, head)
    print(f"  {label} fold, one SqlProjector from 0: {rate:,.0f} statements/s (start-up {start_up:.1f} s; {cpu})")
    before = await cpu_sample(log)
    started = time.perf_counter()
    await build(log, CompetencyEvidence(), settings)
    seconds = time.perf_counter() - started
    cpu = await cpu_per_statement(log, before, head)
    print(f"  {label} rebuild (build() of a new generation): {seconds:.1f} s for {head:,} events "
          f"({head / seconds:,.0f}/s; {cpu})")  # fmt: skip
    # The reads need the reference views too; they are small (a few hundred events) but read the whole log.
    await build(log, Frameworks(), settings)
    await build(log, CompetencyReference(), settings)


# -- the reads, through a real server -----------------------------------------------------------


def learners_with_evidence(url: str, workload: Workload) -> list[str]:
    """The workload's learner ids, looked up in the learner directory of the filled log."""

    async def lookup() -> list[str]:
        log = await open_event_log(url, migrate=False)
        try:
            found = await find_learner_ids(log, TENANT, [actor(n) for n in range(workload.learners)])
        finally:
            await log.close()
        return [learner for learner in found if learner is not None]

    return asyncio.run(lookup())


@dataclass(frozen=True)
class ReadTarget:
    """The running server, and where to find its CPU time and its database's."""

    server: RunningServer
    url: str
    pid: int | None


def server_pid(data_dir: Path) -> int | None:
    """The ``proficio serve`` process using ``data_dir`` (a temporary directory of its own)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if b"serve" in args and str(data_dir).encode() in args:
                return int(cmdline.parent.name)
    return None


def read_cpu(target: ReadTarget) -> tuple[float | None, dict[int, float] | None]:
    """(the server's CPU seconds, its database backends' CPU seconds by pid)."""

    async def backends() -> dict[int, float] | None:
        log = await open_event_log(target.url, migrate=False)
        try:
            return await backend_cpu(log)
        finally:
            await log.close()

    server = process_cpu_s(target.pid) if target.pid is not None else None
    return server, asyncio.run(backends())


def measure_gets(target: ReadTarget, label: str, paths: list[str], seconds: float) -> None:
    """1 and 8 clients (wrk) GETting ``paths`` in turn: requests/s, p50/p99, CPU per request."""
    server = target.server
    wrk.get(server.base_url, server.headers, paths, clients=1, seconds=2)  # warm-up
    for clients in (1, 8):
        server_before, backends_before = read_cpu(target)
        result = wrk.get(server.base_url, server.headers, paths, clients=clients, seconds=seconds)
        server_after, backends_after = read_cpu(target)
        plural = "s" * (clients > 1)
        if not result.requests:
            print(f"  {label} ({clients} client{plural}): no request finished in {seconds:.0f} s (raise --seconds)")
            continue
        cpu = ""
        if server_before is not None and server_after is not None:
            cpu = f"; CPU/request: server {(server_after - server_before) / result.requests * 1000:.1f} ms"
            if backends_before is not None and backends_after is not None:
                spent = sum(v - backends_before.get(pid, 0.0) for pid, v in backends_after.items())
                cpu += f", PostgreSQL {spent / result.requests * 1000:.1f} ms"
        print(f"  {label} ({clients} client{plural}): {result.per_second:,.0f} requests/s, "
              f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms{cpu}")  # fmt: skip


def measure_progress(target: ReadTarget, learners: list[str], seconds: float) -> None:
    rng = random.Random(3)
    paths = [f"/competency/progress?learner={learner}" for learner in rng.sample(learners, min(500, len(learners)))]
    shapes = []
    for path in paths[:20]:
        response = httpx.get(target.server.base_url + path, headers=target.server.headers, timeout=60)
        response.raise_for_status()
        body = response.json()
        shapes.append((len(body["competencies"]), sum(len(c["evidence"]) for c in body["competencies"])))
    competencies = sum(s[0] for s in shapes) / len(shapes)
    evidence = sum(s[1] for s in shapes) / len(shapes)
    print(f"  (a learner's progress: {competencies:.0f} competencies, {evidence:.0f} pieces of evidence on average)")
    measure_gets(target, "GET /competency/progress", paths, seconds)


def measure_grid(
    target: ReadTarget, learners: list[str], seconds: float, sections: int = 20, label: str = "GET section grid"
) -> None:
    """Sections of 30 learners set through PUT, folded into the reference view here, then their grids read."""
    server = target.server
    headers = {**server.headers, "Content-Type": "application/json"}
    rng = random.Random(5)
    paths = []
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
        for s in range(sections):
            body = {"title": f"Section {s}", "learners": rng.sample(learners, min(30, len(learners)))}
            response = http.put(f"/competency/sections/bench-{s}", content=orjson.dumps(body))
            if response.status_code in (404, 405):
                print("  section grid: this server has no PUT /competency/sections/{section}; not measured")
                return
            response.raise_for_status()
            paths.append(f"/competency/sections/bench-{s}/grid")
        asyncio.run(catch_up(target.url, CompetencyReference()))
        response = http.get(paths[0])
        response.raise_for_status()
        grid = response.json()
    print(f"  (a grid: {len(grid['learners'])} learners x {len(grid['competencies'])} competencies, "
          f"{len(response.content):,} bytes)")  # fmt: skip
    measure_gets(target, label, paths, seconds)


async def catch_up(url: str, projection: Projection) -> None:
    """Fold what the server appended (section rosters) into a view: the server runs no projectors here."""
    log = await open_event_log(url, migrate=False)
    try:
        head = await log.max_position()
        projector = SqlProjector(log, projection, RunnerSettings(owner="bench", idle_timeout=0.1))
        await timed(projector, lambda: folded_through(log, projection.name), head)
    finally:
        await log.close()


@contextlib.contextmanager
def serving(data_dir: Path, url: str | None, **more_env: str) -> Iterator[RunningServer]:
    """``proficio serve`` on the filled log, with a credential of the bench tenant (projectors off)."""
    env = {"PROFICIO_RUN_PROJECTORS": "false", **more_env}
    with running_server(data_dir, url, env=env) as server:
        full_env = {**os.environ, **env}
        full_env.pop("PROFICIO_DATABASE_URL", None)
        if url:
            full_env["PROFICIO_DATABASE_URL"] = url
        credential = create_credential(data_dir, full_env, "all", tenant=TENANT)
        yield RunningServer(server.base_url, credential["key"], credential["secret"])


# -- running it ---------------------------------------------------------------------------------


async def prepare_log(url: str, statements: int, learners: int, label: str, *, fill_it: bool = True,
                      time_fold: bool = True) -> Workload:  # fmt: skip
    """The workload; with ``fill_it``, the log filled with it and the views built (the fold and the rebuild
    timed unless ``time_fold`` is false). Without it, the log is one filled before with the same sizes."""
    package = framework_package(50)
    uris = [c["uri"] for c in parse_package(package).competencies if c["type"] == "Competency"]
    workload = Workload.make(uris, learners)
    if not fill_it:
        print(f"  {label} log kept from an earlier run: {statements:,} statements, {learners:,} learners")
        return workload
    log = await open_event_log(url)
    try:
        await migrate_runtime(log)
        started = time.perf_counter()
        await fill(log, workload, statements, package)
        print(f"  {label} log filled: {statements:,} statements, {learners:,} learners in "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        if time_fold:
            await fold_and_rebuild(log, statements, label)
        else:
            await build_views(log)
        await analyze_views(log)
    finally:
        await log.close()
    return workload


async def analyze_views(log: EventLog) -> None:
    """Planner statistics for the views just built, before they are read (PostgreSQL).

    A generation's tables are new, so until autovacuum analyzes them (within a minute or so on a live LRS)
    the planner guesses their sizes: the grid's per-learner stamp query then cost ~75 ms of PostgreSQL CPU
    instead of ~7. The reads are measured in the steady state.
    """
    if log.engine.dialect.name == "postgresql":
        async with log.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("ANALYZE"))


async def build_views(log: EventLog) -> None:
    """The views the reads need, built without timing (``--skip-fold``)."""
    settings = RunnerSettings(owner="bench", idle_timeout=0.1)
    for projection in (CompetencyEvidence(), Frameworks(), CompetencyReference()):
        await build(log, projection, settings)


def run_backend(
    label: str, url: str | None, data_dir: Path, args: argparse.Namespace, statements: int, *, fill_it: bool = True
) -> None:
    learners = max(30, statements // args.per_learner)
    workload = asyncio.run(prepare_log(url or sqlite_url(data_dir), statements, learners, label, fill_it=fill_it,
                                       time_fold=not args.skip_fold))  # fmt: skip
    if args.skip_reads:
        return
    if not wrk.available():
        print("  reads: wrk is not installed (apt-get install wrk); not measured")
        return
    with serving(data_dir, url) as server:
        target = ReadTarget(server, url or sqlite_url(data_dir), server_pid(data_dir))
        everyone = learners_with_evidence(url or sqlite_url(data_dir), workload)
        if args.reads in ("all", "progress"):
            measure_progress(target, everyone, args.seconds)
        if args.reads in ("all", "grid") and args.grid_cache != "off":
            measure_grid(target, everyone, args.seconds, label="GET section grid (cells cached)")
    if args.reads in ("all", "grid") and args.grid_cache != "on":
        # Every learner of every grid scored from the views: what a grid costs the first time it is read, or
        # when her evidence has changed since.
        with serving(data_dir, url, PROFICIO_GRID_CACHE_LEARNERS="0") as server:
            target = ReadTarget(server, url or sqlite_url(data_dir), server_pid(data_dir))
            everyone = learners_with_evidence(url or sqlite_url(data_dir), workload)
            measure_grid(target, everyone, args.seconds, label="GET section grid (no cache)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statements", type=int, default=1_000_000, help="log size on PostgreSQL (0: skip it)")
    parser.add_argument("--sqlite-statements", type=int, default=100_000, help="log size on SQLite (0: skip it)")
    parser.add_argument("--per-learner", type=int, default=250, help="statements per learner (sets the learners)")
    parser.add_argument("--seconds", type=float, default=15, help="length of each read measurement")
    parser.add_argument("--skip-reads", action="store_true", help="only the fold and the rebuild")
    parser.add_argument("--skip-fold", action="store_true", help="build the views without timing fold and rebuild")
    parser.add_argument("--reads", choices=("all", "progress", "grid"), default="all", help="which reads to measure")
    parser.add_argument("--grid-cache", choices=("on", "off", "both"), default="both",
                        help="the grid with its per-learner cache (on), a server without it (off), both")  # fmt: skip
    parser.add_argument("--keep-database", metavar="NAME",
                        help="PostgreSQL: fill database NAME and keep it; a later run with the same NAME (and "
                             "--statements) reuses it, with no fill, fold or rebuild (drop it by hand)")  # fmt: skip
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}")
    if args.statements:
        from tests.support.postgres import running_postgres

        with running_postgres() as pg, tempfile.TemporaryDirectory() as tmp:
            url, fill_it = pg.url, True
            if args.keep_database:
                fill_it = not pg.database_exists(args.keep_database)
                url = pg.create_database(args.keep_database) if fill_it else pg.url_for(args.keep_database)
            run_backend("PostgreSQL", url, Path(tmp), args, args.statements, fill_it=fill_it)
    if args.sqlite_statements:
        with tempfile.TemporaryDirectory() as tmp:
            run_backend("SQLite", None, Path(tmp), args, args.sqlite_statements)


if __name__ == "__main__":
    main()
