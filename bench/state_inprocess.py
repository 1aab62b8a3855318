"""CPU per State round trip (PUT, then GET) of the xAPI app driven in-process: no sockets, no HTTP server.

    .venv/bin/python -m bench.state_inprocess             # PostgreSQL 15 (started here), 4,000 round trips
    .venv/bin/python -m bench.state_inprocess --profile   # and the functions that cost most (cProfile)

Eight players as in ``bench.state_latency``, calling the ASGI app directly; the figure is the process CPU
(``time.process_time``) per round trip of the app, its log and the group commit, without uvicorn's HTTP parsing
and socket writes. On this shared machine wall-clock figures move with other people's load; this one does not.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import pstats
import time
from typing import Any
from urllib.parse import urlencode

import orjson
from tests.support.postgres import running_postgres

from bench.state_latency import state_params
from proficio_ingest import CredentialStore, IngestSettings, create_app

PATH = "/xapi/activities/state"


async def call(
    app: Any, method: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> dict[str, Any]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": PATH, "raw_path": PATH.encode(), "query_string": query, "root_path": "",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    answer: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], dict(message["headers"])
        else:
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer


async def measure(url: str, round_trips: int, profile: bool) -> None:
    app = create_app(IngestSettings(database_url=url))
    async with app.router.lifespan_context(app):
        created = await CredentialStore(app.state.log).create("default", "bench", ["all"])
        token = base64.b64encode(f"{created.credential.key}:{created.secret}".encode())
        base = [(b"authorization", b"Basic " + token), (b"x-experience-api-version", b"1.0.3")]

        async def player(n: int, count: int) -> None:
            query = urlencode(state_params(n)).encode()
            etag: bytes | None = None
            for page in range(count):
                document = orjson.dumps({"location": f"page-{page}", "suspend_data": "x" * 900, "score": page % 100})
                headers = [*base, (b"content-type", b"application/json"), *([(b"if-match", etag)] if etag else [])]
                put = await call(app, "PUT", query, headers, document)
                assert put["status"] == 204, put
                got = await call(app, "GET", query, base)
                assert got["status"] == 200, got
                assert got["body"] == document
                etag = got["headers"][b"etag"]

        await asyncio.gather(*(player(n, 50) for n in range(8)))  # warm-up
        profiler = cProfile.Profile() if profile else None
        started_cpu, started = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        await asyncio.gather(*(player(n, round_trips // 8) for n in range(8)))
        if profiler is not None:
            profiler.disable()
        cpu_s, elapsed = time.process_time() - started_cpu, time.perf_counter() - started
    done = round_trips // 8 * 8
    print(f"  in-process, 8 players: CPU {cpu_s / done * 1000:.3f} ms per round trip ({done:,} round trips, "
          f"{done / elapsed:,.0f}/s{', under cProfile' if profile else ''})")  # fmt: skip
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=4000)
    parser.add_argument("--profile", action="store_true", help="print the costliest functions (cProfile)")
    args = parser.parse_args()
    with running_postgres() as pg:
        asyncio.run(measure(pg.url, args.round_trips, args.profile))


if __name__ == "__main__":
    main()
