"""Proficio's xAPI ingest service: the Statements and About resources over the event log."""

from ._app import create_app, open_ingest_store
from ._credentials import SCOPES, Credential, CredentialStore, NewCredential
from ._erasure import LEARNER_ERASED, Erasure, erase_learners, erasure_targets
from ._errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    StatementValidationError,
    Unauthorized,
    XAPIError,
)
from ._learners import (
    backfill_directory,
    directory_learner_id,
    enroll_learner_ids,
    find_learner_id,
    find_learner_ids,
    learner_digest,
    legacy_learner_stream,
)
from ._rebuild import rebuild as rebuild_query_tables
from ._rebuild import rebuild_documents, rebuild_statement_tables
from ._settings import IngestSettings
from ._tenants import SUPPORTED_VERSIONS, TenantPolicy, TenantStore

__all__ = [
    "LEARNER_ERASED",
    "SCOPES",
    "SUPPORTED_VERSIONS",
    "BadRequest",
    "Conflict",
    "Credential",
    "CredentialStore",
    "Erasure",
    "Forbidden",
    "IngestSettings",
    "NewCredential",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "StatementValidationError",
    "TenantPolicy",
    "TenantStore",
    "Unauthorized",
    "XAPIError",
    "backfill_directory",
    "create_app",
    "directory_learner_id",
    "enroll_learner_ids",
    "erase_learners",
    "erasure_targets",
    "find_learner_id",
    "find_learner_ids",
    "learner_digest",
    "legacy_learner_stream",
    "open_ingest_store",
    "rebuild_documents",
    "rebuild_query_tables",
    "rebuild_statement_tables",
]
