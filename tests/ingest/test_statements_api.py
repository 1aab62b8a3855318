"""The Statements resource over HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from proficio_ingest import rebuild_statement_tables

from .conftest import VERSION, Client, statement

pytestmark = pytest.mark.filterwarnings("error")


async def log_size(client: Client) -> int:
    return await client.log.max_position()


# -- writing ----------------------------------------------------------------------------------------


async def test_post_assigns_ids_stored_authority_and_version(client: Client) -> None:
    response = await client.post([statement(1), statement(2)])
    assert response.status_code == 200, response.text
    ids = response.json()
    assert len(ids) == 2
    assert all(uuid.UUID(i) for i in ids)
    got = await client.get(statementId=ids[0])
    assert got.status_code == 200
    body = got.json()
    assert body["id"] == ids[0]
    assert body["version"] == "1.0.0"
    assert body["authority"]["account"]["name"] == client.key
    assert body["stored"].endswith("Z")
    assert body["timestamp"] == body["stored"]
    assert got.headers["X-Experience-API-Version"] == "1.0.3"
    assert "X-Experience-API-Consistent-Through" in got.headers
    assert "Last-Modified" in got.headers


async def test_only_ids_the_lrs_assigned_are_new_keys(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # The log does not look up the keys of statements whose id this LRS made (NewEvent.new_key): no stored statement
    # can have it. Ids a client sends (POST or PUT) are looked up, so that a retry is answered as one.
    appended: list[Any] = []
    append = client.log.append

    async def spy(tenant: str, batch: Any, **kwargs: Any) -> Any:
        appended.append({e.key: e.new_key for e in batch})
        return await append(tenant, batch, **kwargs)

    monkeypatch.setattr(client.log, "append", spy)
    given = str(uuid.uuid4()).upper()
    response = await client.post([statement(1), {**statement(2), "id": given}])
    assert response.status_code == 200, response.text
    assigned = response.json()[0]
    assert appended[-1] == {f"statement:{assigned}": True, f"statement:{given.lower()}": False}
    assert (await client.put(str(uuid.uuid4()), statement(3))).status_code == 204
    assert list(appended[-1].values()) == [False]
    assert (await client.post({**statement(2), "id": given})).json() == [given]  # a retry, answered as before
    assert list(appended[-1].values()) == [False]


def test_assigned_ids_are_random_uuids_as_the_uuid_module_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from proficio_ingest import _statements

    randomness = hashlib.sha512(b"ids").digest() * 2  # 128 bytes: 8 ids
    monkeypatch.setattr(_statements.os, "urandom", lambda n: randomness[:n])
    ids = _statements.new_statement_ids(8)
    assert ids == [str(uuid.UUID(bytes=randomness[i : i + 16], version=4)) for i in range(0, 128, 16)]
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert _statements.new_statement_ids(0) == []


async def test_put_stores_under_the_given_id(client: Client) -> None:
    statement_id = str(uuid.uuid4())
    assert (await client.put(statement_id, statement(1))).status_code == 204
    assert (await client.get(statementId=statement_id)).json()["id"] == statement_id
    mismatched = await client.put(str(uuid.uuid4()), statement(1, id=statement_id))
    assert mismatched.status_code == 400
    assert "differs" in mismatched.json()["message"]
    missing = await client.http.put("/xapi/statements", content=b"{}", headers=client.headers())
    assert missing.status_code == 400
    assert "statementId" in missing.json()["message"]


async def test_a_retry_is_harmless_and_different_content_is_409(client: Client) -> None:
    statement_id = str(uuid.uuid4())
    first = statement(1, id=statement_id)
    assert (await client.post([first])).status_code == 200
    before = await log_size(client)
    # The same statement again, even with LRS-set fields and a different key order: no new event.
    again = dict(reversed(list(first.items())))
    assert (await client.post([again])).status_code == 200
    assert (await client.put(statement_id, first)).status_code == 204
    assert await log_size(client) == before
    conflict = await client.post([statement(2), statement(9, id=statement_id)])
    assert conflict.status_code == 409
    assert statement_id in conflict.json()["message"]
    assert await log_size(client) == before


async def test_a_statement_sent_again_with_the_id_the_lrs_assigned_is_compared_in_full(client: Client) -> None:
    # Stored with an LRS-assigned id, a statement carries no canonical fingerprint (``assigned_fingerprint``): a
    # statement sent later with that id is compared with the stored one by the comparison requirements.
    first = statement(1, context={"instructor": {"mbox": "mailto:teacher.repeat@example.org"}})
    posted = await client.post([first])
    assert posted.status_code == 200, posted.text
    (assigned,) = posted.json()
    before = await log_size(client)
    # Equivalent: other key order, the LRS-set fields, a verb display (which comparison ignores).
    again = {**dict(reversed(list(first.items()))), "id": assigned.upper(), "version": "1.0.3"}
    again["verb"] = {**first["verb"], "display": {"fr-FR": "a fait"}}
    assert (await client.put(assigned, again)).status_code == 204
    assert (await client.post([again])).json() == [again["id"]]
    assert await log_size(client) == before
    # In a batch with a new statement: the repeat is left out, the new one stored, atomically with nothing else.
    fresh_id = str(uuid.uuid4())
    both = await client.post([statement(2, id=fresh_id), again])
    assert both.status_code == 200, both.text
    assert both.json() == [fresh_id, again["id"]]
    assert await log_size(client) == before + 1
    # Different content (her personal data too: the instructor is sealed): 409, nothing stored.
    other_teacher = {**first, "id": assigned, "context": {"instructor": {"mbox": "mailto:someone.else@example.org"}}}
    for different in (statement(9, id=assigned), other_teacher):
        conflict = await client.post([statement(3), different])
        assert conflict.status_code == 409, conflict.text
        assert assigned in conflict.json()["message"]
        assert (await client.put(assigned, different)).status_code == 409
    assert await log_size(client) == before + 1
    shown = await client.get(statementId=assigned)
    assert shown.json()["context"]["instructor"]["mbox"] == "mailto:teacher.repeat@example.org"


async def test_a_batch_is_atomic(client: Client) -> None:
    bad = statement(2)
    bad["verb"] = {"id": "not an iri"}
    good_id = str(uuid.uuid4())
    response = await client.post([statement(1, id=good_id), bad])
    assert response.status_code == 400
    assert response.json()["message"].startswith("statements[1].verb")
    assert await log_size(client) == 0
    assert (await client.get(statementId=good_id)).status_code == 404


async def test_duplicate_ids_in_one_batch_are_400(client: Client) -> None:
    same = str(uuid.uuid4())
    response = await client.post([statement(1, id=same), statement(2, id=same)])
    assert response.status_code == 400
    assert "twice" in response.json()["message"]


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[]", "application/json", "no statements"),
        (b"{}", "text/plain", "Content-Type"),
        (b"{}", "application/x-www-form-urlencoded", "Content-Type"),
        (b'{"actor": 5}', "application/json", "statement"),
        (b"42", "application/json", "statement"),
    ],
)
async def test_malformed_requests_are_400_with_a_reason(
    client: Client, content: bytes, content_type: str, reason: str
) -> None:
    response = await client.http.post(
        "/xapi/statements", content=content, headers=client.headers(**{"Content-Type": content_type})
    )
    assert response.status_code == 400, response.text
    assert reason in response.json()["message"]
    assert await log_size(client) == 0


async def test_too_large_a_body_is_413(client: Client) -> None:
    big = [statement(i, result={"response": "x" * 10_000}) for i in range(300)]
    response = await client.post(big)
    assert response.status_code == 413
    assert "limit" in response.json()["message"]
    assert await log_size(client) == 0


async def test_unknown_and_miscased_parameters_are_400(client: Client) -> None:
    for params in ({"foo": "bar"}, {"StatementId": str(uuid.uuid4())}, {"LIMIT": "1"}):
        response = await client.http.get("/xapi/statements", params=params, headers=client.headers())
        assert response.status_code == 400
        assert "unknown query parameter" in response.json()["message"]
        assert "X-Experience-API-Consistent-Through" in response.headers
    post = await client.http.post(
        "/xapi/statements?verb=x", content=orjson.dumps(statement()), headers=client.headers()
    )
    assert post.status_code == 400


# -- credentials and versions -------------------------------------------------------------------------


async def test_credentials_and_scopes(client: Client) -> None:
    anonymous = await client.http.get("/xapi/statements", headers=VERSION)
    assert anonymous.status_code == 401
    assert anonymous.headers["X-Experience-API-Version"] == "1.0.3"
    wrong = {"Authorization": "Basic " + base64.b64encode(b"nobody:nothing").decode()}
    assert (await client.http.get("/xapi/statements", headers={**VERSION, **wrong})).status_code == 401
    garbled = {"Authorization": "Basic:abc"}
    assert (await client.http.get("/xapi/statements", headers={**VERSION, **garbled})).status_code == 401
    reader = await client.credential("statements/read")
    denied = await client.http.post(
        "/xapi/statements", content=orjson.dumps(statement()), headers={**VERSION, **reader}
    )
    assert denied.status_code == 403
    assert (await client.http.get("/xapi/statements", headers={**VERSION, **reader})).status_code == 200
    writer = await client.credential("statements/write")
    assert (await client.http.get("/xapi/statements", headers={**VERSION, **writer})).status_code == 403


async def test_read_mine_sees_only_its_own_statements(client: Client) -> None:
    mine = await client.credential("statements/write", "statements/read/mine")
    headers = {**VERSION, **mine, "Content-Type": "application/json"}
    own = (await client.http.post("/xapi/statements", content=orjson.dumps(statement(1)), headers=headers)).json()
    others = (await client.post([statement(2)])).json()
    listed = await client.http.get("/xapi/statements", headers=headers)
    assert [s["id"] for s in listed.json()["statements"]] == own
    hidden = await client.http.get("/xapi/statements", params={"statementId": others[0]}, headers=headers)
    assert hidden.status_code == 404


async def test_tenants_are_isolated(client: Client) -> None:
    ids = (await client.post([statement(1)])).json()
    elsewhere = await client.credential("all", tenant="district-2")
    headers = {**VERSION, **elsewhere}
    assert (
        await client.http.get("/xapi/statements", params={"statementId": ids[0]}, headers=headers)
    ).status_code == 404
    assert (await client.http.get("/xapi/statements", headers=headers)).json()["statements"] == []
    # The same id in another tenant is a different statement, not a conflict.
    other = await client.http.post(
        "/xapi/statements",
        content=orjson.dumps(statement(5, id=ids[0])),
        headers={**headers, **{"Content-Type": "application/json"}},
    )
    assert other.status_code == 200


async def test_version_header_is_required_and_checked(client: Client) -> None:
    missing = await client.http.get("/xapi/statements", headers=client.auth)
    assert missing.status_code == 400
    assert "X-Experience-API-Version" in missing.json()["message"]
    bad = await client.http.get("/xapi/statements", headers={**client.auth, "X-Experience-API-Version": "0.9"})
    assert bad.status_code == 400
    about = await client.http.get("/xapi/about")
    assert about.status_code == 200
    assert about.json()["version"] == ["1.0.3", "2.0.0"]
    assert about.headers["X-Experience-API-Version"] == "1.0.3"


async def test_cors_preflight(client: Client) -> None:
    response = await client.http.options(
        "/xapi/statements",
        headers={
            "Origin": "https://lms.example.org",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "Authorization, X-Experience-API-Version, Content-Type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "https://lms.example.org")
    assert "PUT" in response.headers["access-control-allow-methods"]


# -- voiding ------------------------------------------------------------------------------------------


def voiding(target: str) -> dict[str, Any]:
    return statement(
        99, verb={"id": "http://adlnet.gov/expapi/verbs/voided"}, object={"objectType": "StatementRef", "id": target}
    )


async def test_voiding(client: Client) -> None:
    target = (await client.post([statement(1)])).json()[0]
    void_id = (await client.post([voiding(target)])).json()[0]
    assert (await client.get(statementId=target)).status_code == 404
    assert (await client.get(voidedStatementId=target)).json()["id"] == target
    assert (await client.get(voidedStatementId=void_id)).status_code == 404
    listed = [s["id"] for s in (await client.get()).json()["statements"]]
    assert listed == [void_id]
    # The voiding statement is found by the voided statement's agent (it targets it).
    by_agent = await client.get(agent=orjson.dumps({"mbox": "mailto:learner1@example.org"}).decode())
    assert [s["id"] for s in by_agent.json()["statements"]] == [void_id]
    # A voiding statement cannot be voided.
    (await client.post([voiding(void_id)])).raise_for_status()
    assert (await client.get(statementId=void_id)).status_code == 200


async def test_voiding_an_unknown_statement_is_accepted_and_applies_when_it_arrives(client: Client) -> None:
    target = str(uuid.uuid4())
    assert (await client.post([voiding(target)])).status_code == 200
    assert (await client.put(target, statement(3))).status_code == 204
    assert (await client.get(statementId=target)).status_code == 404
    assert (await client.get(voidedStatementId=target)).status_code == 200


async def test_voiding_inside_one_batch(client: Client) -> None:
    target = str(uuid.uuid4())
    await client.post([statement(4, id=target), voiding(target)])
    assert (await client.get(voidedStatementId=target)).status_code == 200


# -- queries -------------------------------------------------------------------------------------------


async def seed(client: Client) -> dict[str, str]:
    registration = str(uuid.uuid4())
    ids = {}
    ids["a1"] = (await client.post([statement(1)])).json()[0]
    ids["b1"] = (await client.post([statement(2, verb={"id": "http://adlnet.gov/expapi/verbs/passed"})])).json()[0]
    ids["a_ctx"] = (
        await client.post(
            [
                statement(
                    3,
                    context={
                        "registration": registration,
                        "instructor": {"mbox": "mailto:learner1@example.org"},
                        "contextActivities": {"parent": {"id": "http://example.org/course"}},
                    },
                )
            ]
        )
    ).json()[0]
    ids["ref"] = (
        await client.post(
            [
                statement(
                    4,
                    verb={"id": "http://example.org/verbs/liked"},
                    object={"objectType": "StatementRef", "id": ids["b1"]},
                )
            ]
        )
    ).json()[0]
    ids["registration"] = registration
    return ids


async def query_ids(client: Client, **params: Any) -> list[str]:
    response = await client.get(**params)
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["statements"]]


async def test_a_page_reads_the_same_in_one_query_as_through_sqlalchemy(client: Client) -> None:
    """On PostgreSQL ``find`` reads a page (and its learners' keys) in one query of its own; it must give what the
    portable SQLAlchemy form gives, for every kind of filter, order, bound and continuation."""
    from proficio_ingest._agents import identity_key
    from proficio_ingest._projection import ACTIVITY, ACTIVITY_RELATED, AGENT, AGENT_RELATED, REGISTRATION, VERB
    from proficio_ingest._statements import StatementQuery

    ids = await seed(client)
    service = client.app.state.statements
    learner1 = identity_key({"mbox": "mailto:learner1@example.org"})
    assert learner1 is not None
    queries = [
        StatementQuery(),
        StatementQuery(ascending=True, limit=2),
        StatementQuery(pairs=((VERB, "http://adlnet.gov/expapi/verbs/passed"),)),
        StatementQuery(pairs=((AGENT, learner1),)),
        StatementQuery(pairs=((AGENT_RELATED, learner1),), limit=1),
        StatementQuery(pairs=((ACTIVITY, "http://example.org/item/3"), (REGISTRATION, ids["registration"]))),
        StatementQuery(pairs=((ACTIVITY_RELATED, "http://example.org/course"),), since_us=0, until_us=2**62),
        StatementQuery(since_us=2**62),
        StatementQuery(credential=client.key, limit=3),
    ]
    bound = await client.log.max_position()
    seen = set()
    for query in queries:
        keyed = await service.keyed("default", query)
        for after in (None, bound, 3):
            fast = await service.find("default", keyed, after, bound)
            portable = await service._find_portable("default", keyed, after, bound)
            assert fast == portable, (query, after)
            seen.update(orjson.loads(body)["id"] for body in fast.bodies)
    assert seen == {ids[name] for name in ("a1", "b1", "a_ctx", "ref")}


async def test_filters(client: Client) -> None:
    ids = await seed(client)
    learner1 = orjson.dumps({"mbox": "mailto:learner1@example.org"}).decode()
    learner2 = orjson.dumps({"objectType": "Agent", "mbox": "mailto:learner2@example.org"}).decode()
    assert await query_ids(client) == [ids["ref"], ids["a_ctx"], ids["b1"], ids["a1"]]
    assert await query_ids(client, ascending="true") == [ids["a1"], ids["b1"], ids["a_ctx"], ids["ref"]]
    assert await query_ids(client, agent=learner1) == [ids["a1"]]
    assert await query_ids(client, agent=learner1, related_agents="true") == [ids["a_ctx"], ids["a1"]]
    # A statement that targets another matches the filters its target matches.
    assert await query_ids(client, agent=learner2) == [ids["ref"], ids["b1"]]
    assert await query_ids(client, verb="http://adlnet.gov/expapi/verbs/passed") == [ids["ref"], ids["b1"]]
    assert await query_ids(client, activity="http://example.org/item/3") == [ids["a_ctx"]]
    assert await query_ids(client, activity="http://example.org/course") == []
    assert await query_ids(client, activity="http://example.org/course", related_activities="true") == [ids["a_ctx"]]
    assert await query_ids(client, registration=ids["registration"]) == [ids["a_ctx"]]
    assert await query_ids(client, agent=learner1, verb="http://adlnet.gov/expapi/verbs/answered") == [ids["a1"]]
    assert await query_ids(client, agent=learner1, verb="http://adlnet.gov/expapi/verbs/passed") == []


async def test_since_and_until_filter_on_stored(client: Client) -> None:
    ids = await seed(client)
    stored = {key: (await client.get(statementId=ids[key])).json()["stored"] for key in ("a1", "b1", "a_ctx")}
    assert ids["a1"] not in await query_ids(client, since=stored["a1"])
    assert await query_ids(client, until=stored["a1"]) == [ids["a1"]]
    between = await query_ids(client, since=stored["a1"], until=stored["a_ctx"])
    assert ids["a1"] not in between
    assert ids["ref"] not in between
    bad = await client.get(since="yesterday")
    assert bad.status_code == 400


async def test_more_links_page_stably_while_statements_arrive(client: Client) -> None:
    posted = [(await client.post([statement(i)])).json()[0] for i in range(7)]
    seen: list[str] = []
    page = (await client.get(limit=3)).json()
    seen += [s["id"] for s in page["statements"]]
    await client.post([statement(100)])  # arrives mid-way: must not shift the pages
    while page["more"]:
        assert page["more"].startswith("/xapi/statements?more=")
        response = await client.http.get(page["more"], headers=client.headers())
        assert response.status_code == 200
        page = response.json()
        seen += [s["id"] for s in page["statements"]]
    assert seen == list(reversed(posted))
    junk = await client.get(more="not-a-token")
    assert junk.status_code == 400


async def test_more_links_keep_the_format_and_attachments_asked_for(client: Client) -> None:
    for i in range(5):
        await client.post([statement(i)])
    response = await client.get(limit=2, format="ids")
    pages = [response.json()]
    while pages[-1]["more"]:
        assert "format=ids" in pages[-1]["more"]
        response = await client.http.get(pages[-1]["more"], headers=client.headers())
        assert response.status_code == 200, response.text
        pages.append(response.json())
    assert len(pages) == 3
    for page in pages:
        for one in page["statements"]:
            assert one["verb"] == {"id": "http://adlnet.gov/expapi/verbs/answered"}  # ids: no display
            assert one["object"] == {"id": one["object"]["id"]}
    # attachments=true pages are multipart/mixed, the later ones too.
    first = await client.get(limit=2, attachments="true")
    assert first.headers["content-type"].startswith("multipart/mixed")
    more = orjson.loads(first.content.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0])["more"]
    assert "attachments=true" in more
    second = await client.http.get(more, headers=client.headers())
    assert second.status_code == 200
    assert second.headers["content-type"].startswith("multipart/mixed")
    # A more link takes nothing that would change which statements it pages through.
    refused = await client.http.get(f"{more}&limit=1", headers=client.headers())
    assert refused.status_code == 400
    assert "more goes alone" in refused.text


async def test_formats(client: Client) -> None:
    statement_id = (await client.post([statement(1)])).json()[0]
    ids = (await client.get(statementId=statement_id, format="ids")).json()
    assert ids["actor"] == {"objectType": "Agent", "mbox": "mailto:learner1@example.org"}
    assert ids["verb"] == {"id": "http://adlnet.gov/expapi/verbs/answered"}
    assert ids["object"] == {"id": "http://example.org/item/1"}
    canonical = await client.http.get(
        "/xapi/statements",
        params={"statementId": statement_id, "format": "canonical"},
        headers=client.headers(**{"Accept-Language": "en-GB"}),
    )
    body = canonical.json()
    assert body["object"]["definition"]["name"] == {"en-GB": "Item (GB)"}
    assert len(body["verb"]["display"]) == 1
    assert body["actor"]["name"] == "Learner 1"
    exact = (await client.get(statementId=statement_id)).json()
    assert exact["verb"]["display"] == {"en-US": "answered", "fr-FR": "répondu"}
    assert (await client.get(format="everything")).status_code == 400


async def test_head(client: Client) -> None:
    statement_id = (await client.post([statement(1)])).json()[0]
    head = await client.http.head("/xapi/statements", params={"statementId": statement_id}, headers=client.headers())
    assert head.status_code == 200
    assert head.content == b""
    assert "X-Experience-API-Consistent-Through" in head.headers


# -- alternate request syntax -----------------------------------------------------------------------------


async def test_alternate_request_syntax(client: Client) -> None:
    statement_id = str(uuid.uuid4())
    form = {
        "statementId": statement_id,
        "content": orjson.dumps(statement(1)).decode(),
        "X-Experience-API-Version": "1.0.3",
        "Authorization": client.auth["Authorization"],
    }
    put = await client.http.post(
        "/xapi/statements?method=PUT",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert put.status_code == 204, put.text
    get = await client.http.post(
        "/xapi/statements?method=GET",
        content=urlencode({"statementId": statement_id}),
        headers=client.headers(**{"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert get.json()["id"] == statement_id
    extra = await client.http.post(
        f"/xapi/statements?method=PUT&statementId={statement_id}",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert extra.status_code == 400
    not_post = await client.http.put("/xapi/statements?method=POST", content=b"", headers=client.headers())
    assert not_post.status_code == 400
    old_version = await client.http.post(
        "/xapi/statements?method=GET",
        content=urlencode({"X-Experience-API-Version": "0.8", "Authorization": client.auth["Authorization"]}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert old_version.status_code == 400


# -- attachments ------------------------------------------------------------------------------------------


def multipart(statements: Any, attachments: list[tuple[bytes, str]]) -> tuple[bytes, str]:
    boundary = "abcABC0123456789"
    chunks = [f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode() + orjson.dumps(statements) + b"\r\n"]
    for data, content_type in attachments:
        sha2 = hashlib.sha256(data).hexdigest()
        chunks.append(
            f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: binary\r\n"
            f"X-Experience-API-Hash: {sha2}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/mixed; boundary={boundary}"


async def test_attachments_round_trip(client: Client) -> None:
    data = bytes(range(256)) * 4 + b"\r\n--not the boundary\r\n\r\n"
    sha2 = hashlib.sha256(data).hexdigest()
    with_attachment = statement(
        1,
        attachments=[
            {
                "usageType": "http://example.org/usage/evidence",
                "display": {"en-US": "Evidence"},
                "contentType": "application/octet-stream",
                "length": len(data),
                "sha2": sha2,
            }
        ],
    )
    body, content_type = multipart([with_attachment], [(data, "application/octet-stream")])
    posted = await client.http.post(
        "/xapi/statements", content=body, headers=client.headers(**{"Content-Type": content_type})
    )
    assert posted.status_code == 200, posted.text
    statement_id = posted.json()[0]
    got = await client.get(statementId=statement_id, attachments="true")
    assert got.headers["content-type"].startswith("multipart/mixed")
    assert data in got.content
    assert got.content.count(sha2.encode()) == 2
    plain = await client.get(statementId=statement_id)
    assert plain.headers["content-type"] == "application/json"
    missing_part, content_type = multipart([statement(2, attachments=with_attachment["attachments"])], [])
    refused = await client.http.post(
        "/xapi/statements", content=missing_part, headers=client.headers(**{"Content-Type": content_type})
    )
    assert refused.status_code == 400


# -- the query tables are a projection of the log -----------------------------------------------------------


async def test_statement_tables_rebuild_identically_from_the_log(client: Client) -> None:
    await seed(client)
    target = (await client.post([statement(7)])).json()[0]
    await client.post([voiding(target), voiding(str(uuid.uuid4()))])
    before = await dump_tables(client)
    applied = await rebuild_statement_tables(client.log)
    assert applied == 7
    assert await dump_tables(client) == before
    assert (await client.get(voidedStatementId=target)).status_code == 200


async def dump_tables(client: Client) -> dict[str, list[tuple[Any, ...]]]:
    import sqlalchemy as sa

    tables = {}
    async with client.log.engine.connect() as conn:
        for name in ("xapi_statements", "xapi_statement_index", "xapi_attachments"):
            rows = (await conn.execute(sa.text(f"SELECT * FROM {name}"))).all()
            tables[name] = sorted(tuple(r) for r in rows)
    return tables


async def test_references_to_statements_that_arrive_later(client: Client) -> None:
    """A chain R2 -> R1 -> X where X comes last: once X is stored, the chain matches X's filters."""
    x_id = str(uuid.uuid4())
    ref = {"objectType": "StatementRef"}
    r1 = await client.post([statement(5, verb={"id": "http://example.org/verbs/cites"}, object={**ref, "id": x_id})])
    r1_id = r1.json()[0]
    r2_id = (
        await client.post([statement(6, verb={"id": "http://example.org/verbs/cites"}, object={**ref, "id": r1_id})])
    ).json()[0]
    agent = orjson.dumps({"mbox": "mailto:learner77@example.org"}).decode()
    assert await query_ids(client, agent=agent) == []
    assert (await client.put(x_id, statement(77))).status_code == 204
    assert await query_ids(client, agent=agent) == [x_id, r2_id, r1_id]
    assert await query_ids(client, activity="http://example.org/item/77") == [x_id, r2_id, r1_id]
    before = await dump_tables(client)
    await rebuild_statement_tables(client.log)
    assert await dump_tables(client) == before


async def test_the_projections_lookups_come_in_the_group_commits_read(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the statement projection's two lookups (stored statements that point at the new ones, stored
    definitions of the activities they define) run in the log's group read, in its round trip; elsewhere the
    projection reads for itself. Either way a reference that came first and a definition stored before apply."""
    from proficio_ingest import _projection
    from tests.support.queries import record_queries

    item = "http://example.org/item/78"
    assert (
        await client.post([statement(78, object={"id": item, "definition": {"name": {"en-US": "Item"}}})])
    ).is_success
    x_id = str(uuid.uuid4())
    cites = {"id": "http://example.org/verbs/cites"}
    r1_id = (await client.post([statement(5, verb=cites, object={"objectType": "StatementRef", "id": x_id})])).json()[0]

    results: list[Any] = []
    group_read_rows = _projection.group_read_rows

    def recording(*args: Any) -> Any:
        results.append(group_read_rows(*args))
        return results[-1]

    monkeypatch.setattr(_projection, "group_read_rows", recording)
    queries = record_queries(monkeypatch)
    x = statement(77, object={"id": item, "definition": {"name": {"fr-FR": "Objet"}}})
    assert (await client.put(x_id, x)).status_code == 204
    monkeypatch.undo()

    if client.log.engine.dialect.name == "postgresql":
        assert [r.arguments for r in results] == [([x_id], [item])]
        kinds = sorted(row[0] for row in results[0].rows)
        assert kinds == [_projection._REFERRER, _projection._DEFINITION]  # r1, and the stored definition
        assert not [q for q in queries if "xapi_activities" in q or "target_id" in q]  # no lookup of its own
    else:
        assert results == [None]
    agent = orjson.dumps({"mbox": "mailto:learner77@example.org"}).decode()
    assert await query_ids(client, agent=agent) == [x_id, r1_id]
    activity = (await client.get("/xapi/activities", activityId=item)).json()
    assert activity["definition"]["name"] == {"en-US": "Item", "fr-FR": "Objet"}


async def test_a_large_batch_gives_the_event_loop_turns_while_it_is_worked_out(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group commit in progress holds the log's write lock: a 100-statement request must not keep the event
    loop for its whole validation and preparation (its round trips would wait, and other workers behind the lock)."""
    import asyncio

    from proficio_ingest import _routes, _statements

    ticks = 0
    seen_at: dict[str, list[int]] = {"validate": [], "split": []}

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    validate, split = _routes.validate_statement, _statements.split

    def validating(statement: Any, **kwargs: Any) -> None:
        seen_at["validate"].append(ticks)
        validate(statement, **kwargs)

    def splitting(statement: dict[str, Any]) -> Any:
        seen_at["split"].append(ticks)
        return split(statement)

    monkeypatch.setattr(_routes, "validate_statement", validating)
    monkeypatch.setattr(_statements, "split", splitting)
    running = asyncio.create_task(ticker())
    try:
        response = await client.post([statement(n) for n in range(100)])
    finally:
        running.cancel()
    assert response.status_code == 200, response.text
    every = _statements.TURN_EVERY
    for step, counts in seen_at.items():
        assert len(counts) == 100, step
        # Between any statement and the one `every` after it, the loop ran other tasks.
        assert all(counts[i + every] > counts[i] for i in range(len(counts) - every)), step
