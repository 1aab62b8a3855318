"""The Activities and Agents resources: what the LRS knows about an activity or a person."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.responses import Response

from proficio_events import identifier_secret, read_keys

from ._agents import IFI_PROPERTIES, identity_key
from ._deps import authenticate, event_log, parameters
from ._errors import BadRequest, StatementValidationError
from ._http import JSONResponse, PlainRoute
from ._projection import AGENT, agent_value, index_condition, pair_key
from ._schema import activities, statement_index, statements
from ._statements import opened_statement
from ._validation import validate_agent_json

router = APIRouter(prefix="/xapi", route_class=PlainRoute)

#: How many of an agent's most recent statements the Person object is assembled from.
PERSON_STATEMENTS = 500


def _json_response(request: Request, body: Any) -> Response:
    return JSONResponse(b"" if request.method == "HEAD" else orjson.dumps(body))


@router.api_route("/activities", methods=["GET", "HEAD"])
async def get_activity(request: Request) -> Response:
    """The activity with its canonical definition, merged from the statements of defining credentials."""
    credential = await authenticate(request)
    params = parameters(request, frozenset({"activityId"}))
    activity_id = params.get("activityId")
    if not activity_id:
        raise BadRequest("the activityId parameter is required")
    async with event_log(request).engine.connect() as conn:
        definition = await conn.scalar(
            sa.select(activities.c.definition).where(
                activities.c.tenant == credential.tenant, activities.c.activity_id == activity_id
            )
        )
    body: dict[str, Any] = {"objectType": "Activity", "id": activity_id}
    if definition is not None:
        body["definition"] = orjson.loads(definition)
    return _json_response(request, body)


@router.api_route("/agents", methods=["GET", "HEAD"])
async def get_person(request: Request) -> Response:
    """A Person object: the agent's identifier and every name it was sent with (most recent statements).

    Names are read from the statements' sealed parts (no person table holds them in clear), so an erased
    learner's names are gone with her key."""
    credential = await authenticate(request)
    params = parameters(request, frozenset({"agent"}))
    if "agent" not in params:
        raise BadRequest("the agent parameter is required")
    try:
        agent = orjson.loads(params["agent"])
        validate_agent_json(agent, path="agent")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"agent is not valid JSON: {exc}") from exc
    except StatementValidationError as exc:
        raise BadRequest(f"agent is not a valid Agent: {exc.message}") from exc
    key = identity_key(agent)
    if key is None:
        raise BadRequest("agent must carry an identifier (mbox, mbox_sha1sum, openid or account)")
    names: set[str] = {agent["name"]} if isinstance(agent.get("name"), str) else set()
    kind, _narrow = index_condition(AGENT)
    index, s = statement_index, statements
    tenant = credential.tenant
    value = agent_value(await identifier_secret(event_log(request), tenant), key)
    query = (
        sa.select(s.c.body, s.c.learner, s.c.sealed, s.c.key_id)
        .select_from(index.join(s, sa.and_(s.c.tenant == tenant, s.c.position == index.c.position)))
        .where(index.c.pair_key == pair_key(tenant, kind, value), index.c.narrow)
        .order_by(index.c.position.desc())
        .limit(PERSON_STATEMENTS)
    )
    async with event_log(request).engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        keys = await read_keys(conn, tenant, [r[3] for r in rows])
        for body, learner, sealed, key_id in rows:
            statement = orjson.loads(opened_statement(keys, tenant, learner, bytes(body), sealed, key_id))
            for candidate in (statement.get("actor"), statement.get("object")):
                if identity_key(candidate) == key and isinstance(candidate.get("name"), str):
                    names.add(candidate["name"])
    person: dict[str, Any] = {"objectType": "Person"}
    if names:
        person["name"] = sorted(names)
    for ifi in IFI_PROPERTIES:
        if ifi in agent:
            person[ifi] = [agent[ifi]]
    return _json_response(request, person)
