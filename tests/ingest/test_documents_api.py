"""The xAPI Document resources (State, Activity Profile, Agent Profile) over the event log."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from proficio_events import EventLog, StoredEvent, open_sealed, read_keys
from proficio_events._schema import learner_directory, learner_keys
from proficio_ingest import IngestSettings, create_app, rebuild_documents
from proficio_ingest import _documents as documents_module
from proficio_ingest._documents import DOCUMENT_EVENTS, Document, document_after, document_as_of
from proficio_ingest._schema import documents

from .conftest import VERSION, Client

V2 = {"X-Experience-API-Version": "2.0.0"}
ACTIVITY = "http://example.org/course/fractions"
AGENT = {"objectType": "Agent", "name": "Ada", "mbox": "mailto:ada@example.org"}
STATE = "/xapi/activities/state"
ACTIVITY_PROFILE = "/xapi/activities/profile"
AGENT_PROFILE = "/xapi/agents/profile"


def state(state_id: str = "bookmark", agent: Any = AGENT, **extra: str) -> dict[str, str]:
    return {"activityId": ACTIVITY, "agent": orjson.dumps(agent).decode(), "stateId": state_id, **extra}


def activity_profile(profile_id: str = "settings", **extra: str) -> dict[str, str]:
    return {"activityId": ACTIVITY, "profileId": profile_id, **extra}


def agent_profile(profile_id: str = "preferences", agent: Any = AGENT, **extra: str) -> dict[str, str]:
    return {"agent": orjson.dumps(agent).decode(), "profileId": profile_id, **extra}


def sha1_tag(content: bytes) -> str:
    return '"' + hashlib.sha1(content).hexdigest() + '"'


def iso(recorded_us: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=recorded_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def send(
    client: Client,
    method: str,
    path: str,
    params: dict[str, str],
    content: bytes | Any = None,
    *,
    content_type: str | None = None,
    version: dict[str, str] = VERSION,
    auth: dict[str, str] | None = None,
    **headers: str,
) -> httpx.Response:
    """One request; a non-bytes ``content`` is sent as JSON."""
    if content is not None and not isinstance(content, bytes):
        content, content_type = orjson.dumps(content), content_type or "application/json"
    sent = {
        **version,
        **(client.auth if auth is None else auth),
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    if content_type is not None:
        sent["Content-Type"] = content_type
    return await client.http.request(method, path, params=params, content=content, headers=sent)


async def document_events(log: EventLog) -> list[StoredEvent]:
    return [e for e in await log.read_after(0, 100_000) if e.event_type in DOCUMENT_EVENTS]


async def table_rows(log: EventLog) -> list[tuple[Any, ...]]:
    async with log.engine.connect() as conn:
        rows = await conn.execute(sa.select(documents).order_by(documents.c.tenant, documents.c.stream))
        return [tuple(row) for row in rows]


# -- PUT, GET, HEAD --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [(STATE, state()), (ACTIVITY_PROFILE, activity_profile()), (AGENT_PROFILE, agent_profile())],
    ids=["state", "activity-profile", "agent-profile"],
)
async def test_put_then_get_returns_the_bytes_etag_type_and_last_modified(
    client: Client, path: str, params: dict[str, str]
) -> None:
    binary = bytes(range(256)) * 40
    put = await send(client, "PUT", path, params, binary, content_type="image/png", If_None_Match="*")
    assert put.status_code == 204, put.text
    got = await send(client, "GET", path, params)
    assert got.status_code == 200
    assert got.content == binary
    assert got.headers["content-type"] == "image/png"
    assert got.headers["etag"] == sha1_tag(binary)  # 40 hex digits in quotes, as the 1.0.3 suite requires
    assert len(got.headers["etag"]) == 42
    modified = datetime.strptime(got.headers["last-modified"], "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - modified).total_seconds()) < 60
    head = await send(client, "HEAD", path, params)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-type"] == "image/png"


async def test_get_of_a_missing_document_is_404(client: Client) -> None:
    assert (await send(client, "GET", STATE, state("never"))).status_code == 404
    assert (await send(client, "HEAD", AGENT_PROFILE, agent_profile("never"))).status_code == 404


async def test_a_document_without_content_type_is_octet_stream_and_text_keeps_its_charset(client: Client) -> None:
    response = await client.http.put(STATE, params=state(), content=b"raw", headers=client.headers())
    assert response.status_code == 204
    assert (await send(client, "GET", STATE, state())).headers["content-type"] == "application/octet-stream"
    await send(client, "PUT", STATE, state("text"), "héllo".encode(), content_type="text/plain; charset=utf-8")
    got = await send(client, "GET", STATE, state("text"))
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.text == "héllo"


async def test_put_of_invalid_json_labelled_json_is_400(client: Client) -> None:
    bad = await send(client, "PUT", STATE, state(), b'{"a": ', content_type="application/json")
    assert bad.status_code == 400
    assert (await send(client, "GET", STATE, state())).status_code == 404
    # Any JSON value may be PUT; only POST needs an object.
    assert (await send(client, "PUT", STATE, state(), [1, 2, 3])).status_code == 204


# -- POST (merge) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [(STATE, state()), (ACTIVITY_PROFILE, activity_profile()), (AGENT_PROFILE, agent_profile())],
    ids=["state", "activity-profile", "agent-profile"],
)
async def test_post_creates_then_merges_one_level_deep(client: Client, path: str, params: dict[str, str]) -> None:
    first = {"x": "foo", "y": "bar", "deep": {"a": 1, "b": 2}}
    assert (await send(client, "POST", path, params, first)).status_code == 204
    assert (await send(client, "GET", path, params)).json() == first
    assert (await send(client, "POST", path, params, {"x": "bash", "z": "faz", "deep": {"c": 3}})).status_code == 204
    got = await send(client, "GET", path, params)
    assert got.json() == {"x": "bash", "y": "bar", "deep": {"c": 3}, "z": "faz"}
    assert got.headers["content-type"] == "application/json"
    assert got.headers["etag"] == sha1_tag(got.content)


async def test_post_needs_json_objects_on_both_sides(client: Client) -> None:
    await send(client, "POST", STATE, state(), {"kept": True})
    refused = [
        await send(client, "POST", STATE, state(), b"abc", content_type="text/plain"),
        await send(client, "POST", STATE, state(), b'{"a":1}', content_type="not/json"),
        await send(client, "POST", STATE, state(), b'{"a":1}{', content_type="application/json"),
        await send(client, "POST", STATE, state(), [1, 2]),
        await send(client, "POST", STATE, state(), "a string"),
    ]
    assert [r.status_code for r in refused] == [400] * 5
    assert (await send(client, "GET", STATE, state())).json() == {"kept": True}
    # A stored document that is not JSON cannot be merged into, and stays as it was.
    await send(client, "PUT", STATE, state("binary"), b"\x00\x01", content_type="application/octet-stream")
    assert (await send(client, "POST", STATE, state("binary"), {"a": 1})).status_code == 400
    assert (await send(client, "GET", STATE, state("binary"))).content == b"\x00\x01"
    await send(client, "PUT", STATE, state("array"), [1])
    assert (await send(client, "POST", STATE, state("array"), {"a": 1})).status_code == 400
    # POST needs a JSON object even when there is nothing stored yet.
    assert (await send(client, "POST", STATE, state("new"), b"abc", content_type="text/plain")).status_code == 400
    assert (await send(client, "GET", STATE, state("new"))).status_code == 404


# -- ids, since, registration, DELETE ------------------------------------------------------------------


async def test_ids_lists_since_and_registrations(client: Client) -> None:
    registration = str(uuid.uuid4())
    await send(client, "PUT", STATE, state("a"), {"n": 1})
    await send(client, "PUT", STATE, state("b", registration=registration), {"n": 2})
    await send(client, "PUT", STATE, state("c", registration=registration), {"n": 3})
    context = {"activityId": ACTIVITY, "agent": orjson.dumps(AGENT).decode()}
    everything = await send(client, "GET", STATE, context)
    assert everything.status_code == 200
    assert everything.json() == ["a", "b", "c"]
    assert "last-modified" in everything.headers
    assert (await send(client, "GET", STATE, {**context, "registration": registration.upper()})).json() == ["b", "c"]
    # The registration is part of the document's identity.
    assert (await send(client, "GET", STATE, state("b"))).status_code == 404
    assert (await send(client, "GET", STATE, state("b", registration=registration))).json() == {"n": 2}

    events = await document_events(client.log)
    since = iso(events[0].recorded_us)
    assert (await send(client, "GET", STATE, {**context, "since": since})).json() == ["b", "c"]
    assert (await send(client, "GET", STATE, {**context, "since": iso(events[-1].recorded_us)})).json() == []
    old = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert (await send(client, "GET", STATE, {**context, "since": old})).json() == ["a", "b", "c"]
    head = await send(client, "HEAD", STATE, context)
    assert (head.status_code, head.content) == (200, b"")

    await send(client, "PUT", ACTIVITY_PROFILE, activity_profile("p2"), {}, If_None_Match="*")
    await send(client, "PUT", ACTIVITY_PROFILE, activity_profile("p1"), {}, If_None_Match="*")
    assert (await send(client, "GET", ACTIVITY_PROFILE, {"activityId": ACTIVITY})).json() == ["p1", "p2"]
    await send(client, "POST", AGENT_PROFILE, agent_profile("q"), {})
    assert (await send(client, "GET", AGENT_PROFILE, {"agent": orjson.dumps(AGENT).decode()})).json() == ["q"]
    empty = await send(client, "GET", AGENT_PROFILE, {"agent": '{"mbox":"mailto:nobody@example.org"}'})
    assert empty.json() == []


async def test_delete_one_and_delete_all_state(client: Client) -> None:
    registration = str(uuid.uuid4())
    other = "http://example.org/course/other"
    for state_id in ("a", "b"):
        await send(client, "PUT", STATE, state(state_id), {})
        await send(client, "PUT", STATE, state(state_id, registration=registration), {})
    await send(client, "PUT", STATE, {**state("a"), "activityId": other}, {})
    context = {"activityId": ACTIVITY, "agent": orjson.dumps(AGENT).decode()}

    assert (await send(client, "DELETE", STATE, state("a"))).status_code == 204
    assert (await send(client, "GET", STATE, state("a"))).status_code == 404
    assert (await send(client, "GET", STATE, state("a", registration=registration))).status_code == 200
    before = len(await document_events(client.log))
    assert (await send(client, "DELETE", STATE, state("a"))).status_code == 204  # already gone: nothing appended
    assert len(await document_events(client.log)) == before

    # DELETE without stateId: every state of the activity and agent of that registration ...
    assert (await send(client, "DELETE", STATE, {**context, "registration": registration})).status_code == 204
    assert (await send(client, "GET", STATE, {**context, "registration": registration})).json() == []
    assert (await send(client, "GET", STATE, context)).json() == ["b"]
    # ... or of every registration; other activities keep theirs.
    assert (await send(client, "DELETE", STATE, context)).status_code == 204
    assert (await send(client, "GET", STATE, context)).json() == []
    assert (await send(client, "GET", STATE, {**state("a"), "activityId": other})).status_code == 200
    # A deleted document can be created again.
    assert (await send(client, "PUT", STATE, state("a"), {"again": True})).status_code == 204
    assert (await send(client, "GET", STATE, state("a"))).json() == {"again": True}

    for path, params in ((ACTIVITY_PROFILE, activity_profile()), (AGENT_PROFILE, agent_profile())):
        await send(client, "POST", path, params, {"v": 1})
        assert (await send(client, "DELETE", path, params)).status_code == 204
        assert (await send(client, "GET", path, params)).status_code == 404


# -- concurrency headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params_of"), [(STATE, state), (AGENT_PROFILE, agent_profile)], ids=["state", "agent-profile"]
)
async def test_a_write_refused_by_its_precondition_leaves_nothing_behind(
    client: Client, path: str, params_of: Callable[..., dict[str, str]]
) -> None:
    """An agent's document write that fails its precondition (412) is refused whole: no event, and no learner id or
    data key for an agent Proficio has not seen before. The same write that holds makes both."""
    newcomer = {"mbox": f"mailto:{uuid.uuid4().hex}@example.org", "objectType": "Agent"}
    params = params_of(agent=newcomer)
    log = client.log

    async def counts() -> tuple[int, int, int]:
        async with log.engine.connect() as conn:
            found = [await conn.scalar(sa.select(sa.func.count()).select_from(t))
                     for t in (learner_directory, learner_keys)]  # fmt: skip
        return found[0], found[1], await log.max_position()

    before = await counts()
    wrong = '"' + "1" * 40 + '"'
    for refused in (
        await send(client, "PUT", path, params, {"v": 1}, If_Match=wrong),
        await send(client, "POST", path, params, {"v": 1}, If_Match=wrong),
        await send(client, "DELETE", path, params, If_Match=wrong),
    ):
        assert refused.status_code == 412, refused.text
    assert await counts() == before
    assert (await send(client, "PUT", path, params, {"v": 1}, If_None_Match="*")).status_code == 204
    directory, keys, position = await counts()
    assert (directory, position) == (before[0] + 1, before[2] + 1)
    assert keys == before[1] + 1  # her data key, which seals the document


@pytest.mark.parametrize(
    ("path", "params"),
    [(STATE, state()), (ACTIVITY_PROFILE, activity_profile()), (AGENT_PROFILE, agent_profile())],
    ids=["state", "activity-profile", "agent-profile"],
)
async def test_if_match_and_if_none_match(client: Client, path: str, params: dict[str, str]) -> None:
    created = await send(client, "PUT", path, params, {"v": 1}, If_None_Match="*")
    assert created.status_code == 204
    etag = (await send(client, "GET", path, params)).headers["etag"]
    wrong = '"' + "1" * 40 + '"'

    assert (await send(client, "PUT", path, params, {"v": 9}, If_None_Match="*")).status_code == 412
    assert (await send(client, "PUT", path, params, {"v": 9}, If_Match=wrong)).status_code == 412
    assert (await send(client, "PUT", path, params, {"v": 9}, If_Match='"1234"')).status_code == 412
    assert (await send(client, "POST", path, params, {"v": 9}, If_Match=wrong)).status_code == 412
    assert (await send(client, "POST", path, params, {"v": 9}, If_None_Match="*")).status_code == 412
    assert (await send(client, "DELETE", path, params, If_Match=wrong)).status_code == 412
    assert (await send(client, "PUT", path, params, {"v": 9}, If_Match=f"W/{etag}")).status_code == 412  # weak
    assert (await send(client, "PUT", path, params, {"v": 9}, If_None_Match=etag)).status_code == 412
    got = await send(client, "GET", path, params)
    assert (got.json(), got.headers["etag"]) == ({"v": 1}, etag)

    # A PUT without either header on an existing document: the profiles say 409, with advice.
    bare = await send(client, "PUT", path, params, {"v": 9})
    if path == STATE:
        assert bare.status_code == 204  # xAPI 1.0.3 lets State PUTs go without concurrency headers
        await send(client, "PUT", path, params, {"v": 1})
    else:
        assert bare.status_code == 409
        assert "If-Match" in bare.json()["message"]
    assert (await send(client, "GET", path, params)).json() == {"v": 1}

    assert (await send(client, "PUT", path, params, {"v": 2}, If_Match=f'"1234", {etag}')).status_code == 204
    etag = (await send(client, "GET", path, params)).headers["etag"]
    assert etag == sha1_tag(orjson.dumps({"v": 2}))
    assert (await send(client, "POST", path, params, {"w": 3}, If_Match=etag.strip('"'))).status_code == 204
    assert (await send(client, "GET", path, params)).json() == {"v": 2, "w": 3}
    assert (await send(client, "PUT", path, params, {"v": 4}, If_Match="*")).status_code == 204
    etag = (await send(client, "GET", path, params)).headers["etag"]
    not_modified = await send(client, "GET", path, params, If_None_Match=etag)
    assert (not_modified.status_code, not_modified.headers["etag"]) == (304, etag)
    assert (await send(client, "GET", path, params, If_Match=wrong)).status_code == 412
    assert (await send(client, "DELETE", path, params, If_Match=etag)).status_code == 204
    # If-Match on a document that does not exist fails; If-None-Match: * on it holds.
    assert (await send(client, "PUT", path, params, {"v": 5}, If_Match="*")).status_code == 412
    assert (await send(client, "DELETE", path, params, If_Match=etag)).status_code == 412
    assert (await send(client, "POST", path, params, {"v": 5}, If_None_Match="*")).status_code == 204


async def test_profile_put_needs_a_concurrency_header_in_1_0_3_but_not_in_2_0(client: Client) -> None:
    for path, params in ((ACTIVITY_PROFILE, activity_profile()), (AGENT_PROFILE, agent_profile())):
        refused = await send(client, "PUT", path, params, {"v": 1})
        assert refused.status_code == 400
        assert "If-None-Match" in refused.json()["message"]
        assert (await send(client, "PUT", path, params, {"v": 1}, version=V2)).status_code == 204
        assert (await send(client, "PUT", path, params, {"v": 2}, version=V2)).status_code == 409
        # POST and DELETE may go without (SHOULD, not MUST).
        assert (await send(client, "POST", path, params, {"w": 1})).status_code == 204
        assert (await send(client, "DELETE", path, params)).status_code == 204


async def test_xapi_2_0_state_put_without_headers_on_an_existing_document_is_409(client: Client) -> None:
    assert (await send(client, "PUT", STATE, state(), {"v": 1}, version=V2)).status_code == 204
    conflict = await send(client, "PUT", STATE, state(), {"v": 2}, version=V2)
    assert conflict.status_code == 409
    assert conflict.json()["message"]
    assert conflict.headers["x-experience-api-version"] == "2.0.0"
    assert (await send(client, "GET", STATE, state(), version=V2)).json() == {"v": 1}
    assert (await send(client, "POST", STATE, state(), {"w": 2}, version=V2)).status_code == 204
    assert (await send(client, "GET", STATE, state(), version=V2)).json() == {"v": 1, "w": 2}


# -- parameters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", STATE, {"agent": orjson.dumps(AGENT).decode(), "stateId": "a"}),  # no activityId
        ("PUT", STATE, {"activityId": ACTIVITY, "stateId": "a"}),  # no agent
        ("PUT", STATE, {"activityId": ACTIVITY, "agent": orjson.dumps(AGENT).decode()}),  # no stateId
        ("POST", STATE, {"activityId": ACTIVITY, "agent": orjson.dumps(AGENT).decode()}),
        ("GET", STATE, state(agent="not JSON")),
        ("GET", STATE, {**state(), "agent": "true"}),
        ("GET", STATE, state(agent={"mbox": "ada@example.org"})),  # not a mailto IRI
        ("GET", STATE, state(agent={"mbox": "mailto:a@example.org", "openid": "http://a.example.org"})),
        ("GET", STATE, state(agent={"objectType": "Group", "member": [{"mbox": "mailto:a@example.org"}]})),
        ("GET", STATE, state(agent={"name": "no identifier"})),
        ("GET", STATE, state(registration="not-a-uuid")),
        ("GET", STATE, {**state(), "stateId": ""}),
        ("GET", STATE, {**state(), "StateId": "a"}),  # names are case-sensitive
        ("GET", STATE, {**state(), "profileId": "a"}),  # not a State parameter
        ("GET", STATE, {"activityId": ACTIVITY, "agent": orjson.dumps(AGENT).decode(), "since": "yesterday"}),
        ("GET", STATE, {**state(), "since": "2026-01-01T00:00:00Z"}),  # since goes with the id list only
        (
            "DELETE",
            STATE,
            {"activityId": ACTIVITY, "agent": orjson.dumps(AGENT).decode(), "since": "2026-01-01T00:00:00Z"},
        ),
        (
            "GET",
            STATE,
            {"activityId": ACTIVITY, "agent": orjson.dumps(AGENT).decode(), "as_of": "2026-01-01T00:00:00Z"},
        ),
        ("GET", STATE, {**state(), "as_of": "not a time"}),
        ("PUT", STATE, {**state(), "as_of": "2026-01-01T00:00:00Z"}),
        ("GET", STATE, {**state(), "activityId": "not an IRI"}),
        ("GET", ACTIVITY_PROFILE, {"profileId": "a"}),
        ("GET", ACTIVITY_PROFILE, {**activity_profile(), "agent": orjson.dumps(AGENT).decode()}),
        ("GET", ACTIVITY_PROFILE, {**activity_profile(), "registration": str(uuid.uuid4())}),
        ("DELETE", ACTIVITY_PROFILE, {"activityId": ACTIVITY}),  # profiles are deleted one at a time
        ("GET", AGENT_PROFILE, {"profileId": "a"}),
        ("GET", AGENT_PROFILE, {**agent_profile(), "activityId": ACTIVITY}),
        ("DELETE", AGENT_PROFILE, {"agent": orjson.dumps(AGENT).decode()}),
        ("GET", AGENT_PROFILE, {"agent": orjson.dumps(AGENT).decode(), "since": "true"}),
    ],
)
async def test_missing_unknown_and_malformed_parameters_are_400(
    client: Client, method: str, path: str, params: dict[str, str]
) -> None:
    body = {"a": 1} if method in ("PUT", "POST") else None
    response = await send(client, method, path, params, body, If_None_Match="*")
    assert response.status_code == 400, response.text
    assert response.json()["message"]


async def test_a_parameter_given_twice_is_400(client: Client) -> None:
    query = urlencode([*state().items(), ("stateId", "b")])
    response = await client.http.get(f"{STATE}?{query}", headers=client.headers())
    assert response.status_code == 400


async def test_too_large_a_document_is_413(client: Client) -> None:
    big = b"x" * (2 * 1024 * 1024 + 1)
    response = await send(client, "PUT", STATE, state(), big, content_type="application/octet-stream")
    assert response.status_code == 413
    assert (await send(client, "GET", STATE, state())).status_code == 404


async def test_an_agent_is_found_by_its_identifier_alone(client: Client) -> None:
    await send(client, "PUT", AGENT_PROFILE, agent_profile(), {"lang": "fr"}, If_None_Match="*")
    sha1sum = hashlib.sha1(b"mailto:ada@example.org").hexdigest()
    same = [
        {"mbox": "mailto:ada@example.org"},  # no name, no objectType
        {"objectType": "Agent", "name": "Ada L.", "mbox": "mailto:ada@example.org"},
        {"mbox_sha1sum": sha1sum},  # the mailbox's hash is the same agent
        {"mbox_sha1sum": sha1sum.upper()},
        {"objectType": "Group", "mbox": "mailto:ada@example.org"},  # an identified Group, by its IFI
    ]
    for agent in same:
        got = await send(client, "GET", AGENT_PROFILE, agent_profile(agent=agent))
        assert (got.status_code, got.json()) == (200, {"lang": "fr"}), agent
    others = [{"mbox": "mailto:ADA@example.org"}, {"openid": "http://ada.example.org"}]
    for agent in others:
        assert (await send(client, "GET", AGENT_PROFILE, agent_profile(agent=agent))).status_code == 404
    account = {"account": {"homePage": "http://lms.example.org", "name": "ada"}}
    await send(client, "POST", STATE, state(agent=account), {"page": 3})
    renamed = {"name": "Ada", "account": {"name": "ada", "homePage": "http://lms.example.org"}}
    assert (await send(client, "GET", STATE, state(agent=renamed))).json() == {"page": 3}
    # The log and the table keep the mailbox's hash, never the address.
    for event in await document_events(client.log):
        assert b"ada@example.org" not in event.payload
    assert all(b"ada@example.org" not in repr(row).encode() for row in await table_rows(client.log))


# -- scopes and tenants --------------------------------------------------------------------------------


async def test_scopes(client: Client) -> None:
    state_only = await client.credential("state")
    profile_only = await client.credential("profile")
    reader = await client.credential("all/read")
    statements = await client.credential("statements/write", "statements/read")

    assert (await send(client, "PUT", STATE, state(), {"a": 1}, auth=state_only)).status_code == 204
    assert (await send(client, "GET", STATE, state(), auth=state_only)).status_code == 200
    assert (await send(client, "POST", ACTIVITY_PROFILE, activity_profile(), {}, auth=state_only)).status_code == 403
    assert (await send(client, "GET", AGENT_PROFILE, agent_profile(), auth=state_only)).status_code == 403

    assert (await send(client, "POST", ACTIVITY_PROFILE, activity_profile(), {}, auth=profile_only)).status_code == 204
    assert (await send(client, "POST", AGENT_PROFILE, agent_profile(), {}, auth=profile_only)).status_code == 204
    assert (await send(client, "GET", STATE, state(), auth=profile_only)).status_code == 403
    assert (await send(client, "DELETE", STATE, state(), auth=profile_only)).status_code == 403

    for path, params in ((STATE, state()), (ACTIVITY_PROFILE, activity_profile()), (AGENT_PROFILE, agent_profile())):
        assert (await send(client, "GET", path, params, auth=reader)).status_code == 200
        assert (await send(client, "POST", path, params, {"b": 2}, auth=reader)).status_code == 403
        assert (await send(client, "DELETE", path, params, auth=reader)).status_code == 403
        assert (await send(client, "GET", path, params, auth=statements)).status_code == 403
    assert (await send(client, "GET", STATE, state(), auth={})).status_code == 401
    assert (await send(client, "GET", STATE, state(), version={})).status_code == 400


async def test_tenants_are_isolated(client: Client) -> None:
    elsewhere = await client.credential("all", tenant="district-9")
    await send(client, "PUT", STATE, state(), {"mine": True})
    assert (await send(client, "GET", STATE, state(), auth=elsewhere)).status_code == 404
    await send(client, "PUT", STATE, state(), {"theirs": True}, auth=elsewhere)
    assert (await send(client, "GET", STATE, state())).json() == {"mine": True}
    assert (await send(client, "GET", STATE, state(), auth=elsewhere)).json() == {"theirs": True}


async def test_alternate_request_syntax(client: Client) -> None:
    form = urlencode(
        {**state(), **client.auth, **VERSION, "Content-Type": "application/json", "content": '{"via": "form"}'}
    )
    response = await client.http.post(
        f"{STATE}?method=PUT", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 204, response.text
    assert (await send(client, "GET", STATE, state())).json() == {"via": "form"}


# -- the log: one event per write, rebuild, as_of --------------------------------------------------------


async def test_every_write_is_one_event_and_the_table_rebuilds_identically(client: Client) -> None:
    registration = str(uuid.uuid4())
    binary = bytes(range(256))
    steps: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
        (
            "DocumentPut",
            lambda: send(client, "PUT", STATE, state("a"), binary, content_type="application/octet-stream"),
        ),
        ("DocumentMerged", lambda: send(client, "POST", STATE, state("b", registration=registration), {"x": 1})),
        ("DocumentMerged", lambda: send(client, "POST", STATE, state("b", registration=registration), {"y": 2})),
        ("DocumentPut", lambda: send(client, "PUT", ACTIVITY_PROFILE, activity_profile(), {"p": 1}, If_None_Match="*")),
        ("DocumentMerged", lambda: send(client, "POST", AGENT_PROFILE, agent_profile(), {"q": 1})),
        ("DocumentDeleted", lambda: send(client, "DELETE", STATE, state("a"))),
        ("DocumentPut", lambda: send(client, "PUT", STATE, state("a"), {"back": True})),
        ("DocumentDeleted", lambda: send(client, "DELETE", AGENT_PROFILE, agent_profile())),
    ]
    for _expected, request in steps:
        assert (await request()).status_code == 204
    await send(client, "PUT", ACTIVITY_PROFILE, activity_profile(), {"p": 9}, If_Match='"0000"')  # 412: no event
    await send(client, "DELETE", STATE, state("missing"))  # nothing to delete: no event
    events = await document_events(client.log)
    assert [e.event_type for e in events] == [expected for expected, _ in steps]

    first = events[0]
    assert first.stream.startswith("document:")
    assert len(first.stream) == len("document:") + 64
    # A state document is the learner's: its bytes ride sealed under her key in the envelope's sealed body.
    keys = await read_keys(client.log.engine, "default", [e.key_id for e in events])
    assert first.key_id is not None
    assert first.sealed is not None
    assert binary not in first.sealed
    assert open_sealed(keys, "default", first.stream, first.key_id, first.sealed) == binary
    assert first.data()["sha1"] == hashlib.sha1(binary).hexdigest()
    assert first.data()["contentType"] == "application/octet-stream"
    assert first.data()["learner"].startswith("learner:")
    assert re.fullmatch("[0-9a-f]{64}", first.data()["agent"])  # a keyed digest, not the agent's identifier
    assert events[2].data()["properties"] == ["y"]
    merged = open_sealed(keys, "default", events[2].stream, events[2].key_id, events[2].sealed or b"")
    assert orjson.loads(merged or b"") == {"x": 1, "y": 2}
    assert events[3].key_id is None  # an activity profile is nobody's: raw
    assert orjson.loads(events[3].sealed or b"") == {"p": 1}
    assert events[5].sealed is None
    assert [e.stream_version for e in events if e.stream == first.stream] == [1, 2, 3]
    assert (await client.log.verify()).ok

    # DELETE of all state of a context: one append, one event per document.
    context = {"activityId": ACTIVITY, "agent": orjson.dumps(AGENT).decode()}
    assert (await send(client, "DELETE", STATE, context)).status_code == 204
    deleted = (await document_events(client.log))[len(events) :]
    assert [e.event_type for e in deleted] == ["DocumentDeleted", "DocumentDeleted"]
    assert len({e.position for e in deleted}) == 2
    assert deleted[0].recorded_us == deleted[1].recorded_us

    before = await table_rows(client.log)
    assert len(before) == 4  # two state streams, two profile streams (tombstones included)
    assert await rebuild_documents(client.log) == len(events) + 2
    assert await table_rows(client.log) == before
    async with client.log.transaction() as conn:
        await conn.execute(documents.delete())
    await rebuild_documents(client.log, batch_size=3)
    assert await table_rows(client.log) == before
    got = await send(client, "GET", ACTIVITY_PROFILE, activity_profile())
    assert (got.status_code, got.json()) == (200, {"p": 1})


async def test_as_of_replays_the_document_from_the_log(client: Client) -> None:
    for step in ({"page": 1}, {"page": 2}):
        assert (await send(client, "PUT", STATE, state(), step)).status_code == 204
        await asyncio.sleep(0.002)
    await send(client, "DELETE", STATE, state())
    await asyncio.sleep(0.002)
    await send(client, "PUT", STATE, state(), b"<xml/>", content_type="application/xml")
    put1, put2, deleted, put3 = await document_events(client.log)

    async def as_of(recorded_us: int) -> httpx.Response:
        return await send(client, "GET", STATE, {**state(), "as_of": iso(recorded_us)})

    assert (await as_of(put1.recorded_us - 1)).status_code == 404  # before it existed
    then = await as_of(put1.recorded_us)
    assert (then.status_code, then.json()) == (200, {"page": 1})
    assert then.headers["etag"] == sha1_tag(orjson.dumps({"page": 1}))
    assert (await as_of(put2.recorded_us - 1)).json() == {"page": 1}
    assert (await as_of(put2.recorded_us)).json() == {"page": 2}
    assert (await as_of(deleted.recorded_us)).status_code == 404
    latest = await as_of(put3.recorded_us + 10**9)
    assert (latest.content, latest.headers["content-type"]) == (b"<xml/>", "application/xml")
    head = await send(client, "HEAD", STATE, {**state(), "as_of": iso(put2.recorded_us)})
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", sha1_tag(orjson.dumps({"page": 2})))
    offset = await send(client, "GET", STATE, {**state(), "as_of": "2000-01-01T00:00:00+02:00"})
    assert offset.status_code == 404
    # The replay reads the stream a page at a time and stops at the first later event.
    keys = await read_keys(client.log.engine, "default", [e.key_id for e in (put1, put2, deleted, put3)])
    for expected in (put1, put2, deleted, put3):
        replayed = await document_as_of(client.log, "default", put1.stream, expected.recorded_us, page=1)
        assert replayed == document_after(expected, keys)
    assert await document_as_of(client.log, "default", put1.stream, put1.recorded_us - 1, page=1) is None


# -- racing writers -------------------------------------------------------------------------------------


async def opened(client: Client, events: list[StoredEvent]) -> list[bytes | None]:
    """The documents' bytes as written (state documents are sealed under the learner's key)."""
    keys = await read_keys(client.log.engine, "default", [e.key_id for e in events])
    return [None if e.sealed is None else open_sealed(keys, "default", e.stream, e.key_id, e.sealed) for e in events]


class ReadGate:
    """Holds the next ``parties`` document reads until all of them have read, so their writes race."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._read = documents_module.current_document
        self._barrier: asyncio.Barrier | None = None
        monkeypatch.setattr(documents_module, "current_document", self.read)

    def arm(self, parties: int) -> None:
        self._barrier = asyncio.Barrier(parties)

    async def read(self, log: EventLog, tenant: str, stream: str, *, content: bool = True) -> Document | None:
        found = await self._read(log, tenant, stream, content=content)
        barrier = self._barrier
        if barrier is not None and barrier.n_waiting + 1 >= barrier.parties:
            self._barrier = None  # the last party through: re-reads after a lost race are not held
        if barrier is not None:
            await barrier.wait()
        return found


async def race_rounds(client: Client, other: httpx.AsyncClient, rounds: int) -> tuple[list[bytes], list[StoredEvent]]:
    """Each round both clients PUT a different document with the same If-Match: one must win, one get 412.

    A PUT decides under the log's write lock (``append_decided``), from the document as the log holds it
    then: the second to get the lock finds the first one's document, whose ETag is not the one it sent.
    """
    params = state("race")
    assert (await send(client, "PUT", STATE, params, b"start", content_type="text/plain")).status_code == 204
    winners = [b"start"]
    for n in range(rounds):
        etag = (await send(client, "GET", STATE, params)).headers["etag"]
        mine, theirs = f"mine {n}".encode(), f"theirs {n}".encode()
        headers = {**client.headers(), "If-Match": etag, "Content-Type": "text/plain"}
        a, b = await asyncio.gather(
            client.http.put(STATE, params=params, content=mine, headers=headers),
            other.put(STATE, params=params, content=theirs, headers=headers),
        )
        assert sorted([a.status_code, b.status_code]) == [204, 412], (a.text, b.text)
        winner = mine if a.status_code == 204 else theirs
        loser = b if a.status_code == 204 else a
        assert "If-Match does not match the document's current ETag" in loser.json()["message"]
        assert (await send(client, "GET", STATE, params)).content == winner
        winners.append(winner)
    written = await document_events(client.log)
    return winners, [e for e in written if e.stream == written[0].stream]


async def test_racing_if_match_writers_one_wins_each_round(client: Client) -> None:
    winners, events = await race_rounds(client, client.http, rounds=25)
    assert await opened(client, events) == winners  # exactly the winning writes, in order
    assert [e.stream_version for e in events] == list(range(1, 27))


async def test_racing_writers_on_separate_log_instances(client: Client, store_url: str) -> None:
    """Two apps, two logs (two connection pools) on one database: the log's lock decides, not the process."""
    second: FastAPI = create_app(IngestSettings(database_url=store_url))
    async with second.router.lifespan_context(second):
        assert second.state.log is not client.log
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://lrs.test") as other:
            winners, events = await race_rounds(client, other, rounds=15)
    assert await opened(client, events) == winners
    assert (await client.log.verify()).ok


async def test_racing_unconditional_merges_are_both_applied(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = ReadGate(monkeypatch)
    params = state("merge")
    await send(client, "POST", STATE, params, {"start": 0})
    for n in range(10):
        gate.arm(2)
        a, b = await asyncio.gather(
            send(client, "POST", STATE, params, {f"a{n}": n}), send(client, "POST", STATE, params, {f"b{n}": n})
        )
        assert (a.status_code, b.status_code) == (204, 204)
    merged = (await send(client, "GET", STATE, params)).json()
    assert merged == {"start": 0, **{f"{side}{n}": n for n in range(10) for side in "ab"}}
    assert len(await document_events(client.log)) == 21  # no lost update, no extra event


async def test_a_writer_that_keeps_losing_gets_409(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge (POST) reads the document before it appends, and re-reads when another writer won the race."""
    await send(client, "PUT", STATE, state(), {"v": 0})
    stale = Document(b"{}", "application/json", "0" * 40, 0, 0, False)  # always a version behind

    async def read(_log: EventLog, _tenant: str, _stream: str, *, content: bool = True) -> Document:
        return stale

    monkeypatch.setattr(documents_module, "current_document", read)
    response = await send(client, "POST", STATE, state(), {"v": 1})
    assert response.status_code == 409
    conditional = await send(client, "POST", STATE, state(), {"v": 1}, If_Match='"' + "0" * 40 + '"')
    assert conditional.status_code == 412
    monkeypatch.undo()
    assert (await send(client, "GET", STATE, state())).json() == {"v": 0}


async def test_eight_puts_with_one_if_match_one_wins(client: Client) -> None:
    """Eight players PUT with the ETag they all read, at once: they share a group commit, where each decides on
    the document the ones before it left, so exactly one lands and seven get 412; the stream has no gap."""
    assert (await send(client, "PUT", STATE, state("crowd"), {"v": 0})).status_code == 204
    etag = (await send(client, "GET", STATE, state("crowd"))).headers["etag"]
    answers = await asyncio.gather(
        *(send(client, "PUT", STATE, state("crowd"), {"v": n}, If_Match=etag) for n in range(1, 9))
    )
    assert sorted(a.status_code for a in answers) == [204] + [412] * 7
    (winner,) = [n for n, a in enumerate(answers, start=1) if a.status_code == 204]
    assert (await send(client, "GET", STATE, state("crowd"))).json() == {"v": winner}
    assert [e.stream_version for e in await document_events(client.log)] == [1, 2]


async def test_a_put_finds_an_erased_learners_document_gone(client: Client) -> None:
    """Her key destroyed, her document is gone for a write too: its old ETag no longer matches, and
    If-None-Match: * may create it anew (sealed under a fresh key)."""
    params = state("erased", agent={"mbox": "mailto:gone@example.org"})
    assert (await send(client, "PUT", STATE, params, {"v": 1})).status_code == 204
    etag = (await send(client, "GET", STATE, params)).headers["etag"]
    erased = await client.http.post(
        "/audit/learner/erase", json={"agent": {"mbox": "mailto:gone@example.org"}}, headers=client.auth
    )
    assert erased.status_code == 200, erased.text
    assert (await send(client, "PUT", STATE, params, {"v": 2}, If_Match=etag)).status_code == 412
    assert (await send(client, "PUT", STATE, params, {"v": 3}, If_None_Match="*")).status_code == 204
    assert (await send(client, "GET", STATE, params)).json() == {"v": 3}
    put1, put3 = await document_events(client.log)
    assert (put1.stream_version, put3.stream_version) == (1, 2)
    assert put3.key_id not in (None, put1.key_id)


async def test_one_query_in_two_tenants_is_keyed_per_tenant(client: Client) -> None:
    """The keyed parameters of a query are cached; the cache must keep tenants (and their secrets) apart: the
    same State query in two tenants stores two rows, each with its tenant's keyed digest of the agent."""
    elsewhere = await client.credential("all", tenant="district-9")
    for auth, body in ((client.auth, {"t": "default"}), (elsewhere, {"t": "district-9"})):
        for _ in range(2):  # the second time from the cache
            assert (await send(client, "PUT", STATE, state("keyed"), body, auth=auth)).status_code == 204
        assert (await send(client, "GET", STATE, state("keyed"), auth=auth)).json() == body
    async with client.log.engine.connect() as conn:
        rows = (await conn.execute(sa.select(documents.c.tenant, documents.c.agent, documents.c.learner))).all()
    assert sorted(r.tenant for r in rows) == ["default", "district-9"]
    assert len({r.agent for r in rows}) == 2  # each tenant's own keyed digest
    assert len({r.learner for r in rows}) == 2
