"""The statement index's primary key (migration ingest_0010): (kind, value, tenant, position), values bytewise on
PostgreSQL; rows written before it are kept and still found, on both backends."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from proficio_ingest._app import MIGRATIONS, VERSION_TABLE

from .conftest import Client, statement

pytestmark = pytest.mark.filterwarnings("error")


async def _key_and_collation(client: Client) -> tuple[list[str], str | None]:
    async with client.log.engine.connect() as conn:
        key = await conn.run_sync(lambda sync: sa.inspect(sync).get_pk_constraint("xapi_statement_index"))
        collation = None
        if conn.dialect.name == "postgresql":
            collation = await conn.scalar(
                sa.text(
                    "SELECT collation_name FROM information_schema.columns"
                    " WHERE table_name = 'xapi_statement_index' AND column_name = 'value'"
                )
            )
    return list(key["constrained_columns"]), collation


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


async def test_the_key_leads_with_kind_and_value(client: Client) -> None:
    key, collation = await _key_and_collation(client)
    assert key == ["kind", "value", "tenant", "position"]
    assert collation == ("C" if client.log.engine.dialect.name == "postgresql" else None)


async def test_rows_from_before_the_new_key_are_kept_and_found(client: Client) -> None:
    teacher = {"mbox": "mailto:teacher.key@example.org"}
    sent = [statement(n, context={"instructor": teacher}) for n in range(3)]
    posted = await client.post(sent)
    assert posted.status_code == 200, posted.text
    ids = posted.json()
    async with client.log.engine.begin() as conn:
        before = await conn.scalar(sa.text("SELECT count(*) FROM xapi_statement_index"))
        await conn.run_sync(_migrate, "ingest_0009")
    assert (await _key_and_collation(client))[0] == ["tenant", "kind", "value", "position"]  # as it was
    async with client.log.engine.begin() as conn:
        await conn.run_sync(_migrate, "heads")
        rows = await conn.scalar(sa.text("SELECT count(*) FROM xapi_statement_index"))
    assert (await _key_and_collation(client))[0] == ["kind", "value", "tenant", "position"]
    assert rows == before == 3 * 5  # each statement's: actor, instructor, authority, verb, object
    assert await _found(client, sent[1]["actor"]) == [ids[1]]
    assert await _found(client, teacher, related_agents="true") == ids[::-1]
    assert (await client.post([statement(9, context={"instructor": teacher})])).status_code == 200
    assert len(await _found(client, teacher, related_agents="true")) == 4
