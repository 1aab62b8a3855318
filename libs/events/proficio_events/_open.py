"""Choosing and opening a backend from an address."""

from __future__ import annotations

from pathlib import Path

from ._errors import StoreUnavailableError
from ._log import EventLog
from ._sql import SqlEventLog

DATABASE_FILE = "proficio.db"


def sqlite_url(data_dir: Path | str) -> str:
    """The address of the embedded log under a data directory."""
    return f"sqlite:///{Path(data_dir).resolve() / DATABASE_FILE}"


def make_event_log(url: str) -> SqlEventLog:
    """A log for ``url`` without touching the database yet.

    ``sqlite:///path/to/file.db`` is the embedded default; ``postgresql://user:pw@host/db`` (any
    PostgreSQL driver prefix is accepted and replaced by asyncpg) is the production backend.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        from .backends.sqlite import SqliteEventLog

        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:":
            raise ValueError("the SQLite log needs a file path: sqlite:///path/to/proficio.db")
        return SqliteEventLog(Path(path))
    if scheme in {"postgresql", "postgres"}:
        from .backends.postgres import PostgresEventLog

        return PostgresEventLog(url.replace("postgres://", "postgresql://", 1))
    raise ValueError(f"unsupported log address {url!r}: use sqlite:///... or postgresql://...")


async def open_event_log(url: str, *, migrate: bool = True) -> EventLog:
    """Open the log at ``url``, bringing its schema up to date unless ``migrate`` is False."""
    log = make_event_log(url)
    if migrate:
        try:
            await log.migrate()
        except OSError as exc:
            await log.close()
            raise StoreUnavailableError(f"cannot reach the log at {_safe(url)}: {exc}") from exc
        except BaseException:
            await log.close()
            raise
    return log


def _safe(url: str) -> str:
    """The address without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable address>"
