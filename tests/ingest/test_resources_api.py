"""The Activities and Agents resources."""

from __future__ import annotations

import orjson

from proficio_ingest import rebuild_statement_tables

from .conftest import VERSION, Client, statement

ACTIVITY = "http://example.org/meetings/42"


def meeting(n: int, definition: dict[str, object]) -> dict[str, object]:
    return statement(n, object={"objectType": "Activity", "id": ACTIVITY, "definition": definition})


async def test_activity_definitions_merge_across_statements(client: Client) -> None:
    first = {"name": {"en-US": "example meeting"}, "type": "http://adlnet.gov/expapi/activities/meeting"}
    await client.post([meeting(1, first)])
    got = await client.get("/xapi/activities", activityId=ACTIVITY)
    assert got.status_code == 200
    assert got.json() == {"objectType": "Activity", "id": ACTIVITY, "definition": first}
    second = {"name": {"fr-FR": "réunion"}, "description": {"en-US": "weekly"}}
    await client.post([meeting(2, second)])
    merged = (await client.get("/xapi/activities", activityId=ACTIVITY)).json()["definition"]
    assert merged["name"] == {"en-US": "example meeting", "fr-FR": "réunion"}
    assert merged["description"] == {"en-US": "weekly"}
    assert merged["type"] == "http://adlnet.gov/expapi/activities/meeting"
    # Context activities and sub-statements define activities too.
    await client.post(
        [
            statement(
                3,
                context={
                    "contextActivities": {
                        "parent": {"id": "http://example.org/course", "definition": {"name": {"en-US": "Course"}}}
                    }
                },
            )
        ]
    )
    course = (await client.get("/xapi/activities", activityId="http://example.org/course")).json()
    assert course["definition"] == {"name": {"en-US": "Course"}}


async def test_unknown_activity_is_still_an_activity(client: Client) -> None:
    got = await client.get("/xapi/activities", activityId="http://example.org/never-seen")
    assert got.json() == {"objectType": "Activity", "id": "http://example.org/never-seen"}
    assert (await client.get("/xapi/activities")).status_code == 400
    assert (await client.get("/xapi/activities", activityId="x", foo="1")).status_code == 400


async def test_only_credentials_that_may_define_change_definitions(client: Client) -> None:
    await client.post([meeting(1, {"name": {"en-US": "official"}})])
    writer = await client.credential("statements/write")
    response = await client.http.post(
        "/xapi/statements",
        content=orjson.dumps(meeting(2, {"name": {"en-US": "graffiti"}})),
        headers={**VERSION, **writer, "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    got = (await client.get("/xapi/activities", activityId=ACTIVITY)).json()
    assert got["definition"]["name"] == {"en-US": "official"}


async def test_definitions_are_rebuilt_from_the_log(client: Client) -> None:
    await client.post([meeting(1, {"name": {"en-US": "a"}})])
    await client.post([meeting(2, {"name": {"de-DE": "b"}})])
    before = (await client.get("/xapi/activities", activityId=ACTIVITY)).json()
    await rebuild_statement_tables(client.log)
    assert (await client.get("/xapi/activities", activityId=ACTIVITY)).json() == before


async def test_person_object(client: Client) -> None:
    await client.post([statement(7), statement(7, actor={"mbox": "mailto:learner7@example.org", "name": "L. Seven"})])
    agent = orjson.dumps({"mbox": "mailto:learner7@example.org"}).decode()
    person = (await client.get("/xapi/agents", agent=agent)).json()
    assert person == {
        "objectType": "Person",
        "name": ["L. Seven", "Learner 7"],
        "mbox": ["mailto:learner7@example.org"],
    }
    account = {"objectType": "Agent", "account": {"homePage": "http://example.org", "name": "u1"}}
    unknown = (await client.get("/xapi/agents", agent=orjson.dumps(account).decode())).json()
    assert unknown == {"objectType": "Person", "account": [{"homePage": "http://example.org", "name": "u1"}]}
    assert (await client.get("/xapi/agents")).status_code == 400
    assert (await client.get("/xapi/agents", agent='{"name": "no identifier"}')).status_code == 400
    assert (await client.get("/xapi/agents", agent="not json")).status_code == 400
    head = await client.http.head("/xapi/agents", params={"agent": agent}, headers=client.headers())
    assert head.status_code == 200
    assert head.content == b""
