"""The statement index's primary key (migration ingest_0011): (pair_key, position), pair_key a digest of (tenant,
kind, value); rows written before it are kept, given the same digest as new ones, and still found, on both
backends."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from proficio_ingest._app import MIGRATIONS, VERSION_TABLE
from proficio_ingest._projection import pair_key

from .conftest import Client, statement

pytestmark = pytest.mark.filterwarnings("error")


async def _key(client: Client) -> list[str]:
    async with client.log.engine.connect() as conn:
        key = await conn.run_sync(lambda sync: sa.inspect(sync).get_pk_constraint("xapi_statement_index"))
    return list(key["constrained_columns"])


async def _pair_keys(client: Client) -> dict[tuple[str, int, str, int], str]:
    async with client.log.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT tenant, kind, value, position, pair_key FROM xapi_statement_index"))
        return {(r[0], r[1], r[2], r[3]): str(r[4]).replace("-", "") for r in rows}


def _migrate(sync: sa.Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = sync
    config.attributes["version_table"] = VERSION_TABLE
    if revision == "heads":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


async def _found(client: Client, agent: dict[str, Any], **more: str) -> list[str]:
    answer = await client.get(agent=orjson.dumps(agent).decode(), **more)
    assert answer.status_code == 200, answer.text
    return [s["id"] for s in answer.json()["statements"]]


async def test_the_key_is_the_pairs_digest_and_the_position(client: Client) -> None:
    assert await _key(client) == ["pair_key", "position"]
    posted = await client.post([statement(1)])
    assert posted.status_code == 200, posted.text
    keys = await _pair_keys(client)
    assert len(keys) == 4  # actor, authority, verb, object
    for (tenant, kind, value, _position), key in keys.items():
        assert key == pair_key(tenant, kind, value)
        assert len(key) == 32


def test_a_pair_key_is_sha256_of_tenant_kind_and_value() -> None:
    expected = hashlib.sha256("district-7\x1f3\x1fhttp://example.org/verbs/é".encode()).hexdigest()[:32]
    assert pair_key("district-7", 3, "http://example.org/verbs/é") == expected
    assert pair_key("district-8", 3, "http://example.org/verbs/é") != expected  # the tenant is part of it
    assert pair_key("district-7", 4, "http://example.org/verbs/é") != expected


async def test_rows_from_before_the_new_key_are_kept_and_found(client: Client) -> None:
    teacher = {"mbox": "mailto:teacher.key@example.org"}
    sent = [statement(n, context={"instructor": teacher}) for n in range(3)]
    posted = await client.post(sent)
    assert posted.status_code == 200, posted.text
    ids = posted.json()
    written = await _pair_keys(client)
    async with client.log.engine.begin() as conn:
        before = await conn.scalar(sa.text("SELECT count(*) FROM xapi_statement_index"))
        await conn.run_sync(_migrate, "ingest_0010")
    assert await _key(client) == ["kind", "value", "tenant", "position"]  # as it was
    async with client.log.engine.begin() as conn:
        await conn.run_sync(_migrate, "heads")
        rows = await conn.scalar(sa.text("SELECT count(*) FROM xapi_statement_index"))
    assert await _key(client) == ["pair_key", "position"]
    assert rows == before == 3 * 5  # each statement's: actor, instructor, authority, verb, object
    assert await _pair_keys(client) == written  # the migration's digests (SQL on PostgreSQL) are the writers'
    assert await _found(client, sent[1]["actor"]) == [ids[1]]
    assert await _found(client, teacher, related_agents="true") == ids[::-1]
    assert (await client.post([statement(9, context={"instructor": teacher})])).status_code == 200
    assert len(await _found(client, teacher, related_agents="true")) == 4
