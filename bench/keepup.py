"""Do the pacing and equity projections keep up with 20,000 statements/s of input? (issue 7)

    .venv/bin/python -m bench.keepup                                  # 50,000 learners, 800,000 statements
    .venv/bin/python -m bench.keepup --learners 5000 --schools 4 --backlog 200000   # smaller, for development

In production the ingest and the projectors run on different machines; on this 2-core machine an appender
beside the projectors takes a core of its own (session 4: it reached 13,846 statements/s, not 20,000). So the
input is made to *arrive* at ``--rate`` without an appender running meanwhile:

1. a district (bench/equity_throughput.py's: learners, groups, sections, a plan, ~4 statements per learner)
   set up in a PostgreSQL database, its 7 default projections caught up and the equity views refreshed;
   then a backlog of ``--backlog`` statements appended after it (random learners, ~700 bytes each, every
   one evidence of a plan competency); that database is the template of every run below;
2. for each variant (a copy of the template, ``CREATE DATABASE ... TEMPLATE``), worker processes run the
   projectors and the equity refresher on a *gated* log (bench/_keepup_worker.py): the positions of the
   backlog become visible at ``--rate`` per second from a moment t0, as if appended then, and scans, waits
   and the head see only the visible part. Sampled every half second: how far each statement fold
   (``learner_activity``, ``competency_evidence``) trails the visible head, the equity views' evidence mark
   and so their staleness (age of the oldest visible statement they do not reflect, by its arrival time),
   the CPU of each worker process and of the database's PostgreSQL backends. A fold keeps up when its lag
   stays bounded while the input arrives; the views when their staleness does.
3. per projection (``--per-projection``): each statement fold alone in a worker, every backlog statement
   visible at once (a backlog, no gate), one after the other on one copy: its sustained rate and its CPU
   per statement (worker process and PostgreSQL backends).

Variants: ``--variants main:one,main:split,branch:split`` — ``main`` is the code of ``--main-ref`` (default:
the merge base with main) exported to a temporary directory and put in front of the editable install;
``branch`` is this tree. ``one`` runs what ``proficio project`` ran before (projectors and refresher in one
process); ``split`` runs the projectors in one process and the refresher in another (as ``proficio project``
now does by default, ``--equity apart``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench import _cpu
from bench.competency_throughput import TENANT, analyze_log, folded_through
from bench.equity_throughput import Statements, append_all, prepare
from proficio_events import open_event_log
from proficio_projector.equity._tables import equity_state

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_keepup_worker.py")
FOLDS = ("learner_activity", "competency_evidence")
SOURCE_DIRS = ("libs/events", "services/ingest", "services/projector", "services/cli")


@dataclass
class Run:
    label: str
    base: int
    cap: int
    rate: float
    t0: float
    pids: dict[str, int]
    database: str
    samples: list[tuple[float, dict[str, int], int]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    backends_cpu: float = 0.0
    done_at: dict[str, float] = field(default_factory=dict)


def export_code(ref: str, into: Path) -> str:
    commit = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, check=True, capture_output=True, text=True)
    archive = subprocess.run(["git", "archive", commit.stdout.strip()], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return commit.stdout.strip()[:9]


def pythonpath(code: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(code / d) for d in SOURCE_DIRS] if code is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).strip(os.pathsep)
    return env


@contextlib.contextmanager
def workers(
    url: str,
    parts: list[str],
    env: dict[str, str],
    base: int,
    cap: int,
    rate: float,
    t0: float,
    logs: Path,
    extra: tuple[str, ...] = (),
    refresher_nice: int = 0,
) -> Iterator[dict[str, int]]:
    processes = {}
    for part in parts:
        with (logs / f"worker-{part.replace(':', '-')}-{int(t0)}.log").open("wb") as sink:
            processes[part] = subprocess.Popen(
                [sys.executable, str(WORKER), url, "--part", part, "--base", str(base), "--cap", str(cap),
                 "--rate", str(rate), "--t0", str(t0), *extra,
                 *(("--nice", str(refresher_nice)) if part == "refresher" and refresher_nice else ())],
                env=env, stdout=sink, stderr=sink,
            )  # fmt: skip
    try:
        yield {part: p.pid for part, p in processes.items()}
    finally:
        for p in processes.values():
            p.terminate()
        for p in processes.values():
            p.wait(timeout=60)


async def equity_mark(log: object) -> int:
    async with log.engine.connect() as conn:  # type: ignore[attr-defined]
        found = await conn.scalar(sa.select(equity_state.c.evidence_mark).where(equity_state.c.tenant == TENANT))
    return int(found or 0)


async def observe(url: str, run: Run, folds: tuple[str, ...], refresher: bool, timeout: float) -> None:
    """Sample until every fold (and the views, with a refresher) reached the cap, or ``timeout`` s after t0."""
    log = await open_event_log(url, migrate=False)
    try:
        await asyncio.sleep(max(0.0, run.t0 - time.time()))
        cpu0 = {part: _cpu.process_cpu_s(pid) or 0.0 for part, pid in run.pids.items()}
        pg0 = backends(run.database)
        while True:
            now = time.time()
            marks = {name: await folded_through(log, name) for name in folds}
            mark = await equity_mark(log) if refresher else run.cap
            run.samples.append((now, marks, mark))
            for name, folded in marks.items():
                if folded >= run.cap and name not in run.done_at:
                    run.done_at[name] = now
            if refresher and mark >= run.cap and "views" not in run.done_at:
                run.done_at["views"] = now
            if all(m >= run.cap for m in marks.values()) and mark >= run.cap:
                break
            if now - run.t0 > timeout:
                break
            await asyncio.sleep(0.5)
        run.cpu = {part: (_cpu.process_cpu_s(pid) or 0.0) - cpu0[part] for part, pid in run.pids.items()}
        pg1 = backends(run.database)
        run.backends_cpu = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
    finally:
        await log.close()


def backends(database: str) -> dict[int, float]:
    """CPU seconds of the database's PostgreSQL backends now."""
    return {pid: s for pid in _cpu._backend_pids(database) if (s := _cpu.process_cpu_s(pid)) is not None}


def arrival(run: Run, position: int) -> float:
    """When a backlog position became visible."""
    if run.rate <= 0:
        return run.t0
    return run.t0 + (position - run.base) / run.rate


def report(run: Run, folds: tuple[str, ...], refresher: bool) -> None:
    n = run.cap - run.base
    input_s = n / run.rate if run.rate > 0 else 0.0
    print(f"  {run.label}: {n:,} statements" + (f" arriving at {run.rate:,.0f}/s over {input_s:.0f} s" if run.rate
          else " visible at once (a backlog)") + f"; load average {_cpu.load_average()}")  # fmt: skip
    for name in folds:
        done = run.done_at.get(name)
        lags = []
        for at, marks, _ in run.samples:
            visible = min(run.cap, run.base + int((at - run.t0) * run.rate)) if run.rate > 0 else run.cap
            lags.append((at - run.t0, max(0, visible - marks[name])))
        during = [lag for t, lag in lags if t <= input_s] or [0]
        at_end = next((lag for t, lag in lags if t >= input_s), lags[-1][1] if lags else 0)
        rate = n / (done - run.t0) if done else None
        folded = f"all {n:,} folded {done - run.t0:.1f} s after t0 ({rate:,.0f} statements/s)" if done else "behind"
        trail = (f"; behind the arriving input by at most {max(during):,} ({max(during) / run.rate:.1f} s of input), "
                 f"{at_end:,} when the input stopped" if run.rate else "")  # fmt: skip
        print(f"    {name}: {folded}{trail}")
    if refresher:
        stale = []
        for at, _, mark in run.samples:
            oldest = arrival(run, mark + 1) if mark < run.cap else None
            stale.append((at - run.t0, max(0.0, at - oldest) if oldest is not None and oldest <= at else 0.0))
        during = [s for t, s in stale if t <= input_s + 1] or [0.0]
        done = run.done_at.get("views")
        after = f"{done - run.t0 - input_s:.1f} s after the input stopped" if done else "never (timeout)"
        print(f"    equity views: staleness (age of the oldest arrived statement not reflected) at most "
              f"{max(during):.1f} s while the input arrived, {max(s for _, s in stale):.1f} s overall; "
              f"every statement reflected {after}")  # fmt: skip
    per = ", ".join(f"{part} {cpu:.1f} s ({cpu / n * 1e6:.1f} µs/statement)" for part, cpu in run.cpu.items())
    pg = run.backends_cpu
    print(f"    CPU: {per}; PostgreSQL backends {pg:.1f} s ({pg / n * 1e6:.1f} µs/statement)")


async def head_of(url: str) -> int:
    log = await open_event_log(url, migrate=False)
    try:
        return await log.max_position()
    finally:
        await log.close()


async def fill(url: str, args: argparse.Namespace) -> tuple[int, int]:
    """The district and its views, then the backlog: (the position before the backlog, the last one)."""
    today = datetime.now(UTC).date()
    district = await prepare(url, args, today)
    log = await open_event_log(url, migrate=False)
    try:
        base = await log.max_position()
        source = Statements(district, seed=23)
        rng = random.Random(29)
        start = datetime.now(UTC) - timedelta(hours=1)
        total = args.backlog
        started = time.perf_counter()
        statements = (
            source.event(rng.randrange(len(district.learners)), start + timedelta(seconds=3600 * k / total))
            for k in range(total)
        )
        await append_all(log, statements)
        await analyze_log(log)
        last = await log.max_position()
        print(f"  backlog: {total:,} statements appended in {time.perf_counter() - started:.0f} s "
              f"(positions {base + 1:,}-{last:,})")  # fmt: skip
        return base, last
    finally:
        await log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=50_000)
    parser.add_argument("--schools", type=int, default=20)
    parser.add_argument("--per-learner", type=int, default=4)
    parser.add_argument("--backlog", type=int, default=800_000)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--variants", default="main:one,branch:split")
    parser.add_argument("--per-projection", type=int, default=300_000, metavar="N",
                        help="statements each fold folds alone, main and branch (0: skip)")  # fmt: skip
    parser.add_argument("--main-ref", default=None, help="the code compared (default: the merge base with main)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds after t0 a run may take")
    parser.add_argument(
        "--refresher-nice",
        type=int,
        default=10,
        metavar="N",
        help="the refresher's process runs at nice N, as proficio project runs it (split only)",
    )
    parser.add_argument("--keep-template", metavar="NAME",
                        help="fill PostgreSQL database NAME once and keep it as the template of later runs "
                             "with the same sizes (the set-up and the backlog take minutes at full size)")  # fmt: skip
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}; "
          f"load average {_cpu.load_average()}")  # fmt: skip
    from tests.support.postgres import _psql, running_postgres

    ref = (
        args.main_ref
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    with running_postgres() as pg, tempfile.TemporaryDirectory() as tmp:
        main_code = Path(tmp) / "main"
        main_code.mkdir()
        commit = export_code(ref, main_code)
        head = subprocess.run(["git", "rev-parse", "--short=9", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        print(f"  main = {commit}; branch = this tree (HEAD {head.stdout.strip()}, with any uncommitted changes)")
        template, template_url = pg.database, pg.url
        if args.keep_template:
            template = args.keep_template
            if pg.database_exists(template):
                template_url = pg.url_for(template)
                last = asyncio.run(head_of(template_url))
                base = last - args.backlog
                print(f"  kept template {template}: backlog at positions {base + 1:,}-{last:,}")
            else:
                template_url = pg.create_database(template)
                base, last = asyncio.run(fill(template_url, args))
        else:
            base, last = asyncio.run(fill(pg.url, args))
        copies: list[str] = []

        def copy(label: str) -> tuple[str, str]:
            name = f"{pg.database}_{label}"
            started = time.perf_counter()
            _psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            copies.append(name)
            print(f"  ({label}: a copy of the template in {time.perf_counter() - started:.0f} s)", flush=True)
            return name, pg.url_for(name)

        try:
            for variant in args.variants.split(","):
                code, mode = variant.split(":")
                env = pythonpath(main_code if code == "main" else None)
                extra: tuple[str, ...] = ()
                database, url = copy(f"{code}_{mode}")
                parts = ["all"] if mode == "one" else ["folds", "refresher"]
                t0 = time.time() + 6
                how = "in one process" if mode == "one" else "in two processes"
                label = f"{code} (projectors and refresher {how})"
                with workers(url, parts, env, base, last, args.rate, t0, Path(tmp), extra, args.refresher_nice) as pids:
                    run = Run(label, base, last, args.rate, t0, pids, database)
                    asyncio.run(observe(url, run, FOLDS, True, args.timeout))
                report(run, FOLDS, True)
                pg.drop_database(database)
            if args.per_projection:
                cap = min(last, base + args.per_projection)
                for code in ("main", "branch"):
                    env = pythonpath(main_code if code == "main" else None)
                    database, url = copy(f"{code}_alone")
                    for name in FOLDS:
                        t0 = time.time() + 5
                        with workers(url, [f"only:{name}"], env, base, cap, 0, t0, Path(tmp)) as pids:
                            run = Run(f"{code}, {name} alone", base, cap, 0, t0, pids, database)
                            asyncio.run(observe(url, run, (name,), False, args.timeout))
                        report(run, (name,), False)
                    pg.drop_database(database)
        finally:
            for name in copies:
                pg.drop_database(name)


if __name__ == "__main__":
    main()
