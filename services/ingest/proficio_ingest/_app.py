"""The FastAPI application: the log is opened in the lifespan, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import ORJSONResponse

from proficio_events import EventLog, open_event_log

from ._settings import IngestSettings

XAPI_VERSIONS = ["1.0.3"]


def get_log(request: Request) -> EventLog:
    log: EventLog = request.app.state.log
    return log


LogDep = Annotated[EventLog, Depends(get_log)]


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.log = await open_event_log(settings.log_url())
        try:
            yield
        finally:
            await app.state.log.close()

    app = FastAPI(title="Proficio", default_response_class=ORJSONResponse, lifespan=lifespan)

    @app.get("/xapi/about")
    async def about() -> ORJSONResponse:
        return ORJSONResponse({"version": XAPI_VERSIONS}, headers={"X-Experience-API-Version": "1.0.3"})

    @app.get("/health")
    async def health(log: LogDep) -> dict[str, Any]:
        return {"status": "ok", "log_position": await log.max_position()}

    return app
