"""Client credentials: HTTP Basic key and secret, bound to a tenant, holding xAPI scopes.

Secrets are 256-bit random tokens, so a single SHA-256 is a safe way to store them (there is nothing
to brute-force) and cheap enough to check on every request; comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from proficio_events import EventLog

from ._errors import BadRequest, Forbidden, Unauthorized
from ._schema import credentials

SCOPES = frozenset(
    {"statements/write", "statements/read", "statements/read/mine", "all/read", "all", "define", "state", "profile"}
)
#: Where each permission is granted (``all`` implies everything).
READ_STATEMENTS = frozenset({"statements/read", "statements/read/mine", "all/read", "all"})
WRITE_STATEMENTS = frozenset({"statements/write", "all"})
AUTHORITY_HOME_PAGE = "urn:proficio:credentials"


@dataclass(frozen=True, slots=True)
class Credential:
    key: str
    tenant: str
    name: str
    scopes: frozenset[str]
    created_us: int
    revoked_us: int | None = None

    @property
    def authority(self) -> dict[str, Any]:
        """The xAPI authority the LRS writes into statements sent with this credential."""
        return {
            "objectType": "Agent",
            "name": self.name,
            "account": {"homePage": AUTHORITY_HOME_PAGE, "name": self.key},
        }

    def require(self, allowed: frozenset[str], what: str) -> None:
        if not self.scopes & allowed:
            raise Forbidden(f"this credential may not {what} (it holds: {', '.join(sorted(self.scopes))})")

    @property
    def may_define(self) -> bool:
        """Whether this credential's activity definitions update the LRS's canonical ones."""
        return bool(self.scopes & {"define", "all"})

    @property
    def reads_only_own_statements(self) -> bool:
        return not self.scopes & (READ_STATEMENTS - {"statements/read/mine"})


@dataclass(frozen=True, slots=True)
class NewCredential:
    credential: Credential
    secret: str


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_basic(header: str | None) -> tuple[str, str]:
    """Key and secret from an ``Authorization: Basic`` header, or 401."""
    if not header:
        raise Unauthorized("authentication required: send HTTP Basic credentials")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Unauthorized("only HTTP Basic authentication is supported")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("the Basic credentials are not valid base64") from exc
    key, colon, secret = decoded.partition(":")
    if not colon:
        raise Unauthorized("the Basic credentials lack a ':' between key and secret")
    return key, secret


class CredentialStore:
    """Credentials in the database, with an in-process cache of verified ones."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._engine = log.engine
        self._cache: dict[str, tuple[bytes, Credential, float]] = {}
        # The same, by the whole Authorization header a credential was verified with: a client sends the same
        # header on every request, so it is neither decoded nor hashed again until the entry expires.
        self._verified: dict[str, tuple[Credential, float]] = {}

    async def create(self, tenant: str, name: str, scopes: list[str]) -> NewCredential:
        unknown = sorted(set(scopes) - SCOPES)
        if unknown:
            raise BadRequest(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}")
        if not scopes:
            raise BadRequest("a credential needs at least one scope")
        if not tenant:
            raise BadRequest("a credential needs a tenant")
        key = secrets.token_hex(10)
        secret = secrets.token_urlsafe(32)
        credential = Credential(key, tenant, name or key, frozenset(scopes), time.time_ns() // 1000)
        async with self._log.transaction() as conn:
            await conn.execute(
                credentials.insert().values(
                    key=key,
                    tenant=tenant,
                    name=credential.name,
                    secret_hash=_hash(secret),
                    scopes=" ".join(sorted(credential.scopes)),
                    created_us=credential.created_us,
                )
            )
        return NewCredential(credential, secret)

    async def list(self, tenant: str | None = None) -> list[Credential]:
        query = sa.select(credentials).order_by(credentials.c.created_us)
        if tenant is not None:
            query = query.where(credentials.c.tenant == tenant)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_credential(row) for row in rows]

    async def revoke(self, key: str) -> bool:
        async with self._log.transaction() as conn:
            result = await conn.execute(
                credentials.update()
                .where(credentials.c.key == key, credentials.c.revoked_us.is_(None))
                .values(revoked_us=time.time_ns() // 1000)
            )
        self._cache.pop(key, None)
        self._verified = {h: entry for h, entry in self._verified.items() if entry[0].key != key}
        return bool(result.rowcount)

    async def authenticate(self, header: str | None) -> Credential:
        verified = self._verified.get(header) if header is not None else None
        if verified is not None and verified[1] > time.monotonic():
            return verified[0]
        key, secret = parse_basic(header)
        digest = _hash(secret)
        cached = self._cache.get(key)
        if cached is not None and cached[2] > time.monotonic() and hmac.compare_digest(cached[0], digest):
            self._remember(header, cached[1], cached[2])
            return cached[1]
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(credentials).where(credentials.c.key == key))).mappings().first()
        if row is None or row["revoked_us"] is not None or not hmac.compare_digest(row["secret_hash"], digest):
            raise Unauthorized("unknown or revoked credentials")
        credential = _credential(row)
        # A revoked credential stops working within this many seconds in other processes.
        self._cache[key] = (digest, credential, time.monotonic() + 5.0)
        self._remember(header, credential, time.monotonic() + 5.0)
        return credential

    def _remember(self, header: str | None, credential: Credential, expires: float) -> None:
        if header is None:
            return
        if len(self._verified) >= 10_000:  # headers of many clients (or made up): start again
            self._verified.clear()
        self._verified[header] = (credential, expires)


def _credential(row: Any) -> Credential:
    return Credential(
        key=row["key"],
        tenant=row["tenant"],
        name=row["name"],
        scopes=frozenset(row["scopes"].split()),
        created_us=row["created_us"],
        revoked_us=row["revoked_us"],
    )
