"""Every query table of the ingest service is a projection of the log: dropped and rebuilt, it is the same."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import sqlalchemy as sa

from proficio_ingest import TenantStore, rebuild_query_tables

from .conftest import Client, statement

TABLES = (
    "xapi_statements",
    "xapi_statement_index",
    "xapi_attachments",
    "xapi_activities",
    "xapi_documents",
    "proficio_tenants",
)


async def dump(client: Client) -> dict[str, list[tuple[Any, ...]]]:
    async with client.log.engine.connect() as conn:
        return {
            name: sorted(tuple(row) for row in (await conn.execute(sa.text(f"SELECT * FROM {name}"))).all())
            for name in TABLES
        }


async def test_all_query_tables_rebuild_identically(client: Client) -> None:
    target = (
        await client.post([statement(1, object={"id": "http://example.org/a", "definition": {"name": {"en": "A"}}})])
    ).json()[0]
    await client.post([statement(2, verb={"id": "http://adlnet.gov/expapi/verbs/voided"},
                                 object={"objectType": "StatementRef", "id": target})])  # fmt: skip
    params = {
        "activityId": "http://example.org/a",
        "agent": orjson.dumps({"mbox": "mailto:learner1@example.org"}).decode(),
        "stateId": "bookmark",
    }
    put = await client.http.put(
        "/xapi/activities/state", params=params, content=b'{"page": 3}',
        headers=client.headers(**{"Content-Type": "application/json"}),
    )  # fmt: skip
    assert put.status_code == 204, put.text
    post = await client.http.post(
        "/xapi/activities/state", params=params, content=b'{"score": 9}',
        headers=client.headers(**{"Content-Type": "application/json"}),
    )  # fmt: skip
    assert post.status_code == 204, post.text
    await TenantStore(client.log).configure(f"district-{uuid.uuid4().hex[:6]}", ["2.0.0"])
    before = await dump(client)
    assert all(before[name] for name in TABLES if name != "xapi_attachments"), {n: len(r) for n, r in before.items()}
    counts = await rebuild_query_tables(client.log)
    assert counts == {"statements": 2, "documents": 2, "tenants": 1}
    assert await dump(client) == before
