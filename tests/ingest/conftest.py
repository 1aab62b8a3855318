"""Fixtures for the ingest service: an app on a fresh store, a credential, an HTTP client."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from proficio_events import EventLog
from proficio_ingest import CredentialStore, IngestSettings, create_app
from tests.support.server import RunningServer, running_server

VERSION = {"X-Experience-API-Version": "1.0.3"}


@dataclass
class Client:
    """An xAPI client of the app under test, with its own credential."""

    http: httpx.AsyncClient
    app: FastAPI
    auth: dict[str, str]
    key: str

    @property
    def log(self) -> EventLog:
        log: EventLog = self.app.state.log
        return log

    def headers(self, **extra: str) -> dict[str, str]:
        return {**VERSION, **self.auth, **extra}

    async def post(self, statements: Any, **kwargs: Any) -> httpx.Response:
        return await self.http.post(
            "/xapi/statements",
            content=orjson.dumps(statements),
            headers=self.headers(**{"Content-Type": "application/json"}),
            **kwargs,
        )

    async def put(self, statement_id: str, statement: Any) -> httpx.Response:
        return await self.http.put(
            "/xapi/statements",
            params={"statementId": statement_id},
            content=orjson.dumps(statement),
            headers=self.headers(**{"Content-Type": "application/json"}),
        )

    async def get(self, path: str = "/xapi/statements", **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers=self.headers())

    async def credential(self, *scopes: str, tenant: str = "default") -> dict[str, str]:
        created = await CredentialStore(self.log).create(tenant, "other", list(scopes))
        token = base64.b64encode(f"{created.credential.key}:{created.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    """``proficio serve`` as a real process on the store, and the store's address."""
    with running_server(tmp_path, None if store_url.startswith("sqlite") else store_url) as running:
        yield running, store_url


def tincan_lrs(running: RunningServer) -> Any:
    """The ``tincan`` package's RemoteLRS, a real xAPI 1.0.3 client, for a running server."""
    from tincan import RemoteLRS

    return RemoteLRS(endpoint=running.endpoint, username=running.key, password=running.secret, version="1.0.3")


@pytest.fixture
async def client(store_url: str) -> AsyncIterator[Client]:
    settings = IngestSettings(database_url=store_url, max_body_bytes=2 * 1024 * 1024)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lrs.test") as http:
            created = await CredentialStore(app.state.log).create("default", "LMS", ["all"])
            token = base64.b64encode(f"{created.credential.key}:{created.secret}".encode()).decode()
            yield Client(http, app, {"Authorization": f"Basic {token}"}, created.credential.key)


def statement(n: int = 0, **changes: Any) -> dict[str, Any]:
    """A small valid statement; ``changes`` replace top-level properties."""
    body: dict[str, Any] = {
        "actor": {"objectType": "Agent", "mbox": f"mailto:learner{n}@example.org", "name": f"Learner {n}"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered", "fr-FR": "répondu"}},
        "object": {
            "id": f"http://example.org/item/{n}",
            "definition": {"name": {"en-US": "Item", "en-GB": "Item (GB)"}},
        },
    }
    body.update(changes)
    return body
