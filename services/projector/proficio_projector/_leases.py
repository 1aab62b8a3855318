"""Leases: which worker owns which segment of a SQL-log consumer (or the relay), with fencing.

Workers heartbeat in ``projector_members``; each takes its fair share (segments / live members,
rounded up) of the segments whose lease is free or expired, renews what it holds and releases what it
holds beyond its share. The transaction that commits a segment's work first checks, holding the lease
row (``FOR UPDATE`` on PostgreSQL; SQLite serializes writers anyway), that the lease is still its own,
so a worker that stalled past its lease can never commit over its successor.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog

from ._schema import leases, members
from ._store import now_us

logger = logging.getLogger("proficio.projector")


def worker_id() -> str:
    """This worker's name in leases: host, process and a random part (a restarted process is a new worker)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseKeeper:
    def __init__(
        self, log: EventLog, name: str, segments: int, owner: str, *, ttl: float = 10.0, fair: bool = True
    ) -> None:
        self.log = log
        self.name = name
        self.segments = segments
        self.owner = owner
        self.ttl_us = int(ttl * 1_000_000)
        self.fair = fair
        self.owned: set[int] = set()

    async def refresh(self) -> set[int]:
        """Heartbeat, renew held leases, and take or give back segments towards a fair share."""
        now = now_us()
        async with self.log.transaction() as conn:
            await self._upsert(
                conn, members, {"name": self.name, "owner": self.owner, "seen_us": now}, ["name", "owner"]
            )
            live = await conn.scalar(
                sa.select(sa.func.count()).where(members.c.name == self.name, members.c.seen_us > now - self.ttl_us)
            )
            rows = (await conn.execute(sa.select(leases).where(leases.c.name == self.name))).mappings().all()
            current = {int(r["segment"]): r for r in rows}
            share = self.segments if not self.fair else math.ceil(self.segments / max(1, int(live or 1)))
            owned = {s for s, r in current.items() if r["owner"] == self.owner and r["expires_us"] > now}
            for segment in sorted(owned)[share:]:
                await conn.execute(
                    leases.update()
                    .where(leases.c.name == self.name, leases.c.segment == segment, leases.c.owner == self.owner)
                    .values(expires_us=0)
                )
                owned.discard(segment)
            for segment in range(self.segments):
                if len(owned) >= share:
                    break
                row = current.get(segment)
                if segment in owned or (row is not None and row["expires_us"] > now):
                    continue
                owned.add(segment)
            expires = now + self.ttl_us
            for segment in sorted(owned):  # in segment order, as commits lock them (``holds_all``)
                # Taken only if still free or ours: a worker claiming the same segment at the same moment
                # (PostgreSQL re-checks this against the row it waited for) leaves it to the first.
                await self._upsert(
                    conn,
                    leases,
                    {"name": self.name, "segment": segment, "owner": self.owner, "expires_us": expires},
                    ["name", "segment"],
                    where=sa.or_(leases.c.owner == self.owner, leases.c.expires_us <= now),
                )
            held = await conn.execute(
                sa.select(leases.c.segment).where(
                    leases.c.name == self.name, leases.c.owner == self.owner, leases.c.expires_us == expires
                )
            )
            owned = {int(segment) for (segment,) in held}
        if owned != self.owned:
            logger.info("%s holds segments %s of %s", self.owner, sorted(owned), self.name)
        self.owned = owned
        return owned

    async def holds(self, conn: AsyncConnection, segment: int) -> bool:
        """In the committing transaction: is ``segment`` still ours (and the row held until commit)?"""
        query = sa.select(leases.c.owner, leases.c.expires_us).where(
            leases.c.name == self.name, leases.c.segment == segment
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        return row is not None and row.owner == self.owner and row.expires_us > now_us()

    async def holds_all(self, conn: AsyncConnection, segments: Collection[int]) -> bool:
        """``holds`` for several segments in one statement: all of them still ours (their rows held until commit)?"""
        if not segments:
            return True
        query = sa.select(leases.c.segment, leases.c.owner, leases.c.expires_us).where(
            leases.c.name == self.name, leases.c.segment.in_(sorted(segments))
        )
        if conn.dialect.name == "postgresql":
            # Locked in segment order, as ``refresh`` renews them: in the order on disk (a plan over a table of
            # many dead rows) a commit and a renewal of the same worker could each hold a row the other wants.
            query = query.order_by(leases.c.segment).with_for_update()
        rows = (await conn.execute(query)).all()
        now = now_us()
        return len(rows) == len(set(segments)) and all(r.owner == self.owner and r.expires_us > now for r in rows)

    async def release(self) -> None:
        async with self.log.transaction() as conn:
            await conn.execute(
                leases.update().where(leases.c.name == self.name, leases.c.owner == self.owner).values(expires_us=0)
            )
            await conn.execute(members.delete().where(members.c.name == self.name, members.c.owner == self.owner))
        self.owned = set()

    @staticmethod
    async def _upsert(
        conn: AsyncConnection,
        table: sa.Table,
        values: dict[str, object],
        key: list[str],
        where: sa.ColumnElement[bool] | None = None,
    ) -> None:
        insert: Any = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table).values(values)
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=key, set_={k: v for k, v in values.items() if k not in key}, where=where
            )
        )
