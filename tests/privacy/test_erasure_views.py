"""Erasure keeps the aggregates: the equity views' totals, recomputed from scratch after an English learner of the
district is erased, equal those before; her views replayed from the log as of now are what they were; and
``proficio erase learner`` on the command line does the same job as the API (twice is harmless, verify passes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from proficio_events import EventLog
from proficio_ingest import enroll_learner_ids, find_learner_id
from proficio_projector import migrate_runtime
from proficio_projector.audit._replay import views_as_of
from proficio_projector.equity import EquityRefresher
from proficio_projector.equity._tables import equity_cells, equity_facts, equity_state
from proficio_projector.pacing import set_plan
from proficio_projector.roster import import_roster, read_package
from tests.equity.district import write_oneroster
from tests.equity.test_equity_views import AS_OF, COMPETENCIES, OBJECTIVE, TENANT, actor, build, district
from tests.ingest.conftest import VERSION, Client
from tests.support.server import PROFICIO, running_server


async def snapshot(log: EventLog) -> dict[str, list[Any]]:
    async with log.engine.connect() as conn:
        return {
            table.name: sorted(tuple(r) for r in (await conn.execute(sa.select(table))).all())
            for table in (equity_facts, equity_cells)
        }


async def recomputed(log: EventLog) -> dict[str, list[Any]]:
    """The equity tables computed again from nothing (the views as they stand), for the same day."""
    async with log.transaction() as conn:
        for table in (equity_cells, equity_facts, equity_state):
            await conn.execute(table.delete())
    await EquityRefresher(log).refresh(AS_OF)
    return await snapshot(log)


async def test_equity_totals_are_unchanged_by_an_erasure(client: Client, tmp_path: Path) -> None:
    log = client.log
    await migrate_runtime(log)
    students = district()
    package = read_package(write_oneroster(tmp_path / "oneroster", students, ["school-a", "school-b"]))
    await import_roster(log, TENANT, package, learner_ids=enroll_learner_ids, effective=date(2026, 8, 24))
    await set_plan(log, TENANT, {
        "plan": "math-8", "title": "Math 8", "start": "2026-08-24", "target": "2027-05-28",
        "learners": sorted(await enroll_learner_ids(log, TENANT, [actor(s) for s in students])),
        "competencies": [{"uri": c, "tier": "must"} for c in COMPETENCIES],
    })  # fmt: skip
    statements = [
        {"actor": {**actor(s), "name": f"Student {s.sourced_id}"}, "verb": {"id": "http://adlnet.gov/expapi/verbs/passed"},
         "object": {"id": f"{c}/quiz"}, "result": {"score": {"scaled": 1.0}, "success": True},
         "context": {"contextActivities": {"other": [{"id": c, "definition": {"type": OBJECTIVE}}]}},
         "timestamp": f"2026-10-{5 + k:02d}T10:00:00Z"}
        for s in students for k, c in enumerate(COMPETENCIES[: 1 if s.english_learner else 4])
    ]  # fmt: skip
    auth = {**VERSION, **await client.credential("all", tenant=TENANT), "Content-Type": "application/json"}
    posted = await client.http.post("/xapi/statements", content=orjson.dumps(statements), headers=auth)
    assert posted.status_code == 200, posted.text
    await build(log)
    await EquityRefresher(log).refresh(AS_OF)
    before = await snapshot(log)
    everyone = next(r for r in before["equity_cells"] if r[1:6] == ("public", "plan:math-8", "district", "all", "all"))
    assert everyone[6] == 80
    erased = next(s for s in students if s.english_learner)
    learner = await find_learner_id(log, TENANT, actor(erased))
    assert learner is not None
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    her_views = (await views_as_of(log, TENANT, learner, now_us)).as_dict()

    answer = await client.http.post("/audit/learner/erase", json={"agent": actor(erased)}, headers=auth)
    assert answer.json()["erased"] is True
    await build(log)  # the projectors fold the LearnerErased event (and change nothing)

    assert await recomputed(log) == before
    assert (await views_as_of(log, TENANT, learner, now_us)).as_dict() == her_views
    assert (await log.verify()).ok
    mine = await client.http.get("/xapi/statements", params={"agent": orjson.dumps(actor(erased)).decode()},
                                 headers=auth)  # fmt: skip
    assert mine.json()["statements"] == []
    assert await find_learner_id(log, TENANT, actor(erased)) is None  # her identity maps to no learner any more


def test_erase_on_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    agent = {"mbox": "mailto:cli.erasure.5c1@example.org", "name": "Cli Erasure"}
    with running_server(tmp_path) as server:
        import httpx

        statement = {"actor": agent, "verb": {"id": "http://adlnet.gov/expapi/verbs/passed"},
                     "object": {"id": "https://example.org/activity/cli"}}  # fmt: skip
        posted = httpx.post(server.base_url + "/xapi/statements", json=statement, headers=server.headers, timeout=30)
        assert posted.status_code == 200

    def erase(*target: str) -> dict[str, Any]:
        done = subprocess.run([*PROFICIO, "erase", "learner", *target, "--data-dir", str(tmp_path), "--json"],
                              capture_output=True, text=True, env=env, timeout=60, check=True)  # fmt: skip
        found: dict[str, Any] = orjson.loads(done.stdout)
        return found

    [learner] = asyncio.run(_learner_ids(tmp_path, agent))
    assert learner is not None
    first = erase(learner)
    assert (first["erased"], first["keys_destroyed"], first["statements"]) == (True, 1, 1)
    assert erase(orjson.dumps(agent).decode())["erased"] is False  # nothing left to erase
    verified = subprocess.run([*PROFICIO, "verify", "--data-dir", str(tmp_path)], capture_output=True, text=True,
                              env=env, timeout=60)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert asyncio.run(_history(tmp_path, learner)) == ["StatementStored", "LearnerErased"]
    assert asyncio.run(_learner_ids(tmp_path, agent)) == [None]  # her directory row went with the erasure


async def _learner_ids(data_dir: Path, agent: dict[str, Any]) -> list[str | None]:
    from proficio_events import open_event_log, sqlite_url
    from proficio_ingest import find_learner_ids

    log = await open_event_log(sqlite_url(data_dir))
    try:
        return await find_learner_ids(log, "default", [agent])
    finally:
        await log.close()


async def _history(data_dir: Path, learner: str) -> list[str]:
    from proficio_events import open_event_log, sqlite_url

    log = await open_event_log(sqlite_url(data_dir))
    try:
        return [e.event_type for e in await log.read_stream("default", learner)]
    finally:
        await log.close()
