"""Malformed and adversarial statements thrown at the HTTP API: always a 4xx with a reason, never a 5xx,
and a refused request leaves the log exactly as it was."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Client, statement

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths(inner, (*prefix, index))
    return found


def rich_statement() -> dict[str, Any]:
    return statement(
        1,
        result={"score": {"scaled": 0.5, "raw": 5, "min": 0, "max": 10}, "success": True, "duration": "PT1M"},
        context={
            "registration": "6e4a8f4c-55a4-4d1c-8f4e-1a2b3c4d5e6f",
            "instructor": {"mbox": "mailto:teacher@example.org"},
            "contextActivities": {"parent": [{"id": "http://example.org/course"}]},
            "language": "en-US",
            "extensions": {"http://example.org/ext": {"any": ["thing"]}},
        },
        timestamp="2026-11-22T10:00:00.000Z",
    )


@st.composite
def mutated_statements(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid statement with one change: a value replaced, a property removed, or an unknown one added."""
    base = rich_statement()
    mutation = draw(st.sampled_from(["replace", "remove", "add_unknown"]))
    # Extension values are free-form JSON: an unknown property there is no error.
    candidates = [p for p in paths(base) if p and (mutation != "add_unknown" or "extensions" not in p)]
    path = draw(st.sampled_from(candidates))
    mutated = copy.deepcopy(base)
    parent: Any = mutated
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if mutation == "replace":
        parent[last] = draw(json_values)
    elif mutation == "remove":
        del parent[last]
    else:
        target = parent[last] if isinstance(parent[last], dict) else mutated
        target["unknownProperty_" + draw(st.text(alphabet="abcxyz", min_size=1, max_size=5))] = draw(json_values)
    return mutated, mutation


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated_statements())
async def test_mutated_statements_get_400_or_are_stored_never_500(client: Client, case: tuple[Any, str]) -> None:
    mutated, mutation = case
    before = await client.log.max_position()
    response = await client.post([mutated])
    assert response.status_code in (200, 400), response.text
    if mutation == "add_unknown":
        assert response.status_code == 400, f"unknown property accepted: {mutated}"
    if response.status_code == 400:
        assert response.json()["message"]
        assert await client.log.max_position() == before
    else:
        assert await client.log.max_position() == before + 1


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
async def test_arbitrary_json_bodies_never_500(client: Client, body: Any) -> None:
    before = await client.log.max_position()
    response = await client.http.post(
        "/xapi/statements",
        content=orjson.dumps(body),
        headers=client.headers(**{"Content-Type": "application/json"}),
    )
    assert response.status_code == 400, response.text
    assert await client.log.max_position() == before


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "multipart/mixed; boundary=x"]))
async def test_arbitrary_bytes_never_500(client: Client, raw: bytes, content_type: str) -> None:
    before = await client.log.max_position()
    response = await client.http.post(
        "/xapi/statements", content=raw, headers=client.headers(**{"Content-Type": content_type})
    )
    assert 400 <= response.status_code < 500, response.text
    assert await client.log.max_position() == before


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["agent", "verb", "activity", "since", "until", "limit",
                                               "registration", "format", "ascending", "statementId"]),
                              st.text(max_size=40), max_size=3))  # fmt: skip
async def test_arbitrary_query_parameters_never_500(client: Client, params: dict[str, str]) -> None:
    response = await client.get(**params)
    assert response.status_code in (200, 400, 404), response.text
    assert "X-Experience-API-Consistent-Through" in response.headers
