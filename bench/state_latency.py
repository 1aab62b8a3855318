"""State resource round trips (PUT, then GET) as content players do them, at 8 concurrent clients.

    .venv/bin/python -m bench.state_latency             # PostgreSQL 15 (started here); wrk, then httpx
    .venv/bin/python -m bench.state_latency --client wrk
    .venv/bin/python -m bench.state_latency --sqlite    # the embedded default

Each client is one learner in one activity, saving its bookmark/suspend data (a ~1 KB JSON document)
and reading it back, with the ETag it got (If-Match), as a cmi5 or SCORM player does between pages.

With wrk (a C process, one thread per client; see ``bench/_wrk.py``) the figures are the server's; with
httpx (in this process, as the first figures were taken) the client's own CPU is in them. Besides
latencies it prints the CPU time per round trip of the server process(es) and of the PostgreSQL
backends serving them, and the load average: other people's work on this shared machine moves the
wall-clock figures, not the CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import orjson
from tests.support.server import RunningServer, running_server

from bench import _cpu as cpu
from bench import _wrk as wrk
from bench.ingest_throughput import percentile

ACTIVITY = "https://district.example.org/courses/algebra-1/lesson-3"
STATE_ID = "https://w3id.org/xapi/scorm/activity-state"


def state_params(n: int) -> dict[str, str]:
    return {
        "activityId": ACTIVITY,
        "agent": orjson.dumps({"mbox": f"mailto:learner{n}@district.example.org"}).decode(),
        "stateId": STATE_ID,
    }


async def run(base: str, headers: dict[str, str], clients: int, seconds: float) -> None:
    round_trips: list[float] = []
    puts: list[float] = []
    gets: list[float] = []

    async def player(n: int, http: httpx.AsyncClient, deadline: float) -> None:
        params = state_params(n)
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
    print(f"  httpx in this process, {clients} clients: {len(round_trips) / elapsed:,.0f} round trips/s"
          f"   (load average {cpu.load_average()})")  # fmt: skip
    for label, values in (("PUT + GET round trip", round_trips), ("PUT", puts), ("GET", gets)):
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        print(f"  {label:<22} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")


def run_wrk(server: RunningServer, data_dir: Path, database: str | None, clients: int, seconds: float) -> None:
    paths = ["/xapi/activities/state?" + urlencode(state_params(n)) for n in range(clients)]
    wrk.state_round_trips(server.base_url, server.headers, paths, seconds=2)  # warm-up
    before = cpu.sample(data_dir, database)
    result = wrk.state_round_trips(server.base_url, server.headers, paths, seconds=seconds)
    after = cpu.sample(data_dir, database)
    server_s, backends_s = cpu.spent(before, after)
    trips = len(result.round_trip.values_us)
    print(f"  wrk, {clients} clients: {result.round_trips_per_second:,.0f} round trips/s   (load average "
          f"{cpu.load_average()}; CPU per round trip: server {server_s / trips * 1000:.2f} ms, "
          f"PostgreSQL {backends_s / trips * 1000:.2f} ms)")  # fmt: skip
    for label, values in (("PUT + GET round trip", result.round_trip), ("PUT", result.put), ("GET", result.get)):
        print(f"  {label:<22} p50 {values.percentile_ms(0.5):6.2f} ms   p99 {values.percentile_ms(0.99):6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", action="store_true", help="the embedded SQLite log instead of PostgreSQL")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--client",
        choices=("both", "wrk", "httpx"),
        default="both" if wrk.available() else "httpx",
        help="wrk (a C process: the server's latency), httpx (in this process, as first measured), or both in turn",
    )
    parser.add_argument("--with-projectors", action="store_true", help="the server folds the views itself too")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}, "
          f"{args.workers} server worker(s), {'SQLite' if args.sqlite else 'PostgreSQL'}")  # fmt: skip
    # The views run as `proficio project` processes here; `--with-projectors` folds them in the server too.
    env = {} if args.with_projectors else {"PROFICIO_RUN_PROJECTORS": "false"}

    def measure(server: RunningServer, data_dir: Path, database: str | None) -> None:
        if args.client in ("both", "wrk"):
            run_wrk(server, data_dir, database, args.clients, args.seconds)
        if args.client in ("both", "httpx"):
            asyncio.run(run(server.base_url, server.headers, args.clients, args.seconds))

    with tempfile.TemporaryDirectory() as tmp:
        if args.sqlite:
            with running_server(Path(tmp), workers=args.workers, env=env) as server:
                measure(server, Path(tmp), None)
            return
        from tests.support.postgres import running_postgres

        with running_postgres() as pg, running_server(Path(tmp), pg.url, workers=args.workers, env=env) as server:
            measure(server, Path(tmp), pg.database)


if __name__ == "__main__":
    main()
