"""The learner directory, on SQLite and PostgreSQL: learner ids are random and only the directory (keyed digest of an
identity -> id) ties an identity to one; concurrent batches introducing the same new identity get one id (the group
commit, two processes, and a row written outside the log's lock meanwhile); reads create no row; an erasure deletes
her rows, so lookups by agent (the xAPI API, the views API, the command line) find nothing afterwards, and a later
statement of hers gets a fresh id while a re-sent one (a repeat) creates none."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import uuid
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from proficio_events import EventLog, enroll_learners, open_event_log, tenant_secret
from proficio_events._schema import events, learner_directory
from proficio_ingest import (
    CredentialStore,
    IngestSettings,
    backfill_directory,
    find_learner_id,
    learner_digest,
    legacy_learner_stream,
)
from proficio_ingest._statements import StatementService, prepare
from tests.audit.test_cli import environment, run
from tests.ingest.conftest import Client
from tests.support.polling import json_when

DORA = {"objectType": "Agent", "mbox": "mailto:dora.directory.4e1@example.org", "name": "Dora"}
LEARNER_ID = re.compile(r"^learner:[0-9a-f]{32}$")


def statement(actor: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "actor": actor,
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": f"https://directory.example/activity/{n}"},
    }


def someone(tag: str) -> dict[str, Any]:
    return {"objectType": "Agent", "mbox": f"mailto:{tag}.{uuid.uuid4().hex[:8]}@directory.example"}


async def directory(log: EventLog) -> list[tuple[str, str]]:
    async with log.engine.connect() as conn:
        rows = await conn.execute(sa.select(learner_directory.c.digest, learner_directory.c.learner))
        return sorted((str(d), str(learner)) for d, learner in rows)


async def streams_of(log: EventLog, statement_ids: list[str]) -> set[str]:
    async with log.engine.connect() as conn:
        rows = await conn.scalars(
            sa.select(events.c.stream).where(events.c.key.in_([f"statement:{s}" for s in statement_ids]))
        )
        return {str(r) for r in rows}


async def test_learner_ids_are_random_and_only_the_directory_maps_an_agent_to_hers(client: Client) -> None:
    sent = [statement(DORA, 1), statement({**DORA, "name": "Dora D."}, 2)]  # the name is not the identity
    assert (await client.post(sent)).status_code == 200
    learner = await find_learner_id(client.log, "default", DORA)
    assert learner is not None
    assert LEARNER_ID.match(learner)
    assert learner != legacy_learner_stream("default", DORA)
    assert await streams_of(client.log, [s["id"] for s in sent]) == {learner}
    async with client.log.engine.connect() as conn:
        secret = await tenant_secret(conn, "default", create=False)
    assert secret is not None
    assert await directory(client.log) == [(learner_digest(secret, DORA), learner)]
    # Her documents name the same learner.
    state = {"activityId": "https://directory.example/activity/1", "agent": orjson.dumps(DORA).decode(),
             "stateId": "s"}  # fmt: skip
    put = await client.http.put("/xapi/activities/state", params=state, json={"a": 1}, headers=client.headers())
    assert put.status_code == 204
    [document] = [e for e in await client.log.read_after(0) if e.event_type == "DocumentPut"]
    assert document.data()["learner"] == learner

    # Reads by an agent never seen create nothing: no learner, no statements, no document.
    stranger = someone("stranger")
    assert await find_learner_id(client.log, "default", stranger) is None
    assert (await client.get(agent=orjson.dumps(stranger).decode())).json()["statements"] == []
    unknown_state = {**state, "agent": orjson.dumps(stranger).decode()}
    got = await client.http.get("/xapi/activities/state", params=unknown_state, headers=client.headers())
    assert got.status_code == 404
    assert len(await directory(client.log)) == 1


async def test_concurrent_batches_introducing_one_new_identity_get_one_learner_id(
    client: Client, store_url: str
) -> None:
    created = await CredentialStore(client.log).create("default", "directory", ["all"])
    credential = created.credential
    other = await open_event_log(store_url)  # a second process on the same database
    try:
        # Within one process (the batches share a group commit) and across two (the log's write lock).
        for round_ in range(4):
            new = someone(f"new{round_}")
            batches = [[statement(new, k), statement(new, k + 10)] for k in range(4)]
            services = [StatementService(client.log), StatementService(other)]
            await asyncio.gather(
                *(
                    services[k % 2].store("default", credential, [prepare(s, credential) for s in batch], {})
                    for k, batch in enumerate(batches)
                )
            )
            learner = await find_learner_id(client.log, "default", new)
            assert learner is not None
            assert await streams_of(client.log, [s["id"] for batch in batches for s in batch]) == {learner}

        # A row written outside the log's lock (a roster import enrolling her) while an append for the same new
        # identity waits: on PostgreSQL the append's insert meets the uncommitted row (ON CONFLICT DO NOTHING waits
        # for it, then the re-read finds it); on SQLite the append waits for the write lock. Either way, one id.
        late = someone("late")
        async with other.transaction() as conn:
            secret = await tenant_secret(conn, "default", create=True)
            assert secret is not None
            digest = learner_digest(secret, late)
            enrolled, fresh = await enroll_learners(conn, "default", [digest])
            assert set(fresh) == {enrolled[digest]}
            sent = statement(late)
            storing = asyncio.create_task(
                StatementService(client.log).store("default", credential, [prepare(sent, credential)], {})
            )
            await asyncio.sleep(1.0)
            assert not storing.done()  # waiting on the uncommitted row (or the write lock)
        await storing
        assert await find_learner_id(client.log, "default", late) == enrolled[digest]
        assert await streams_of(client.log, [sent["id"]]) == {enrolled[digest]}
        rows = await directory(client.log)
        assert len(rows) == 5
        assert len({learner for _, learner in rows}) == 5
    finally:
        await other.close()


async def test_after_an_erasure_her_agent_is_no_learner_and_her_next_statement_gets_a_fresh_id(client: Client) -> None:
    first = statement(DORA, 1)
    assert (await client.post([first])).status_code == 200
    before = await find_learner_id(client.log, "default", DORA)
    assert before is not None
    erased = await client.http.post("/audit/learner/erase", json={"agent": DORA}, headers=client.auth)
    assert erased.json()["erased"] is True
    assert erased.json()["directory_rows"] == 1
    assert await find_learner_id(client.log, "default", DORA) is None
    assert await directory(client.log) == []

    # The LMS keeps sending: a new statement of hers is a new learner, unlinked to the erased one.
    later = statement(DORA, 2)
    assert (await client.post([later])).status_code == 200
    after = await find_learner_id(client.log, "default", DORA)
    assert after is not None
    assert after != before
    assert [e.event_type for e in await client.log.read_stream("default", before)] == [
        "StatementStored",
        "LearnerErased",
    ]
    assert [e.event_type for e in await client.log.read_stream("default", after)] == ["StatementStored"]
    mine = (await client.get(agent=orjson.dumps(DORA).decode())).json()["statements"]
    assert [s["id"] for s in mine] == [later["id"]]

    # Erased again; then a re-sent statement (a repeat: stored already) stores nothing and creates no row.
    again = await client.http.post("/audit/learner/erase", json={"agent": DORA}, headers=client.auth)
    assert again.json()["learners"] == [after]
    assert (await client.post([first])).status_code == 200
    assert await find_learner_id(client.log, "default", DORA) is None
    assert await directory(client.log) == []


async def test_agent_lookups_of_the_views_api_and_the_command_line_find_nothing_after_an_erasure(
    store_url: str,
) -> None:
    from proficio_cli._stream import create_full_app

    app = create_full_app(IngestSettings(database_url=store_url))
    env = environment(store_url)
    agent = orjson.dumps(DORA).decode()
    async with app.router.lifespan_context(app):
        log: EventLog = app.state.log
        made = await CredentialStore(log).create("default", "auditor", ["all"])
        token = base64.b64encode(f"{made.credential.key}:{made.secret}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "X-Experience-API-Version": "1.0.3"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lrs.test", headers=headers) as http:
            assert (await http.post("/xapi/statements", json=statement(DORA))).status_code == 200
            learner = await find_learner_id(log, "default", DORA)
            access = await http.get("/audit/learner/access", params={"agent": agent})
            assert access.status_code == 200, access.text
            assert access.json()["learner"] == learner
            history = await json_when(
                lambda: http.get("/audit/learner/history", params={"agent": agent}),
                lambda body: len(body["events"]) == 1,
                "her history",
            )
            assert history["learner"] == learner
            exported = await asyncio.to_thread(run, env, "export", "--tenant", "default", "--learner", agent)
            assert exported.returncode == 0, exported.stderr
            assert learner is not None
            assert learner in exported.stdout

            erased = await http.post("/audit/learner/erase", json={"agent": DORA})
            assert erased.json()["erased"] is True
            for path in ("/audit/learner/access", "/audit/learner/history", "/competency/progress"):
                gone = await http.get(path, params={"agent": agent})
                assert gone.status_code == 404, (path, gone.text)
                assert "no learner is known by this agent" in gone.text
            # By her (pseudonymous) learner id, her history is still there: the erasure is recorded in it.
            kept = await http.get("/audit/learner/history", params={"learner": learner})
            assert kept.status_code == 200
            for args in (["export", "--tenant", "default", "--learner", agent], ["audit", "learner", agent]):
                refused = await asyncio.to_thread(run, env, *args)
                assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
                assert "no learner" in refused.stderr, refused.stderr
            again = await asyncio.to_thread(run, env, "erase", "learner", agent, "--json")
            assert orjson.loads(again.stdout)["erased"] is False


def old_row(secret: bytes, agent: dict[str, Any]) -> dict[str, Any]:
    """A directory row giving ``agent`` the old, hash-derived learner id."""
    digest = learner_digest(secret, agent)
    return {"tenant": "default", "digest": digest, "learner": legacy_learner_stream("default", agent), "created_us": 0}


async def test_the_backfill_maps_learners_stored_before_the_directory_to_their_old_ids(client: Client) -> None:
    ada, bea, cy = someone("ada"), someone("bea"), someone("cy")
    log = client.log
    # A database from before the directory: statements on the old, hash-derived streams; the table empty. (The
    # rows are written here only so that ingest uses the old ids, then deleted, as migration 0005 would find it.)
    async with log.transaction() as conn:
        secret = await tenant_secret(conn, "default", create=True)
        assert secret is not None
        await conn.execute(learner_directory.insert(), [old_row(secret, agent) for agent in (ada, bea, cy)])
    assert (await client.post([statement(ada, 1), statement(bea, 2), statement(cy, 3)])).status_code == 200
    sha1 = {"mbox_sha1sum": hashlib.sha1(ada["mbox"].encode()).hexdigest()}
    async with log.transaction() as conn:
        await conn.execute(learner_directory.insert(), [old_row(secret, sha1)])
    profile = {"agent": orjson.dumps(sha1).decode(), "profileId": "p"}
    put = await client.http.put("/xapi/agents/profile", params=profile, content=b"x",
                                headers=client.headers(**{"If-None-Match": "*"}))  # fmt: skip
    assert put.status_code == 204
    async with log.transaction() as conn:
        await conn.execute(learner_directory.delete())
    erased = await client.http.post(
        "/audit/learner/erase", json={"learner": legacy_learner_stream("default", bea)}, headers=client.auth
    )
    assert erased.json()["erased"] is True

    # Ada's mbox and its sha1sum (her documents' id), Cy's mbox (not his sha1sum: no data has its id); Bea's key is
    # gone, so her identity cannot be read, nor mapped back.
    assert await backfill_directory(log, "default") == 3
    cy_sha1 = {"mbox_sha1sum": hashlib.sha1(cy["mbox"].encode()).hexdigest()}
    assert await find_learner_id(log, "default", cy_sha1) is None
    assert await find_learner_id(log, "default", ada) == legacy_learner_stream("default", ada)
    assert await find_learner_id(log, "default", sha1) == legacy_learner_stream("default", sha1)
    assert await find_learner_id(log, "default", bea) is None
    assert await backfill_directory(log, "default") == 0  # once is enough: the rows are kept
    later = statement(ada, 3)
    assert (await client.post([later])).status_code == 200
    assert await streams_of(log, [later["id"]]) == {legacy_learner_stream("default", ada)}
