"""The xAPI Document resources (State, Activity Profile, Agent Profile), event-sourced.

xAPI 1.0.3 Communication §2.2, 2.3, 2.6, 2.7 and §3.1 (concurrency), and the same resources in xAPI 2.0:

``/xapi/activities/state``    ``activityId``, ``agent``, ``registration``?, ``stateId``    scope ``state``
``/xapi/activities/profile``  ``activityId``, ``profileId``                              scope ``profile``
``/xapi/agents/profile``      ``agent``, ``profileId``                                   scope ``profile``

PUT stores a document of any content type; POST merges a JSON object into a stored JSON object, one
level deep (or stores it when there is none); GET returns one document with its ``ETag`` (the quoted
SHA-1 hex of its bytes), ``Last-Modified`` and stored ``Content-Type``, or without the document id the
JSON array of ids (``since`` keeps those changed after a moment); DELETE removes one document, or on
the State resource every document of the activity and agent (and registration, if given). HEAD
answers as GET without a body. ``all`` covers both scopes and ``all/read`` may read.

Concurrency. ``If-Match`` / ``If-None-Match`` are evaluated as RFC 7232 says (412 when they fail; a
GET whose If-None-Match matches is 304). A PUT without either header on an existing profile document
(and, in xAPI 2.0, state document) is 409; in xAPI 1.0.3 a profile PUT without either header is 400
even when the document is new, as that version makes the header a client MUST. Every document is a
stream of the log. A PUT and a DELETE of one document decide under the log's write lock
(``EventLog.append_decided``), from the document as its stream's newest event leaves it: of two racing
writers with the same If-Match, the first to get the lock wins and the other finds a different ETag (412).
A merge (POST), which needs the stored bytes, appends with ``expected_version`` = the version it read; a
conditional one that lost the race is 412, an unconditional one is re-read and re-applied (two concurrent
merges both land, neither is lost).

Events, one per document write (a State DELETE of many documents appends one per document, in one
batch), on the stream ``document:<sha256 of tenant, resource and keys>``:

``DocumentPut``      a PUT: the document is now the bytes sent, with this content type
``DocumentMerged``   a POST: the document is now the merge (or the object sent, if there was none);
                     ``properties`` names the top-level properties the client sent
``DocumentDeleted``  a DELETE: the document no longer exists

The payload is JSON: the resource, its keys (the agent as a keyed digest of its identifier, with the
tenant's identifier secret, and the learner id it belongs to, from the learner directory), ``contentType`` and
``sha1``. The document
bytes themselves go in the envelope's ``sealed`` body: no base64 inflation or JSON escaping of large
binary documents, hashed into the chain like the payload. A document of an agent (State, Agent Profile)
is that learner's personal data: the log seals it under her key (``NewEvent.private``), and erasing her
makes it unreadable (and the table's row a tombstone). Activity Profile documents belong to no one and
stay raw (``key_id`` None). Each Put/Merged event carries the whole resulting
document, so the document after any event depends on that event alone: rebuilds and replays never
depend on a JSON serialiser's output staying the same across versions.

The ``xapi_documents`` table is an inline projection of those events (written in the append's
transaction, so a client reads its own writes), one row per document stream; a deleted document
keeps a tombstone row that remembers its stream version. ``rebuild_documents`` replays the log into it.

Agents are identified by their inverse functional identifier only (name and objectType do not
matter), and an ``mbox`` is the same agent as the ``mbox_sha1sum`` of it: a document stored for
``{"mbox": "mailto:a@b.org"}`` is found with ``{"mbox_sha1sum": sha1("mailto:a@b.org")}``.

Proficio extension: ``GET`` (or HEAD) of one document with ``as_of=<ISO 8601 timestamp>`` answers
the document as it was at that moment (404 if it did not exist then), by replaying that document's
stream from the log up to that moment; ``ETag`` and ``Last-Modified`` are those it had then.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, TypeVar

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from proficio_events import (
    PENDING_LEARNER,
    ConcurrencyError,
    EventLog,
    NewEvent,
    StoredEvent,
    StreamHead,
    bulk_insert_many,
    identifier_secret,
    open_sealed,
    read_keys,
)

from ._deps import authenticate, event_log, query_parameters, settings, xapi_version
from ._errors import BadRequest, Conflict, NotFound, PreconditionFailed, StatementValidationError
from ._http import JSONResponse, PlainRoute, http_date_from_us, read_body
from ._learners import learner_digest
from ._projection import agent_value
from ._schema import documents
from ._tenants import V1
from ._validation import XAPIVersion, is_uuid, parse_timestamp, validate_agent_json

router = APIRouter(prefix="/xapi", route_class=PlainRoute)

DOCUMENT_PUT = "DocumentPut"
DOCUMENT_MERGED = "DocumentMerged"
DOCUMENT_DELETED = "DocumentDeleted"
DOCUMENT_EVENTS = frozenset({DOCUMENT_PUT, DOCUMENT_MERGED, DOCUMENT_DELETED})
STREAM_PREFIX = "document:"
#: How often an unconditional write is re-read and re-tried when other writers keep winning the race.
MAX_ATTEMPTS = 8
_DEFAULT_CONTENT_TYPE = "application/octet-stream"
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CONFLICT_ADVICE = (
    "check the document's current state (GET it) and send If-Match with its ETag to replace it,"
    " or If-None-Match: * to create it only if it does not exist"
)


@dataclass(frozen=True, slots=True)
class Kind:
    """One of the three Document resources."""

    name: str  # as stored in the table and in events
    what: str  # for messages
    id_param: str
    activity: bool  # keyed by activityId
    agent: bool  # keyed by agent
    registration: bool  # optionally keyed by registration
    read_scopes: frozenset[str]
    write_scopes: frozenset[str]

    @property
    def is_profile(self) -> bool:
        return self.name != "state"


_STATE_WRITE = frozenset({"state", "all"})
_PROFILE_WRITE = frozenset({"profile", "all"})
STATE = Kind(
    name="state",
    what="state documents",
    id_param="stateId",
    activity=True,
    agent=True,
    registration=True,
    read_scopes=_STATE_WRITE | {"all/read"},
    write_scopes=_STATE_WRITE,
)
ACTIVITY_PROFILE = Kind(
    name="activity_profile",
    what="activity profiles",
    id_param="profileId",
    activity=True,
    agent=False,
    registration=False,
    read_scopes=_PROFILE_WRITE | {"all/read"},
    write_scopes=_PROFILE_WRITE,
)
AGENT_PROFILE = Kind(
    name="agent_profile",
    what="agent profiles",
    id_param="profileId",
    activity=False,
    agent=True,
    registration=False,
    read_scopes=_PROFILE_WRITE | {"all/read"},
    write_scopes=_PROFILE_WRITE,
)


# -- identities -------------------------------------------------------------------------------------------


def agent_key(agent: dict[str, Any]) -> str:
    """The identifier documents are kept under: the agent's IFI, an mbox as its mbox_sha1sum.

    A validated Agent (or identified Group) has exactly one IFI. Hashing the mbox makes both forms of
    the same mailbox find the same documents, and keeps email addresses out of the log and the table.
    """
    if "mbox" in agent:
        return "mbox_sha1sum:" + hashlib.sha1(str(agent["mbox"]).encode()).hexdigest()
    if "mbox_sha1sum" in agent:
        return "mbox_sha1sum:" + str(agent["mbox_sha1sum"]).lower()
    if "openid" in agent:
        return "openid:" + str(agent["openid"])
    account = agent["account"]
    return "account:" + orjson.dumps([account["homePage"], account["name"]]).decode()


@dataclass(frozen=True, slots=True)
class Target:
    """What a request addresses: one document (``document_id`` set) or the documents of a context."""

    kind: Kind
    activity_id: str | None
    agent: str | None  # agent_key(agent) as parsed; its keyed digest once ``keyed`` (what is stored)
    registration: str | None
    document_id: str | None
    learner: str | None = None  # whose personal data the document is (agent documents): PENDING_LEARNER
    learner_of: str | None = None  # her directory digest: the log puts her learner id in place of PENDING_LEARNER

    def stream(self, tenant: str) -> str:
        assert self.document_id is not None
        return document_stream(
            tenant, self.kind.name, self.activity_id, self.agent, self.registration, self.document_id
        )

    def keys(self) -> dict[str, Any]:
        """The document's keys as event payloads carry them."""
        found: dict[str, Any] = {"resource": self.kind.name}
        if self.kind.activity:
            found["activityId"] = self.activity_id
        if self.kind.agent:
            found["agent"] = self.agent
            found["learner"] = self.learner
        if self.kind.registration:
            found["registration"] = self.registration
        found["id"] = self.document_id
        return found


@lru_cache(maxsize=4096)
def document_stream(
    tenant: str, resource: str, activity_id: str | None, agent: str | None, registration: str | None, document_id: str
) -> str:
    """The document's stream: a digest of its keys, so stream names (and Kafka keys) carry no identifier."""
    digest = hashlib.sha256(orjson.dumps([tenant, resource, activity_id, agent, registration, document_id]))
    return STREAM_PREFIX + digest.hexdigest()


# -- the table: an inline projection of the document events ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Document:
    """A document as it stands after an event (``deleted`` for a tombstone)."""

    content: bytes | None
    content_type: str | None
    etag: str | None  # SHA-1 hex of the content, unquoted
    updated_us: int
    version: int
    deleted: bool

    @property
    def exists(self) -> bool:
        return not self.deleted


def _row(event: StoredEvent, erased: bool = False) -> dict[str, Any]:
    """The table row after ``event``; ``erased``: its learner's key is gone, so the row is a tombstone."""
    data = event.data()
    deleted = event.event_type == DOCUMENT_DELETED or erased
    return {
        "tenant": event.tenant,
        "stream": event.stream,
        "resource": data["resource"],
        "activity_id": data.get("activityId"),
        "agent": data.get("agent"),
        "registration": data.get("registration"),
        "document_id": data["id"],
        "content_type": None if deleted else data["contentType"],
        "content": None if deleted else (event.sealed if event.sealed is not None else b""),
        "etag": None if deleted else data["sha1"],
        "deleted": deleted,
        "version": event.stream_version,
        "position": event.position,
        "updated_us": event.recorded_us,
        "learner": data.get("learner"),
        "key_id": None if deleted else event.key_id,
    }


def _is_erased(event: StoredEvent, keys: dict[str, bytes]) -> bool:
    return event.key_id is not None and event.opened is None and event.key_id not in keys


def document_after(event: StoredEvent, keys: dict[str, bytes]) -> Document:
    """The document after one of its events (opened with ``keys``). Each event carries the whole outcome, so
    this is the fold. Once its learner is erased it reads as deleted."""
    row = _row(event, _is_erased(event, keys))
    content = row["content"]
    if content is not None and event.key_id is not None:
        content = open_sealed(keys, event.tenant, event.stream, event.key_id, content)
    return Document(content, row["content_type"], row["etag"], row["updated_us"], row["version"], row["deleted"])


_UPSERTS: dict[str, sa.Executable] = {}


def _upsert(dialect: str) -> sa.Executable:
    """The row upsert, built once per dialect so SQLAlchemy compiles it once (it is on every write).

    A row only ever moves forward in its stream, so replaying events the table already holds (a
    rebuild racing live writes) can never take a document back to an older version.
    """
    if dialect not in _UPSERTS:
        insert = pg_insert(documents) if dialect == "postgresql" else sqlite_insert(documents)
        updated = [c.name for c in documents.columns if c.name not in ("tenant", "stream")]
        _UPSERTS[dialect] = insert.on_conflict_do_update(
            index_elements=[documents.c.tenant, documents.c.stream],
            set_={name: insert.excluded[name] for name in updated},
            where=documents.c.version < insert.excluded.version,
        )
    return _UPSERTS[dialect]


_COLUMN_NAMES = tuple(c.name for c in documents.columns)
# The same upsert on PostgreSQL, as the ON CONFLICT clause of a bulk insert: it goes into one statement with
# the append's own event rows (the log defers a small batch's insert for that), one round trip per write.
_PG_CONFLICT = (
    " ON CONFLICT (tenant, stream) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _COLUMN_NAMES if name not in ("tenant", "stream"))
    + " WHERE xapi_documents.version < excluded.version"
)


async def apply(conn: AsyncConnection, events: Sequence[StoredEvent]) -> None:
    """Fold newly appended document events into ``xapi_documents`` (inside the append transaction)."""
    latest: dict[tuple[str, str], StoredEvent] = {}
    for event in events:
        if event.event_type not in DOCUMENT_EVENTS:
            continue
        seen = latest.get((event.tenant, event.stream))
        if seen is None or seen.stream_version < event.stream_version:
            latest[(event.tenant, event.stream)] = event
    if not latest:
        return
    # Replayed events (a rebuild) of erased learners become tombstones; appended ones carry ``opened``.
    keys: dict[str, bytes] = {}
    for tenant in sorted({t for t, _ in latest}):
        replayed = [e.key_id for e in latest.values() if e.tenant == tenant and e.opened is None]
        keys.update(await read_keys(conn, tenant, replayed))
    rows = [_row(event, _is_erased(event, keys)) for event in latest.values()]
    if conn.dialect.name == "postgresql":
        records = [tuple(row[name] for name in _COLUMN_NAMES) for row in rows]
        await bulk_insert_many(conn, [(documents, records, _PG_CONFLICT)])
        return
    await conn.execute(_upsert(conn.dialect.name), rows)


# -- reading --------------------------------------------------------------------------------------------


_DOCUMENT_COLUMNS = (
    documents.c.content,
    documents.c.content_type,
    documents.c.etag,
    documents.c.updated_us,
    documents.c.version,
    documents.c.deleted,
    documents.c.key_id,
)


_PG_CURRENT = (
    "SELECT d.content, d.content_type, d.etag, d.updated_us, d.version, d.deleted, d.key_id, k.data_key"
    " FROM xapi_documents d LEFT JOIN learner_keys k ON k.tenant = d.tenant AND k.key_id = d.key_id"
    " WHERE d.tenant = $1 AND d.stream = $2"
)
_PG_CURRENT_WITHOUT_CONTENT = (
    "SELECT NULL::bytea, content_type, etag, updated_us, version, deleted, key_id, NULL::bytea FROM xapi_documents"
    " WHERE tenant = $1 AND stream = $2"
)


async def current_document(log: EventLog, tenant: str, stream: str, *, content: bool = True) -> Document | None:
    """The document (or its tombstone) as the table holds it; None if the stream never existed.

    Without ``content`` the bytes are not fetched (a PUT or DELETE needs only the ETag and version).
    On PostgreSQL one prepared statement on a driver connection, outside any transaction (one round trip;
    SQLAlchemy Core would add a BEGIN, a ROLLBACK and several times the query's own CPU).
    """
    row: Sequence[Any] | None
    if log.engine.dialect.name == "postgresql":
        # The learner's data key comes with the row (one round trip); an erased key is NULL.
        row = await log.fetch_row(_PG_CURRENT if content else _PG_CURRENT_WITHOUT_CONTENT, tenant, stream)
    else:
        columns = _DOCUMENT_COLUMNS if content else (sa.null(), *_DOCUMENT_COLUMNS[1:])
        async with log.engine.connect() as conn:
            query = sa.select(*columns).where(documents.c.tenant == tenant, documents.c.stream == stream)
            row = (await conn.execute(query)).first()
            if row is not None and row[0] is not None and row[6] is not None:
                found = await read_keys(conn, tenant, [row[6]])
                row = (*row, found.get(row[6]))
    if row is None:
        return None
    body = None if row[0] is None else bytes(row[0])
    key_id = row[6]
    if body is not None and key_id is not None:
        # The learner's key, read for this request only: after an erasure the document is gone.
        data_key = row[7] if len(row) > 7 else None
        keys = {} if data_key is None else {str(key_id): bytes(data_key)}
        body = open_sealed(keys, tenant, stream, key_id, body)
        if body is None:
            return Document(None, None, None, int(row[3]), int(row[4]), True)
    return Document(body, row[1], row[2], int(row[3]), int(row[4]), bool(row[5]))


async def document_as_of(log: EventLog, tenant: str, stream: str, moment_us: int, page: int = 100) -> Document | None:
    """The document as it was at ``moment_us``, by replaying its stream from the log up to that moment.

    A stream's recorded times never go backwards, so the replay stops at the first later event; it reads
    the stream a page at a time, since a player may save its state thousands of times.
    """
    state: Document | None = None
    version = 0
    while events := await log.read_stream(tenant, stream, after_version=version, limit=page):
        keys = await read_keys(log.engine, tenant, [e.key_id for e in events])
        for event in events:
            if event.recorded_us > moment_us:
                return state
            state = document_after(event, keys)
        version = events[-1].stream_version
    return state


def _same(column: sa.ColumnElement[Any], value: str | None) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _context(tenant: str, target: Target) -> list[sa.ColumnElement[bool]]:
    """The documents of the target's context (every registration when none is given)."""
    conditions = [
        documents.c.tenant == tenant,
        documents.c.resource == target.kind.name,
        _same(documents.c.activity_id, target.activity_id),
        _same(documents.c.agent, target.agent),
        documents.c.deleted == sa.false(),
    ]
    if target.registration is not None:
        conditions.append(documents.c.registration == target.registration)
    return conditions


# -- preconditions (RFC 7232) ---------------------------------------------------------------------------


EntityTags = Literal["*"] | tuple[tuple[bool, str], ...]  # (weak, opaque tag)


def _entity_tags(request: Request, header: str) -> EntityTags | None:
    values = request.headers.getlist(header)
    if not values:
        return None
    text = ",".join(values).strip()
    if text == "*":
        return "*"
    tags: list[tuple[bool, str]] = []
    # Our tags are hex, so a comma never occurs inside one. Bare (unquoted) tags are accepted for
    # clients that strip the quotes; hex is compared without regard to case.
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        weak = item.startswith("W/")
        if weak:
            item = item[2:]
        if len(item) >= 2 and item[0] == item[-1] == '"':
            item = item[1:-1]
        tags.append((weak, item.lower()))
    if not tags:
        raise BadRequest(f"the {header} header holds no entity tag")
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class Preconditions:
    if_match: EntityTags | None
    if_none_match: EntityTags | None

    @classmethod
    def of(cls, request: Request) -> Preconditions:
        return cls(_entity_tags(request, "if-match"), _entity_tags(request, "if-none-match"))

    @property
    def present(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None

    def holds_if_match(self, current: Document | None) -> bool:
        """If-Match compares strongly: a weak tag never matches."""
        if self.if_match is None:
            return True
        if current is None or not current.exists:
            return False
        return self.if_match == "*" or any(not weak and tag == current.etag for weak, tag in self.if_match)

    def none_match(self, current: Document | None) -> bool:
        """If-None-Match compares weakly. True when the condition holds (no listed tag matches)."""
        if self.if_none_match is None or current is None or not current.exists:
            return True
        if self.if_none_match == "*":
            return False
        return all(tag != current.etag for _weak, tag in self.if_none_match)

    def check_write(self, current: Document | None) -> None:
        if not self.holds_if_match(current):
            raise PreconditionFailed(
                "If-Match does not match the document's current ETag"
                + ("" if current is not None and current.exists else " (the document does not exist)")
                + "; GET it again and retry with its ETag"
            )
        if not self.none_match(current):
            raise PreconditionFailed("If-None-Match: the document exists (or has a listed ETag); nothing was changed")


# -- request parsing ------------------------------------------------------------------------------------


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _agent_parameter(value: str, version: XAPIVersion) -> dict[str, Any]:
    try:
        agent = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"agent is not valid JSON: {exc}") from exc
    try:
        validate_agent_json(agent, path="agent", version=version)
    except StatementValidationError as exc:
        raise BadRequest(f"agent must be an Agent object (or an identified Group): {exc.message}") from exc
    if not any(ifi in agent for ifi in ("mbox", "mbox_sha1sum", "openid", "account")):
        raise BadRequest("agent must carry an identifier (mbox, mbox_sha1sum, openid or account)")
    return dict(agent)


@dataclass(frozen=True, slots=True)
class Parsed:
    target: Target
    since_us: int | None
    as_of_us: int | None
    agent: dict[str, Any] | None = None  # the agent parameter, parsed


def _parse(request: Request, kind: Kind, version: XAPIVersion) -> Parsed:
    """The request's parameters: exactly those the resource names, each well-formed (400 otherwise)."""
    return _parse_query(kind, request.method, version, request.scope["query_string"])


@lru_cache(maxsize=4096)
def _parse_query(kind: Kind, method: str, version: XAPIVersion, query_string: bytes) -> Parsed:
    """``_parse`` of a raw query string. Cached: a content player sends the same query over and over, and its
    decoding, agent validation and identifiers are a fifth of a State request's CPU (errors are not cached)."""
    names = {kind.id_param, "since", "as_of"}
    names |= {"activityId"} if kind.activity else set()
    names |= {"agent"} if kind.agent else set()
    names |= {"registration"} if kind.registration else set()
    params = query_parameters(query_string, frozenset(names))
    reading = method in ("GET", "HEAD")
    activity_id = agent = registration = None
    agent_object: dict[str, Any] | None = None
    if kind.activity:
        activity_id = params.get("activityId")
        if activity_id is None:
            raise BadRequest(f"the activityId parameter is required for {kind.what}")
        if not _IRI.match(activity_id):
            raise BadRequest(f"activityId must be an IRI, not {activity_id!r}")
    if kind.agent:
        if "agent" not in params:
            raise BadRequest(f"the agent parameter (an Agent object as JSON) is required for {kind.what}")
        agent_object = _agent_parameter(params["agent"], version)
        agent = agent_key(agent_object)
    if "registration" in params:
        if not is_uuid(params["registration"]):
            raise BadRequest(f"registration must be a UUID, not {params['registration']!r}")
        registration = params["registration"].lower()
    document_id = params.get(kind.id_param)
    if document_id is not None and not document_id:
        raise BadRequest(f"{kind.id_param} must not be empty")
    if document_id is None and (method in ("PUT", "POST") or (method == "DELETE" and kind.is_profile)):
        raise BadRequest(f"{method} on {kind.what} needs the {kind.id_param} parameter")
    since_us = as_of_us = None
    if "since" in params:
        if not reading or document_id is not None:
            raise BadRequest(f"since applies to the list of ids only (a GET without {kind.id_param})")
        since_us = _micros(parse_timestamp(params["since"], path="since", version=version))
    if "as_of" in params:
        if not reading or document_id is None:
            raise BadRequest(f"as_of applies to a GET of one document (with {kind.id_param}) only")
        as_of_us = _micros(parse_timestamp(params["as_of"], path="as_of", version=version))
    return Parsed(Target(kind, activity_id, agent, registration, document_id), since_us, as_of_us, agent_object)


async def _keyed(log: EventLog, tenant: str, request: Request, kind: Kind, version: XAPIVersion) -> Parsed:
    """The request's parameters with the agent as stored: its keyed digest (no identifier in the log or the
    table), and her learner id."""
    parsed = _parse(request, kind, version)
    if parsed.target.agent is None or parsed.agent is None:
        return parsed
    secret = await identifier_secret(log, tenant)
    return _keyed_query(secret, tenant, kind, request.method, version, request.scope["query_string"])


@lru_cache(maxsize=4096)
def _keyed_query(
    secret: bytes, tenant: str, kind: Kind, method: str, version: XAPIVersion, query_string: bytes
) -> Parsed:
    """``_keyed`` of a raw query string with an agent. Cached like ``_parse_query`` (a player sends the same query
    over and over): the HMACs are pure functions of the tenant's secret and the query."""
    parsed = _parse_query(kind, method, version, query_string)
    target = parsed.target
    assert target.agent is not None
    assert parsed.agent is not None
    # Her learner id is resolved by the log when a write appends (from the learner directory, created there if
    # she has none); a read needs none, and creates nothing. The digest is a pure function of the secret and
    # the agent, so caching it keeps nothing an erasure must forget.
    keyed = replace(
        target,
        agent=agent_value(secret, target.agent),
        learner=PENDING_LEARNER,
        learner_of=learner_digest(secret, parsed.agent),
    )
    return replace(parsed, target=keyed)


def _is_json(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == "application/json"


def _json_object(content: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON ({exc}); POST merges JSON objects") from exc
    if not isinstance(value, dict):
        raise BadRequest(f"{what} is not a JSON object; POST merges JSON objects (PUT replaces any document)")
    return value


def _quoted(etag: str) -> str:
    return f'"{etag}"'


# -- writing --------------------------------------------------------------------------------------------


Seen = TypeVar("Seen")


async def _append(
    log: EventLog,
    tenant: str,
    conditional: bool,
    read: Callable[[], Awaitable[Seen]],
    decide: Callable[[Seen], list[NewEvent]],
) -> None:
    """Read, decide, append with the versions read; on a lost race, 412 if conditional, else read again.

    The expected versions make the append itself the check, under the log's write lock: of two requests
    that read the same version, one appends and the other gets a ConcurrencyError, whatever process
    either runs in. One append per write, and none at all when there is nothing to change.
    """
    for _attempt in range(MAX_ATTEMPTS):
        batch = decide(await read())
        if not batch:
            return
        try:
            await log.append(tenant, batch, inline=apply)
            return
        except ConcurrencyError as exc:
            if conditional:
                raise PreconditionFailed(
                    "the document was changed by another request while this one was processed; nothing was"
                    " changed: GET it again and retry with its new ETag"
                ) from exc
    raise Conflict("the document is being changed by other requests too often; nothing was changed, try again")


def head_document(head: StreamHead) -> Document | None:
    """The document as its stream's newest event leaves it, without its bytes (what a write decides on): the
    table's row, read from the log under the write lock. None if the stream never existed."""
    if head.version == 0:
        return None
    deleted = head.event_type == DOCUMENT_DELETED or head.erased
    data = {} if deleted else head.data()
    return Document(None, data.get("contentType"), data.get("sha1"), head.recorded_us, head.version, deleted)


async def _append_decided(
    log: EventLog, tenant: str, target: Target, decide: Callable[[Document | None], list[NewEvent]]
) -> None:
    """Decide and append under the log's write lock, from the document as the log holds it then: no read before
    the append (a round trip less per write) and no race to lose, so neither a 412 for a lost race nor a retry."""
    stream = target.stream(tenant)
    learners = (target.learner,) if target.learner is not None else ()
    await log.append_decided(
        tenant,
        (stream,),
        lambda heads: decide(head_document(heads[stream])),
        seal_for=learners,
        learner_of=target.learner_of,
        inline=apply,
    )


def _write_event(
    target: Target,
    tenant: str,
    event_type: str,
    content: bytes,
    content_type: str,
    current: Document | None,
    **extra: Any,
) -> NewEvent:
    data = {
        **target.keys(),
        "contentType": content_type,
        "sha1": hashlib.sha1(content).hexdigest(),
        **extra,
    }
    if target.learner is not None:  # an agent's document: sealed under her key by the log
        return NewEvent.of(
            target.stream(tenant),
            event_type,
            data,
            private=content,
            seal_for=target.learner,
            learner_of=target.learner_of,
            expected_version=0 if current is None else current.version,
        )
    return NewEvent.of(
        target.stream(tenant),
        event_type,
        data,
        sealed=content,
        expected_version=0 if current is None else current.version,
    )


def _delete_event(target: Target, tenant: str, current: Document) -> NewEvent:
    return NewEvent.of(
        target.stream(tenant),
        DOCUMENT_DELETED,
        target.keys(),
        expected_version=current.version,
        learner_of=target.learner_of,
    )


async def _put(request: Request, tenant: str, target: Target, version: XAPIVersion) -> None:
    content = await read_body(request, settings(request).max_body_bytes)
    content_type = request.headers.get("content-type") or _DEFAULT_CONTENT_TYPE
    if _is_json(content_type):
        # Anything may be stored, but what is labelled JSON must be JSON: a later merge relies on it.
        try:
            orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the document is labelled application/json but is not valid JSON: {exc}") from exc
    conditions = Preconditions.of(request)
    log = event_log(request)

    def decide(current: Document | None) -> list[NewEvent]:
        conditions.check_write(current)
        exists = current is not None and current.exists
        if not conditions.present:
            if exists and (target.kind.is_profile or version != V1):
                raise Conflict(f"the document exists already and the PUT carried no If-Match: {_CONFLICT_ADVICE}")
            if not exists and target.kind.is_profile and version == V1:
                raise BadRequest(f"a PUT of {target.kind.what} needs an If-Match or If-None-Match header")
        return [_write_event(target, tenant, DOCUMENT_PUT, content, content_type, current)]

    await _append_decided(log, tenant, target, decide)


async def _post(request: Request, tenant: str, target: Target) -> None:
    content = await read_body(request, settings(request).max_body_bytes)
    content_type = request.headers.get("content-type")
    if not _is_json(content_type):
        raise BadRequest(
            f"POST merges JSON objects: the Content-Type must be application/json, not {content_type or '(none)'!r}"
            " (PUT stores documents of any type)"
        )
    posted = _json_object(content, "the posted document")
    conditions = Preconditions.of(request)
    log = event_log(request)
    stream = target.stream(tenant)
    properties = list(posted)

    def decide(current: Document | None) -> list[NewEvent]:
        conditions.check_write(current)
        if current is None or not current.exists:
            merged, merged_type = content, "application/json"
        else:
            if not _is_json(current.content_type):
                raise BadRequest(
                    f"the stored document is {current.content_type!r}, not application/json, so nothing can be"
                    " merged into it (PUT replaces it)"
                )
            stored = _json_object(current.content or b"", "the stored document")
            stored.update(posted)  # one level deep: each posted property replaces the stored one whole
            merged, merged_type = orjson.dumps(stored), "application/json"
        return [_write_event(target, tenant, DOCUMENT_MERGED, merged, merged_type, current, properties=properties)]

    await _append(log, tenant, conditions.present, lambda: current_document(log, tenant, stream), decide)


async def _delete_one(request: Request, tenant: str, target: Target) -> None:
    conditions = Preconditions.of(request)
    log = event_log(request)

    def decide(current: Document | None) -> list[NewEvent]:
        conditions.check_write(current)
        if current is None or not current.exists:
            return []  # deleting what is not there changes nothing, and appends nothing
        return [_delete_event(target, tenant, current)]

    await _append_decided(log, tenant, target, decide)


async def _delete_context(request: Request, tenant: str, target: Target) -> None:
    """DELETE of every state document of an activity and agent (and registration): one batch, all or none."""
    log = event_log(request)
    query = sa.select(
        documents.c.registration, documents.c.document_id, documents.c.version, documents.c.updated_us
    ).where(*_context(tenant, target))

    async def read() -> list[tuple[Target, Document]]:
        async with log.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            (
                replace(target, registration=registration, document_id=document_id),
                Document(None, None, None, int(updated_us), int(version), False),
            )
            for registration, document_id, version, updated_us in rows
        ]

    def decide(found: list[tuple[Target, Document]]) -> list[NewEvent]:
        return [_delete_event(one, tenant, current) for one, current in found]

    await _append(log, tenant, False, read, decide)


# -- the resources --------------------------------------------------------------------------------------


def _document_response(request: Request, document: Document) -> Response:
    assert document.etag is not None
    headers = {
        "ETag": _quoted(document.etag),
        "Last-Modified": http_date_from_us(document.updated_us),
        "Content-Type": document.content_type or _DEFAULT_CONTENT_TYPE,
    }
    body = b"" if request.method == "HEAD" else (document.content or b"")
    return Response(body, headers=headers)


async def _get_one(request: Request, tenant: str, parsed: Parsed) -> Response:
    log = event_log(request)
    stream = parsed.target.stream(tenant)
    if parsed.as_of_us is not None:
        document = await document_as_of(log, tenant, stream, parsed.as_of_us)
    else:
        document = await current_document(log, tenant, stream)
    conditions = Preconditions.of(request)
    if not conditions.holds_if_match(document):
        raise PreconditionFailed("If-Match does not match the document's current ETag")
    if document is None or not document.exists:
        when = "" if parsed.as_of_us is None else " at that moment"
        raise NotFound(f"no such document{when} ({parsed.target.kind.id_param} {parsed.target.document_id!r})")
    if not conditions.none_match(document):
        assert document.etag is not None
        headers = {"ETag": _quoted(document.etag), "Last-Modified": http_date_from_us(document.updated_us)}
        return Response(status_code=304, headers=headers)
    return _document_response(request, document)


async def _get_ids(request: Request, tenant: str, parsed: Parsed) -> Response:
    query = sa.select(documents.c.document_id, documents.c.updated_us).where(*_context(tenant, parsed.target))
    if parsed.since_us is not None:
        query = query.where(documents.c.updated_us > parsed.since_us)
    async with event_log(request).engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    # Every registration's documents when none is given: the same id may appear under several.
    ids = sorted({document_id for document_id, _ in rows})
    body = orjson.dumps(ids)
    headers = {"ETag": _quoted(hashlib.sha1(body).hexdigest())}
    if rows:
        headers["Last-Modified"] = http_date_from_us(max(int(updated_us) for _, updated_us in rows))
    return JSONResponse(b"" if request.method == "HEAD" else body, headers=headers)


async def _serve(request: Request, kind: Kind) -> Response:
    credential = await authenticate(request)
    version: XAPIVersion = "1.0.3" if xapi_version(request) == V1 else "2.0.0"
    reading = request.method in ("GET", "HEAD")
    credential.require(
        kind.read_scopes if reading else kind.write_scopes, f"{'read' if reading else 'write'} {kind.what}"
    )
    parsed = await _keyed(event_log(request), credential.tenant, request, kind, version)
    tenant, target = credential.tenant, parsed.target
    if reading:
        if target.document_id is None:
            return await _get_ids(request, tenant, parsed)
        return await _get_one(request, tenant, parsed)
    if request.method == "PUT":
        await _put(request, tenant, target, version)
    elif request.method == "POST":
        await _post(request, tenant, target)
    elif target.document_id is None:
        await _delete_context(request, tenant, target)
    else:
        await _delete_one(request, tenant, target)
    return Response(status_code=204)


_METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"]


@router.api_route("/activities/state", methods=_METHODS)
async def state_resource(request: Request) -> Response:
    """State documents of an activity and agent (and registration): PUT, POST (merge), GET, HEAD, DELETE.

    Without ``stateId``, GET lists the ids (``since`` to filter) and DELETE removes all of them.
    Proficio extension: GET with ``stateId`` and ``as_of=<timestamp>`` answers the document as it was then.
    """
    return await _serve(request, STATE)


@router.api_route("/activities/profile", methods=_METHODS)
async def activity_profile_resource(request: Request) -> Response:
    """Profile documents of an activity: PUT, POST (merge), GET, HEAD, DELETE; without ``profileId`` GET lists ids.

    Proficio extension: GET with ``profileId`` and ``as_of=<timestamp>`` answers the document as it was then.
    """
    return await _serve(request, ACTIVITY_PROFILE)


@router.api_route("/agents/profile", methods=_METHODS)
async def agent_profile_resource(request: Request) -> Response:
    """Profile documents of an agent (any IFI of it): PUT, POST (merge), GET, HEAD, DELETE; without ``profileId``
    GET lists ids.

    Proficio extension: GET with ``profileId`` and ``as_of=<timestamp>`` answers the document as it was then.
    """
    return await _serve(request, AGENT_PROFILE)
