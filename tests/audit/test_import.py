"""``proficio import-lrs`` against a second, real ``proficio serve`` as the source LRS: paging by `more`, an
interruption (the importer killed mid-way) and its resume, re-runs that append nothing, incremental runs, a
stale saved link, voided statements and attachments; and the source's periodic signed checkpoints."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from proficio_events import EventLog, load_public_key, open_event_log, sqlite_url
from proficio_ingest._multipart import AttachmentPart, build_multipart_mixed
from tests.support.server import RunningServer, running_server

PROFICIO = [sys.executable, "-m", "proficio_cli"]
TENANT = "district-9"
PAGE = 3


def statement(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=n + 1)),
        "actor": {"mbox": f"mailto:learner{n % 5}@example.org", "name": f"Learner {n % 5}"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}},
        "object": {"id": f"https://example.org/item/{n % 7}", "definition": {"name": {"en-US": f"Item {n % 7}"}}},
        "result": {"score": {"scaled": (n % 10) / 10}},
        **extra,
    }


async def post(http: httpx.AsyncClient, body: Any, *, parts: list[AttachmentPart] | None = None) -> None:
    if parts:
        content, content_type = build_multipart_mixed(orjson.dumps(body), parts)
        response = await http.post("/xapi/statements", content=content, headers={"Content-Type": content_type})
    else:
        response = await http.post("/xapi/statements", json=body)
    assert response.status_code == 200, response.text


async def fill_source(server: RunningServer) -> set[str]:
    """40 statements, one with an attachment sent as data, one voided by another: the ids a copy must hold."""
    data = b"certificate of completion"
    sha2 = hashlib.sha256(data).hexdigest()
    attachment = {
        "usageType": "http://example.org/attachment/certificate",
        "display": {"en-US": "certificate"},
        "contentType": "text/plain",
        "length": len(data),
        "sha2": sha2,
    }
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30) as http:
        await post(http, [statement(n) for n in range(30)])
        await post(http, statement(30, attachments=[attachment]), parts=[AttachmentPart(sha2, "text/plain", data)])
        await post(http, [statement(n) for n in range(31, 38)])
        voiding = {
            "id": str(uuid.UUID(int=1000)),
            "actor": {"mbox": "mailto:teacher@example.org"},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}},
            "object": {"objectType": "StatementRef", "id": statement(5)["id"]},
        }
        await post(http, voiding)
        await post(http, statement(38))
    return {statement(n)["id"] for n in range(39)} | {voiding["id"]}


def destination(tmp_path: Path, store_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFICIO_")}
    if store_url.startswith("sqlite"):
        env["PROFICIO_DATA_DIR"] = str(Path(store_url.split(":///", 1)[1]).parent)
    else:
        env["PROFICIO_DATABASE_URL"] = store_url
    return env


async def proficio(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *PROFICIO, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    assert b"Traceback" not in err, err.decode()
    return process.returncode or 0, out.decode(), err.decode()


async def rows(log: EventLog, sql: str, **params: Any) -> list[Any]:
    async with log.engine.connect() as conn:
        return list(await conn.execute(sa.text(sql), params))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_import_pages_resumes_after_a_kill_and_repeats_nothing(
    tmp_path: Path, store_url: str, log: EventLog
) -> None:
    source_dir = tmp_path / "source"
    key = tmp_path / "signing.pem"
    assert (await proficio(dict(os.environ), "keys", "generate", "--out", str(key)))[0] == 0
    checkpointing = {"PROFICIO_SIGNING_KEY_FILE": str(key), "PROFICIO_CHECKPOINT_INTERVAL_S": "0.3"}
    with running_server(source_dir, env=checkpointing) as source:
        expected = await fill_source(source)
        env = destination(tmp_path, store_url)
        importing = [source.endpoint, "--key", source.key, "--secret", source.secret, "--tenant", TENANT]

        # A first run in bounded chunks.
        code, out, _ = await proficio(env, "import-lrs", *importing, "--page-size", str(PAGE), "--max-pages", "2")
        assert code == 0, out
        assert "2 page(s), 6 statement(s) received, 6 new" in out
        assert "stopped after 2 page(s)" in out

        # Killed mid-way (SIGKILL: no chance to tidy up); each page and its progress are one transaction.
        async def progress() -> tuple[int, str | None]:
            found = await rows(log, "SELECT pages, next_url FROM proficio_lrs_imports WHERE tenant = :t", t=TENANT)
            return (int(found[0][0]), found[0][1]) if found else (0, None)

        process = await asyncio.create_subprocess_exec(
            *PROFICIO, "import-lrs", *importing, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

        async def a_page_done() -> bool:
            return (await progress())[0] >= 3

        await eventually(a_page_done, "the importer's first page")
        process.send_signal(signal.SIGKILL)
        await process.wait()
        pages, next_url = await progress()
        assert next_url is not None, "the import finished before it could be interrupted"
        assert pages < 14

        async def stored_ids() -> list[str]:
            return [
                r[0] for r in await rows(log, "SELECT statement_id FROM xapi_statements WHERE tenant = :t", t=TENANT)
            ]

        assert len(await stored_ids()) >= 9

        # The same command carries on from the saved link.
        code, out, err = await proficio(env, "import-lrs", *importing)
        assert code == 0, out + err
        assert "resuming at page" in err
        assert "caught up" in out
        assert set(await stored_ids()) == expected
        events = await rows(
            log,
            "SELECT count(*), count(DISTINCT key) FROM events WHERE tenant = :t AND key LIKE 'statement:%'",
            t=TENANT,
        )
        assert events[0][0] == events[0][1] == len(expected)  # each statement appended once, interruption or not
        voided = await rows(log, "SELECT voided FROM xapi_statements WHERE statement_id = :i", i=statement(5)["id"])
        assert bool(voided[0][0])  # fetched by voidedStatementId, stored before its voiding statement
        assert len(await rows(log, "SELECT sha2 FROM xapi_attachments WHERE tenant = :t", t=TENANT)) == 1
        body = await rows(log, "SELECT body FROM xapi_statements WHERE statement_id = :i", i=statement(1)["id"])
        assert json.loads(bytes(body[0][0]))["authority"]["account"]["name"] == source.key  # the source's

        # Again: nothing new on the source, nothing appended here.
        head = await log.max_position()
        code, out, _ = await proficio(env, "import-lrs", *importing)
        assert (code, "0 new" in out) == (0, True), out
        assert await log.max_position() == head

        # New statements on the source: the next run asks only for what was stored since.
        async with httpx.AsyncClient(base_url=source.base_url, headers=source.headers, timeout=30) as http:
            await post(http, [statement(n) for n in range(100, 104)])
        code, out, _ = await proficio(env, "import-lrs", *importing)
        assert "4 statement(s) received, 4 new" in out, out

        # A saved link the source no longer honours: asked again from the newest statement taken.
        async with log.transaction() as conn:
            await conn.execute(
                sa.text("UPDATE proficio_lrs_imports SET next_url = '/xapi/statements?more=stale' WHERE tenant = :t"),
                {"t": TENANT},
            )
        code, out, _ = await proficio(env, "import-lrs", *importing)
        assert code == 0, out
        assert "the saved link was refused (400" in out
        assert "0 new" in out
        assert (await proficio(env, "verify"))[0] == 0

    # The source signed checkpoints of its chain while it served (PROFICIO_CHECKPOINT_INTERVAL_S).
    async with await open_event_log(sqlite_url(source_dir)) as source_log:
        report = await source_log.verify(public_key=load_public_key(key.with_name("signing.pem.pub")))
        assert report.ok
        assert report.signatures_verified >= 1


async def test_import_failures_are_messages_with_an_exit_code(tmp_path: Path) -> None:
    env = destination(tmp_path, sqlite_url(tmp_path / "data"))
    with running_server(tmp_path / "source") as source:
        code, _, err = await proficio(env, "import-lrs", source.endpoint, "--key", source.key, "--secret", "wrong")
        assert (code, "refused the credentials (401)" in err) == (1, True), err
        args = ["--key", "k", "--secret", "s"]
        code, _, err = await proficio(env, "import-lrs", "http://127.0.0.1:1/xapi/", *args)
        assert (code, "did not answer" in err) == (1, True), err
        code, _, err = await proficio(env, "import-lrs", "ftp://example.org/xapi", *args)
        assert (code, "is not an http(s) address" in err) == (1, True), err
        code, _, err = await proficio(env, "import-lrs", source.endpoint, *args, "--since", "yesterday")
        assert (code, "--since" in err) == (2, True), err
