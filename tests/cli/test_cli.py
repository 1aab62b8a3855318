"""The ``proficio`` command as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from proficio_events import NewEvent, open_event_log, sqlite_url

PROFICIO = [sys.executable, "-m", "proficio_cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROFICIO, *args], capture_output=True, text=True, timeout=60, env=env)


async def _fill(data_dir: Path) -> None:
    log = await open_event_log(sqlite_url(data_dir))
    try:
        for n in range(4):
            await log.append("district-1", [NewEvent.of("learner:1", "E", {"n": n})])
    finally:
        await log.close()


def test_log_status_and_verify_on_a_clean_log(tmp_path: Path) -> None:
    asyncio.run(_fill(tmp_path))
    status = run("log", "status", "--data-dir", str(tmp_path), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["position"] == 4
    verify = run("verify", "--data-dir", str(tmp_path))
    assert verify.returncode == 0
    assert "ok: 4 events in 1 tenant chain(s) verified" in verify.stdout


def test_verify_exits_non_zero_and_names_the_tampered_event(tmp_path: Path) -> None:
    asyncio.run(_fill(tmp_path))
    with sqlite3.connect(tmp_path / "proficio.db") as db:
        db.execute("UPDATE events SET payload = X'7b7d' WHERE position = 3")
    verify = run("verify", "--data-dir", str(tmp_path), "--json")
    assert verify.returncode == 1
    report = json.loads(verify.stdout)
    assert report["ok"] is False
    assert report["problem"]["position"] == 3
    assert report["problem"]["kind"] == "altered"
    assert report["events_checked"] == 2


def test_migrate_brings_every_schema_up_to_date(tmp_path: Path) -> None:
    # A deployment's migrate job runs this before the servers start: the ingest service's and the projectors'
    # tables too, not the log's alone (an upgrade that rewrites the statement index runs here, not in serve).
    migrated = run("migrate", "--data-dir", str(tmp_path))
    assert migrated.returncode == 0, migrated.stderr
    assert "schema up to date" in migrated.stdout
    with sqlite3.connect(next(tmp_path.glob("*.db"))) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = {
            table: db.execute(f"SELECT version_num FROM {table}").fetchall()
            for table in ("alembic_version", "proficio_ingest_version", "proficio_projector_version")
        }
    assert {"events", "xapi_statements", "xapi_statement_index", "checkpoints"} <= tables
    assert versions["proficio_ingest_version"] == [("ingest_0011",)]
    assert all(versions.values()), versions
    again = run("migrate", "--data-dir", str(tmp_path))
    assert again.returncode == 0, again.stderr


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    asyncio.run(_fill(tmp_path))
    env = {"PROFICIO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    status = run("log", "status", "--json", env=env)
    assert json.loads(status.stdout)["position"] == 4


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {"PROFICIO_DATABASE_URL": "postgresql://nobody:x@127.0.0.1:1/none", "PATH": "/usr/bin:/bin"}
    status = run("log", "status", env=env)
    assert status.returncode == 1
    assert "Error: cannot reach the log" in status.stderr
    assert "Traceback" not in status.stderr
    assert "x@" not in status.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_on_the_embedded_default(tmp_path: Path) -> None:
    port = _free_port()
    output = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [*PROFICIO, "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port)],
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                about = httpx.get(f"http://127.0.0.1:{port}/xapi/about", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "proficio serve did not start in 30 s"
                time.sleep(0.2)
        assert about.status_code == 200
        assert "1.0.3" in about.json()["version"]
        assert about.headers["X-Experience-API-Version"] == "1.0.3"
        assert (tmp_path / "d" / "proficio.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=20)
        output.close()


def test_credentials_create_list_revoke(tmp_path: Path) -> None:
    created = run("credentials", "create", "--data-dir", str(tmp_path), "--tenant", "district-9", "--name", "LMS",
                  "--scope", "statements/write", "--scope", "statements/read/mine", "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    credential = json.loads(created.stdout)
    assert credential["tenant"] == "district-9"
    assert credential["scopes"] == ["statements/read/mine", "statements/write"]
    assert len(credential["secret"]) >= 40
    listed = json.loads(run("credentials", "list", "--data-dir", str(tmp_path), "--json").stdout)
    assert [(c["key"], c["revoked"]) for c in listed] == [(credential["key"], False)]
    assert credential["secret"] not in run("credentials", "list", "--data-dir", str(tmp_path)).stdout
    # The secret is stored hashed: it is nowhere in the database file.
    assert credential["secret"].encode() not in (tmp_path / "proficio.db").read_bytes()
    assert run("credentials", "revoke", "--data-dir", str(tmp_path), credential["key"]).returncode == 0
    listed = json.loads(run("credentials", "list", "--data-dir", str(tmp_path), "--json").stdout)
    assert listed[0]["revoked"] is True
    again = run("credentials", "revoke", "--data-dir", str(tmp_path), credential["key"])
    assert again.returncode == 1
    assert "no active credential" in again.stderr


def test_credentials_create_refuses_unknown_scopes(tmp_path: Path) -> None:
    refused = run("credentials", "create", "--data-dir", str(tmp_path), "--scope", "everything")
    assert refused.returncode == 2
    assert "unknown scope" in refused.stderr


def test_revoked_credentials_get_401(tmp_path: Path) -> None:
    from tests.support.server import running_server

    with running_server(tmp_path) as server:
        headers = server.headers
        assert httpx.get(f"{server.base_url}/xapi/statements", headers=headers).status_code == 200
        assert run("credentials", "revoke", "--data-dir", str(tmp_path), server.key).returncode == 0
        deadline = time.monotonic() + 10  # other processes drop a cached credential within seconds
        while httpx.get(f"{server.base_url}/xapi/statements", headers=headers).status_code != 401:
            assert time.monotonic() < deadline, "a revoked credential still works"
            time.sleep(0.5)


def test_rebuild_from_the_command_line(tmp_path: Path) -> None:
    from tests.support.server import running_server

    with running_server(tmp_path) as server:
        response = httpx.post(
            f"{server.base_url}/xapi/statements",
            headers={**server.headers, "Content-Type": "application/json"},
            content=json.dumps(
                {
                    "actor": {"mbox": "mailto:a@example.org"},
                    "verb": {"id": "http://example.org/v"},
                    "object": {"id": "http://example.org/o"},
                }
            ),
        )
        assert response.status_code == 200
        before = httpx.get(f"{server.base_url}/xapi/statements", headers=server.headers).json()
        with sqlite3.connect(tmp_path / "proficio.db") as db:
            db.execute("DELETE FROM xapi_statements")
        assert httpx.get(f"{server.base_url}/xapi/statements", headers=server.headers).json()["statements"] == []
        rebuilt = run("rebuild", "statements", "--data-dir", str(tmp_path))
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "statements: rebuilt from 1 events" in rebuilt.stdout
        assert httpx.get(f"{server.base_url}/xapi/statements", headers=server.headers).json() == before


def test_rollup_rules_and_sections_from_the_command_line(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    rule = run("rollups", "set", "tenant", "--rule", "k_of_n", "--k", "2", *data)
    assert rule.returncode == 0, rule.stderr
    assert "RollupRuleChanged recorded for default" in rule.stdout
    section = run(
        "sections", "set", "math-7a", "--title", "Math 7A", "--learner", "learner:1", "--learner", "l2", *data
    )
    assert section.returncode == 0, section.stderr
    assert "SectionRosterSet recorded" in section.stdout
    bad = run("rollups", "set", "tenant", "--rule", "k_of_n", *data)
    assert bad.returncode == 1
    assert "k_of_n takes k" in bad.stderr
    assert "nothing was recorded" in bad.stderr
    assert "Traceback" not in bad.stderr
