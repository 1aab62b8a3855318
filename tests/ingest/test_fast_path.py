"""The short way in for plain xAPI routes (``ProficioAPI``) answers exactly as the whole middleware stack does."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from proficio_ingest._app import ProficioAPI
from tests.ingest.conftest import VERSION, Client

STATE = "/xapi/activities/state"
AGENT = orjson.dumps({"mbox": "mailto:fast@example.org"}).decode()
PARAMS = {"activityId": "https://example.org/a", "agent": AGENT, "stateId": "s"}


def statement() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "actor": {"mbox": "mailto:fast@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
        "object": {"id": "https://example.org/a"},
    }


async def exchange(client: Client, app: ProficioAPI, plain: bool) -> list[tuple[int, bytes, dict[str, str]]]:
    """A mix of requests on the plain routes (successes and each kind of error), through the short way or not."""
    saved = app.fast_routes
    if not plain:
        app.fast_routes = {}
    try:
        auth = {**VERSION, **client.auth}
        json = {**auth, "Content-Type": "application/json"}
        first, second = statement(), statement()
        requests: list[tuple[str, str, dict[str, str], dict[str, str], bytes]] = [
            ("PUT", STATE, PARAMS, json, b'{"page": 1}'),
            ("GET", STATE, PARAMS, auth, b""),
            ("HEAD", STATE, PARAMS, auth, b""),
            ("PUT", STATE, PARAMS, {**json, "If-Match": '"' + "0" * 40 + '"'}, b'{"page": 2}'),  # 412
            ("GET", STATE, {**PARAMS, "stateId": "missing"}, auth, b""),  # 404
            ("GET", STATE, {**PARAMS, "bogus": "1"}, auth, b""),  # 400
            ("GET", STATE, PARAMS, {"X-Experience-API-Version": "2.0.0"}, b""),  # 401, in the version asked for
            ("GET", STATE, PARAMS, {**client.auth, "X-Experience-API-Version": "9.9"}, b""),  # 400, no version
            ("POST", "/xapi/statements", {}, json, orjson.dumps(first)),
            ("POST", "/xapi/statements", {}, json, orjson.dumps({**second, "verb": {}})),  # 400
            ("PUT", "/xapi/statements", {"statementId": second["id"]}, json, orjson.dumps(second)),
            ("GET", "/xapi/statements", {"statementId": first["id"]}, auth, b""),
            ("GET", "/xapi/about", {}, {}, b""),
            ("DELETE", STATE, PARAMS, auth, b""),
        ]
        answers = []
        for method, path, params, headers, body in requests:
            response = await client.http.request(method, path, params=params, headers=headers, content=body)
            drop = {"date", "last-modified", "x-experience-api-consistent-through", "etag", "content-length"}
            kept = {k: v for k, v in response.headers.items() if k not in drop}
            # Statement ids and stored times differ from one exchange to the other.
            content = (
                b"(statements)" if path == "/xapi/statements" and response.status_code == 200 else response.content
            )
            answers.append((response.status_code, content, kept))
        return answers
    finally:
        app.fast_routes = saved


async def test_the_short_way_answers_as_the_middleware_stack_does(client: Client) -> None:
    app = client.app
    assert isinstance(app, ProficioAPI)
    assert ("/xapi/activities/state", "PUT") in app.fast_routes
    assert ("/xapi/statements", "POST") in app.fast_routes
    short = await exchange(client, app, plain=True)
    # The same requests again through the stack, on a fresh document and new statements: the same answers.
    await client.http.request("DELETE", STATE, params=PARAMS, headers={**VERSION, **client.auth})
    whole = await exchange(client, app, plain=False)
    assert [a[0] for a in short] == [204, 200, 200, 412, 404, 400, 401, 400, 200, 400, 204, 200, 200, 204]
    for (status, body, headers), (status2, body2, headers2) in zip(short, whole, strict=True):
        assert (status, body, headers) == (status2, body2, headers2)
    assert all(h["vary"] == "Origin" and "x-experience-api-version" in h for _, _, h in short)


@pytest.mark.parametrize("extra", [{"Origin": "https://player.example.org"}, {}])
async def test_cors_and_the_alternate_syntax_take_the_whole_stack(client: Client, extra: dict[str, str]) -> None:
    headers = {**VERSION, **client.auth, **extra}
    response = await client.http.get(STATE, params={**PARAMS, "stateId": "none"}, headers=headers)
    assert response.status_code == 404
    assert ("access-control-allow-origin" in response.headers) == bool(extra)
    form = httpx.QueryParams({**PARAMS, **VERSION, **client.auth}).__str__()
    alternate = await client.http.post(
        STATE,
        params={"method": "GET"},
        content=form,
        headers={"Content-Type": "application/x-www-form-urlencoded", **extra},
    )
    assert alternate.status_code == 404  # the alternate syntax was understood: the request was a GET


def test_the_short_way_stands_in_for_exactly_the_middleware_it_emulates() -> None:
    """``ProficioAPI._serve_plain`` does by hand what these middleware do to a plain request (the version and
    Vary headers; nothing for the alternate syntax or CORS, which take the whole stack). A middleware added to
    the app would be skipped on the short way: this fails until the short way is taught what it does."""
    from starlette.middleware.cors import CORSMiddleware

    from proficio_ingest import create_app
    from proficio_ingest._http import AlternateSyntaxMiddleware, VersionHeaderMiddleware

    app = create_app()
    assert isinstance(app, ProficioAPI)
    assert sorted(m.cls.__name__ for m in app.user_middleware) == sorted(  # type: ignore[attr-defined]
        cls.__name__ for cls in (AlternateSyntaxMiddleware, CORSMiddleware, VersionHeaderMiddleware)
    )
    assert app.fast_routes, "no route takes the short way"
