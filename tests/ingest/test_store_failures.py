"""When the store itself fails under a request, the client gets 503 with a reason, never a 500, and nothing
of the request is stored."""

from __future__ import annotations

import sqlalchemy as sa

from .conftest import Client, statement


async def test_a_broken_query_table_is_503_and_nothing_is_stored(client: Client) -> None:
    before = await client.log.max_position()
    async with client.log.engine.begin() as conn:
        # The statement projection's lookups now fail inside the append transaction (on PostgreSQL they run
        # on the driver connection, past SQLAlchemy).
        await conn.execute(sa.text("ALTER TABLE xapi_activities RENAME TO xapi_activities_gone"))

    response = await client.post([statement(1), statement(2)])

    assert response.status_code == 503, response.text
    assert response.json()["error"] == "StoreUnavailableError"
    assert await client.log.max_position() == before
    async with client.log.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE xapi_activities_gone RENAME TO xapi_activities"))
    assert (await client.post([statement(1)])).status_code == 200
