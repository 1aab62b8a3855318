"""The xAPI resources: About and Statements."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ._agents import identity_key
from ._credentials import READ_STATEMENTS, WRITE_STATEMENTS, Credential
from ._deps import authenticate, boolean, parameters, settings, statement_service, xapi_version
from ._errors import BadRequest, NotFound, StatementValidationError
from ._formats import to_canonical, to_ids, to_version_1
from ._http import (
    JSONResponse,
    PlainRoute,
    check_version_header,
    http_date_from_us,
    iso_from_us,
    read_body,
)
from ._multipart import AttachmentPart, build_multipart_mixed, check_attachments, parse_multipart_mixed
from ._projection import ACTIVITY, ACTIVITY_RELATED, AGENT, AGENT_RELATED, REGISTRATION, VERB
from ._settings import IngestSettings
from ._signature import check_signed_statement
from ._statements import TURN_EVERY, StatementQuery, new_statement_ids, prepare
from ._tenants import SUPPORTED_VERSIONS, V1
from ._validation import is_uuid, parse_timestamp, validate_agent_json, validate_statement

router = APIRouter(prefix="/xapi", route_class=PlainRoute)

_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_QUERY_PARAMETERS = frozenset(
    {
        "statementId",
        "voidedStatementId",
        "agent",
        "verb",
        "activity",
        "registration",
        "related_activities",
        "related_agents",
        "since",
        "until",
        "limit",
        "format",
        "attachments",
        "ascending",
        "more",
    }
)
_SINGLE_PARAMETERS = frozenset({"statementId", "voidedStatementId", "format", "attachments"})
#: What a ``more`` link may carry besides its token: how the statements are presented, not which ones.
_PAGE_PRESENTATION = frozenset({"more", "format", "attachments"})
_FORMATS = frozenset({"exact", "ids", "canonical"})


@router.api_route("/about", methods=["GET", "HEAD"])
async def about(request: Request) -> Response:
    """Which xAPI versions this LRS speaks. Needs no credentials."""
    body = orjson.dumps({"version": list(SUPPORTED_VERSIONS), "extensions": {}})
    return JSONResponse(b"" if request.method == "HEAD" else body)


# -- writing --------------------------------------------------------------------------------------------


async def _statement_body(request: Request) -> tuple[Any, dict[str, AttachmentPart]]:
    body = await read_body(request, settings(request).max_body_bytes)
    content_type = request.headers.get("content-type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    parts: dict[str, AttachmentPart] = {}
    if mime == "application/json":
        raw = body
    elif mime == "multipart/mixed":
        parsed = parse_multipart_mixed(body, content_type)
        raw, parts = parsed.statement_json, parsed.parts
    else:
        raise BadRequest(
            f"Content-Type {content_type or '(none)'!r} is not accepted: send application/json, or multipart/mixed"
            " with attachments"
        )
    try:
        return orjson.loads(raw), parts
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the statement body is not valid JSON: {exc}") from exc


def _validate(statement: Any, path: str, version: str) -> None:
    try:
        validate_statement(statement, version="2.0.0" if version != V1 else "1.0.3")
    except StatementValidationError as exc:
        raise StatementValidationError(f"{path}.{exc.path}" if exc.path else path, exc.reason) from exc


async def _store(
    request: Request,
    credential: Credential,
    prepared: list[dict[str, Any]],
    parts: Any,
    new_ids: AbstractSet[str] = frozenset(),
) -> list[str]:
    check_attachments(prepared, parts)
    for statement in prepared:
        check_signed_statement(statement, parts)
    return await statement_service(request).store(credential.tenant, credential, prepared, parts, new_ids=new_ids)


@router.put("/statements", status_code=204)
async def put_statement(request: Request) -> Response:
    """Store one statement under the id given as ``statementId``."""
    credential = await authenticate(request)
    credential.require(WRITE_STATEMENTS, "write statements")
    params = parameters(request, frozenset({"statementId"}))
    statement_id = params.get("statementId")
    if statement_id is None:
        raise BadRequest("PUT needs the statementId parameter (POST stores statements without one)")
    if not is_uuid(statement_id):
        raise BadRequest(f"statementId {statement_id!r} is not a UUID")
    statement, parts = await _statement_body(request)
    if not isinstance(statement, dict):
        raise BadRequest("PUT takes one statement: a JSON object")
    _validate(statement, "statement", xapi_version(request))
    if "id" in statement and str(statement["id"]).lower() != statement_id.lower():
        raise BadRequest(f"the statement's id {statement['id']!r} differs from statementId {statement_id!r}")
    await _store(request, credential, [prepare(statement, credential, xapi_version(request), statement_id)], parts)
    return Response(status_code=204)


@router.post("/statements")
async def post_statements(request: Request) -> Response:
    """Store one statement or an array of them, atomically; answers their ids in order."""
    credential = await authenticate(request)
    credential.require(WRITE_STATEMENTS, "write statements")
    parameters(request, frozenset())
    body, parts = await _statement_body(request)
    batch = body if isinstance(body, list) else [body]
    if not batch:
        raise BadRequest("the array holds no statements")
    if len(batch) > settings(request).max_batch:
        raise BadRequest(f"at most {settings(request).max_batch} statements may be sent in one request")
    seen: set[str] = set()
    version = xapi_version(request)
    for index, statement in enumerate(batch):
        if index % TURN_EVERY == TURN_EVERY - 1:
            await asyncio.sleep(0)  # the group commit in progress gets its turn (see TURN_EVERY)
        path = f"statements[{index}]" if isinstance(body, list) else "statement"
        _validate(statement, path, version)
        statement_id = statement.get("id")
        if isinstance(statement_id, str):
            if statement_id.lower() in seen:
                raise BadRequest(f"{path}.id: statement id {statement_id} appears twice in the batch")
            seen.add(statement_id.lower())
    assigned = new_statement_ids(sum(1 for statement in batch if not statement.get("id")))
    fresh_ids = iter(assigned)
    prepared = [
        prepare(statement, credential, version, None if statement.get("id") else next(fresh_ids)) for statement in batch
    ]
    return JSONResponse(await _store(request, credential, prepared, parts, frozenset(assigned)))


# -- reading --------------------------------------------------------------------------------------------


def _formatted(body: bytes, form: str, request: Request) -> bytes:
    older_reader = xapi_version(request) == V1 and (b'"contextAgents"' in body or b'"contextGroups"' in body)
    if form == "exact" and not older_reader:
        return body
    statement = orjson.loads(body)
    if older_reader:
        statement = to_version_1(statement)
    if form == "exact":
        return orjson.dumps(statement)
    if form == "ids":
        return orjson.dumps(to_ids(statement))
    return orjson.dumps(to_canonical(statement, request.headers.get("accept-language")))


def _end_of_millisecond(moment: datetime) -> int:
    micros = int(moment.timestamp()) * 1_000_000 + moment.microsecond
    return micros // 1000 * 1000 + 999


def _query_from(params: dict[str, str], credential: Credential, settings: IngestSettings) -> StatementQuery:
    pairs: list[tuple[int, str]] = []
    related_agents = boolean(params, "related_agents")
    related_activities = boolean(params, "related_activities")
    if "agent" in params:
        try:
            agent = orjson.loads(params["agent"])
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"agent is not valid JSON: {exc}") from exc
        try:
            validate_agent_json(agent, path="agent")
        except StatementValidationError as exc:
            raise BadRequest(f"agent is not an Agent or identified Group: {exc.message}") from exc
        key = identity_key(agent)
        if key is None:
            raise BadRequest("agent must be an Agent or an identified Group (with an IFI)")
        pairs.append((AGENT_RELATED if related_agents else AGENT, key))
    if "verb" in params:
        if not _IRI.match(params["verb"]):
            raise BadRequest(f"verb must be an IRI, not {params['verb']!r}")
        pairs.append((VERB, params["verb"]))
    if "activity" in params:
        if not _IRI.match(params["activity"]):
            raise BadRequest(f"activity must be an IRI, not {params['activity']!r}")
        pairs.append((ACTIVITY_RELATED if related_activities else ACTIVITY, params["activity"]))
    if "registration" in params:
        if not is_uuid(params["registration"]):
            raise BadRequest(f"registration must be a UUID, not {params['registration']!r}")
        pairs.append((REGISTRATION, params["registration"].lower()))
    since = until = None
    # `stored` is shown to the millisecond, so since/until compare at that precision too.
    if "since" in params:
        since = _end_of_millisecond(parse_timestamp(params["since"], path="since"))
    if "until" in params:
        until = _end_of_millisecond(parse_timestamp(params["until"], path="until"))
    limit = settings.page_size
    if "limit" in params:
        if not params["limit"].isdigit():
            raise BadRequest(f"limit must be a non-negative integer, not {params['limit']!r}")
        limit = int(params["limit"]) or settings.page_size
    return StatementQuery(
        pairs=tuple(pairs),
        since_us=since,
        until_us=until,
        limit=min(limit, settings.max_page_size),
        ascending=boolean(params, "ascending"),
        credential=credential.key if credential.reads_only_own_statements else None,
    )


@router.api_route("/statements", methods=["GET", "HEAD"])
async def get_statements(request: Request) -> Response:
    """One statement by ``statementId``/``voidedStatementId``, or a filtered, paged query."""
    credential = await authenticate(request)
    credential.require(READ_STATEMENTS, "read statements")
    params = parameters(request, _QUERY_PARAMETERS)
    service = statement_service(request)
    form = params.get("format", "exact")
    if form not in _FORMATS:
        raise BadRequest(f"format must be one of exact, ids, canonical; not {form!r}")
    with_attachments = boolean(params, "attachments")
    mine = credential.key if credential.reads_only_own_statements else None
    bound, consistent_us = await service.head()  # one read of the log's head for the header and the query's bound
    headers = {"X-Experience-API-Consistent-Through": iso_from_us(consistent_us)}

    if "statementId" in params or "voidedStatementId" in params:
        extra = set(params) - _SINGLE_PARAMETERS
        if extra or ("statementId" in params and "voidedStatementId" in params):
            raise BadRequest(
                "statementId and voidedStatementId go alone (with format and attachments only); also given: "
                + ", ".join(sorted(extra | ({"voidedStatementId"} if "statementId" in params else set())))
            )
        voided = "voidedStatementId" in params
        statement_id = params["voidedStatementId" if voided else "statementId"]
        if not is_uuid(statement_id):
            raise BadRequest(f"{'voidedStatementId' if voided else 'statementId'} must be a UUID")
        found = await service.get_one(credential.tenant, statement_id, voided=voided, credential=mine)
        if found is None:
            raise NotFound(f"no {'voided ' if voided else ''}statement with id {statement_id}")
        body, stored_us, learner = found
        await _record_access(request, credential, [learner])
        headers["Last-Modified"] = http_date_from_us(stored_us)
        content = _formatted(body, form, request)
        if with_attachments:
            return await _multipart(request, credential.tenant, content, [(learner, orjson.loads(body))], headers)
        return JSONResponse(b"" if request.method == "HEAD" else content, headers=headers)

    if "more" in params:
        if set(params) - _PAGE_PRESENTATION:
            raise BadRequest("more goes alone (with format and attachments only): it carries the rest of the query")
        try:
            query, after, bound = StatementQuery.from_token(params["more"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise BadRequest("the more token is not one this LRS issued") from exc
        if query.credential is not None and query.credential != mine:
            raise BadRequest("the more token belongs to another credential")
        page = await service.find(credential.tenant, query, after, bound)
    else:
        query = _query_from(params, credential, settings(request))
        query = await service.keyed(credential.tenant, query)
        page = await service.find(credential.tenant, query, None, bound)
    more = ""
    if page.next_after is not None:
        # How the pages are presented rides along, so that every page comes back as the first did.
        presentation = "".join(f"&{name}={quote(params[name])}" for name in ("format", "attachments") if name in params)
        more = f"{request.url.path}?more={query.to_token(page.next_after, page.bound)}{presentation}"
    await _record_access(request, credential, page.learners)
    statements = [_formatted(body, form, request) for body in page.bodies]
    content = b'{"statements":[' + b",".join(statements) + b'],"more":' + orjson.dumps(more) + b"}"
    if with_attachments:
        listed = [(learner, orjson.loads(b)) for learner, b in zip(page.learners, page.bodies, strict=True)]
        return await _multipart(request, credential.tenant, content, listed, headers)
    return JSONResponse(b"" if request.method == "HEAD" else content, headers=headers)


async def _record_access(request: Request, credential: Credential, learners: Sequence[str]) -> None:
    """The record of access (when the service runs one): whose statements this credential read."""
    recorder = getattr(request.app.state, "access_recorder", None)
    if recorder is not None and learners:
        await recorder.record(credential.tenant, credential, learners, request.url.path, request.url.query)


async def _multipart(
    request: Request, tenant: str, first: bytes, found: list[tuple[str, dict[str, Any]]], headers: dict[str, str]
) -> Response:
    """The result as multipart/mixed: the JSON first, then each attachment's raw bytes (``found``: the statements
    with their learners; an erased learner's attachments are left out, see ``attachment_parts``)."""
    parts = await statement_service(request).attachment_parts(tenant, found)
    content, content_type = build_multipart_mixed(first, parts)
    return Response(b"" if request.method == "HEAD" else content, headers={**headers, "Content-Type": content_type})


@router.api_route("/{resource:path}", methods=["GET", "HEAD", "PUT", "POST", "DELETE"], include_in_schema=False)
async def unknown_resource(request: Request, resource: str) -> Response:
    """Every resource but About needs the version header, even one this LRS does not serve."""
    check_version_header(request)
    raise NotFound(f"this LRS has no resource /xapi/{resource}")
