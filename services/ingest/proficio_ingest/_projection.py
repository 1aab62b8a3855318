"""The statement query tables as an inline projection of the log.

Statement rows keep the redacted statement, its sealed personal part and key id (see ``_personal``); the
index finds statements by agent through keyed digests of the agents' identities (``agent_value``), so
no table beside the log holds an identifier in clear either. To index a statement the projection needs
its personal part: in the append it is in memory (``StoredEvent.opened``); a rebuild opens the sealed
part with the keys of the batch (an erased learner's statements are then indexed without agents).

``apply`` runs inside the append transaction (so a client reads its own writes at once) and also
replays the log into empty tables (``rebuild``): the tables depend only on the events and their order.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import (
    GroupRead,
    NewEvent,
    StoredEvent,
    bulk_insert,
    bulk_insert_many,
    bulk_upsert,
    group_read_rows,
    keyed_digest,
    open_sealed,
    read_keys,
    select_in,
    tenant_secret,
)

from ._agents import identities
from ._personal import merge
from ._schema import activities, attachments, statement_index, statements

STATEMENT_STORED = "StatementStored"
STATEMENT_VOIDED = "StatementVoided"
ATTACHMENT_STORED = "AttachmentStored"
STATEMENT_EVENTS = frozenset({STATEMENT_STORED, STATEMENT_VOIDED})
VOIDED_VERB = "http://adlnet.gov/expapi/verbs/voided"

# Kinds of (kind, value) pairs a statement is found by. AGENT and ACTIVITY (actor or object) are stored
# as the row of their RELATED kind with ``narrow`` set.
AGENT = 1  # actor or object
AGENT_RELATED = 2  # any agent anywhere (related_agents=true)
ACTIVITY = 3  # the object
ACTIVITY_RELATED = 4  # any activity anywhere (related_activities=true)
VERB = 5
REGISTRATION = 6
_STORED_AS = {AGENT: AGENT_RELATED, ACTIVITY: ACTIVITY_RELATED}
_BROAD = frozenset({AGENT_RELATED, ACTIVITY_RELATED})

Pair = tuple[int, str]


def index_condition(kind: int) -> tuple[int, bool]:
    """The stored kind of a filter pair, and whether the row must be narrow."""
    return _STORED_AS.get(kind, kind), kind not in _BROAD


_AGENT_KINDS = frozenset({AGENT, AGENT_RELATED})


def agent_value(secret: bytes, identity: str) -> str:
    """What the index holds for an agent identity: its keyed digest under the tenant's secret."""
    return keyed_digest(secret, identity)


def keyed_pairs(secret: bytes, pairs: set[Pair]) -> set[Pair]:
    """Agent pairs with their identity replaced by its keyed digest; other pairs as they are."""
    return {(kind, agent_value(secret, value)) if kind in _AGENT_KINDS else (kind, value) for kind, value in pairs}


_CONDITIONS = {
    kind: index_condition(kind) for kind in (AGENT, AGENT_RELATED, ACTIVITY, ACTIVITY_RELATED, VERB, REGISTRATION)
}


def _merged(pairs: AbstractSet[Pair]) -> dict[tuple[int, str], bool]:
    """The index keys (stored kind, value) of ``pairs``, each narrow if any pair that gives it is."""
    merged: dict[tuple[int, str], bool] = {}
    for kind, value in pairs:
        stored, narrow = _CONDITIONS.get(kind) or index_condition(kind)
        key = (stored, value)
        if narrow or key not in merged:
            merged[key] = narrow
    return merged


@lru_cache(maxsize=1 << 16)  # verbs, activities, instructors and authorities repeat in statement after statement
def pair_key(tenant: str, kind: int, value: str) -> str:
    """The statement index's key for (tenant, stored kind, value): the first 16 bytes of SHA-256 over them, in hex
    (a uuid on PostgreSQL). Migration ingest_0011 computes the same in SQL for rows stored before it."""
    return hashlib.sha256(f"{tenant}\x1f{kind}\x1f{value}".encode()).hexdigest()[:32]


IndexRow = tuple[str, int, str, int, bool, str]  # tenant, kind, value, position, narrow, pair_key


def index_rows(tenant: str, position: int, pairs: AbstractSet[Pair]) -> list[IndexRow]:
    return [
        (tenant, kind, value, position, narrow, pair_key(tenant, kind, value))
        for (kind, value), narrow in _merged(pairs).items()
    ]


def format_stored(recorded_us: int) -> str:
    """xAPI timestamps to the millisecond, in UTC."""
    # Every statement of a group commit has the same recorded time: formatted once (strftime is ~4 µs).
    global _last_stored
    millis = recorded_us // 1000
    if _last_stored[0] != millis:
        moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
        _last_stored = (millis, moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z")
    return _last_stored[1]


_last_stored: tuple[int, str] = (-1, "")


def _activities(value: Any) -> Iterable[str]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            yield item["id"]


def _context_pairs(context: Any, pairs: set[Pair]) -> None:
    if not isinstance(context, dict):
        return
    for role in ("instructor", "team"):
        for key in identities(context.get(role)):
            pairs.add((AGENT_RELATED, key))
    for context_agent in context.get("contextAgents") or ():
        if isinstance(context_agent, dict):
            for key in identities(context_agent.get("agent")):
                pairs.add((AGENT_RELATED, key))
    for context_group in context.get("contextGroups") or ():
        if isinstance(context_group, dict):
            for key in identities(context_group.get("group")):
                pairs.add((AGENT_RELATED, key))
    context_activities = context.get("contextActivities")
    if isinstance(context_activities, dict):
        for value in context_activities.values():
            for activity in _activities(value):
                pairs.add((ACTIVITY_RELATED, activity))


def own_pairs(statement: dict[str, Any]) -> set[Pair]:
    """What the statement itself can be found by (its StatementRef target's pairs are added later)."""
    pairs: set[Pair] = set()
    actor, target = statement.get("actor"), statement.get("object") or {}
    for key in identities(actor):
        pairs.add((AGENT, key))
    object_type = target.get("objectType", "Activity")
    if object_type in ("Agent", "Group"):
        for key in identities(target):
            pairs.add((AGENT, key))
    elif object_type == "Activity" and "id" in target:
        pairs.add((ACTIVITY, target["id"]))
    elif object_type == "SubStatement":
        for key in identities(target.get("actor")):
            pairs.add((AGENT_RELATED, key))
        inner = target.get("object") or {}
        if inner.get("objectType") in ("Agent", "Group"):
            for key in identities(inner):
                pairs.add((AGENT_RELATED, key))
        elif inner.get("objectType", "Activity") == "Activity" and "id" in inner:
            pairs.add((ACTIVITY_RELATED, inner["id"]))
        _context_pairs(target.get("context"), pairs)
    for key in identities(statement.get("authority")):
        pairs.add((AGENT_RELATED, key))
    _context_pairs(statement.get("context"), pairs)
    verb = statement.get("verb") or {}
    if "id" in verb:
        pairs.add((VERB, verb["id"]))
    context = statement.get("context")
    if isinstance(context, dict) and isinstance(context.get("registration"), str):
        pairs.add((REGISTRATION, context["registration"].lower()))
    # The broad (related) kinds include the narrow ones.
    return pairs


def statement_target(statement: dict[str, Any]) -> str | None:
    target = statement.get("object") or {}
    if target.get("objectType") == "StatementRef" and isinstance(target.get("id"), str):
        return str(target["id"]).lower()
    return None


def is_voiding(statement: dict[str, Any]) -> bool:
    return (statement.get("verb") or {}).get("id") == VOIDED_VERB and statement_target(statement) is not None


def defined_activities(statement: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every (activity id, definition) the statement carries: object, sub-statement, context activities."""
    candidates: list[Any] = [statement.get("object")]
    target = statement.get("object") or {}
    if target.get("objectType") == "SubStatement":
        candidates.append(target.get("object"))
        candidates.extend(_context_activity_objects(target.get("context")))
    candidates.extend(_context_activity_objects(statement.get("context")))
    for candidate in candidates:
        if (
            isinstance(candidate, dict)
            and candidate.get("objectType", "Activity") == "Activity"
            and isinstance(candidate.get("id"), str)
            and isinstance(candidate.get("definition"), dict)
        ):
            yield candidate["id"], candidate["definition"]


def _context_activity_objects(context: Any) -> Iterable[Any]:
    if isinstance(context, dict) and isinstance(context.get("contextActivities"), dict):
        for value in context["contextActivities"].values():
            yield from value if isinstance(value, list) else [value]


_MERGED_MAPS = frozenset({"name", "description", "extensions"})


def merge_definition(canonical: dict[str, Any] | None, incoming: dict[str, Any]) -> dict[str, Any]:
    """The canonical definition updated by a newer one: language maps and extensions merge key by key
    (so descriptions in several languages from several statements add up); every other property is
    replaced by the newer value."""
    merged = dict(canonical or {})
    for key, value in incoming.items():
        if key in _MERGED_MAPS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class Prepared:
    """What ``prepare_statement`` works out for a statement event before its append, outside the log's write
    lock (``NewEvent.prepared``): everything of its rows but the position and the stored time."""

    index: tuple[tuple[int, str, bool, str], ...]  # index_rows of its own pairs: (kind, value, narrow, pair_key)
    pairs: frozenset[Pair]  # its own pairs (keyed), for statements that point at it
    body: bytes  # the redacted statement as JSON, without its closing brace (``stored`` goes after)
    has_timestamp: bool
    defined: tuple[tuple[str, dict[str, Any]], ...]  # defined_activities of the redacted statement


def prepare_statement(
    tenant: str, secret: bytes, whole: dict[str, Any], redacted: dict[str, Any], memo: dict[str, str]
) -> Prepared | None:
    """The statement's index pairs and body, as ``apply`` would compute them (None: let ``apply`` do it).

    ``memo`` keeps keyed digests for one batch (the authority and instructors repeat)."""
    if "stored" in redacted:
        return None
    pairs: set[Pair] = set()
    for kind, value in own_pairs(whole):
        if kind in _AGENT_KINDS:
            digest = memo.get(value)
            if digest is None:
                digest = memo[value] = agent_value(secret, value)
            value = digest
        pairs.add((kind, value))
    body = orjson.dumps(redacted)
    if body == b"{}":
        return None
    return Prepared(
        tuple(
            [(kind, value, narrow, pair_key(tenant, kind, value)) for (kind, value), narrow in _merged(pairs).items()]
        ),
        frozenset(pairs),
        body[:-1],
        "timestamp" in redacted,
        tuple(defined_activities(redacted)),
    )


def _body(prepared: Prepared, stored: str) -> bytes:
    """``orjson.dumps`` of the redacted statement with ``stored`` (and ``timestamp`` if it has none) added."""
    tail = f',"stored":"{stored}"' if prepared.has_timestamp else f',"stored":"{stored}","timestamp":"{stored}"'
    return prepared.body + tail.encode() + b"}"


@dataclass
class _NewStatement:
    event: StoredEvent
    statement: dict[str, Any]
    credential: str
    define: bool
    target: str | None
    voiding: bool
    pairs: AbstractSet[Pair]
    voided: bool = False
    extra: set[Pair] = field(default_factory=set)
    prepared: Prepared | None = None


async def apply(conn: AsyncConnection, events: Sequence[StoredEvent]) -> None:
    """Fold newly appended events into the statement tables (one tenant or many, in log order)."""
    by_tenant: dict[str, list[StoredEvent]] = {}
    for event in events:
        by_tenant.setdefault(event.tenant, []).append(event)
    for tenant, tenant_events in by_tenant.items():
        await _apply_tenant(conn, tenant, tenant_events)


async def _apply_tenant(conn: AsyncConnection, tenant: str, events: list[StoredEvent]) -> None:
    attachment_rows: list[tuple[str, str, str, bytes, str, str | None]] = []
    batch: dict[str, _NewStatement] = {}
    # Replaying (not appending): the sealed parts are opened with the keys read once for the batch.
    keys = await read_keys(
        conn, tenant, [e.key_id for e in events if e.opened is None and e.event_type in STATEMENT_EVENTS]
    )
    secret = await tenant_secret(conn, tenant, create=True)
    assert secret is not None
    for event in events:
        if event.event_type == ATTACHMENT_STORED:
            data = event.data()
            if event.sealed is not None:  # her copy, kept sealed: read with her key (``attachment_parts``)
                attachment_rows.append((tenant, data["sha2"], data["contentType"], event.sealed, data["learner"],
                                        event.key_id))  # fmt: skip
            else:  # stored in clear before attachments were sealed: no one's
                attachment_rows.append(
                    (tenant, data["sha2"], data["contentType"], base64.b64decode(data["data"]), "", None)
                )
        elif event.event_type in STATEMENT_EVENTS:
            payload = event.data()
            statement = payload["statement"]
            prepared = event.prepared if isinstance(event.prepared, Prepared) else None
            pairs: AbstractSet[Pair]
            if prepared is not None:  # worked out before the append (only read: not copied)
                pairs = prepared.pairs
            else:
                personal = event.opened
                if personal is None and event.sealed is not None:
                    personal = open_sealed(keys, tenant, event.stream, event.key_id, event.sealed)
                whole = merge(statement, personal) if personal is not None else statement
                pairs = keyed_pairs(secret, own_pairs(whole))
            batch[statement["id"].lower()] = _NewStatement(
                event,
                statement,
                payload.get("credential", ""),
                bool(payload.get("define", False)),
                statement_target(statement),
                is_voiding(statement),
                pairs,
                prepared=prepared,
            )
    await bulk_insert(
        conn,
        attachments,
        attachment_rows,
        columns=("tenant", "sha2", "content_type", "data", "learner", "key_id"),
        ignore_conflicts=True,
    )
    if batch:
        await _apply_statements(conn, tenant, batch)


async def _apply_statements(conn: AsyncConnection, tenant: str, batch: dict[str, _NewStatement]) -> None:
    ids = list(batch)
    outside_targets = sorted({s.target for s in batch.values() if s.target and s.target not in batch})
    known: dict[str, tuple[int, bool]] = {}  # id -> (position, is_voiding) of stored targets
    if outside_targets:
        rows = await conn.execute(
            sa.select(statements.c.statement_id, statements.c.position, statements.c.is_voiding).where(
                statements.c.tenant == tenant, statements.c.statement_id.in_(outside_targets)
            )
        )
        known = {sid: (position, voiding) for sid, position, voiding in rows}
        target_pairs = await _pairs_of(conn, tenant, [p for p, _ in known.values()])
        for new in batch.values():
            if new.target in known:
                new.extra |= target_pairs.get(known[new.target][0], set())
    # Chains of references inside the batch, to a fixed point.
    changed = True
    while changed:
        changed = False
        for new in batch.values():
            if new.target in batch:
                inherited = batch[new.target].pairs | batch[new.target].extra
                if not inherited <= new.pairs | new.extra:
                    new.extra |= inherited
                    changed = True
    # Voiding: inside the batch, of stored statements, and by stored voiding statements that came first.
    void_stored: list[str] = []
    for new in batch.values():
        if not new.voiding or new.target is None:
            continue
        if new.target in batch:
            target = batch[new.target]
            target.voided = target.voided or not target.voiding
        elif new.target in known and not known[new.target][1]:
            void_stored.append(new.target)
    incoming = _incoming_definitions(list(batch.values()))
    referrers, stored_definitions = await _lookups(conn, tenant, ids, sorted({a for a, _, _ in incoming}))
    for _sid, _position, voiding, target_id in referrers:
        if voiding and not batch[target_id].voiding:
            batch[target_id].voided = True

    statement_rows: list[tuple[Any, ...]] = []
    found_by: list[IndexRow] = []
    for sid, new in batch.items():
        stored = format_stored(new.event.recorded_us)
        position = new.event.position
        if new.prepared is not None:
            statement_rows.append(
                (tenant, sid, position, new.event.recorded_us, new.voided, new.voiding, new.target, new.credential,
                 bool(new.statement.get("attachments")), _body(new.prepared, stored), new.event.stream,
                 new.event.sealed, new.event.key_id)
            )  # fmt: skip
            if not new.extra:
                found_by.extend([(tenant, kind, value, position, narrow, key)
                                 for kind, value, narrow, key in new.prepared.index])  # fmt: skip
                continue
            found_by.extend(index_rows(tenant, position, new.pairs | new.extra))
            continue
        body = dict(new.statement)
        body["stored"] = stored
        body.setdefault("timestamp", stored)
        statement_rows.append(
            (
                tenant,
                sid,
                new.event.position,
                new.event.recorded_us,
                new.voided,
                new.voiding,
                new.target,
                new.credential,
                bool(body.get("attachments")),
                orjson.dumps(body),
                new.event.stream,
                new.event.sealed,
                new.event.key_id,
            )
        )
        found_by.extend(index_rows(tenant, new.event.position, new.pairs | new.extra))
    # No ON CONFLICT for the index rows: they are the new positions' own (one per pair: index_rows merges), so
    # none can exist yet, and PostgreSQL's conflict check would probe the index once more for every row
    # before inserting it (about a tenth of the database's CPU in a batched ingest).
    # A large batch goes in by COPY (``copy``): ~7 index rows per statement are most of the database's work.
    await bulk_insert_many(conn, [(statements, statement_rows, False), (statement_index, found_by, False)], copy=True)
    if void_stored:
        await conn.execute(
            statements.update()
            .where(statements.c.tenant == tenant, statements.c.statement_id.in_(void_stored))
            .values(voided=True)
        )
    await _merge_definitions(conn, tenant, incoming, stored_definitions)
    if referrers:
        await _propagate(
            conn,
            tenant,
            {sid: new.pairs | new.extra for sid, new in batch.items()},
            first_round=[(sid, position, target) for sid, position, _voiding, target in referrers],
        )


def _incoming_definitions(batch: list[_NewStatement]) -> list[tuple[str, dict[str, Any], int]]:
    """(activity, definition, position) from the statements of credentials that may define."""
    return [(activity, definition, new.event.position) for new in batch if new.define
            for activity, definition in _defined(new.statement, new.prepared)]  # fmt: skip


def _defined(statement: dict[str, Any], prepared: Prepared | None) -> Iterable[tuple[str, dict[str, Any]]]:
    return prepared.defined if prepared is not None else defined_activities(statement)


def _lookup_arguments(new_events: Sequence[NewEvent]) -> tuple[list[str], list[str]]:
    """The ids and defined activities ``_lookups`` will ask about for these events (those ``apply`` is given)."""
    ids: set[str] = set()
    defined: set[str] = set()
    for event in new_events:
        if event.event_type not in STATEMENT_EVENTS:
            continue
        payload = event.decoded if isinstance(event.decoded, dict) else orjson.loads(event.payload)
        statement = payload["statement"]
        ids.add(statement["id"].lower())
        if payload.get("define", False):
            prepared = event.prepared if isinstance(event.prepared, Prepared) else None
            defined.update(activity for activity, _definition in _defined(statement, prepared))
    return sorted(ids), sorted(defined)


# The projection's two lookups in one round trip on PostgreSQL: stored statements that point at the new
# ones (kind 1), and the canonical definitions of the activities the batch defines (kind 2).
_PG_LOOKUPS = """
SELECT 1 AS kind, statement_id, position, is_voiding, target_id, NULL::bytea AS definition
  FROM xapi_statements WHERE tenant = $1 AND target_id = ANY($2::text[])
UNION ALL
SELECT 2, activity_id, NULL::bigint, NULL::boolean, NULL, definition
  FROM xapi_activities WHERE tenant = $1 AND activity_id = ANY($3::text[])
ORDER BY 1, 3
"""


# The same two lookups as a group read (GroupRead): run in the log's group commit read, under its write lock, in the
# same round trip (PostgreSQL). Rows in the group read's columns: kind 101 a referrer (statement id in the 4th,
# position in the 2nd, is_voiding in the 5th, target in the 6th), kind 102 a definition (activity in the 4th,
# definition in the 11th). `target_id IS NOT NULL` lets a partial index on target_id serve it.
_REFERRER, _DEFINITION = 101, 102
LOOKUPS = GroupRead(
    name="xapi_statement_lookups",
    sql=f"""
SELECT {_REFERRER}, r.position, NULL, r.statement_id, r.is_voiding::int, r.target_id, NULL::smallint, NULL::bigint,
       NULL, NULL::bytea, NULL::bytea, NULL::bytea, NULL, NULL::bytea, NULL::bytea
  FROM unnest($2::text[]) AS q(id)
  JOIN LATERAL (SELECT x.statement_id, x.position, x.is_voiding, x.target_id FROM xapi_statements x
                WHERE x.tenant = $1 AND x.target_id = q.id AND x.target_id IS NOT NULL) AS r ON true
UNION ALL
SELECT {_DEFINITION}, NULL::bigint, NULL, a.activity_id, NULL::int, NULL, NULL::smallint, NULL::bigint, NULL,
       NULL::bytea, a.definition, NULL::bytea, NULL, NULL::bytea, NULL::bytea
  FROM unnest($3::text[]) AS q(activity)
  JOIN LATERAL (SELECT y.activity_id, y.definition FROM xapi_activities y
                WHERE y.tenant = $1 AND y.activity_id = q.activity ORDER BY y.activity_id LIMIT 1) AS a ON true
""",
    kinds=frozenset({_REFERRER, _DEFINITION}),
    arguments=_lookup_arguments,
)


async def _lookups(
    conn: AsyncConnection, tenant: str, ids: list[str], activity_ids: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[str, bytes]]]:
    """(statements pointing at ``ids``, in log order; stored definitions of ``activity_ids``)."""
    found = group_read_rows(conn, LOOKUPS, tenant)
    if found is not None and set(ids) <= set(found.arguments[0]) and set(activity_ids) <= set(found.arguments[1]):
        wanted_ids, wanted_activities = set(ids), set(activity_ids)
        referrers = sorted(
            ((r[3], r[1], bool(r[4]), r[5]) for r in found.rows if r[0] == _REFERRER and r[5] in wanted_ids),
            key=lambda referrer: int(referrer[1]),
        )
        return referrers, [(r[3], r[10]) for r in found.rows if r[0] == _DEFINITION and r[3] in wanted_activities]
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        rows = await raw.driver_connection.fetch(_PG_LOOKUPS, tenant, ids, activity_ids)  # type: ignore[union-attr]
        referrers = [(r[1], r[2], r[3], r[4]) for r in rows if r[0] == 1]
        return referrers, [(r[1], r[5]) for r in rows if r[0] == 2]
    referrers = await select_in(
        conn,
        statements,
        ("statement_id", "position", "is_voiding", "target_id"),
        {"tenant": tenant},
        "target_id",
        ids,
        order_by="position",
    )
    stored = await select_in(conn, activities, ("activity_id", "definition"), {"tenant": tenant}, "activity_id",
                             activity_ids)  # fmt: skip
    return referrers, [(activity, body) for activity, body in stored]


async def _merge_definitions(
    conn: AsyncConnection,
    tenant: str,
    incoming: list[tuple[str, dict[str, Any], int]],
    stored: list[tuple[str, bytes]],
) -> None:
    """Fold the activity definitions of statements from defining credentials into the canonical ones."""
    if not incoming:
        return
    canonical: dict[str, dict[str, Any]] = {activity: orjson.loads(body) for activity, body in stored}
    # Only definitions that change are written (most statements repeat what is known): `position` is the
    # event that last changed the definition, the same whether folded live or in a rebuild.
    positions: dict[str, int] = {}
    for activity, definition, position in incoming:
        known = canonical.get(activity)
        if known == definition:  # the definition as known (most statements repeat it): merging it changes nothing
            continue
        merged = merge_definition(known, definition)
        if activity not in canonical or merged != canonical[activity]:
            positions[activity] = position
        canonical[activity] = merged
    await bulk_upsert(
        conn,
        activities,
        [(tenant, activity, orjson.dumps(canonical[activity]), positions[activity]) for activity in sorted(positions)],
        key=("tenant", "activity_id"),
    )


async def _pairs_of(conn: AsyncConnection, tenant: str, positions: list[int]) -> dict[int, set[Pair]]:
    found: dict[int, set[Pair]] = {}
    if not positions:
        return found
    rows = await conn.execute(
        sa.select(
            statement_index.c.position, statement_index.c.kind, statement_index.c.value, statement_index.c.narrow
        ).where(statement_index.c.tenant == tenant, statement_index.c.position.in_(positions))
    )
    narrow_kind = {stored: kind for kind, stored in _STORED_AS.items()}
    for position, kind, value, narrow in rows:
        pairs = found.setdefault(position, set())
        pairs.add((narrow_kind[kind] if narrow and kind in narrow_kind else kind, value))
    return found


async def _propagate(
    conn: AsyncConnection,
    tenant: str,
    pairs_by_id: Mapping[str, AbstractSet[Pair]],
    first_round: list[tuple[str, int, str]],
) -> None:
    """Statements stored earlier that point at these ones now also match what these match.

    ``first_round`` holds the statements that point at these, already looked up by the caller.
    """
    rows: Sequence[Any] = first_round
    for _depth in range(16):  # reference chains are short; the bound keeps a cycle from looping
        if not rows:
            return
        next_round: dict[str, set[Pair]] = {}
        new_rows: list[IndexRow] = []
        for sid, position, target_id in rows:
            inherited = pairs_by_id[target_id]
            new_rows.extend(index_rows(tenant, position, inherited))
            next_round.setdefault(sid, set()).update(inherited)
        # A row the statement already has (perhaps broad where this one is narrow) stays as it is: a
        # statement found through its target matches what the target matches, narrow or broad alike.
        await bulk_insert(conn, statement_index, new_rows, ignore_conflicts=True)
        pairs_by_id = next_round
        rows = (
            await conn.execute(
                sa.select(statements.c.statement_id, statements.c.position, statements.c.target_id).where(
                    statements.c.tenant == tenant, statements.c.target_id.in_(list(pairs_by_id))
                )
            )
        ).all()
