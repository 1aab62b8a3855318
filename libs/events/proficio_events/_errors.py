"""The one exception tree of Proficio's event log and its consumers.

Services catch these, never driver exceptions (asyncpg, sqlite3, SQLAlchemy)::

    EventStoreError
    ├── InvalidBatchError        the batch itself is malformed (caller's fault, never retry)
    ├── ConcurrencyError         a stream's expected version did not hold
    ├── DuplicateEventError      a uniqueness key is already taken by different content
    ├── StoreUnavailableError    the store could not be reached or locked in time (retryable)
    ├── LogTamperedError         the hash chain does not hold, so it is not signed or exported as sound
    └── SigningKeyError          the checkpoint signing key (or a public key) cannot be used
    ProjectionError
    └── PoisonEventError         an event a projection cannot fold, after retries
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._envelope import ChainProblem


class EventStoreError(Exception):
    """Base of every error raised by an event log."""


class InvalidBatchError(EventStoreError, ValueError):
    """The batch cannot be appended as given (empty tenant, a key twice in one batch, ...)."""


class ConcurrencyError(EventStoreError):
    """A stream was not at the version the writer expected."""

    def __init__(self, tenant: str, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} of tenant {tenant!r} is at version {actual}, expected {expected}")
        self.tenant = tenant
        self.stream = stream
        self.expected = expected
        self.actual = actual


class DuplicateEventError(EventStoreError):
    """Events with these uniqueness keys exist already with different content."""

    def __init__(self, tenant: str, keys: list[str]) -> None:
        shown = ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")
        super().__init__(f"tenant {tenant!r} already holds different content under key(s): {shown}")
        self.tenant = tenant
        self.keys = keys


class StoreUnavailableError(EventStoreError):
    """The store did not answer, or its write lock was not granted in time. Safe to retry."""


class LogTamperedError(EventStoreError):
    """A chain walk found ``problem``; refused to sign (or vouch for) what the log holds."""

    def __init__(self, problem: ChainProblem) -> None:
        whose = f"tenant {problem.tenant!r}" if problem.tenant is not None else "the log"
        super().__init__(
            f"the log does not verify: event {problem.position} of {whose} was {problem.kind}: {problem.detail}"
        )
        self.problem = problem


class SigningKeyError(EventStoreError):
    """A key file is missing, unreadable, or not an ed25519 key."""


class ProjectionError(Exception):
    """Base of errors raised while folding events into views."""


class PoisonEventError(ProjectionError):
    """An event that a projection failed to fold after every retry."""

    def __init__(self, projection: str, position: int, reason: str) -> None:
        super().__init__(f"projection {projection!r} cannot fold event {position}: {reason}")
        self.projection = projection
        self.position = position
        self.reason = reason
