"""Per-tenant settings, kept as events in the tenant's log: which xAPI versions the tenant accepts."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog, NewEvent, StoredEvent, bulk_upsert

from ._errors import BadRequest
from ._schema import tenants

V1 = "1.0.3"
V2 = "2.0.0"
#: Every xAPI version this LRS speaks, newest last; the About resource lists them.
SUPPORTED_VERSIONS = (V1, V2)
_VERSION = re.compile(r"^(1|2)\.0(\.\d+)?$")

TENANT_CONFIGURED = "TenantConfigured"
TENANT_STREAM = "tenant"


def parse_version(value: str | None) -> str | None:
    """The version a request states, as this LRS speaks it (any 1.0.x is 1.0.3, any 2.0.x is 2.0.0)."""
    if value is None:
        return None
    match = _VERSION.match(value.strip())
    if match is None:
        return None
    return V1 if match.group(1) == "1" else V2


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    xapi_versions: tuple[str, ...] = SUPPORTED_VERSIONS

    @property
    def default_version(self) -> str:
        """The version stated on responses to requests that state none (the oldest accepted)."""
        return self.xapi_versions[0]


DEFAULT_POLICY = TenantPolicy()


async def apply(conn: AsyncConnection, events: Sequence[StoredEvent]) -> None:
    """Inline projection of TenantConfigured events into the tenants table."""
    rows = [
        (event.tenant, " ".join(event.data()["xapi_versions"]), event.position)
        for event in events
        if event.event_type == TENANT_CONFIGURED
    ]
    await bulk_upsert(conn, tenants, rows, key=("tenant",))


class TenantStore:
    """Tenant policies with a short in-process cache (a change reaches other processes within seconds)."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._cache: dict[str, tuple[TenantPolicy, float]] = {}

    async def configure(self, tenant: str, xapi_versions: Sequence[str]) -> TenantPolicy:
        versions = []
        for value in xapi_versions:
            version = parse_version(value)
            if version is None:
                raise BadRequest(f"xAPI version {value!r} is not one this LRS speaks ({', '.join(SUPPORTED_VERSIONS)})")
            if version not in versions:
                versions.append(version)
        if not versions:
            raise BadRequest("a tenant must accept at least one xAPI version")
        ordered = tuple(v for v in SUPPORTED_VERSIONS if v in versions)
        await self._log.append(
            tenant, [NewEvent.of(TENANT_STREAM, TENANT_CONFIGURED, {"xapi_versions": list(ordered)})], inline=apply
        )
        self._cache.pop(tenant, None)
        return TenantPolicy(ordered)

    async def policy(self, tenant: str) -> TenantPolicy:
        cached = self._cache.get(tenant)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        async with self._log.engine.connect() as conn:
            value = await conn.scalar(sa.select(tenants.c.xapi_versions).where(tenants.c.tenant == tenant))
        policy = DEFAULT_POLICY if value is None else TenantPolicy(tuple(value.split()))
        self._cache[tenant] = (policy, time.monotonic() + 5.0)
        return policy

    async def all(self) -> dict[str, TenantPolicy]:
        async with self._log.engine.connect() as conn:
            rows = await conn.execute(sa.select(tenants.c.tenant, tenants.c.xapi_versions).order_by(tenants.c.tenant))
            return {tenant: TenantPolicy(tuple(versions.split())) for tenant, versions in rows}


def describe(policy: TenantPolicy) -> bytes:
    return orjson.dumps({"xapi_versions": list(policy.xapi_versions)})
