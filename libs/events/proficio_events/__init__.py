"""Proficio's event log: the one source of truth, from which every view is derived.

>>> log = await open_event_log(sqlite_url("data"))
>>> await log.append("district-7", [NewEvent.of("learner:42", "StatementStored", {...}, key=stmt_id)])
"""

from ._bulk import bulk_insert, bulk_insert_many, bulk_upsert, select_in
from ._envelope import (
    GENESIS,
    AppendResult,
    ChainProblem,
    NewEvent,
    StoredEvent,
    VerifyReport,
    chain_hash,
)
from ._errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    InvalidBatchError,
    PoisonEventError,
    ProjectionError,
    StoreUnavailableError,
)
from ._log import EventLog, InlineHandler
from ._open import make_event_log, open_event_log, sqlite_url
from ._settings import StoreSettings
from ._sql import run_alembic_env

__all__ = [
    "GENESIS",
    "AppendResult",
    "ChainProblem",
    "ConcurrencyError",
    "DuplicateEventError",
    "EventLog",
    "EventStoreError",
    "InlineHandler",
    "InvalidBatchError",
    "NewEvent",
    "PoisonEventError",
    "ProjectionError",
    "StoreSettings",
    "StoreUnavailableError",
    "StoredEvent",
    "VerifyReport",
    "bulk_insert",
    "bulk_insert_many",
    "bulk_upsert",
    "chain_hash",
    "make_event_log",
    "open_event_log",
    "run_alembic_env",
    "select_in",
    "sqlite_url",
]
