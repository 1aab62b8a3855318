"""xAPI 2.0.0 beside 1.0.3: chosen per request, statements stored once, tenants that accept one version."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson

from proficio_ingest import TenantStore

from .conftest import Client, statement

V2 = {"X-Experience-API-Version": "2.0.0"}


def with_context_agents(n: int) -> dict[str, Any]:
    return statement(
        n,
        context={
            "contextAgents": [
                {
                    "objectType": "contextAgent",
                    "agent": {"mbox": "mailto:coach@example.org"},
                    "relevantTypes": ["http://example.org/types/coach"],
                }
            ]
        },
        timestamp="2026-11-22T05:00:00.123-05:00",
    )


async def post(client: Client, body: Any, version: dict[str, str]) -> Any:
    return await client.http.post(
        "/xapi/statements",
        content=orjson.dumps(body),
        headers={**client.auth, **version, "Content-Type": "application/json"},
    )


async def test_each_request_speaks_its_own_version(client: Client) -> None:
    v2 = await client.http.get("/xapi/statements", headers={**client.auth, **V2})
    assert v2.headers["X-Experience-API-Version"] == "2.0.0"
    v1 = await client.http.get("/xapi/statements", headers=client.headers())
    assert v1.headers["X-Experience-API-Version"] == "1.0.3"
    older = await client.http.get("/xapi/statements", headers={**client.auth, "X-Experience-API-Version": "1.0.1"})
    assert older.headers["X-Experience-API-Version"] == "1.0.3"
    about = await client.http.get("/xapi/about")
    assert about.json()["version"] == ["1.0.3", "2.0.0"]


async def test_2_0_data_model_is_accepted_in_2_0_only(client: Client) -> None:
    refused = await post(client, [with_context_agents(1)], client.headers())
    assert refused.status_code == 400
    assert "contextAgents" in refused.json()["message"]
    accepted = await post(client, [with_context_agents(1)], V2)
    assert accepted.status_code == 200, accepted.text
    statement_id = accepted.json()[0]
    as_2 = await client.http.get(
        "/xapi/statements", params={"statementId": statement_id}, headers={**client.auth, **V2}
    )
    body = as_2.json()
    assert body["version"] == "2.0.0"
    assert body["context"]["contextAgents"][0]["agent"] == {"mbox": "mailto:coach@example.org"}
    assert body["timestamp"] == "2026-11-22T10:00:00.123Z"  # converted to UTC
    # The same statement, stored once, read by a 1.0.3 client: without what 1.0.3 does not know.
    as_1 = (await client.get(statementId=statement_id)).json()
    assert "contextAgents" not in as_1["context"]
    assert as_1["id"] == statement_id
    assert await client.log.max_position() == 1


async def test_1_0_3_timestamps_keep_their_offset(client: Client) -> None:
    statement_id = (
        await post(client, [statement(1, timestamp="2026-11-22T05:00:00.000-05:00")], client.headers())
    ).json()[0]
    assert (await client.get(statementId=statement_id)).json()["timestamp"] == "2026-11-22T05:00:00.000-05:00"


async def test_a_tenant_can_accept_one_version_only(client: Client) -> None:
    await TenantStore(client.log).configure("default", ["2.0.0"])
    refused = await client.http.get("/xapi/statements", headers=client.headers())
    assert refused.status_code == 400
    assert "2.0.0 only" in refused.json()["message"]
    assert refused.headers["X-Experience-API-Version"] == "2.0.0"
    missing = await client.http.get("/xapi/statements", headers=client.auth)
    assert missing.status_code == 400
    assert missing.headers["X-Experience-API-Version"] == "2.0.0"
    assert (await client.http.get("/xapi/statements", headers={**client.auth, **V2})).status_code == 200
    # The setting is an event in the tenant's log.
    (event,) = [e for e in await client.log.read_after(0) if e.event_type == "TenantConfigured"]
    assert event.data() == {"xapi_versions": ["2.0.0"]}


async def test_alternate_request_syntax_is_1_0_3_only(client: Client) -> None:
    form = {
        "statementId": str(uuid.uuid4()),
        "content": orjson.dumps(statement(1)).decode(),
        "X-Experience-API-Version": "2.0.0",
        "Authorization": client.auth["Authorization"],
    }
    response = await client.http.post(
        "/xapi/statements?method=PUT",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert "2.0" in response.json()["message"]
