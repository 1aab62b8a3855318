"""The ingest service's error tree. Every one becomes a JSON response with its status and a reason.

XAPIError                 (status 400 unless said otherwise)
├── BadRequest            400: the request or a statement in it is malformed
│   └── StatementValidationError   names the offending property path and why
├── Unauthorized          401
├── Forbidden             403
├── NotFound              404
├── Conflict              409
├── PreconditionFailed    412
└── PayloadTooLarge       413
"""

from __future__ import annotations


class XAPIError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(XAPIError):
    status = 400


class StatementValidationError(BadRequest):
    """A statement broke a rule of the xAPI data model; ``path`` is like ``statements[2].actor.mbox``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


class Unauthorized(XAPIError):
    status = 401


class Forbidden(XAPIError):
    status = 403


class NotFound(XAPIError):
    status = 404


class Conflict(XAPIError):
    status = 409


class PreconditionFailed(XAPIError):
    status = 412


class PayloadTooLarge(XAPIError):
    status = 413
