"""The Statements resource behind HTTP: storing statements as events, and answering queries.

Storing is one append per request (all statements of a batch, and their attachments, or nothing),
with the query tables updated in the same transaction. Queries read those tables.

Each statement's personal part (``_personal``) is handed to the log as private data of its learner, which
seals it under her key in the append transaction; the payload keeps the redacted statement. Reads open
the sealed parts with the page's keys (one query per page), or show a pseudonymous actor for an erased
learner. The idempotency fingerprint is the xAPI comparison digest, keyed with the tenant's identifier
secret: unkeyed, it would let anyone holding the log confirm a guessed actor against a redacted statement.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import (
    PENDING_LEARNER,
    DuplicateEventError,
    EventLog,
    InlineHandler,
    NewEvent,
    StoredEvent,
    hmac_sha256,
    identifier_secret,
    open_sealed,
    read_keys,
)

from . import _projection as projection
from ._compare import statement_fingerprint, statements_equivalent
from ._credentials import Credential
from ._errors import Conflict
from ._learners import learner_digest
from ._multipart import AttachmentPart
from ._personal import merge, pseudonymous, split
from ._schema import attachments, statement_index, statements
from ._tenants import V1, V2
from ._validation import parse_timestamp

STATEMENT_KEY = "statement:"
ATTACHMENT_KEY = "attachment:"
ATTACHMENTS_STREAM = "attachments"


#: A large batch's per-statement work gives the event loop a turn every this many statements (~1 ms of CPU):
#: the group commit in progress in this process holds the log's write lock, and each of its round trips would
#: otherwise wait for a whole 100-statement request to be worked out (~10 ms) before it is answered, while the
#: other worker processes queue behind that lock.
TURN_EVERY = 10


def keyed_fingerprint(secret: bytes, statement: dict[str, Any]) -> bytes:
    """The statement's comparison digest (``statement_fingerprint``), keyed with the tenant's secret."""
    return hmac_sha256(secret, statement_fingerprint(statement))


_ASSIGNED_DOMAIN = b"proficio:lrs-assigned-statement-id:1\x00"


def assigned_fingerprint(payload: bytes) -> bytes:
    """The fingerprint of a statement whose id this LRS assigned just now: a digest of its event's payload.

    No stored statement can have that id yet, so nothing is compared with it on the way in, and the canonical
    form (``keyed_fingerprint``, ~8 µs a statement) would be worked out for nothing. A statement sent later with
    that id does not match this digest; ``StatementService.store`` then compares the two statements in full
    (``_repeats``), as the comparison requirements ask. The payload holds no personal data (it is redacted)."""
    return hashlib.sha256(_ASSIGNED_DOMAIN + payload).digest()


def attachment_events(
    secret: bytes, prepared: Sequence[dict[str, Any]], parts: dict[str, AttachmentPart]
) -> list[NewEvent]:
    """The attachments' data as personal data of the learner whose statement carries it: sealed under her key.

    One ``AttachmentStored`` per (learner, sha2) of the batch, keyed by the first statement that carries it (a
    retry is a repeat; the same bytes from another learner are another copy, under her key). The key names the
    statement, not the learner: a digest of her identity in the log would outlive her erasure (and would make a
    later statement of the same identity, under a fresh learner id, a repeat of the erased copy).
    """
    events: list[NewEvent] = []
    seen: set[tuple[str, str]] = set()
    for statement in prepared:
        declared = statement.get("attachments")
        if not isinstance(declared, list):
            continue
        wanted = {a.get("sha2") for a in declared if isinstance(a, dict) and a.get("sha2") in parts}
        digest: str | None = None
        for sha2 in sorted(s for s in wanted if isinstance(s, str)):
            digest = digest or learner_digest(secret, statement.get("actor"))
            if (digest, sha2) in seen:
                continue
            seen.add((digest, sha2))
            part = parts[sha2]
            events.append(
                NewEvent.of(
                    ATTACHMENTS_STREAM,
                    projection.ATTACHMENT_STORED,
                    {"sha2": sha2, "contentType": part.content_type, "learner": PENDING_LEARNER},
                    key=f"{ATTACHMENT_KEY}{str(statement['id']).lower()}:{sha2}",
                    fingerprint=sha2.encode(),
                    private=part.data,
                    seal_for=PENDING_LEARNER,
                    learner_of=digest,
                )
            )
    return events


def opened_statement(
    keys: dict[str, bytes], tenant: str, learner: str, body: bytes, sealed: bytes | None, key_id: str | None
) -> bytes:
    """A stored statement as GET shows it: whole while its learner's key lives, pseudonymous after."""
    if sealed is None:
        return body
    personal = open_sealed(keys, tenant, learner, key_id, sealed)
    redacted = orjson.loads(body)
    return orjson.dumps(merge(redacted, personal) if personal is not None else pseudonymous(redacted, learner))


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _normalise_context(context: Any) -> Any:
    """Single context activities become arrays of one, as the LRS must return them."""
    if isinstance(context, dict) and isinstance(context.get("contextActivities"), dict):
        context = dict(context)
        context["contextActivities"] = {k: _as_list(v) for k, v in context["contextActivities"].items()}
    return context


def new_statement_ids(count: int) -> list[str]:
    """Random (version 4) UUIDs from one read of the OS's randomness, not one system call each: what
    ``str(uuid.UUID(bytes=..., version=4))`` gives for the same bytes, formatted without the UUID object."""
    randomness = bytearray(os.urandom(16 * count))
    for start in range(0, 16 * count, 16):
        randomness[start + 6] = randomness[start + 6] & 0x0F | 0x40  # version 4
        randomness[start + 8] = randomness[start + 8] & 0x3F | 0x80  # RFC 4122 variant
    text = randomness.hex()
    ids = []
    for start in range(0, 32 * count, 32):
        part = text[start : start + 32]
        ids.append(f"{part[:8]}-{part[8:12]}-{part[12:16]}-{part[16:20]}-{part[20:]}")
    return ids


def prepare(
    statement: dict[str, Any], credential: Credential, xapi_version: str = V1, statement_id: str | None = None
) -> dict[str, Any]:
    """The statement as the LRS keeps it: with an id, our authority, a version; ``stored`` is set on append.

    Statements are stored once, in the form they came in; a 2.0 statement's timestamp is kept in UTC
    (2.0 asks the LRS to convert offsets rather than keep them).
    """
    prepared = dict(statement)
    prepared.pop("stored", None)
    prepared["id"] = prepared.get("id") or statement_id or new_statement_ids(1)[0]
    prepared["authority"] = credential.authority
    prepared.setdefault("version", "1.0.0" if xapi_version == V1 else V2)
    if xapi_version == V2:
        _timestamps_in_utc(prepared)
    if "context" in prepared:
        prepared["context"] = _normalise_context(prepared["context"])
    target = prepared.get("object")
    if isinstance(target, dict) and target.get("objectType") == "SubStatement" and "context" in target:
        prepared["object"] = {**target, "context": _normalise_context(target["context"])}
    return prepared


def _timestamps_in_utc(statement: dict[str, Any]) -> None:
    for holder in (statement, statement.get("object")):
        if isinstance(holder, dict) and isinstance(holder.get("timestamp"), str) and holder["timestamp"][-1:] != "Z":
            moment = parse_timestamp(holder["timestamp"], path="timestamp", version="2.0.0")
            holder["timestamp"] = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class StatementQuery:
    """A statement query, with the filters already reduced to index pairs."""

    pairs: tuple[tuple[int, str], ...] = ()
    since_us: int | None = None
    until_us: int | None = None
    limit: int = 100
    ascending: bool = False
    credential: str | None = None  # statements/read/mine
    keyed: bool = False  # agent pairs hold keyed digests (``StatementService.keyed``), not identities

    def to_token(self, after: int, bound: int) -> str:
        data = {
            "p": [list(p) for p in self.pairs],
            "s": self.since_us,
            "u": self.until_us,
            "l": self.limit,
            "a": self.ascending,
            "c": self.credential,
            "k": self.keyed,
            "after": after,
            "bound": bound,
        }
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> tuple[StatementQuery, int, int]:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        query = cls(
            pairs=tuple((int(k), str(v)) for k, v in data["p"]),
            since_us=data["s"],
            until_us=data["u"],
            limit=int(data["l"]),
            ascending=bool(data["a"]),
            credential=data["c"],
            keyed=bool(data.get("k", False)),
        )
        return query, int(data["after"]), int(data["bound"])


@dataclass(frozen=True, slots=True)
class Page:
    bodies: list[bytes]
    learners: list[str]  # whose statement each body is (learner ids)
    next_after: int | None  # position to continue after, if there is more
    bound: int


def _then(also: InlineHandler) -> InlineHandler:
    async def both(conn: AsyncConnection, new_events: Sequence[StoredEvent]) -> None:
        await projection.apply(conn, new_events)
        await also(conn, new_events)

    return both


def _matches(index: Any, tenant: str, kind: int, value: str) -> sa.ColumnElement[bool]:
    stored, narrow = projection.index_condition(kind)
    condition = index.c.pair_key == projection.pair_key(tenant, stored, value)
    return sa.and_(condition, index.c.narrow == sa.true()) if narrow else condition


def _pg_find(tenant: str, query: StatementQuery, after: int | None, bound: int) -> tuple[str, list[Any]]:
    """A page of ``find`` as one query on PostgreSQL (the same rows as its SQLAlchemy form), with each statement's
    live data key (learner_keys, joined): one round trip, outside a transaction, on the log's raw readers."""
    args: list[Any] = [tenant]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    def matches(alias: str, kind: int, value: str) -> str:
        stored, narrow = projection.index_condition(kind)
        condition = f"{alias}.pair_key = {arg(projection.pair_key(tenant, stored, value))}::uuid"
        return condition + (f" AND {alias}.narrow" if narrow else "")

    if query.pairs:
        order = "f.position"
        # The tenant from the query, not the index row: the index answers alone (pair_key, position, narrow).
        sql = "FROM xapi_statement_index f JOIN xapi_statements s ON s.tenant = $1 AND s.position = f.position"
        where = [matches("f", *query.pairs[0])]
        for n, (kind, value) in enumerate(query.pairs[1:]):
            where.append(
                f"EXISTS (SELECT 1 FROM xapi_statement_index o{n} WHERE {matches(f'o{n}', kind, value)}"
                f" AND o{n}.position = s.position)"
            )
    else:
        order = "s.position"
        sql = "FROM xapi_statements s"
        where = ["s.tenant = $1"]
    where += ["NOT s.voided", f"{order} <= {arg(bound)}"]
    if query.since_us is not None:
        where.append(f"s.stored_us > {arg(query.since_us)}")
    if query.until_us is not None:
        where.append(f"s.stored_us <= {arg(query.until_us)}")
    if query.credential is not None:
        where.append(f"s.credential = {arg(query.credential)}")
    if after is not None:
        where.append(f"{order} {'>' if query.ascending else '<'} {arg(after)}")
    return (
        f"SELECT s.body, {order}, s.learner, s.sealed, s.key_id, k.data_key {sql}"
        " LEFT JOIN learner_keys k ON k.tenant = s.tenant AND k.key_id = s.key_id AND k.data_key IS NOT NULL"
        f" WHERE {' AND '.join(where)} ORDER BY {order} {'ASC' if query.ascending else 'DESC'}"
        f" LIMIT {arg(query.limit + 1)}"
    ), args


class StatementService:
    def __init__(self, log: EventLog, consistency_margin_us: int = 1_000_000) -> None:
        self.log = log
        self.consistency_margin_us = consistency_margin_us
        log.add_group_read(projection.LOOKUPS)  # the projection's lookups in the group commit's read

    async def store(
        self,
        tenant: str,
        credential: Credential,
        prepared: Sequence[dict[str, Any]],
        parts: dict[str, AttachmentPart],
        *,
        also: InlineHandler | None = None,
        new_ids: AbstractSet[str] = frozenset(),
    ) -> list[str]:
        """Append the statements (already validated and prepared) and their attachments: all or nothing.

        ``also`` runs in the append transaction after the query tables are updated, with the new events (it
        does not run when every statement was stored before). ``new_ids`` are the ids this LRS assigned to
        statements sent without one (``new_statement_ids``, lower case): random UUIDs no stored statement can
        have, so the log does not look their keys up (``NewEvent.new_key``).
        """
        events: list[NewEvent] = []
        secret = await identifier_secret(self.log, tenant)
        events.extend(attachment_events(secret, prepared, parts))
        digests: dict[str, str] = {}
        for index, statement in enumerate(prepared):
            if index % TURN_EVERY == TURN_EVERY - 1:
                await asyncio.sleep(0)  # see TURN_EVERY
            redacted, personal = split(statement)
            data = {"statement": redacted, "credential": credential.key, "define": credential.may_define}
            payload = orjson.dumps(data)
            assigned = bool(new_ids) and statement["id"] in new_ids
            # The stream is her learner id, which the log takes from the learner directory (created there for an
            # identity it does not know) inside the append: one lookup for the whole group commit.
            events.append(
                NewEvent(
                    PENDING_LEARNER,
                    projection.STATEMENT_VOIDED if projection.is_voiding(statement) else projection.STATEMENT_STORED,
                    payload,
                    key=STATEMENT_KEY + str(statement["id"]).lower(),
                    new_key=assigned,
                    fingerprint=assigned_fingerprint(payload) if assigned else keyed_fingerprint(secret, statement),
                    decoded=data,
                    private=personal,
                    seal_for=PENDING_LEARNER,
                    learner_of=learner_digest(secret, statement.get("actor")),
                    # The projection's rows, but for position and stored time, worked out here rather than
                    # under the log's write lock.
                    prepared=projection.prepare_statement(tenant, secret, statement, redacted, digests),
                )
            )
        try:
            await self.log.append(tenant, events, inline=projection.apply if also is None else _then(also))
        except DuplicateEventError as exc:
            ids = {k.removeprefix(STATEMENT_KEY) for k in exc.keys if k.startswith(STATEMENT_KEY)}
            # Stored with an LRS-assigned id (``assigned_fingerprint``), a statement is compared here, in full.
            repeats = await self._repeats(tenant, [s for s in prepared if str(s["id"]).lower() in ids])
            if not ids or not ids <= repeats or len(exc.keys) != len(ids):
                raise Conflict(
                    f"statement id(s) {', '.join(sorted(ids - repeats))} already stored with different content;"
                    " nothing was stored"
                ) from exc
            rest = [s for s in prepared if str(s["id"]).lower() not in repeats]
            if rest:  # the others, as if the repeats had been left out of the batch
                await self.store(tenant, credential, rest, parts, also=also, new_ids=new_ids)
        return [str(s["id"]) for s in prepared]

    async def _repeats(self, tenant: str, sent: Sequence[dict[str, Any]]) -> set[str]:
        """The ids (lower case) of the statements of ``sent`` that are stored already, equivalent to what was sent."""
        same: set[str] = set()
        for statement in sent:
            sid = str(statement["id"]).lower()
            stored = await self.get_one(tenant, sid, voided=False, credential=None) or await self.get_one(
                tenant, sid, voided=True, credential=None
            )
            if stored is not None and statements_equivalent(orjson.loads(stored[0]), statement):
                same.add(sid)
        return same

    async def get_one(
        self, tenant: str, statement_id: str, *, voided: bool, credential: str | None
    ) -> tuple[bytes, int, str] | None:
        """The stored statement (body, stored_us, learner), if it exists and is (or, for voided=False, is not)
        voided."""
        s = statements
        query = sa.select(s.c.body, s.c.stored_us, s.c.learner, s.c.sealed, s.c.key_id).where(
            statements.c.tenant == tenant,
            statements.c.statement_id == statement_id.lower(),
            statements.c.voided == voided,
        )
        if credential is not None:
            query = query.where(statements.c.credential == credential)
        async with self.log.engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            keys = await read_keys(conn, tenant, [row[4]])
        body = opened_statement(keys, tenant, row[2], bytes(row[0]), row[3], row[4])
        return body, int(row[1]), str(row[2])

    async def keyed(self, tenant: str, query: StatementQuery) -> StatementQuery:
        """The query with its agent filter as the index holds agents: a keyed digest (so neither the index
        nor a ``more`` link carries the identifier)."""
        if query.keyed or not any(kind in (projection.AGENT, projection.AGENT_RELATED) for kind, _ in query.pairs):
            return query if query.keyed else replace(query, keyed=True)
        secret = await identifier_secret(self.log, tenant)
        agents = (projection.AGENT, projection.AGENT_RELATED)
        pairs = tuple(
            (kind, projection.agent_value(secret, value) if kind in agents else value) for kind, value in query.pairs
        )
        return replace(query, pairs=pairs, keyed=True)

    async def find(self, tenant: str, query: StatementQuery, after: int | None, bound: int | None) -> Page:
        query = await self.keyed(tenant, query)
        if bound is None:
            bound = await self.log.max_position()
        if self.log.engine.dialect.name == "postgresql":
            sql, args = _pg_find(tenant, query, after, bound)
            found = await self.log.fetch_rows(sql, *args)
            more = len(found) > query.limit
            found = found[: query.limit]
            # The keys come with the page, in its snapshot; never kept: the next page honours an erasure.
            keys = {str(r[4]): bytes(r[5]) for r in found if r[5] is not None}
            bodies = [opened_statement(keys, tenant, r[2], bytes(r[0]), r[3], r[4]) for r in found]
            return Page(bodies, [str(r[2]) for r in found], int(found[-1][1]) if more else None, bound)
        return await self._find_portable(tenant, query, after, bound)

    async def _find_portable(self, tenant: str, query: StatementQuery, after: int | None, bound: int) -> Page:
        """``find`` through SQLAlchemy Core, on any backend (PostgreSQL has ``_pg_find``, which must agree)."""
        s = statements
        if query.pairs:
            first = statement_index.alias("first_pair")
            order = first.c.position
            select = sa.select(s.c.body, order, s.c.learner, s.c.sealed, s.c.key_id).select_from(
                first.join(s, sa.and_(s.c.tenant == tenant, s.c.position == first.c.position))
            )
            select = select.where(_matches(first, tenant, *query.pairs[0]))
            for kind, value in query.pairs[1:]:
                other = statement_index.alias()
                select = select.where(
                    sa.exists().where(_matches(other, tenant, kind, value), other.c.position == s.c.position)
                )
        else:
            order = s.c.position
            select = sa.select(s.c.body, order, s.c.learner, s.c.sealed, s.c.key_id).where(s.c.tenant == tenant)
        select = select.where(s.c.voided == sa.false(), order <= bound)
        if query.since_us is not None:
            select = select.where(s.c.stored_us > query.since_us)
        if query.until_us is not None:
            select = select.where(s.c.stored_us <= query.until_us)
        if query.credential is not None:
            select = select.where(s.c.credential == query.credential)
        if after is not None:
            select = select.where(order > after if query.ascending else order < after)
        select = select.order_by(order.asc() if query.ascending else order.desc()).limit(query.limit + 1)
        async with self.log.engine.connect() as conn:
            rows = (await conn.execute(select)).all()
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            # Keys read per page, never kept: an erasure that commits is honoured by the next page.
            keys = await read_keys(conn, tenant, [r[4] for r in rows])
        bodies = [opened_statement(keys, tenant, r[2], bytes(r[0]), r[3], r[4]) for r in rows]
        return Page(bodies, [str(r[2]) for r in rows], int(rows[-1][1]) if more else None, bound)

    async def attachment_parts(self, tenant: str, found: Sequence[tuple[str, dict[str, Any]]]) -> list[AttachmentPart]:
        """The data of the attachments of ``found`` ((learner, statement) pairs), each opened from a copy of a
        learner whose statement carries it (attachments are sealed per learner: ``attachment_events``), or
        from a copy stored in clear before attachments were sealed (learner ''). An attachment whose every
        such copy is erased (its learner's key destroyed) is left out: the statement still declares it."""
        wanted: dict[str, set[str]] = {}  # sha2 -> the learners whose statements carry it
        for learner, body in found:
            for a in body.get("attachments") or ():
                if isinstance(a, dict) and isinstance(a.get("sha2"), str):
                    wanted.setdefault(a["sha2"], {""}).add(learner)
        if not wanted:
            return []
        learners = sorted(set().union(*wanted.values()))
        t = attachments.c
        async with self.log.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.learner, t.sha2, t.content_type, t.data, t.key_id)
                    .where(t.tenant == tenant, t.sha2.in_(sorted(wanted)), t.learner.in_(learners))
                    .order_by(t.sha2, t.learner)
                )
            ).all()
            # Keys read per request, never kept: an erasure that commits is honoured by the next request.
            keys = await read_keys(conn, tenant, [r[4] for r in rows])
        parts: dict[str, AttachmentPart] = {}
        for learner, sha2, content_type, data, key_id in rows:
            if sha2 in parts or learner not in wanted[sha2]:
                continue
            content = open_sealed(keys, tenant, ATTACHMENTS_STREAM, key_id, bytes(data))
            if content is not None:
                parts[sha2] = AttachmentPart(sha2, content_type, content)
        return list(parts.values())

    async def consistent_through_us(self) -> int:
        """A time up to which every stored statement is queryable.

        The query tables are written in the append transaction, so everything committed is visible.
        What is not yet visible is an append still in flight, whose `stored` was taken when it got the
        log's write lock: never older than the newest committed event, and (appends take milliseconds)
        not older than ``consistency_margin_us`` ago.
        """
        _position, consistent_us = await self.head()
        return consistent_us

    async def head(self) -> tuple[int, int]:
        """The log's newest position (a query's bound) and ``consistent_through_us``, from one read of its head."""
        position, recorded_us = await self.log.head()
        return position, max(recorded_us, time.time_ns() // 1000 - self.consistency_margin_us)
