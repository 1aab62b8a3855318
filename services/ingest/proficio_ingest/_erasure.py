"""Erasure of a learner by crypto-shredding (``proficio erase learner``, ``POST /audit/learner/erase``).

One append, one transaction, under the log's write lock: a ``LearnerErased`` event on the learner's stream
(its payload names only the pseudonymous learner id, who erased and the ids of the keys destroyed) and,
inline, what goes with it:

- her agent rows leave the statement index (the rows of her statements, and the rows anywhere that hold
  the keyed digest of one of her identities), so a query with her old identifiers finds nothing;
- her agent documents (State, Agent Profile) become tombstones: gone from the API, their stream versions
  kept so later writes still append in order;
- her data keys are destroyed (``proficio_events.destroy_keys``);
- her learner directory rows are deleted (``proficio_events.forget_learners``): her identity maps to no learner
  id any more, so nothing computed from her identifier finds her pseudonymous rows and events.

After the commit the key table is scrubbed (``scrub_keys``). Nothing in the log is rewritten, so every hash
still holds and ``proficio verify`` passes; her statements stay (redacted: the views' totals do not change)
and GET shows them with a pseudonymous actor. Erasing her again finds no live key and appends nothing.

Statements that arrive for her after the erasure are stored under a fresh key and a fresh learner id (the
directory no longer knows her identity, so the log creates a new row): an erasure removes what was held when it
ran, it does not bar the LMS from sending more, and what comes after is not linked to what was erased. Erase
again to remove those too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from proficio_events import (
    EventLog,
    NewEvent,
    StoredEvent,
    destroy_keys,
    directory_rows_of,
    forget_learners,
    learners_with_live_keys,
    open_sealed,
    read_keys,
    scrub_keys,
    tenant_secret,
)
from proficio_events._schema import events as log_events

from ._agents import identities
from ._credentials import Credential
from ._deps import event_log
from ._errors import BadRequest, StatementValidationError
from ._http import JSONResponse
from ._learners import find_learner_ids
from ._projection import AGENT_RELATED, agent_value, pair_key
from ._schema import documents, statement_index, statements
from ._validation import validate_agent_json

LEARNER_ERASED = "LearnerErased"
_log = logging.getLogger("proficio.erasure")
_LEARNER_ID = re.compile(r"^learner:[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure did. ``erased`` is False when there was nothing to erase (no live key: never seen,
    or erased before)."""

    learners: tuple[str, ...]
    erased: bool
    keys_destroyed: int = 0
    statements: int = 0
    documents: int = 0
    positions: tuple[int, ...] = ()
    directory_rows: int = 0


def _own_identities(personal: bytes) -> Iterable[str]:
    """The identities of the actor in an opened personal part (see ``_personal.split``)."""
    for path, value in orjson.loads(personal):
        if path == ["actor"]:
            yield from identities(value)


async def erase_learners(
    log: EventLog, tenant: str, learners: Sequence[str], *, erased_by: str, agents: Sequence[Any] = ()
) -> Erasure:
    """Erase each of ``learners`` (learner ids) of ``tenant``: one transaction for all of them.

    ``agents`` (when the erasure names her by agent) adds their identities to those removed from the index.
    """
    # Those with data to destroy, or a directory row still tying an identity to them (a rostered student who
    # never sent anything has a row and no key).
    keyed = await learners_with_live_keys(log.engine, tenant, learners)
    live = sorted(set(keyed) | set(await directory_rows_of(log.engine, tenant, learners)))
    if not live:
        return Erasure(tuple(learners), erased=False)
    counts = {"keys": 0, "statements": 0, "documents": 0, "directory": 0}
    at_us = time.time_ns() // 1000

    async def inline(conn: AsyncConnection, new_events: Sequence[StoredEvent]) -> None:
        secret = await tenant_secret(conn, tenant, create=True)
        assert secret is not None
        # Her statements through the log's stream index (a statement's learner is its event's stream): the
        # statement table has no index by learner (migration ingest_0009).
        s, e = statements.c, log_events.c
        found = (
            await conn.execute(
                sa.select(s.position, s.learner, s.sealed, s.key_id)
                .select_from(log_events.join(statements, sa.and_(s.tenant == e.tenant, s.position == e.position)))
                .where(e.tenant == tenant, e.stream.in_(live), s.learner == e.stream)
            )
        ).all()
        # Her identities, from her statements' sealed parts (while the keys still live) and the agents given.
        keys = await read_keys(conn, tenant, [r[3] for r in found])
        mine: set[str] = {key for agent in agents for key in identities(agent)}
        for _position, learner, sealed, key_id in found:
            if sealed is not None:
                personal = open_sealed(keys, tenant, learner, key_id, bytes(sealed))
                if personal is not None:
                    mine.update(_own_identities(personal))
        positions = [int(r[0]) for r in found]
        index = statement_index
        for start in range(0, len(positions), 1000):
            await conn.execute(
                index.delete().where(
                    index.c.tenant == tenant,
                    index.c.kind == AGENT_RELATED,
                    index.c.position.in_(positions[start : start + 1000]),
                )
            )
        digests = sorted(agent_value(secret, identity) for identity in mine)
        if digests:
            await conn.execute(
                index.delete().where(
                    index.c.pair_key.in_([pair_key(tenant, AGENT_RELATED, digest) for digest in digests])
                )
            )
        gone = await conn.execute(
            documents.update()
            .where(documents.c.tenant == tenant, documents.c.learner.in_(live), documents.c.deleted == sa.false())
            .values(deleted=True, content=None, content_type=None, etag=None, key_id=None)
        )
        counts["documents"] = gone.rowcount or 0
        counts["statements"] = len(found)
        for learner in live:
            counts["keys"] += len(await destroy_keys(conn, tenant, learner, erased_by=erased_by, at_us=at_us))
        counts["directory"] = await forget_learners(conn, tenant, live)

    events = [
        NewEvent.of(learner, LEARNER_ERASED, {"learner": learner, "erased_by": erased_by, "at_us": at_us})
        for learner in live
    ]
    result = await log.append(tenant, events, inline=inline)
    try:
        await scrub_keys(log.engine)
    except (DBAPIError, OSError):
        # The erasure has committed (the keys are NULL); only the dead copy's removal failed (a lock not
        # granted in time, say). It is retried by the next erasure, or by any VACUUM of the table.
        _log.warning("the key table could not be scrubbed after erasing %s", ", ".join(live), exc_info=True)
    return Erasure(
        tuple(live),
        erased=True,
        keys_destroyed=counts["keys"],
        statements=counts["statements"],
        documents=counts["documents"],
        positions=tuple(e.position for e in result.events),
        directory_rows=counts["directory"],
    )


async def erasure_targets(log: EventLog, tenant: str, agent: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The learner ids and agents an erasure by agent covers: the learner directory's ids of the agent and, for an
    mbox, of its mbox_sha1sum too (documents may have been written under either form); and the learners of the
    documents kept under the agent's keyed digest (documents written before the directory, say). An agent the
    directory does not know (never seen, or erased) covers no learner id of the directory."""
    from ._documents import agent_key

    agents = [agent]
    if isinstance(agent.get("mbox"), str):
        digest = hashlib.sha1(agent["mbox"].encode()).hexdigest()
        agents.append({"objectType": agent.get("objectType", "Agent"), "mbox_sha1sum": digest})
    learners = {learner for learner in await find_learner_ids(log, tenant, agents) if learner is not None}
    async with log.engine.connect() as conn:
        secret = await tenant_secret(conn, tenant, create=False)
        if secret is not None:
            keyed = sorted({agent_value(secret, agent_key(a)) for a in agents})
            rows = await conn.scalars(
                sa.select(documents.c.learner)
                .where(documents.c.tenant == tenant, documents.c.agent.in_(keyed), documents.c.learner.is_not(None))
                .distinct()
            )
            learners.update(str(r) for r in rows)
    return sorted(learners), agents


# -- the API ----------------------------------------------------------------------------------------------

router = APIRouter(prefix="/audit", tags=["audit"])
_ERASE_SCOPES = frozenset({"all"})


@router.post("/learner/erase")
async def erase_learner(request: Request) -> Response:
    """Erase a learner (scope ``all``): JSON ``{"learner": "learner:<32 hex>"}`` or ``{"agent": {...}}``.

    Destroys her data keys and appends ``LearnerErased`` (recording which credential asked); 200 with what was
    done. Erasing again answers ``"erased": false``: there is nothing left to erase.
    """
    credential: Credential = await request.app.state.credentials.authenticate(request.headers.get("authorization"))
    credential.require(_ERASE_SCOPES, "erase a learner")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or ("learner" in body) == ("agent" in body):
        raise BadRequest('give exactly one of "learner" (a learner id) or "agent" (an xAPI agent)')
    tenant = credential.tenant
    agents: list[dict[str, Any]] = []
    if "agent" in body:
        try:
            validate_agent_json(body["agent"], path="agent")
        except StatementValidationError as exc:
            raise BadRequest(f"agent is not an xAPI agent: {exc.message}") from exc
        learners, agents = await erasure_targets(event_log(request), tenant, body["agent"])
    else:
        if not isinstance(body["learner"], str) or not _LEARNER_ID.match(body["learner"]):
            raise BadRequest("learner must be a learner id (learner:<32 hex digits>)")
        learners = [body["learner"]]
    outcome = await erase_learners(
        event_log(request),
        tenant,
        learners,
        erased_by=f"credential {credential.key} ({credential.name})",
        agents=agents,
    )
    return JSONResponse(
        orjson.dumps(
            {
                "learners": list(outcome.learners),
                "erased": outcome.erased,
                "keys_destroyed": outcome.keys_destroyed,
                "statements": outcome.statements,
                "documents": outcome.documents,
                "directory_rows": outcome.directory_rows,
            }
        )
    )
