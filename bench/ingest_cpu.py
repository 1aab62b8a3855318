"""CPU per batched POST in one process: the app driven through httpx's ASGI transport, no sockets.

    .venv/bin/python -m bench.ingest_cpu                  # PostgreSQL 15 (a fresh database), 200 requests of 100
    .venv/bin/python -m bench.ingest_cpu --concurrency 8

On a shared machine the wall clock moves with other people's work; the CPU time of this one process (the
server's Python work and the in-process client's, the same for any two versions compared) does not. Run
it from two work trees in alternation to compare them. PostgreSQL's CPU is left out: see
``bench.ingest_throughput`` for it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time

import httpx
from tests.support.postgres import running_postgres

from bench.ingest_throughput import bodies


async def measure(url: str, requests: int, concurrency: int) -> None:
    from proficio_ingest import CredentialStore, IngestSettings, create_app

    app = create_app(IngestSettings(database_url=url))
    batches = bodies(200, 100, 1)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lrs.test", timeout=120) as http:
            created = await CredentialStore(app.state.log).create("default", "LMS", ["all"])
            token = base64.b64encode(f"{created.credential.key}:{created.secret}".encode()).decode()
            headers = {
                "Authorization": f"Basic {token}",
                "X-Experience-API-Version": "1.0.3",
                "Content-Type": "application/json",
            }
            sent = 0

            async def client(count: int) -> None:
                nonlocal sent
                for _ in range(count):
                    body = batches[sent % len(batches)]
                    sent += 1
                    response = await http.post("/xapi/statements", content=body, headers=headers)
                    response.raise_for_status()

            await asyncio.gather(*(client(10) for _ in range(concurrency)))  # warm-up
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(client(requests // concurrency) for _ in range(concurrency)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            done = requests // concurrency * concurrency
            print(
                f"  batched POST (100/request, {concurrency} concurrent):"
                f" process CPU {cpu / done * 1000:.2f} ms/request, wall {wall / done * 1000:.1f} ms/request,"
                f" load average {os.getloadavg()[0]:.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with running_postgres() as pg:
        asyncio.run(measure(pg.url, args.requests, args.concurrency))


if __name__ == "__main__":
    main()
