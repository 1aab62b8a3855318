"""Rebuilding the ingest service's query tables from the log.

Each inline projection (written in the append transaction) is also a pure replay of its events: empty
its tables, feed every event of its types through it in log order, and the tables come back the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from proficio_events import EventLog, InlineHandler

from . import _documents as documents
from . import _projection as statements
from . import _tenants as tenants
from ._schema import PROJECTION_TABLES
from ._schema import documents as documents_table
from ._schema import tenants as tenants_table


@dataclass(frozen=True, slots=True)
class InlineProjection:
    name: str
    tables: tuple[sa.Table, ...]
    event_types: frozenset[str]
    apply: InlineHandler


STATEMENTS = InlineProjection(
    "statements",
    PROJECTION_TABLES,
    statements.STATEMENT_EVENTS | {statements.ATTACHMENT_STORED},
    statements.apply,
)
DOCUMENTS = InlineProjection("documents", (documents_table,), documents.DOCUMENT_EVENTS, documents.apply)
TENANTS = InlineProjection("tenants", (tenants_table,), frozenset({tenants.TENANT_CONFIGURED}), tenants.apply)
ALL = (STATEMENTS, DOCUMENTS, TENANTS)


async def rebuild(log: EventLog, *projections: InlineProjection, batch_size: int = 2000) -> dict[str, int]:
    """Empty the projections' tables and replay the log into them; how many events each one folded."""
    chosen = projections or ALL
    async with log.transaction() as conn:
        for projection in chosen:
            for table in projection.tables:
                await conn.execute(table.delete())
    applied = {projection.name: 0 for projection in chosen}
    position = 0
    while batch := await log.read_after(position, batch_size):
        async with log.transaction() as conn:
            for projection in chosen:
                relevant = [event for event in batch if event.event_type in projection.event_types]
                if relevant:
                    await projection.apply(conn, relevant)
                    applied[projection.name] += len(relevant)
        position = batch[-1].position
    return applied


async def rebuild_statement_tables(log: EventLog, *, batch_size: int = 2000) -> int:
    """The statement query tables (statements, index, attachments, activities) from the log."""
    return (await rebuild(log, STATEMENTS, batch_size=batch_size))["statements"]


async def rebuild_documents(log: EventLog, *, batch_size: int = 2000) -> int:
    """The current documents from the log."""
    return (await rebuild(log, DOCUMENTS, batch_size=batch_size))["documents"]
