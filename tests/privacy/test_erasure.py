"""Crypto-shredding end to end, on SQLite and PostgreSQL, with the real broker.

A learner with distinctive identifiers (an mbox, a name, an account name, free text in ``result.response``,
an instructor named in her context, State and Agent Profile documents) sends through the xAPI app; the API
gives it all back while she is known; the relay publishes the log to Kafka; she is erased through the API.
Then: her statements come back with a pseudonymous actor, her old identifiers find nothing, her documents
are gone, the hash chain verifies, and none of her identifiers is in the raw bytes of the database files
(SQLite's db and -wal; PostgreSQL's data directory of the test database and pg_wal) or of the Kafka log
segments, while a string stored in clear on purpose (the activity id) is found in every one of them.

She also sends a signed statement (its JWS signature attachment holds the whole statement, her mbox and name
among it) with a text attachment naming her, whose bytes another learner sends too: before the erasure GET with
attachments=true gives both back byte for byte; after it, her statement comes back (200, multipart) without
those parts, the other learner still gets his copy, and neither the attachments' bytes nor their base64 (the
form an event payload would hold them in) is in any of the raw files.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa

from proficio_events import EventLog, NewEvent, tenant_secret
from proficio_events._schema import learner_directory, learner_keys
from proficio_ingest import (
    enroll_learner_ids,
    find_learner_id,
    learner_digest,
    legacy_learner_stream,
    rebuild_statement_tables,
)
from proficio_ingest._agents import stream_identity
from proficio_ingest._multipart import AttachmentPart, build_multipart_mixed, parse_multipart_mixed
from proficio_ingest._personal import ERASED_HOME_PAGE
from proficio_ingest._projection import apply as apply_statement_events
from proficio_projector import Relay, RunnerSettings, SqlProjector, migrate_runtime, relay_consumer
from proficio_projector.roster import Roster, import_roster, read_package, student_enrollment_key
from tests.ingest.conftest import Client
from tests.ingest.test_rebuild import dump
from tests.ingest.test_signature import SIGNATURE_USAGE, sign, stringify
from tests.projector.support import FAST, caught_up, running, view_rows
from tests.roster.support import EFFECTIVE, sample_copy
from tests.support.kafka import KafkaBroker
from tests.support.postgres import _psql

MBOX = "mailto:zelda.quarrington.7f3@erasure.example"
NAME = "Zelda Quarrington-Vex"
ACCOUNT = {"homePage": "https://lms.erasure.example", "name": "zq-account-91357"}
RESPONSE = "ZQ-FREETEXT-4471 my essay on fractions"
INSTRUCTOR = "Ignatius Vellum-Oakes"
STATE_TEXT = "ZQ-STATE-DOC-5521"
PROFILE_TEXT = "ZQ-PROFILE-DOC-8812"
OTHER = "mailto:otto.keeps.2b9@erasure.example"
#: Stored in clear on purpose (an activity id): the search must find it everywhere it looks.
CONTROL = "https://erasure.example/activity/control-9931"
SECRETS = [
    MBOX.removeprefix("mailto:"),
    hashlib.sha1(MBOX.encode()).hexdigest(),  # her mbox_sha1sum: the same identifier, hashed
    NAME,
    ACCOUNT["name"],
    "ZQ-FREETEXT-4471",
    INSTRUCTOR,
    STATE_TEXT,
    PROFILE_TEXT,
]
#: A text attachment naming her: hers, and (the same bytes) Otto's too.
ESSAY = f"Essay by {NAME} <{MBOX}>: ZQ-ESSAY-6620 on long division".encode()
ESSAY_SHA2 = hashlib.sha256(ESSAY).hexdigest()
HER = {"objectType": "Agent", "mbox": MBOX, "name": NAME}
HER_ACCOUNT = {"objectType": "Agent", "account": ACCOUNT, "name": NAME}
VERSION = {"X-Experience-API-Version": "1.0.3"}


def public_functions(tenant: str) -> list[str]:
    """Learner ids anyone could compute from her identifiers without a secret: the old scheme (an unkeyed SHA-256 of
    tenant and identity) and its obvious variants (other hashes, with or without the tenant, of each form of her
    identity and of the raw identifiers), as the 32 hex digits a learner id carries. None may be a learner id."""
    forms = [HER, HER_ACCOUNT, {"mbox_sha1sum": hashlib.sha1(MBOX.encode()).hexdigest()}]
    texts = [stream_identity(agent) for agent in forms] + [MBOX, MBOX.removeprefix("mailto:"), ACCOUNT["name"]]
    found = {legacy_learner_stream(tenant, agent).removeprefix("learner:") for agent in forms}
    for text in texts:
        for data in (text, f"{tenant}\x00{text}", f"{tenant}{text}"):
            for name in ("sha256", "sha1", "md5", "blake2b", "sha512"):
                found.add(hashlib.new(name, data.encode()).hexdigest()[:32])
    return sorted(found)


def statements() -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid4()),
            "actor": HER,
            "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
            "object": {"id": CONTROL, "definition": {"name": {"en-US": "Fractions quiz"}}},
            "result": {"response": RESPONSE, "score": {"scaled": 0.75}, "success": True},
            "context": {"instructor": {"name": INSTRUCTOR, "mbox": "mailto:ivo.2b9@erasure.example"}},
        },
        {
            "id": str(uuid.uuid4()),
            "actor": HER_ACCOUNT,
            "verb": {"id": "http://adlnet.gov/expapi/verbs/passed"},
            "object": {"id": CONTROL},
            "result": {"success": True},
        },
        {
            "id": str(uuid.uuid4()),
            "actor": {"mbox": OTHER, "name": "Otto Keeps"},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/passed"},
            "object": {"id": CONTROL},
        },
    ]


def _attachment(usage: str, content_type: str, data: bytes) -> dict[str, Any]:
    return {"usageType": usage, "display": {"en-US": usage.rsplit("/", 1)[-1]}, "contentType": content_type,
            "length": len(data), "sha2": hashlib.sha256(data).hexdigest()}  # fmt: skip


def signed_with_essay(actor: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """A statement of ``actor`` signed with a JWS (whose payload is the whole statement: her identifiers), with the
    essay attached too; and the JWS."""
    signed = {"id": str(uuid.uuid4()), "actor": actor, "verb": {"id": "http://adlnet.gov/expapi/verbs/attempted"},
              "object": {"id": CONTROL}}  # fmt: skip
    token = sign(stringify(signed), rsa.generate_private_key(public_exponent=65537, key_size=2048))
    attachments = [
        _attachment(SIGNATURE_USAGE, "application/octet-stream", token),
        _attachment("http://example.org/usage/essay", "text/plain", ESSAY),
    ]
    return {**signed, "attachments": attachments}, token


def with_essay(actor: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "actor": actor, "verb": {"id": "http://adlnet.gov/expapi/verbs/attempted"},
            "object": {"id": CONTROL}, "attachments": [_attachment("http://example.org/usage/essay", "text/plain",
                                                                      ESSAY)], **more}  # fmt: skip


async def post_with_parts(client: Client, statements: list[dict[str, Any]], *parts: tuple[str, bytes]) -> list[str]:
    """POST ``statements`` as multipart/mixed with ``parts`` ((content type, data)) as their attachments' data."""
    body, content_type = build_multipart_mixed(
        orjson.dumps(statements), [AttachmentPart(hashlib.sha256(data).hexdigest(), kind, data) for kind, data in parts]
    )
    posted = await client.http.post("/xapi/statements", content=body,
                                    headers=client.headers(**{"Content-Type": content_type}))  # fmt: skip
    assert posted.status_code == 200, posted.text
    ids: list[str] = posted.json()
    return ids


async def with_attachments(client: Client, **params: str) -> tuple[Any, dict[str, bytes]]:
    """GET statements with attachments=true: 200 and multipart/mixed; the JSON and the parts (sha2 -> data)."""
    got = await client.get(attachments="true", **params)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("multipart/mixed")
    received = parse_multipart_mixed(got.content, got.headers["content-type"])
    return orjson.loads(received.statement_json), {sha2: part.data for sha2, part in received.parts.items()}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)


async def relay_all(log: EventLog, kafka: KafkaBroker, topic: str) -> None:
    relay = Relay(log, kafka.bootstrap_servers, topic, partitions=1, batch_size=400,
                  settings=RunnerSettings(owner="privacy", **FAST))  # fmt: skip

    async def done() -> bool:
        return await log.get_checkpoint(relay_consumer(topic)) == await log.max_position()

    async with running(relay):
        await eventually(done, "the relay caught up")


def _found(files: list[Path], needles: list[str | bytes]) -> dict[str | bytes, list[str]]:
    """For each needle, the files whose raw bytes contain it."""
    hits: dict[str | bytes, list[str]] = {n: [] for n in needles}
    for path in files:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, PermissionError):
            continue  # a WAL segment recycled while we looked
        for needle in needles:
            if (needle.encode() if isinstance(needle, str) else needle) in data:
                hits[needle].append(str(path))
    return hits


def _files(*roots: Path, since: float | None = None) -> list[Path]:
    found = []
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file() and (since is None or path.stat().st_mtime >= since):
                found.append(path)
    return found


def database_files(store_url: str, started: float) -> dict[str, list[Path]]:
    """The database's files after a checkpoint: where each place keeps its bytes."""
    if store_url.startswith("sqlite"):
        path = Path(store_url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as conn:
            deadline = time.monotonic() + 30
            # Busy while a reader holds an old snapshot: the -wal would keep pages written before the erasure.
            while conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] != 0:
                assert time.monotonic() < deadline, "the -wal could not be checkpointed"
                time.sleep(0.05)
        return {"sqlite": _files(*[p for p in (path, path.with_name(path.name + "-wal")) if p.exists()])}
    database = store_url.rsplit("/", 1)[1].split("?", 1)[0]
    _psql("CHECKPOINT")
    data_directory = Path(_psql("SHOW data_directory"))
    oid = _psql(f"SELECT oid FROM pg_database WHERE datname = '{database}'")
    return {
        "postgresql data": _files(data_directory / "base" / oid),
        # Every database of the cluster writes to pg_wal; the segments written during this test are enough.
        "postgresql wal": _files(data_directory / "pg_wal", since=started - 5),
    }


@pytest.mark.postgres
async def test_an_erased_learner_is_unrecoverable_anywhere(
    client: Client, store_url: str, kafka: KafkaBroker, tmp_path: Path
) -> None:
    started = time.time()
    topic = f"privacy-{uuid.uuid4().hex[:8]}"
    log = client.log
    await migrate_runtime(log)
    sent = statements()
    assert (await client.post(sent)).status_code == 200
    state = {"activityId": CONTROL, "agent": orjson.dumps(HER).decode(), "stateId": "progress"}
    profile = {"agent": orjson.dumps(HER_ACCOUNT).decode(), "profileId": "prefs"}
    json_type = {"Content-Type": "application/json"}
    put = await client.http.put("/xapi/activities/state", params=state, content=orjson.dumps({"note": STATE_TEXT}),
                                headers=client.headers(**json_type))  # fmt: skip
    assert put.status_code == 204
    put = await client.http.put("/xapi/agents/profile", params=profile, content=PROFILE_TEXT.encode(),
                                headers=client.headers(**{"If-None-Match": "*"}))  # fmt: skip
    assert put.status_code == 204
    # A signed statement of hers with her essay attached, and Otto's statement with the same essay (his copy).
    her_signed, token = signed_with_essay(HER)
    token_sha2 = hashlib.sha256(token).hexdigest()
    await post_with_parts(client, [her_signed], ("application/octet-stream", token), ("text/plain", ESSAY))
    ottos = with_essay({"mbox": OTHER, "name": "Otto Keeps"})
    await post_with_parts(client, [ottos], ("text/plain", ESSAY))

    # Before: the API gives everything back, opened with her key.
    mine = {s["id"]: s for s in (await client.get(agent=orjson.dumps({"mbox": MBOX}).decode())).json()["statements"]}
    assert set(mine) == {sent[0]["id"], her_signed["id"]}
    assert (mine[sent[0]["id"]]["actor"], mine[sent[0]["id"]]["result"]["response"]) == (HER, RESPONSE)
    assert mine[sent[0]["id"]]["context"]["instructor"]["name"] == INSTRUCTOR
    shown, parts = await with_attachments(client, statementId=her_signed["id"])
    assert shown["actor"] == HER
    assert parts == {token_sha2: token, ESSAY_SHA2: ESSAY}  # byte for byte
    assert (await with_attachments(client, statementId=ottos["id"]))[1] == {ESSAY_SHA2: ESSAY}
    by_account = (await client.get(agent=orjson.dumps({"account": ACCOUNT}).decode())).json()["statements"]
    assert [s["actor"] for s in by_account] == [HER_ACCOUNT]
    person = (await client.get("/xapi/agents", agent=orjson.dumps({"mbox": MBOX}).decode())).json()
    assert person["name"] == [NAME]
    got = await client.http.get("/xapi/activities/state", params=state, headers=client.headers())
    assert got.json() == {"note": STATE_TEXT}
    got = await client.http.get("/xapi/agents/profile", params=profile, headers=client.headers())
    assert got.content == PROFILE_TEXT.encode()
    totals_before = (await client.get(activity=CONTROL)).json()["statements"]
    # Her learner ids are the learner directory's: random, no function of her identity.
    learner = await find_learner_id(log, "default", HER)
    account_learner = await find_learner_id(log, "default", HER_ACCOUNT)
    assert learner is not None
    assert account_learner is not None
    assert learner != account_learner
    computable = public_functions("default")
    assert not {learner.removeprefix("learner:"), account_learner.removeprefix("learner:")} & set(computable)
    async with log.engine.connect() as conn:
        secret = await tenant_secret(conn, "default", create=False)
        assert secret is not None
        digests = [learner_digest(secret, agent) for agent in (HER, HER_ACCOUNT)]
        mapped = dict((await conn.execute(sa.select(learner_directory.c.digest, learner_directory.c.learner))).all())
        # Her data keys: destroyed by the erasure, so gone from the database files too.
        her_keys = [
            bytes(k)
            for k in await conn.scalars(
                sa.select(learner_keys.c.data_key).where(learner_keys.c.learner.in_([learner, account_learner]))
            )
        ]
    assert len(her_keys) == 2
    assert (mapped[digests[0]], mapped[digests[1]]) == (learner, account_learner)
    await relay_all(log, kafka, topic)

    # Erase her, by each of her identities (each is a learner of its own to the LRS), through the API.
    for agent in ({"mbox": MBOX}, {"account": ACCOUNT}):
        answer = await client.http.post("/audit/learner/erase", json={"agent": agent}, headers=client.auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["erased"] is True
        assert answer.json()["keys_destroyed"] >= 1
    again = await client.http.post("/audit/learner/erase", json={"agent": {"mbox": MBOX}}, headers=client.auth)
    assert again.json()["erased"] is False  # erasing twice is harmless
    reader = await client.credential("statements/read")
    refused = await client.http.post("/audit/learner/erase", json={"agent": {"mbox": OTHER}}, headers=reader)
    assert refused.status_code == 403
    await relay_all(log, kafka, topic)

    # After: pseudonymous statements, nothing found by her identifiers, documents gone, the chain whole; her
    # identities map to no learner id (her directory rows went with the erasure; Otto's stays).
    assert await find_learner_id(log, "default", HER) is None
    assert await find_learner_id(log, "default", HER_ACCOUNT) is None
    async with log.engine.connect() as conn:
        left = (await conn.execute(sa.select(learner_directory.c.digest, learner_directory.c.learner))).all()
    assert len(left) == 1
    assert not {digest for digest, _ in left} & set(digests)
    assert not {mine for _, mine in left} & {learner, account_learner}
    assert (await client.get(agent=orjson.dumps({"mbox": MBOX}).decode())).json()["statements"] == []
    assert (await client.get(agent=orjson.dumps({"account": ACCOUNT}).decode())).json()["statements"] == []
    assert "name" not in (await client.get("/xapi/agents", agent=orjson.dumps({"mbox": MBOX}).decode())).json()
    everything = {s["id"]: s for s in (await client.get(activity=CONTROL)).json()["statements"]}
    assert set(everything) == {s["id"] for s in totals_before}  # every statement is still there
    first = everything[sent[0]["id"]]
    assert first["actor"] == {"objectType": "Agent", "account": {"homePage": ERASED_HOME_PAGE, "name": learner}}
    assert first["result"] == {"score": {"scaled": 0.75}, "success": True}  # the response is gone, the score stays
    assert "instructor" not in first.get("context", {})
    assert first["object"]["id"] == CONTROL
    assert everything[sent[2]["id"]]["actor"]["mbox"] == OTHER  # others are untouched
    one = await client.get(statementId=sent[0]["id"])
    assert one.json()["actor"]["account"]["homePage"] == ERASED_HOME_PAGE
    # Her attachments are gone with her key: her statement still declares them, the response leaves their parts
    # out. Otto's copy of the same essay is his, and still served (also on a page that holds her statement).
    shown, parts = await with_attachments(client, statementId=her_signed["id"])
    assert shown["actor"]["account"]["homePage"] == ERASED_HOME_PAGE
    assert [a["sha2"] for a in shown["attachments"]] == [token_sha2, ESSAY_SHA2]
    assert parts == {}
    assert (await with_attachments(client, statementId=ottos["id"]))[1] == {ESSAY_SHA2: ESSAY}
    page, parts = await with_attachments(client, activity=CONTROL)
    assert {her_signed["id"], ottos["id"]} <= {s["id"] for s in page["statements"]}
    assert parts == {ESSAY_SHA2: ESSAY}
    for path, params in (("/xapi/activities/state", state), ("/xapi/agents/profile", profile)):
        assert (await client.http.get(path, params=params, headers=client.headers())).status_code == 404
    ids = {"activityId": CONTROL, "agent": orjson.dumps(HER).decode()}
    assert (await client.http.get("/xapi/activities/state", params=ids, headers=client.headers())).json() == []
    assert (await log.verify()).ok
    async with log.engine.connect() as conn:
        rows = (await conn.execute(sa.select(learner_keys.c.data_key, learner_keys.c.erased_by))).all()
    assert len(rows) == 3  # her two identities and Otto
    assert sum(1 for key, _by in rows if key is None) == 2
    assert all(by is None or by.startswith("credential ") for _key, by in rows)
    history = [e.event_type for e in await log.read_stream("default", learner)]
    assert history == ["StatementStored", "StatementStored", "LearnerErased"]

    # The raw bytes: of the database and of the Kafka log segments.
    places = await asyncio.to_thread(database_files, store_url, started)  # the app's readers go on meanwhile
    places["kafka segments"] = _files(*kafka.log_dir.glob(f"{topic}-*"))
    for place, files in places.items():
        assert files, f"no files found for {place}"
        # Nothing computable from her identifiers is a learner id anywhere (events' streams, keys, directory, views:
        # these were never written); her directory digests are gone from the database (not from pg_wal, which keeps
        # the inserted rows until its segments are recycled: see docs/privacy.md).
        # Nor are her destroyed data keys (the scrub rewrote the key table once older transactions had ended).
        # pg_wal is the whole cluster's: another database there (a checkout with the old scheme running this very
        # test) may write the old ids of her identifiers, so only what this database alone could write is sought.
        # Her attachments: as sent, and in base64 (as an event payload in clear would hold them).
        needles: list[str | bytes] = [*SECRETS, ESSAY, base64.b64encode(ESSAY), token, base64.b64encode(token)]
        if place != "postgresql wal":
            needles += [*computable, *digests, *her_keys]
        hits = _found(files, [CONTROL, *needles])
        assert hits[CONTROL], f"the control string is not in the {place} files: the search cannot find things"
        assert {needle: where for needle, where in hits.items() if needle != CONTROL and where} == {}, place


@pytest.mark.postgres
async def test_attachments_are_sealed_per_learner_and_erased_with_her(client: Client) -> None:
    """Her attachments are hers: one sealed copy per learner (Otto's copy of the same bytes is his), none in clear in
    the attachments table; after her erasure the statement tables rebuild the same from the log, a re-sent statement
    of hers is a repeat (stores nothing, names no new learner), and a new statement of hers with the same essay is
    stored under her fresh learner id and served."""
    log = client.log
    her_signed, token = signed_with_essay(HER)
    registration = str(uuid.uuid4())
    her_second = with_essay(HER, context={"registration": registration})  # the same essay again: one copy of hers
    sent = [her_signed, her_second]
    sent_parts = (("application/octet-stream", token), ("text/plain", ESSAY))
    await post_with_parts(client, sent, *sent_parts)
    ottos = with_essay({"mbox": OTHER, "name": "Otto Keeps"})
    await post_with_parts(client, [ottos], ("text/plain", ESSAY))
    # On a page with her second statement: one of Otto's with another attachment (his copy of the essay is not for it).
    notes = b"Otto's notes"
    plain = {**with_essay({"mbox": OTHER}, context=her_second["context"]),
             "attachments": [_attachment("http://example.org/usage/notes", "text/plain", notes)]}  # fmt: skip
    await post_with_parts(client, [plain], ("text/plain", notes))
    notes_sha2 = hashlib.sha256(notes).hexdigest()
    learner, otto = await find_learner_id(log, "default", HER), await find_learner_id(log, "default", {"mbox": OTHER})
    assert learner is not None
    assert otto is not None

    async def copies() -> list[tuple[str, str, bytes, str | None]]:
        async with log.engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT learner, sha2, data, key_id FROM xapi_attachments"))
            return sorted((str(r[0]), str(r[1]), bytes(r[2]), r[3]) for r in rows)

    stored = await copies()
    assert sorted((who, sha2) for who, sha2, _, _ in stored) == sorted(
        [(learner, ESSAY_SHA2), (learner, hashlib.sha256(token).hexdigest()), (otto, ESSAY_SHA2), (otto, notes_sha2)]
    )
    assert all(key_id is not None and ESSAY not in data and token not in data for _, _, data, key_id in stored)
    events = await log.read_stream("default", "attachments")
    assert len(events) == 4
    assert all(e.sealed is not None and b"data" not in e.payload for e in events)
    for statement in sent:
        assert (await with_attachments(client, statementId=statement["id"]))[1]
    assert (await with_attachments(client, registration=registration))[1] == {ESSAY_SHA2: ESSAY, notes_sha2: notes}

    answer = await client.http.post("/audit/learner/erase", json={"agent": HER}, headers=client.auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["learners"] == [learner]
    for statement in sent:
        assert (await with_attachments(client, statementId=statement["id"]))[1] == {}
    page, parts = await with_attachments(client, registration=registration)
    assert {s["id"] for s in page["statements"]} == {her_second["id"], plain["id"]}
    assert parts == {notes_sha2: notes}  # each statement's attachments from its own learner's copy: none of Otto's
    assert (await with_attachments(client, statementId=ottos["id"]))[1] == {ESSAY_SHA2: ESSAY}

    # The statement tables (the attachments' among them) rebuild from the log as they were, and serve the same. (Not
    # the index: the live erasure drops every agent row of her statements, the authority's too, which a rebuild
    # puts back; so before attachments were sealed, see "Honest limits" in docs/privacy.md.)
    before = await dump(client)
    await rebuild_statement_tables(log)
    after = await dump(client)
    assert {k: v for k, v in after.items() if k != "xapi_statement_index"} == {
        k: v for k, v in before.items() if k != "xapi_statement_index"
    }
    assert (await with_attachments(client, statementId=her_signed["id"]))[1] == {}
    assert (await with_attachments(client, statementId=ottos["id"]))[1] == {ESSAY_SHA2: ESSAY}

    # Re-sent after her erasure: a repeat, storing nothing and naming no learner.
    await post_with_parts(client, sent, *sent_parts)
    assert len(await log.read_stream("default", "attachments")) == 4
    assert await find_learner_id(log, "default", HER) is None
    # A new statement of hers with the same essay: her fresh learner id's copy, under her fresh key, served.
    later = with_essay(HER)
    await post_with_parts(client, [later], ("text/plain", ESSAY))
    fresh = await find_learner_id(log, "default", HER)
    assert fresh not in (None, learner)
    assert (await with_attachments(client, statementId=later["id"]))[1] == {ESSAY_SHA2: ESSAY}
    assert (await with_attachments(client, statementId=her_signed["id"]))[1] == {}
    assert len(await copies()) == 5


@pytest.mark.postgres
async def test_attachments_stored_in_clear_before_sealing_are_still_served(client: Client) -> None:
    """An AttachmentStored from before attachments were sealed (its data in the payload, keyed by the sha2 alone) is
    no one's: every statement that declares its sha2 gets it, and a rebuild gives its row back the same."""
    data = b"an attachment stored before ingest_0008"
    sha2 = hashlib.sha256(data).hexdigest()
    payload = {"sha2": sha2, "contentType": "text/plain", "data": base64.b64encode(data).decode()}
    legacy = NewEvent.of(
        "attachments", "AttachmentStored", payload, key=f"attachment:{sha2}", fingerprint=sha2.encode()
    )
    await client.log.append("default", [legacy], inline=apply_statement_events)
    declared = {**_attachment("http://example.org/usage/essay", "text/plain", data), "fileUrl": "http://x.example/a"}
    ids = []
    for actor in (HER, {"mbox": OTHER}):
        statement = {**with_essay(actor), "attachments": [declared]}
        assert (await client.post([statement])).status_code == 200
        ids.append(statement["id"])
    for statement_id in ids:
        assert (await with_attachments(client, statementId=statement_id))[1] == {sha2: data}
    before = await dump(client)
    await rebuild_statement_tables(client.log)
    assert (await dump(client))["xapi_attachments"] == before["xapi_attachments"]
    assert (await with_attachments(client, statementId=ids[0]))[1] == {sha2: data}


#: A rostered student's SIS keys: her sourcedId and her two enrollments' (the SIS maps them to her name).
STUDENT_SIS = "zq-sis-student-48213"
ENROLLMENTS_SIS = ["zq-sis-enrol-math-66107", "zq-sis-enrol-sci-66108"]
#: Kept in clear on purpose (a teacher's sourcedId, his enrollment's, a class's): the search must find them.
STAFF_AND_CLASS = ["usr-t-101", "enr-t101-math7a", "class-math-7a"]


@pytest.mark.postgres
async def test_an_erased_students_roster_keys_are_nowhere(
    client: Client, store_url: str, kafka: KafkaBroker, tmp_path: Path
) -> None:
    """A OneRoster import names an erased student only by her learner id: her sourcedId and her enrollments'
    sourcedIds (which the district's SIS maps to her name) are in no raw file of the database (events and the roster
    view) nor of the Kafka log segments, before or after her erasure; the teacher's and the class's are."""
    started = time.time()
    topic = f"privacy-roster-{uuid.uuid4().hex[:8]}"
    log = client.log
    await migrate_runtime(log)
    package = sample_copy(tmp_path)
    renames = {"usr-s-201": STUDENT_SIS, "enr-s201-math7a": ENROLLMENTS_SIS[0], "enr-s201-sci7b": ENROLLMENTS_SIS[1]}
    for file in ("users.csv", "enrollments.csv", "demographics.csv"):
        text = (package / file).read_text()
        for old, new in renames.items():
            assert old in text or file != "enrollments.csv", (old, file)
            text = text.replace(old, new)
        (package / file).write_text(text)
    roster = read_package(package)
    assert STUDENT_SIS in roster.users
    assert set(ENROLLMENTS_SIS) <= set(roster.enrollments)
    email = roster.users[STUDENT_SIS].email
    assert email is not None
    projection = Roster()
    async with running(SqlProjector(log, projection, RunnerSettings(owner="privacy", **FAST))):
        result = await import_roster(log, "default", roster, learner_ids=enroll_learner_ids, effective=EFFECTIVE)
        assert result.changed
        # Re-importing the same package appends nothing (the enrollments' keyed digests compare equal).
        assert not (await import_roster(log, "default", roster, learner_ids=enroll_learner_ids,
                                        effective=EFFECTIVE)).changed  # fmt: skip
        await caught_up(log, "roster")
        learner = await find_learner_id(log, "default", {"mbox": f"mailto:{email}"})
        assert learner is not None
        assert learner in {row["learner"] for row in await view_rows(log, projection, "learners")}
        async with log.engine.connect() as conn:
            secret = await tenant_secret(conn, "default", create=False)
        assert secret is not None
        enrollments = {row["enrollment"]: row for row in await view_rows(log, projection, "enrollments")}
        for key in ENROLLMENTS_SIS:
            assert enrollments[student_enrollment_key(secret, key)]["learner"] == learner
        assert enrollments["enr-t101-math7a"]["user_sourced_id"] == "usr-t-101"
        await relay_all(log, kafka, topic)

        answer = await client.http.post("/audit/learner/erase", json={"agent": {"mbox": f"mailto:{email}"}},
                                        headers=client.auth)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["learners"] == [learner]
        assert await find_learner_id(log, "default", {"mbox": f"mailto:{email}"}) is None
        await relay_all(log, kafka, topic)
        await caught_up(log, "roster")

    places = await asyncio.to_thread(database_files, store_url, started)
    places["kafka segments"] = _files(*kafka.log_dir.glob(f"{topic}-*"))
    leaks: dict[str, list[str | bytes]] = {}
    for place, files in places.items():
        assert files, f"no files found for {place}"
        hits = _found(files, [*STAFF_AND_CLASS, STUDENT_SIS, *ENROLLMENTS_SIS])
        assert all(hits[control] for control in STAFF_AND_CLASS), f"{place}: the search cannot find things: {hits}"
        leaks[place] = [needle for needle, where in hits.items() if needle not in STAFF_AND_CLASS and where]
    assert leaks == {place: [] for place in places}


async def test_erasure_finds_her_statements_through_the_logs_stream_index(client: Client) -> None:
    """The statement table has no index by learner (migration ingest_0009): erasure finds her statements through
    the log's stream index. It counts them all, and takes out of the index the other agents her statements name
    (her instructor stops finding them; another learner's statement with the same instructor stays found)."""
    her = {"mbox": "mailto:ines.count@erasure.example"}
    other = {"mbox": "mailto:olaf.count@erasure.example"}
    teacher = {"mbox": "mailto:teacher.count@erasure.example", "name": "Teacher"}
    verb = {"id": "http://adlnet.gov/expapi/verbs/attempted"}

    def sent_by(actor: dict[str, str]) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "actor": actor, "verb": verb, "object": {"id": CONTROL},
                "context": {"instructor": teacher}}  # fmt: skip

    hers = [sent_by(her) for _ in range(3)]
    his = sent_by(other)
    assert (await client.post([*hers, his])).status_code == 200
    by_teacher = {"agent": orjson.dumps(teacher).decode(), "related_agents": "true"}
    assert len((await client.get(**by_teacher)).json()["statements"]) == 4

    answer = await client.http.post("/audit/learner/erase", json={"agent": her}, headers=client.auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["statements"] == 3
    assert [s["id"] for s in (await client.get(**by_teacher)).json()["statements"]] == [his["id"]]
    async with client.log.engine.connect() as conn:
        indexes = await conn.run_sync(lambda sync: sa.inspect(sync).get_indexes("xapi_statements"))
    assert "ix_xapi_statements_learner" not in {index["name"] for index in indexes}
