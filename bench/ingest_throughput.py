"""xAPI ingest: batched and single-statement POSTs, and statement queries on a large log.

    .venv/bin/python -m bench.ingest_throughput                      # PostgreSQL 15 (started here), 1M statements
    .venv/bin/python -m bench.ingest_throughput --statements 100000  # a smaller log for the GET part
    .venv/bin/python -m bench.ingest_throughput --sqlite             # the embedded default instead

Runs `proficio serve` as real processes and drives it over loopback HTTP from this process with
8 concurrent clients. Prints statements/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from tests.support.server import running_server

from bench import _cpu as cpu
from bench import _wrk as wrk

LEARNERS = 10_000
VERBS = [f"http://adlnet.gov/expapi/verbs/{v}" for v in ("answered", "attempted", "completed", "passed", "failed")]


def learner(n: int) -> dict[str, Any]:
    return {"objectType": "Agent", "mbox": f"mailto:learner{n}@district.example.org", "name": f"Learner {n}"}


def make_statement(rng: random.Random) -> dict[str, Any]:
    n = rng.randrange(LEARNERS)
    item = rng.randrange(500)
    return {
        "actor": learner(n),
        "verb": {"id": rng.choice(VERBS), "display": {"en-US": "did"}},
        "object": {
            "id": f"https://district.example.org/items/{item}",
            "definition": {
                "name": {"en-US": f"Item {item}"},
                "type": "http://adlnet.gov/expapi/activities/cmi.interaction",
            },
        },
        "result": {"score": {"scaled": round(rng.random(), 2)}, "success": rng.random() > 0.3, "duration": "PT42S"},
        "context": {
            "registration": str(uuid.UUID(int=n)),
            "instructor": learner(LEARNERS + n % 40),
            "contextActivities": {"parent": [{"id": f"https://district.example.org/competency/{item % 50}"}]},
        },
        "timestamp": "2026-11-22T10:00:00.000Z",
    }


def bodies(count: int, size: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [orjson.dumps([make_statement(rng) for _ in range(size)]) for _ in range(count)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def drive(
    clients: int,
    seconds: float,
    request: Callable[[httpx.AsyncClient, int], Awaitable[int]],
    base: str,
    headers: dict[str, str],
) -> tuple[int, list[float], float]:
    """Run ``clients`` loops of ``request`` for ``seconds``; the count of statements it returns, and latencies."""
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:

        async def loop(index: int) -> None:
            nonlocal done
            i = index
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                handled = await request(http, i)  # not `done += await ...`: that reads `done` before awaiting
                if handled < 0:  # the request function says there is nothing left to do
                    return
                latencies.append(time.perf_counter() - started)
                done += handled
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    return done, latencies, elapsed


async def run(base: str, headers: dict[str, str], args: argparse.Namespace) -> None:
    json_headers = {**headers, "Content-Type": "application/json"}
    batches = bodies(200, 100, 1)
    singles = bodies(2000, 1, 2)

    async def post_batch(http: httpx.AsyncClient, i: int) -> int:
        response = await http.post("/xapi/statements", content=batches[i % len(batches)], headers=json_headers)
        response.raise_for_status()
        return 100

    async def post_single(http: httpx.AsyncClient, i: int) -> int:
        response = await http.post("/xapi/statements", content=singles[i % len(singles)][1:-1], headers=json_headers)
        response.raise_for_status()
        return 1

    if args.skip_posts:
        await load_and_query(base, headers, args)
        return
    if args.client == "wrk":
        url = base + "/xapi/statements"
        wrk.post(url, json_headers, batches[0], clients=8, seconds=3)  # warm-up
        for label, body, per_request in (
            ("batched POST (100/request, 8 clients)", batches[0], 100),
            ("single POST (8 clients)", singles[0][1:-1], 1),
        ):
            checkpoint(args)
            before = cpu.sample(args.data_dir, args.database)
            result = wrk.post(url, json_headers, body, clients=8, seconds=args.seconds)
            server_s, backends_s = cpu.spent(before, cpu.sample(args.data_dir, args.database))
            print(
                f"  {label:<40}{result.per_second * per_request:>10,.0f} statements/s   "
                f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms   (wrk; load average {cpu.load_average()};"
                f" CPU per request: server {server_s / result.requests * 1000:.2f} ms,"
                f" PostgreSQL {backends_s / result.requests * 1000:.2f} ms)"
            )
    else:
        await drive(8, 3, post_batch, base, headers)  # warm-up
        count, latencies, elapsed = await drive(8, args.seconds, post_batch, base, headers)
        print(
            f"  batched POST (100/request, 8 clients)   {count / elapsed:>10,.0f} statements/s   "
            f"p50 {percentile(latencies, 0.5) * 1000:6.1f} ms  p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
        )
        count, latencies, elapsed = await drive(8, args.seconds, post_single, base, headers)
        print(
            f"  single POST (8 clients)                 {count / elapsed:>10,.0f} statements/s   "
            f"p50 {percentile(latencies, 0.5) * 1000:6.1f} ms  p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
        )

    if not args.skip_gets:
        await load_and_query(base, headers, args)


def checkpoint(args: argparse.Namespace) -> None:
    """Each phase from a PostgreSQL checkpoint: the batched phase leaves ~1 GB of WAL and dirty pages, whose
    checkpoint (by WAL volume, on the stock configuration) would otherwise write and sync them during the next
    phase's 15 seconds, and its commits' p99 would be the previous phase's doing."""
    if args.database is not None:
        from tests.support.postgres import _psql

        _psql("CHECKPOINT")


async def load_and_query(base: str, headers: dict[str, str], args: argparse.Namespace) -> None:
    """Fill the log up to the requested size with large batches, then query it."""
    json_headers = {**headers, "Content-Type": "application/json"}
    big = bodies(100, 1000, 3)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        about = await http.get("/xapi/statements", params={"limit": 1})
        about.raise_for_status()
    loaded_started = time.perf_counter()
    total = await count_statements(base, headers)
    needed = max(0, args.statements - total)
    sent = 0

    async def post_big(http: httpx.AsyncClient, i: int) -> int:
        nonlocal sent
        if sent >= needed:
            return -1
        sent += 1000
        response = await http.post("/xapi/statements", content=big[i % len(big)], headers=json_headers)
        response.raise_for_status()
        return 1000

    while sent < needed:
        await drive(8, 30, post_big, base, headers)
        print(f"  ... loaded {total + sent:,} statements", flush=True)
    if needed:
        rate = needed / (time.perf_counter() - loaded_started)
        print(f"  bulk load (1,000/request, 8 clients)    {rate:>10,.0f} statements/s")
    total = await count_statements(base, headers)
    rng = random.Random(4)

    async def get_agent(related: bool) -> Callable[[httpx.AsyncClient, int], Awaitable[int]]:
        async def request(http: httpx.AsyncClient, i: int) -> int:
            params = {"agent": orjson.dumps(learner(rng.randrange(LEARNERS))).decode()}
            if related:
                params["related_agents"] = "true"
            response = await http.get("/xapi/statements", params=params)
            response.raise_for_status()
            return len(response.json()["statements"])

        return request

    if args.client == "wrk":
        await query_with_wrk(base, headers, args, total)
        return
    for related in (False, True):
        for clients in (1, 8):
            count, latencies, elapsed = await drive(clients, args.seconds, await get_agent(related), base, headers)
            label = (
                "GET by agent" + (", related_agents" if related else "") + f" ({clients} client{'s' * (clients > 1)})"
            )
            print(
                f"  {label:<40} {len(latencies) / elapsed:>10,.0f} requests/s     "
                f"p50 {percentile(latencies, 0.5) * 1000:6.1f} ms  p99 {percentile(latencies, 0.99) * 1000:6.1f} ms"
                f"  ({count / max(1, len(latencies)):.0f} statements/response, log of {total:,})"
            )


async def query_with_wrk(base: str, headers: dict[str, str], args: argparse.Namespace, total: int) -> None:
    """GET by agent (and with related_agents) driven by wrk, a C load generator: a Python client parsing ~90
    statements per response would take a good part of the two cores from the server it measures."""
    rng = random.Random(4)
    for related in (False, True):
        paths = []
        for _ in range(300):
            params = {"agent": orjson.dumps(learner(rng.randrange(LEARNERS))).decode()}
            if related:
                params["related_agents"] = "true"
            paths.append("/xapi/statements?" + urlencode(params))
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            sample = [len((await http.get(path)).raise_for_status().json()["statements"]) for path in paths[:30]]
        for clients in (1, 8):
            before = cpu.sample(args.data_dir, args.database)
            result = wrk.get(base, headers, paths, clients=clients, seconds=args.seconds)
            server_s, backends_s = cpu.spent(before, cpu.sample(args.data_dir, args.database))
            label = (
                "GET by agent" + (", related_agents" if related else "") + f" ({clients} client{'s' * (clients > 1)})"
            )
            print(
                f"  {label:<40} {result.per_second:>10,.0f} requests/s     p50 {result.p50_ms:6.1f} ms"
                f"  p99 {result.p99_ms:6.1f} ms  (wrk; {sum(sample) / len(sample):.0f} statements/response, log of"
                f" {total:,}; load average {cpu.load_average()}; CPU per request: server"
                f" {server_s / result.requests * 1000:.2f} ms, PostgreSQL {backends_s / result.requests * 1000:.2f} ms)"
            )


async def count_statements(base: str, headers: dict[str, str]) -> int:
    """Statements in the log: here every event is a statement, so the log's position counts them."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        response = await http.get("/health")
        return int(response.json()["log_position"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", action="store_true", help="the embedded SQLite log instead of PostgreSQL")
    parser.add_argument("--statements", type=int, default=1_000_000, help="log size for the GET measurements")
    parser.add_argument("--seconds", type=float, default=15, help="length of each measurement")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument(
        "--client",
        choices=("wrk", "httpx"),
        default="wrk" if wrk.available() else "httpx",
        help="load generator for the POSTs and the GETs (wrk, a separate C process, when installed)",
    )
    parser.add_argument(
        "--with-projectors",
        action="store_true",
        help="let the server fold the views in its own process too (by default they would run as `proficio project`)",
    )
    parser.add_argument("--skip-posts", action="store_true", help="only load the log and measure queries")
    parser.add_argument("--skip-gets", action="store_true", help="only the POSTs: no log to fill, no queries")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}, "
        f"{args.workers} server worker(s)"
    )
    env = {} if args.with_projectors else {"PROFICIO_RUN_PROJECTORS": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        args.data_dir, args.database = Path(tmp), None  # where the server's and its database's CPU are found
        if args.sqlite:
            with running_server(Path(tmp), workers=args.workers, env=env) as server:
                asyncio.run(run(server.base_url, server.headers, args))
            return
        from tests.support.postgres import running_postgres

        with running_postgres() as pg, running_server(Path(tmp), pg.url, workers=args.workers, env=env) as server:
            args.database = pg.database
            asyncio.run(run(server.base_url, server.headers, args))


if __name__ == "__main__":
    main()
