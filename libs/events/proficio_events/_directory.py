"""The learner directory: which random learner id an identity has, kept beside the log, never in it.

A learner id (the stream of her statements, the key of every per-learner view row) is ``learner:`` and 32
random hex digits: no function of her identity. What ties an identity to it is one row of this table::

    learner_directory  (tenant, digest) -> learner, created_us

``digest`` is a keyed digest (HMAC-SHA256 with the tenant's identifier secret, ``directory_digest``) of
the identity, so the table holds no identifier either. Erasure deletes her rows (``forget_learners``) in
the erasure's transaction: afterwards her identity maps to nothing, and her pseudonymous rows and events
(which keep the random id) cannot be found from her identifier, by hashing it or otherwise. A later
statement of the same identity gets a fresh id.

Writers name the learner of an event by its digest (``NewEvent.learner_of``) and ``PENDING_LEARNER`` where the
id goes (the stream, ``seal_for``, a top-level ``learner`` field of the payload); the log resolves the
digests of a whole group commit inside the append transaction, under its write lock (so an erasure, which
takes the same lock, cannot interleave), creating the missing rows there: on PostgreSQL the lookup goes in the
group commit's one read query, and creating rows costs one insert more. Readers (``find_learners``) never
create rows. Rows created outside the append (``enroll_learners`` in a transaction of its own, the roster
import) race with it only through the primary key: ``ON CONFLICT DO NOTHING`` and a re-read give both the
same id. Nothing is cached: a lookup after an erasure has committed finds nothing.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._bulk import bulk_insert
from ._hmac import hmac_sha256
from ._schema import learner_directory

#: Where a writer wants the learner id of its event's ``learner_of`` (see ``NewEvent``).
PENDING_LEARNER = "learner:?"
_DOMAIN = b"proficio:learner:1\x00"
_PG_FIND = "SELECT digest, learner FROM learner_directory WHERE tenant = $1 AND digest = ANY($2::text[])"


def directory_digest(secret: bytes, identity: str) -> str:
    """The directory's key for an identity: HMAC-SHA256 with the tenant secret (domain-separated from the
    statement index's digests)."""
    return hmac_sha256(secret, _DOMAIN + identity.encode()).hex()


def new_learner_id() -> str:
    """A fresh learner id: random, no function of anything."""
    return "learner:" + secrets.token_hex(16)


async def _find(conn: AsyncConnection, tenant: str, wanted: list[str], *, driver: bool = False) -> dict[str, str]:
    found: dict[str, str] = {}
    if driver and conn.dialect.name == "postgresql":
        # A connection of our own: one prepared statement on the driver connection. (Not on a caller's: a statement
        # sent past SQLAlchemy does not begin its lazily started transaction, so it would run on its own.)
        raw = await conn.get_raw_connection()
        connection: Any = raw.driver_connection
        for digest, learner in await connection.fetch(_PG_FIND, tenant, wanted):
            found[str(digest)] = str(learner)
        return found
    for start in range(0, len(wanted), 1000):
        rows = await conn.execute(
            sa.select(learner_directory.c.digest, learner_directory.c.learner).where(
                learner_directory.c.tenant == tenant, learner_directory.c.digest.in_(wanted[start : start + 1000])
            )
        )
        found.update((str(d), str(learner)) for d, learner in rows)
    return found


async def find_learners(conn: AsyncConnection | AsyncEngine, tenant: str, digests: Iterable[str]) -> dict[str, str]:
    """digest -> learner id for the digests the directory holds (one query); creates nothing."""
    wanted = sorted(set(digests))
    if not wanted:
        return {}
    if isinstance(conn, AsyncConnection):
        return await _find(conn, tenant, wanted)
    async with conn.connect() as own:
        return await _find(own, tenant, wanted, driver=True)


async def enroll_learners(
    conn: AsyncConnection, tenant: str, digests: Iterable[str], *, found: dict[str, str] | None = None
) -> tuple[dict[str, str], set[str]]:
    """digest -> learner id for every digest, creating the missing rows in the caller's write transaction;
    and the ids created here (their streams are new).

    ``found``: what the caller already looked up (the log's group commit, whose transaction is open). A row another
    transaction inserted meanwhile wins (the primary key; ``ON CONFLICT DO NOTHING``, then a re-read), so two
    writers never give one identity two ids.
    """
    wanted = sorted(set(digests))
    known = dict(found) if found is not None else await find_learners(conn, tenant, wanted)
    missing = [d for d in wanted if d not in known]
    if not missing:
        return {d: known[d] for d in wanted}, set()
    now = time.time_ns() // 1000
    proposed = {d: new_learner_id() for d in missing}
    await bulk_insert(
        conn,
        learner_directory,
        [(tenant, d, learner, now) for d, learner in proposed.items()],
        columns=("tenant", "digest", "learner", "created_us"),
        ignore_conflicts=True,
    )
    stored = await find_learners(conn, tenant, missing)
    known.update(stored)
    created = {learner for d, learner in stored.items() if proposed[d] == learner}
    return {d: known[d] for d in wanted}, created


async def directory_rows_of(conn: AsyncConnection | AsyncEngine, tenant: str, learners: Iterable[str]) -> list[str]:
    """Which of ``learners`` the directory still maps an identity to."""
    wanted = sorted(set(learners))
    if not wanted:
        return []
    async with contextlib.AsyncExitStack() as stack:
        live = conn if isinstance(conn, AsyncConnection) else await stack.enter_async_context(conn.connect())
        rows = await live.scalars(
            sa.select(learner_directory.c.learner)
            .where(learner_directory.c.tenant == tenant, learner_directory.c.learner.in_(wanted))
            .distinct()
        )
        return sorted(str(r) for r in rows)


async def forget_learners(conn: AsyncConnection, tenant: str, learners: Iterable[str]) -> int:
    """Delete every directory row of ``learners`` in the caller's transaction (erasure): how many went.

    On SQLite with ``secure_delete`` on, so the freed cells (table and index) are zeroed in their pages; on
    PostgreSQL ``scrub_keys`` rewrites the table after the commit.
    """
    wanted = sorted(set(learners))
    if not wanted:
        return 0
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        await conn.exec_driver_sql("PRAGMA secure_delete = ON")
    try:
        gone = await conn.execute(
            learner_directory.delete().where(
                learner_directory.c.tenant == tenant, learner_directory.c.learner.in_(wanted)
            )
        )
    finally:
        if sqlite:
            await conn.exec_driver_sql("PRAGMA secure_delete = OFF")
    return int(gone.rowcount or 0)
