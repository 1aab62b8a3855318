"""Learner ids from agents, through the learner directory (``proficio_events._directory``).

A learner id is random (``learner:`` + 32 hex digits); the directory maps the keyed digest of an actor's
stream identity (``_agents.stream_identity``: the agent's IFI, or an anonymous group's members) to it. Ingest
creates the rows as it stores (inside the append: ``NewEvent.learner_of``); everything else that starts from
an agent looks it up here (``find_learner_ids``: no row is ever created by a read, an unknown agent is no
learner), and the roster import, which may name students before they send anything, enrolls them
(``enroll_learner_ids``). Erasure deletes her rows: afterwards her agent is no learner, and a later statement
of hers gets a fresh id.

``legacy_learner_stream`` is the id before the directory (``learner:`` + SHA-256(tenant, identity)[:32]): only
for mapping old data (``backfill_directory``) and for tests that check nothing computes it any more.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proficio_events import (
    EventLog,
    bulk_insert,
    directory_digest,
    enroll_learners,
    find_learners,
    open_sealed,
    read_keys,
    tenant_secret,
)
from proficio_events._schema import learner_directory

from ._agents import stream_identity
from ._schema import documents, statements


def learner_digest(secret: bytes, actor: Any) -> str:
    """The directory's key for an actor (a statement's actor, a document's agent)."""
    return directory_digest(secret, stream_identity(actor))


def legacy_learner_stream(tenant: str, actor: Any) -> str:
    """The learner id of the old scheme, an unkeyed hash of the identity (see the module docstring)."""
    digest = hashlib.sha256(f"{tenant}\x00{stream_identity(actor)}".encode()).hexdigest()
    return f"learner:{digest[:32]}"


async def find_learner_ids(log: EventLog | AsyncEngine, tenant: str, actors: Sequence[Any]) -> list[str | None]:
    """Each actor's learner id, None for an agent the directory does not know: one query, nothing created."""
    engine = log if isinstance(log, AsyncEngine) else log.engine
    async with engine.connect() as conn:
        secret = await tenant_secret(conn, tenant, create=False)
        if secret is None:  # the tenant never stored anything
            return [None] * len(actors)
        digests = [learner_digest(secret, actor) for actor in actors]
        found = await find_learners(conn, tenant, digests)
    return [found.get(digest) for digest in digests]


async def find_learner_id(log: EventLog | AsyncEngine, tenant: str, actor: Any) -> str | None:
    """The actor's learner id, or None (unknown agent, or erased)."""
    return (await find_learner_ids(log, tenant, [actor]))[0]


async def enroll_learner_ids(log: EventLog, tenant: str, actors: Sequence[Any]) -> list[str]:
    """Each actor's learner id, created for those the directory does not know, in one write transaction of its
    own (a roster naming students before they send anything). A concurrent append creating the same rows
    cannot give an identity two ids (the directory's primary key; see ``enroll_learners``)."""
    async with log.transaction() as conn:
        secret = await tenant_secret(conn, tenant, create=True)
        assert secret is not None
        digests = [learner_digest(secret, actor) for actor in actors]
        resolved, _created = await enroll_learners(conn, tenant, digests)
    return [resolved[digest] for digest in digests]


async def backfill_directory(log: EventLog, tenant: str, *, page: int = 5000) -> int:
    """Map the identities of learners stored before the learner directory to the ids they already have (the old,
    hash-derived ones), so their streams and views go on; how many rows were added. Run once after migrating.

    Their identities are read from their statements' sealed actors (with their live keys: an erased learner's
    are gone, so she is not mapped back). An identity is mapped only where its old id is the id of stored data
    (a statement's, or a document's: an mbox's documents may be under its mbox_sha1sum's id). Rows the directory
    already has are kept. Those learners keep hash-derived ids: anyone who knows the identifier can compute
    them, until they are erased (see docs/privacy.md).
    """
    async with log.engine.connect() as conn:
        known = {
            str(r)
            for r in await conn.scalars(sa.select(statements.c.learner).where(statements.c.tenant == tenant).distinct())
        }
        known.update(
            str(r)
            for r in await conn.scalars(
                sa.select(documents.c.learner)
                .where(documents.c.tenant == tenant, documents.c.learner.is_not(None))
                .distinct()
            )
        )
    added = 0
    after = 0
    while True:
        async with log.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(statements.c.position, statements.c.learner, statements.c.sealed, statements.c.key_id)
                    .where(
                        statements.c.tenant == tenant, statements.c.position > after, statements.c.sealed.is_not(None)
                    )
                    .order_by(statements.c.position)
                    .limit(page)
                )
            ).all()
            keys = await read_keys(conn, tenant, [r[3] for r in rows])
        if not rows:
            return added
        after = int(rows[-1][0])
        actors: dict[str, tuple[Any, str]] = {}
        for _position, learner, sealed, key_id in rows:
            personal = open_sealed(keys, tenant, str(learner), key_id, bytes(sealed))
            if personal is None:
                continue
            for path, value in orjson.loads(personal):
                if path != ["actor"]:
                    continue
                forms = [value]
                if isinstance(value, dict) and isinstance(value.get("mbox"), str):
                    sha1 = hashlib.sha1(value["mbox"].encode()).hexdigest()
                    forms.append({"objectType": value.get("objectType", "Agent"), "mbox_sha1sum": sha1})
                for form in forms:
                    old = legacy_learner_stream(tenant, form)
                    if old in known:
                        actors[stream_identity(form)] = (form, old)
        if not actors:
            continue
        async with log.transaction() as conn:
            secret = await tenant_secret(conn, tenant, create=True)
            assert secret is not None
            wanted = {learner_digest(secret, form): old for form, old in actors.values()}
            present = await find_learners(conn, tenant, wanted)
            fresh = {d: old for d, old in wanted.items() if d not in present}
            if fresh:
                await bulk_insert(
                    conn,
                    learner_directory,
                    [(tenant, d, old, time.time_ns() // 1000) for d, old in fresh.items()],
                    columns=("tenant", "digest", "learner", "created_us"),
                    ignore_conflicts=True,
                )
                added += len(fresh)


async def directory_learner_id(log: EventLog, tenant: str, actor: Any, create: bool) -> str | None:
    """The views API's ``agent=`` (``proficio_projector``'s ``LearnerId``): a lookup, or with ``create`` (a write
    naming a learner, such as a section's roster) an enrollment."""
    if create:
        return (await enroll_learner_ids(log, tenant, [actor]))[0]
    return await find_learner_id(log, tenant, actor)
