"""Per-learner data keys for crypto-shredding, kept apart from the log.

A learner's personal data (who she is, what she wrote) is never written to the log in clear. The writer
puts it in ``NewEvent.private`` and names the learner in ``NewEvent.seal_for``; the log seals it inside
the append transaction, under the write lock, with that learner's data key (created there if she has
none, so no event is ever committed without its key) and stores the ciphertext as the event's ``sealed``
body with the key's id in ``key_id``. The hash chain covers the sealed bytes as stored, so destroying
the key later (erasure) leaves every hash valid and rewrites no event.

Tables (beside the log, not in it; exports and Kafka carry only ``key_id``)::

    learner_keys    (tenant, key_id) -> learner, data_key (32 bytes; NULL once erased), created_us,
                    erased_us, erased_by. At most one live key per (tenant, learner): statements that
                    arrive after her erasure get a fresh key (a new epoch), never the destroyed one.
    tenant_secrets  tenant -> a 32-byte secret for keyed digests (HMAC-SHA256) of identifiers, such as the
                    statement index's agent values: equality lookups without plaintext identifiers.

Sealed bytes are ``0x01 || nonce (12 random bytes) || AES-256-GCM(ciphertext || tag)`` with associated
data binding the tenant, the event's stream and the key id, so ciphertext moved to another learner's
stream (or tenant) does not open.

Keys are read per request (``read_keys``: one query for a page of events) and never cached across
requests: a process must not go on decrypting after an erasure has committed. The tenant secret is
cached, as erasure never destroys it.

Erasure (``destroy_keys``) sets ``data_key`` to NULL in the caller's transaction. On SQLite the update
runs with ``PRAGMA secure_delete`` so the freed cell is zeroed in the page; on PostgreSQL call
``scrub_keys`` after the commit to rewrite the small key table (VACUUM FULL), so no dead tuple keeps
the key. Honest limits: the WAL (SQLite's -wal file until it is checkpointed and overwritten,
PostgreSQL's pg_wal until the segments are recycled) and any backup taken before the erasure still
hold the key row; see docs/privacy.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._bulk import bulk_insert
from ._hmac import hmac_sha256
from ._schema import learner_directory, learner_keys, tenant_secrets

if TYPE_CHECKING:
    from ._log import EventLog

_FORMAT = b"\x01"
_NONCE = 12
_AAD_DOMAIN = "proficio:sealed:1"
_HMAC_DOMAIN = b"proficio:identifier:1\x00"

#: Switched off only by the ingest benchmark, to measure what encryption costs: production always seals.
#: With it off the private part is stored in clear in ``sealed`` (and ``key_id`` stays None).
_ENCRYPT = True

_log = logging.getLogger("proficio.keyring")
_secrets_cache: dict[tuple[int, str], bytes] = {}
_PG_READ_KEYS = (
    "SELECT key_id, data_key FROM learner_keys WHERE tenant = $1 AND key_id = ANY($2::text[]) AND data_key IS NOT NULL"
)
_PG_LIVE_KEYS = (
    "SELECT learner, key_id, data_key FROM learner_keys"
    " WHERE tenant = $1 AND learner = ANY($2::text[]) AND erased_us IS NULL"
)


@dataclass(frozen=True, slots=True)
class DataKey:
    key_id: str
    key: bytes


def _aad(tenant: str, stream: str, key_id: str) -> bytes:
    return orjson.dumps([_AAD_DOMAIN, tenant, stream, key_id])


def seal(key: DataKey, tenant: str, stream: str, plaintext: bytes) -> bytes:
    """``plaintext`` encrypted under ``key`` for ``stream`` of ``tenant``."""
    nonce = os.urandom(_NONCE)
    return _FORMAT + nonce + AESGCM(key.key).encrypt(nonce, plaintext, _aad(tenant, stream, key.key_id))


def open_sealed(keys: Mapping[str, bytes], tenant: str, stream: str, key_id: str | None, sealed: bytes) -> bytes | None:
    """The plaintext of a sealed body, or None when its key is gone (erased) or not among ``keys``.

    An event sealed with encryption off (the benchmark's baseline) has no ``key_id``: its body is the
    plaintext. Ciphertext that does not authenticate (moved, altered) also gives None.
    """
    if key_id is None:
        return sealed
    key = keys.get(key_id)
    if key is None or sealed[:1] != _FORMAT:
        return None
    nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
    try:
        return AESGCM(key).decrypt(nonce, body, _aad(tenant, stream, key_id))
    except InvalidTag:
        return None


async def live_keys(conn: AsyncConnection, tenant: str, learners: Iterable[str]) -> dict[str, DataKey]:
    """Each learner's live key, creating the missing ones: one query when all exist, two when some do not.

    Call inside the transaction that stores what the keys seal (the log does, under its write lock).
    """
    wanted = sorted(set(learners))
    if not wanted:
        return {}
    found: dict[str, DataKey] = {}
    if conn.dialect.name == "postgresql":
        # On the append's hot path: one prepared statement on the driver connection (SQLAlchemy Core costs
        # several times the query itself here), any number of learners in one array.
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        for learner, key_id, data_key in await driver.fetch(_PG_LIVE_KEYS, tenant, wanted):
            found[str(learner)] = DataKey(str(key_id), bytes(data_key))
    else:
        for start in range(0, len(wanted), 1000):
            rows = await conn.execute(
                sa.select(learner_keys.c.learner, learner_keys.c.key_id, learner_keys.c.data_key).where(
                    learner_keys.c.tenant == tenant,
                    learner_keys.c.learner.in_(wanted[start : start + 1000]),
                    learner_keys.c.erased_us.is_(None),
                )
            )
            for learner, key_id, data_key in rows:
                found[str(learner)] = DataKey(str(key_id), bytes(data_key))
    missing = [learner for learner in wanted if learner not in found]
    if missing:
        now = _now_us()
        created = {learner: DataKey("k" + secrets.token_hex(12), os.urandom(32)) for learner in missing}
        await bulk_insert(
            conn,
            learner_keys,
            [(tenant, k.key_id, learner, k.key, now, None, None) for learner, k in created.items()],
            columns=("tenant", "key_id", "learner", "data_key", "created_us", "erased_us", "erased_by"),
        )
        found.update(created)
    return found


async def learners_with_live_keys(engine: AsyncEngine, tenant: str, learners: Iterable[str]) -> list[str]:
    """Which of ``learners`` hold a live key (have data that an erasure would destroy)."""
    wanted = sorted(set(learners))
    if not wanted:
        return []
    async with engine.connect() as conn:
        rows = await conn.scalars(
            sa.select(learner_keys.c.learner)
            .where(
                learner_keys.c.tenant == tenant, learner_keys.c.learner.in_(wanted), learner_keys.c.erased_us.is_(None)
            )
            .distinct()
        )
        return sorted(str(r) for r in rows)


async def read_keys(
    conn: AsyncConnection | AsyncEngine, tenant: str, key_ids: Iterable[str | None]
) -> dict[str, bytes]:
    """The data keys (still live) with these ids: one query. Erased keys are simply absent."""
    wanted = sorted({k for k in key_ids if k is not None})
    if not wanted:
        return {}
    found: dict[str, bytes] = {}
    if conn.dialect.name == "postgresql":
        # Once per page of every read: one prepared statement on the driver connection.
        async with contextlib.AsyncExitStack() as stack:
            live = conn if isinstance(conn, AsyncConnection) else await stack.enter_async_context(conn.connect())
            raw = await live.get_raw_connection()
            driver: Any = raw.driver_connection
            rows = await driver.fetch(_PG_READ_KEYS, tenant, wanted)
        return {str(k): bytes(v) for k, v in rows}
    query = sa.select(learner_keys.c.key_id, learner_keys.c.data_key)
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        select = query.where(
            learner_keys.c.tenant == tenant, learner_keys.c.key_id.in_(chunk), learner_keys.c.data_key.is_not(None)
        )
        if isinstance(conn, AsyncEngine):
            async with conn.connect() as own:
                rows = (await own.execute(select)).all()
        else:
            rows = (await conn.execute(select)).all()
        found.update((str(k), bytes(v)) for k, v in rows)
    return found


async def tenant_secret(conn: AsyncConnection, tenant: str, *, create: bool) -> bytes | None:
    """The tenant's identifier secret (created when ``create`` and there is none; call that in a write
    transaction). Cached per database: it is never destroyed."""
    cache_key = (id(conn.engine.sync_engine), tenant)
    cached = _secrets_cache.get(cache_key)
    if cached is not None:
        return cached
    found = await conn.scalar(sa.select(tenant_secrets.c.secret).where(tenant_secrets.c.tenant == tenant))
    if found is None and create:
        await bulk_insert(conn, tenant_secrets, [(tenant, os.urandom(32), _now_us())], ignore_conflicts=True)
        found = await conn.scalar(sa.select(tenant_secrets.c.secret).where(tenant_secrets.c.tenant == tenant))
    if found is None:
        return None
    _secrets_cache[cache_key] = bytes(found)
    return bytes(found)


async def identifier_secret(log: EventLog, tenant: str) -> bytes:
    """The tenant's identifier secret, created (in a write transaction of its own) the first time."""
    cached = _secrets_cache.get((id(log.engine.sync_engine), tenant))
    if cached is not None:  # no pool checkout (a round trip on PostgreSQL) per request
        return cached
    async with log.engine.connect() as conn:
        found = await tenant_secret(conn, tenant, create=False)
    if found is not None:
        return found
    async with log.transaction() as conn:
        created = await tenant_secret(conn, tenant, create=True)
    assert created is not None
    return created


def keyed_digest(secret: bytes, value: str) -> str:
    """A keyed digest of an identifier (hex HMAC-SHA256): equal identifiers give equal digests, and without
    the tenant secret nobody can test a guessed identifier against it."""
    return hmac_sha256(secret, _HMAC_DOMAIN + value.encode()).hex()


async def destroy_keys(conn: AsyncConnection, tenant: str, learner: str, *, erased_by: str, at_us: int) -> list[str]:
    """Destroy every live key of ``learner`` in the caller's transaction; the ids of those destroyed
    (none when she was erased before: erasing twice is harmless)."""
    key_ids = [
        str(k)
        for k in (
            await conn.scalars(
                sa.select(learner_keys.c.key_id).where(
                    learner_keys.c.tenant == tenant,
                    learner_keys.c.learner == learner,
                    learner_keys.c.erased_us.is_(None),
                )
            )
        ).all()
    ]
    if not key_ids:
        return []
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # Zero the freed cell content in the page instead of leaving the old key bytes behind.
        await conn.exec_driver_sql("PRAGMA secure_delete = ON")
    try:
        await conn.execute(
            learner_keys.update()
            .where(learner_keys.c.tenant == tenant, learner_keys.c.key_id.in_(key_ids))
            .values(data_key=None, erased_us=at_us, erased_by=erased_by)
        )
    finally:
        if sqlite:
            await conn.exec_driver_sql("PRAGMA secure_delete = OFF")
    return key_ids


async def _older_transactions_ended(conn: AsyncConnection, wait_s: float) -> bool:
    """Wait (up to ``wait_s``) until every transaction that was running when this was called has ended, anywhere
    in the cluster; whether they did.

    VACUUM FULL keeps a dead row as "recently dead" while any snapshot might still see it, and its own snapshot's
    xmin is the oldest transaction running in the whole cluster (another database's too): right after the
    erasure's commit, a transaction that began before it, anywhere, would keep the old key row in the new file.
    """
    horizon = await conn.scalar(sa.text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))
    deadline = time.monotonic() + wait_s
    while True:
        oldest = await conn.scalar(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))
        if oldest >= horizon:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def scrub_keys(engine: AsyncEngine, *, wait_s: float = 30.0) -> None:
    """After an erasure has committed, leave no dead copy of a destroyed key in the key table's files (nor of a
    deleted learner directory row in the directory's).

    PostgreSQL: VACUUM FULL rewrites the (small) table into a new file and drops the old one, once every transaction
    older than the erasure has ended (up to ``wait_s``; until then it would copy the dead rows along). SQLite: the
    update already zeroed the cell (secure_delete); a checkpoint moves the page into the database file.
    """
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            live = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if not await _older_transactions_ended(live, wait_s):
                _log.warning("transactions older than the erasure still run: the scrub may keep dead rows")
            await live.exec_driver_sql(f"VACUUM FULL {learner_keys.name}")
            # The learner directory too: the deleted rows that tied her identity's digest to her learner id.
            await live.exec_driver_sql(f"VACUUM FULL {learner_directory.name}")
        else:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def _now_us() -> int:
    return time.time_ns() // 1000
