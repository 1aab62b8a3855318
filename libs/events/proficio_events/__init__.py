"""Proficio's event log: the one source of truth, from which every view is derived.

>>> log = await open_event_log(sqlite_url("data"))
>>> await log.append("district-7", [NewEvent.of("learner:42", "StatementStored", {...}, key=stmt_id)])
"""

from ._bulk import bulk_insert, bulk_insert_many, bulk_upsert, select_in
from ._chain import Anchor, ChainWalk, row_hash
from ._checkpointer import CheckpointOutcome, checkpoint_tenants, run_checkpointer
from ._checkpoints import (
    Checkpoint,
    CheckpointSettings,
    Signer,
    generate_key_files,
    load_public_key,
    load_signer,
    public_key_file_for,
)
from ._directory import (
    PENDING_LEARNER,
    directory_digest,
    directory_rows_of,
    enroll_learners,
    find_learners,
    forget_learners,
    new_learner_id,
)
from ._envelope import (
    GENESIS,
    AppendResult,
    ChainProblem,
    NewEvent,
    StoredEvent,
    StreamHead,
    VerifyReport,
    chain_hash,
)
from ._errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    InvalidBatchError,
    LogTamperedError,
    PoisonEventError,
    ProjectionError,
    SigningKeyError,
    StoreUnavailableError,
)
from ._export import ExportReport, ExportSummary, export_segment, verify_export
from ._hmac import hmac_sha256
from ._keyring import (
    destroy_keys,
    identifier_secret,
    keyed_digest,
    learners_with_live_keys,
    open_sealed,
    read_keys,
    scrub_keys,
    tenant_secret,
)
from ._log import GROUP_READ_TYPES, Decide, EventLog, GroupRead, GroupReadResult, InlineHandler, group_read_rows
from ._open import make_event_log, open_event_log, sqlite_url
from ._settings import StoreSettings
from ._sql import run_alembic_env

__all__ = [
    "GENESIS",
    "GROUP_READ_TYPES",
    "PENDING_LEARNER",
    "Anchor",
    "AppendResult",
    "ChainProblem",
    "ChainWalk",
    "Checkpoint",
    "CheckpointOutcome",
    "CheckpointSettings",
    "ConcurrencyError",
    "Decide",
    "DuplicateEventError",
    "EventLog",
    "EventStoreError",
    "ExportReport",
    "ExportSummary",
    "GroupRead",
    "GroupReadResult",
    "InlineHandler",
    "InvalidBatchError",
    "LogTamperedError",
    "NewEvent",
    "PoisonEventError",
    "ProjectionError",
    "Signer",
    "SigningKeyError",
    "StoreSettings",
    "StoreUnavailableError",
    "StoredEvent",
    "StreamHead",
    "VerifyReport",
    "bulk_insert",
    "bulk_insert_many",
    "bulk_upsert",
    "chain_hash",
    "checkpoint_tenants",
    "destroy_keys",
    "directory_digest",
    "directory_rows_of",
    "enroll_learners",
    "export_segment",
    "find_learners",
    "forget_learners",
    "generate_key_files",
    "group_read_rows",
    "hmac_sha256",
    "identifier_secret",
    "keyed_digest",
    "learners_with_live_keys",
    "load_public_key",
    "load_signer",
    "make_event_log",
    "new_learner_id",
    "open_event_log",
    "open_sealed",
    "public_key_file_for",
    "read_keys",
    "row_hash",
    "run_alembic_env",
    "run_checkpointer",
    "scrub_keys",
    "select_in",
    "sqlite_url",
    "tenant_secret",
    "verify_export",
]
