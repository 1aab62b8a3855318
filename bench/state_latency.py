"""State resource round trips (PUT, then GET) as content players do them, at 8 concurrent clients.

    .venv/bin/python -m bench.state_latency             # PostgreSQL 15 (started here)
    .venv/bin/python -m bench.state_latency --sqlite    # the embedded default

Each client is one learner in one activity, saving its bookmark/suspend data (a ~1 KB JSON document)
and reading it back, with the ETag it got (If-Match), as a cmi5 or SCORM player does between pages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from tests.support.server import running_server

from bench.ingest_throughput import percentile


async def run(base: str, headers: dict[str, str], clients: int, seconds: float) -> None:
    round_trips: list[float] = []
    puts: list[float] = []
    gets: list[float] = []

    async def player(n: int, http: httpx.AsyncClient, deadline: float) -> None:
        params = {
            "activityId": "https://district.example.org/courses/algebra-1/lesson-3",
            "agent": orjson.dumps({"mbox": f"mailto:learner{n}@district.example.org"}).decode(),
            "stateId": "https://w3id.org/xapi/scorm/activity-state",
        }
        etag: str | None = None
        page = 0
        while time.perf_counter() < deadline:
            page += 1
            document = orjson.dumps({"location": f"page-{page}", "suspend_data": "x" * 900, "score": page % 100})
            started = time.perf_counter()
            put_headers = {**headers, "Content-Type": "application/json"}
            if etag:
                put_headers["If-Match"] = etag
            put = await http.put("/xapi/activities/state", params=params, content=document, headers=put_headers)
            put.raise_for_status()
            middle = time.perf_counter()
            got = await http.get("/xapi/activities/state", params=params, headers=headers)
            got.raise_for_status()
            done = time.perf_counter()
            assert got.content == document
            etag = got.headers["ETag"]
            puts.append(middle - started)
            gets.append(done - middle)
            round_trips.append(done - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        warm = time.perf_counter() + 2
        await asyncio.gather(*(player(n, http, warm) for n in range(clients)))
        round_trips.clear()
        puts.clear()
        gets.clear()
        started = time.perf_counter()
        await asyncio.gather(*(player(n, http, started + seconds) for n in range(clients)))
        elapsed = time.perf_counter() - started
    print(f"  {clients} clients: {len(round_trips) / elapsed:,.0f} round trips/s")
    for label, values in (("PUT + GET round trip", round_trips), ("PUT", puts), ("GET", gets)):
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        print(f"  {label:<22} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", action="store_true", help="the embedded SQLite log instead of PostgreSQL")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--with-projectors", action="store_true", help="the server folds the views itself too")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}, "
          f"{args.workers} server worker(s), {'SQLite' if args.sqlite else 'PostgreSQL'}")  # fmt: skip
    # The views run as `proficio project` processes here; `--with-projectors` folds them in the server too.
    env = {} if args.with_projectors else {"PROFICIO_RUN_PROJECTORS": "false"}
    with tempfile.TemporaryDirectory() as tmp:
        if args.sqlite:
            with running_server(Path(tmp), workers=args.workers, env=env) as server:
                asyncio.run(run(server.base_url, server.headers, args.clients, args.seconds))
            return
        from tests.support.postgres import running_postgres

        with running_postgres() as pg, running_server(Path(tmp), pg.url, workers=args.workers, env=env) as server:
            asyncio.run(run(server.base_url, server.headers, args.clients, args.seconds))


if __name__ == "__main__":
    main()
