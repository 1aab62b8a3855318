"""Projectors as operators run them: inside ``proficio serve`` on the embedded default, as ``proficio project``
processes sharing the SQL log (one killed with SIGKILL), and the ``projectors``, ``deadletters`` and
``rebuild`` commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from proficio_events import EventLog, NewEvent, open_event_log, sqlite_url
from proficio_projector import LearnerActivity, migrate_runtime
from tests.support.postgres import PostgresServer
from tests.support.server import running_server

from .support import append_statements, replayed_rows, view_rows

PROFICIO = [sys.executable, "-m", "proficio_cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROFICIO, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def spawn(env: dict[str, str], output: Path, *args: str) -> subprocess.Popen[bytes]:
    with output.open("wb") as sink:
        return subprocess.Popen([*PROFICIO, *args], env=env, stdout=sink, stderr=sink)


def statement(n: int) -> dict[str, Any]:
    return {
        "actor": {"mbox": f"mailto:learner{n % 7}@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": f"http://example.org/item/{n}"},
    }


async def test_serve_on_the_embedded_default_runs_the_projectors(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            posted = await http.post(
                "/xapi/statements",
                content=orjson.dumps([statement(n) for n in range(30)]),
                headers={"Content-Type": "application/json"},
            )
            assert posted.status_code == 200, posted.text
            deadline = time.monotonic() + 20
            while True:
                page = await http.get("/views/learner_activity/learners")
                assert page.status_code == 200, page.text
                if sum(r["statements"] for r in page.json()["rows"]) == 30 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            rows = page.json()["rows"]
            assert sorted(r["statements"] for r in rows) == [4, 4, 4, 4, 4, 5, 5]
            assert page.headers["X-Experience-API-Consistent-Through"].endswith("Z")
            one = await http.get(f"/views/learner_activity/learners/{rows[0]['learner']}")
            assert one.json() == rows[0]
            state = (await http.get("/views/status")).json()
            assert [(s["name"], s["lag"], s["dead_letters"]) for s in state] == [
                ("competency_evidence", 0, 0),
                ("competency_reference", 0, 0),
                ("frameworks", 0, 0),
                ("learner_activity", 0, 0),
                ("pacing_reference", 0, 0),
                ("roster", 0, 0),
                ("student_groups", 0, 0),
            ]

            assert (await http.get("/views/nothing/learners")).status_code == 404
            assert (await http.get("/views/learner_activity/nothing")).status_code == 404
            assert (await http.get("/views/learner_activity/learners", params={"after": "[1,"})).status_code == 400
            assert (await http.get("/views/learner_activity/learners", params={"limit": 0})).status_code == 400
            assert (
                await http.get("/views/learner_activity/learners", headers={"Authorization": ""})
            ).status_code == 401


@pytest.mark.postgres
async def test_sql_projector_processes_share_the_log_and_one_killed_is_replaced(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database(f"{postgres.database}_p{os.getpid() % 10000}")
    env = {**os.environ, "PROFICIO_DATABASE_URL": url, "PROFICIO_LEASE_TTL_S": "2"}
    log = await open_event_log(url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await migrate_runtime(log)
        await append_statements(log, 500, learners=40)
        workers += [spawn(env, tmp_path / f"project-{n}.log", "project", "--source", "sql") for n in range(2)]
        await _settled(log)
        await _both_hold_segments(log)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=10)
        await append_statements(log, 700, learners=40, start=500)  # the survivor takes over the dead one's share
        await _settled(log)
        workers.append(spawn(env, tmp_path / "project-2.log", "project", "--source", "sql"))
        await append_statements(log, 300, learners=40, start=1200)
        await _settled(log)
        assert sum(r["statements"] for r in await view_rows(log, LearnerActivity())) == 1500
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)
        await log.close()
        postgres.drop_database(url.rsplit("/", 1)[1].split("?")[0])


async def _settled(log: EventLog, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await view_rows(log, LearnerActivity()) == await replayed_rows(log):
                return
        except AssertionError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the projector processes did not fold the log")
        await asyncio.sleep(0.2)


async def _both_hold_segments(log: EventLog, timeout: float = 30) -> None:
    import sqlalchemy as sa

    from proficio_projector._schema import leases

    deadline = time.monotonic() + timeout
    while True:
        async with log.engine.connect() as conn:
            held = await conn.execute(sa.select(leases).where(leases.c.name.like("projector:learner_activity@%")))
            owners = {r.owner for r in held if r.expires_us > time.time() * 1e6}
        if len(owners) == 2:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the segments were not shared: {owners}")
        await asyncio.sleep(0.2)


async def _poisoned_log(data_dir: Path) -> int:
    """A log with good statements and one StatementStored event without a statement (folds fail on it)."""
    log = await open_event_log(sqlite_url(data_dir))
    try:
        await append_statements(log, 40, learners=4)
        bad = await log.append("district-7", [NewEvent.of("learner:1", "StatementStored", {"oops": True})])
        await append_statements(log, 10, learners=4, start=40)
        return bad.events[0].position
    finally:
        await log.close()


def test_projector_commands_status_dead_letters_and_rebuild(tmp_path: Path) -> None:
    poisoned = asyncio.run(_poisoned_log(tmp_path))
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    worker = spawn(env, tmp_path / "project.log", "project")
    try:
        deadline = time.monotonic() + 30
        while True:
            status = run("projectors", "status", "--json", env=env)
            assert status.returncode == 0, status.stderr
            found = json.loads(status.stdout)
            projectors = [p for p in found["projectors"] if p["name"] == "learner_activity"]
            if projectors and projectors[0]["watermark"] == found["log_position"]:
                break
            assert time.monotonic() < deadline, f"the projector did not catch up: {found}"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0  # stops cleanly on SIGTERM
    # The poison event, and the three after it on learner 1's stream (statements 41, 45 and 49).
    assert projectors[0]["dead_letters"] == 4
    assert projectors[0]["lag"] == 0

    listed = run("deadletters", "list", "learner_activity", "--json", env=env)
    letters = json.loads(listed.stdout)
    assert (letters[0]["position"], letters[0]["attempts"]) == (poisoned, 3)
    assert "KeyError" in letters[0]["error"]
    assert all("held behind" in d["error"] for d in letters[1:])
    text = run("deadletters", "list", env=env)
    assert f"position {poisoned}" in text.stdout

    replay = run("deadletters", "replay", "learner_activity", env=env)
    assert replay.returncode == 1  # the code still cannot fold it: it stays parked
    assert "0 dead letter(s) resolved, 4 still failing" in replay.stdout

    rebuilt = run("rebuild", "learner_activity", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "generation 2" in rebuilt.stdout
    unknown = run("rebuild", "nothing", env=env)
    assert unknown.returncode != 0
    assert "learner_activity" in unknown.stderr


def _children(pid: int) -> list[tuple[int, list[str]]]:
    """Live child processes of ``pid`` and their command lines."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == pid and stat[0] != "Z":
                found.append((int(entry.name), (entry / "cmdline").read_bytes().decode().split("\0")))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


async def test_project_refreshes_the_equity_views_in_a_child_process_that_ends_with_it(tmp_path: Path) -> None:
    """``proficio project`` (every projection) runs the refresher apart, in a child process at a lower priority; the
    child stops when its parent does, even a parent killed with SIGKILL that could not stop it."""
    from proficio_projector.equity._tables import equity_state

    from .support import scored_statement_event as _scored

    log = await open_event_log(sqlite_url(tmp_path))
    try:
        await migrate_runtime(log)
        await log.append("district-7", [_scored(n) for n in range(30)])  # evidence: the refresher has a tenant
    finally:
        await log.close()
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    worker = spawn(env, tmp_path / "project.log", "project")
    try:
        deadline = time.monotonic() + 60
        refreshers: list[tuple[int, list[str]]] = []
        while not refreshers:
            refreshers = [c for c in _children(worker.pid) if "--equity" in c[1] and "only" in c[1]]
            assert time.monotonic() < deadline, "no refresher process was started"
            await asyncio.sleep(0.1)
        [(child, _)] = refreshers
        log = await open_event_log(sqlite_url(tmp_path), migrate=False)
        try:
            while True:
                async with log.engine.connect() as conn:
                    rows = (await conn.execute(equity_state.select())).mappings().all()
                if rows:
                    break
                assert time.monotonic() < deadline, "the equity views were not refreshed"
                await asyncio.sleep(0.2)
        finally:
            await log.close()
        assert [r["tenant"] for r in rows] == ["district-7"]
        assert _alive(child)
        # Background work: it runs at a lower priority than the folds (PROFICIO_EQUITY_NICE, 10 by default).
        assert os.getpriority(os.PRIO_PROCESS, child) == min(19, os.getpriority(os.PRIO_PROCESS, worker.pid) + 10)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 30
        while _alive(child):
            assert time.monotonic() < deadline, "the refresher process outlived its parent"
            await asyncio.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
