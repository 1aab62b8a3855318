"""``proficio verify``, ``keys``, ``checkpoint``, ``export`` and ``verify-export`` as an operator and an auditor
run them, on SQLite and PostgreSQL, with rows edited directly in the database."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from proficio_events import EventLog, NewEvent

PROFICIO = [sys.executable, "-m", "proficio_cli"]
T = "district-1"
AGENT = '{"mbox": "mailto:ann@example.org"}'


def environment(store_url: str, key: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFICIO_")}
    if store_url.startswith("sqlite"):
        env["PROFICIO_DATA_DIR"] = str(Path(store_url.split(":///", 1)[1]).parent)
    else:
        env["PROFICIO_DATABASE_URL"] = store_url
    if key is not None:
        env["PROFICIO_SIGNING_KEY_FILE"] = str(key)
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PROFICIO, *args], capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def run_binary(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*PROFICIO, *args], capture_output=True, timeout=120, env=env, check=True)


async def fill(log: EventLog) -> None:
    from proficio_ingest import enroll_learner_ids

    [ann] = await enroll_learner_ids(log, T, [json.loads(AGENT)])  # her id in the learner directory
    for n in range(8):
        stream = ann if n % 2 else "learner:" + "b" * 32
        await log.append(T if n != 5 else "district-2", [NewEvent.of(stream, "StatementStored", {"n": n})])


async def edit(log: EventLog, sql: str) -> None:
    async with log.engine.begin() as conn:
        await conn.execute(sa.text(sql))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "signing.pem"
    done = run({**os.environ, "PROFICIO_SIGNING_KEY_FILE": str(path)}, "keys", "generate")
    assert done.returncode == 0, done.stderr
    return path


def test_keys_generate_writes_a_private_key_only_its_owner_reads(key: Path) -> None:
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.with_name("signing.pem.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = run(dict(os.environ), "keys", "generate", "--out", str(key))
    assert again.returncode == 1
    assert "exists already" in again.stderr
    public = run({**os.environ, "PROFICIO_SIGNING_KEY_FILE": str(key)}, "keys", "public")
    assert public.stdout == key.with_name("signing.pem.pub").read_text()


async def test_verify_names_the_first_bad_row_and_checkpoints_catch_a_cut_end(
    log: EventLog, store_url: str, key: Path
) -> None:
    await fill(log)
    env = environment(store_url, key)
    signed = run(env, "checkpoint", "--json")
    assert signed.returncode == 0, signed.stderr
    assert {row["tenant"]: row["checkpoint"]["position"] for row in json.loads(signed.stdout)} == {
        T: 8,
        "district-2": 6,
    }
    clean = run(env, "verify")
    assert clean.returncode == 0
    assert "ok: 8 events in 2 tenant chain(s) verified; 2 checkpoint(s) matched, 2 signature(s) verified" in (
        clean.stdout
    )

    await edit(log, "DELETE FROM events WHERE position = 8")  # the newest: no hole, no broken link
    cut = run(env, "verify", "--json")
    assert cut.returncode == 1
    problem = json.loads(cut.stdout)["problem"]
    assert (problem["position"], problem["kind"], problem["tenant"]) == (8, "removed", T)
    refused = run(env, "checkpoint", "--tenant", T)
    assert refused.returncode == 1
    assert "NOT SIGNED" in refused.stdout

    await edit(log, "UPDATE events SET payload = payload || payload WHERE position = 3")
    altered = run(env, "verify", "--tenant", T)
    assert altered.returncode == 1
    assert altered.stdout.startswith(f"TAMPERED: event 3 of tenant '{T}' was altered")

    await edit(log, "DELETE FROM events WHERE position = 2")
    removed = run(env, "verify", "--json")
    assert json.loads(removed.stdout)["problem"]["position"] == 2


async def test_export_and_verify_export_need_only_the_public_key(
    log: EventLog, store_url: str, key: Path, tmp_path: Path
) -> None:
    await fill(log)
    env = environment(store_url, key)
    public = str(key.with_name("signing.pem.pub"))
    tenant_file, learner_file = tmp_path / "tenant.ndjson", tmp_path / "ann.ndjson"
    exported = run_binary(env, "export", "--tenant", T)
    tenant_file.write_bytes(exported.stdout)
    assert "exported 7 events of tenant 'district-1', positions 1-8, with 1 checkpoint(s)" in exported.stderr.decode()
    assert run(env, "export", "--tenant", T, "--learner", AGENT, "--out", str(learner_file)).returncode == 0

    offline = {"PATH": os.environ["PATH"], "PROFICIO_DATABASE_URL": "postgresql://nobody:x@127.0.0.1:1/none"}
    checked = run(offline, "verify-export", str(tenant_file), "--public-key", public)
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.splitlines()[-1] == "OK"
    learner = run(offline, "verify-export", str(learner_file), "--public-key", public, "--json")
    assert learner.returncode == 0
    assert (json.loads(learner.stdout)["ok"], json.loads(learner.stdout)["events"]) == (True, 3)

    lines = tenant_file.read_bytes().splitlines(keepends=True)
    tenant_file.write_bytes(b"".join(lines[:3] + lines[4:]))  # an event left out
    broken = run(offline, "verify-export", str(tenant_file), "--public-key", public)
    assert broken.returncode == 1
    assert broken.stdout.splitlines()[-1].startswith("FAILED: line 4: event")


def test_bad_input_is_a_clear_message_not_a_traceback(tmp_path: Path, key: Path) -> None:
    env = environment(f"sqlite:///{tmp_path / 'data' / 'proficio.db'}")
    no_key = run(env, "checkpoint")
    assert (no_key.returncode, "no signing key" in no_key.stderr) == (1, True)
    (tmp_path / "not-a-key.pem").write_text("hello")
    for args in (
        ["verify-export", str(key), "--public-key", str(tmp_path / "not-a-key.pem")],
        ["verify", "--public-key", str(tmp_path / "missing.pem")],
    ):
        done = run(env, *args)
        assert done.returncode == 1
        assert done.stderr.startswith("Error: ")
    bad_learner = run(env, "export", "--tenant", T, "--learner", "ann")
    assert bad_learner.returncode == 2
    assert "--learner" in bad_learner.stderr
    backwards = run(env, "export", "--tenant", T, "--from", "9", "--to", "3")
    assert backwards.returncode == 2
    wrong_key = run({**env, "PROFICIO_SIGNING_KEY_FILE": str(tmp_path / "not-a-key.pem")}, "checkpoint")
    assert wrong_key.returncode == 1
    assert "not an unencrypted PEM private key" in wrong_key.stderr
