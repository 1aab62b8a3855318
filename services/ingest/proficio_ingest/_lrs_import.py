"""Importing the statements of another LRS by paging through its GET /statements and following ``more``.

Each page goes in through the ingest service's own path (validation, ``prepare``, attachment and
signature checks, ``StatementService.store``), so ids, voiding, the query tables and idempotency work
as for a POST: a statement id already stored with the same content appends nothing, with other content
it stops the import (409's rule). The import's progress (the next ``more`` link, or, once caught up,
the source's ``X-Experience-API-Consistent-Through``) is written in the same transaction as the page's
statements, so a crash or kill at any moment loses nothing and repeats nothing: the next run carries
on from the next page, or, when caught up, asks only for statements stored since.

Pages are asked for in ``stored`` order (``ascending=true``), with ``attachments=true`` so that
attachments without a ``fileUrl`` (and signatures) come with their statements. A statement voided on
the source is not returned by its queries, so the target of each voiding statement is fetched by
``voidedStatementId`` and stored before it: the copy holds the voided statement, voided.

Authority: the source's ``authority`` is kept (the operator chose to trust that LRS; xAPI allows
leaving it unchanged where such trust exists); statements without one get the import's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog, StoredEvent, bulk_upsert

from . import _projection as projection
from ._credentials import Credential
from ._errors import BadRequest, Conflict, StatementValidationError
from ._multipart import AttachmentPart, check_attachments, parse_multipart_mixed
from ._schema import lrs_imports
from ._signature import check_signed_statement
from ._statements import StatementService, prepare
from ._tenants import V1, V2, TenantStore, parse_version
from ._validation import parse_timestamp, validate_statement

IMPORT_CREDENTIAL = "lrs-import"
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class LrsImportError(Exception):
    """The import cannot go on (the message says why); the progress up to the last stored page is saved."""


@dataclass
class ImportProgress:
    """An import's saved place: one row per (tenant, source)."""

    tenant: str
    source: str
    next_url: str | None = None  # the page to fetch next (a `more` link, as the source gave it); None: caught up
    run_consistent_through: str | None = None  # the source's Consistent-Through when the current run began
    since: str | None = None  # the `since` of the next run: the Consistent-Through of the last run that finished
    last_stored: str | None = None  # `stored` of the newest statement taken, to restart from if a link goes stale
    statements: int = 0
    pages: int = 0

    def row(self) -> tuple[Any, ...]:
        return (
            self.tenant, self.source, self.next_url, self.run_consistent_through, self.since, self.last_stored,
            self.statements, self.pages, time.time_ns() // 1000,
        )  # fmt: skip


@dataclass
class ImportResult:
    pages: int = 0
    received: int = 0  # statements on the pages fetched this run (voided targets included)
    stored: int = 0  # of which new to this LRS
    caught_up: bool = False
    consistent_through: str | None = None
    notes: list[str] = field(default_factory=list)


def statements_endpoint(url: str) -> str:
    """The source's Statements resource from its xAPI base (``http://host/xapi/``) or the resource itself."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LrsImportError(f"{url!r} is not an http(s) address of an xAPI endpoint")
    base = url.split("?", 1)[0].split("#", 1)[0]
    return base if base.rstrip("/").endswith("/statements") else base.rstrip("/") + "/statements"


async def load_progress(log: EventLog, tenant: str, source: str) -> ImportProgress:
    async with log.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    lrs_imports.c.next_url, lrs_imports.c.run_consistent_through, lrs_imports.c.since,
                    lrs_imports.c.last_stored, lrs_imports.c.statements, lrs_imports.c.pages,
                ).where(lrs_imports.c.tenant == tenant, lrs_imports.c.source == source)
            )
        ).first()  # fmt: skip
    if row is None:
        return ImportProgress(tenant, source)
    return ImportProgress(tenant, source, row[0], row[1], row[2], row[3], int(row[4]), int(row[5]))


async def save_progress(conn: AsyncConnection, progress: ImportProgress) -> None:
    await bulk_upsert(conn, lrs_imports, [progress.row()], key=("tenant", "source"))


class LrsImport:
    """One run of the import of ``source`` (the source's Statements resource) into ``tenant``."""

    def __init__(
        self,
        log: EventLog,
        tenant: str,
        source: str,
        client: httpx.AsyncClient,
        *,
        page_size: int = 500,
        since: str | None = None,
        report: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.log = log
        self.tenant = tenant
        self.source = source
        self.client = client
        self.page_size = page_size
        self.first_since = since
        self.report = report
        self.service = StatementService(log)
        host = urlsplit(source).netloc
        self.credential = Credential(
            IMPORT_CREDENTIAL, tenant, f"import from {host}", frozenset({"statements/write", "define"}), 0
        )
        self.version = V1

    async def run(self, max_pages: int | None = None) -> ImportResult:
        progress = await load_progress(self.log, self.tenant, self.source)
        result = ImportResult()
        self.version = await self._version()
        if progress.next_url is None:
            progress.run_consistent_through = None
            url: str | None = self._first_page(progress.since or self.first_since)
        else:
            url = self._resolve(progress.next_url)
            self.report(f"resuming at page {progress.pages + 1} ({progress.statements} statements taken before)")
        while url is not None:
            if max_pages is not None and result.pages >= max_pages:
                result.notes.append(f"stopped after {max_pages} page(s): run the command again to continue")
                return result
            try:
                response = await self._get(url)
            except _StaleLink as stale:
                url = self._restart(progress, result, stale)
                continue
            if progress.run_consistent_through is None:
                progress.run_consistent_through = response.headers.get("x-experience-api-consistent-through")
            statements, parts, more = _page(response)
            await self._add_voided_targets(statements, parts)
            await self._add_missing_attachments(statements, parts)
            prepared = [self._prepared(s) for s in statements]
            progress.pages += 1
            progress.statements += len(prepared)
            if prepared and isinstance(prepared[-1].get("stored"), str):
                progress.last_stored = prepared[-1]["stored"]
            progress.next_url = more or None
            if not more:
                progress.since = progress.run_consistent_through or progress.since
            result.stored += await self._store(prepared, parts, progress)
            result.pages += 1
            result.received += len(prepared)
            url = self._resolve(more) if more else None
        result.caught_up = True
        result.consistent_through = progress.since
        return result

    # -- the source ------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"X-Experience-API-Version": self.version}

    async def _version(self) -> str:
        """The xAPI version to speak: 2.0 if the source and the tenant both do, else 1.0.3."""
        about = _ok(await self._request(urljoin(self.source, "about")), urljoin(self.source, "about"))
        try:
            offered = {parse_version(v) for v in orjson.loads(about.content).get("version", [])}
        except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            raise LrsImportError(f"the source's About resource is not xAPI: {exc}") from exc
        accepted = (await TenantStore(self.log).policy(self.tenant)).xapi_versions
        for version in (V2, V1):
            if version in offered and version in accepted:
                return version
        raise LrsImportError(
            f"the source speaks xAPI {', '.join(sorted(v for v in offered if v)) or 'no known version'}, and tenant"
            f" {self.tenant!r} accepts {', '.join(accepted)}: nothing in common"
        )

    def _first_page(self, since: str | None) -> str:
        query: dict[str, str] = {"ascending": "true", "attachments": "true", "limit": str(self.page_size)}
        if since:
            query["since"] = since
        return f"{self.source}?{urlencode(query)}"

    def _resolve(self, more: str) -> str:
        """A `more` link is relative to the source's server (or absolute); it is kept as given."""
        return urljoin(self.source, more)

    def _restart(self, progress: ImportProgress, result: ImportResult, stale: _StaleLink) -> str:
        """A saved `more` link the source no longer honours: ask again for what was stored since just before the
        newest statement taken (``since`` is exclusive and ``stored`` has millisecond precision, so one
        millisecond earlier; statements taken twice are no-ops)."""
        since = _millisecond_before(progress.last_stored) if progress.last_stored else progress.since
        since = since or self.first_since
        result.notes.append(f"the saved link was refused ({stale}); asked again from {since or 'the start'}")
        progress.next_url = None
        progress.run_consistent_through = None
        return self._first_page(since)

    async def _get(self, url: str) -> httpx.Response:
        response = await self._request(url)
        if response.status_code in (400, 404, 410) and "more=" in url:
            raise _StaleLink(f"{response.status_code}: {_reason(response)}")
        return _ok(response, url)

    async def _request(self, url: str) -> httpx.Response:
        try:
            response = await self.client.get(url, headers=self._headers(), timeout=_TIMEOUT)
        except httpx.HTTPError as exc:
            raise LrsImportError(f"the source LRS did not answer at {url}: {exc or type(exc).__name__}") from exc
        if response.status_code in (401, 403):
            raise LrsImportError(
                f"the source LRS refused the credentials ({response.status_code}): {_reason(response)}"
            )
        return response

    async def _add_voided_targets(self, statements: list[Any], parts: dict[str, AttachmentPart]) -> None:
        """Put each voided statement the page's voiding statements name just before them (the source's
        queries never return voided statements)."""
        present = {str(s.get("id", "")).lower() for s in statements if isinstance(s, dict)}
        index = 0
        while index < len(statements):
            statement = statements[index]
            target = _voided_target(statement)
            if target is not None and target.lower() not in present:
                url = f"{self.source}?{urlencode({'voidedStatementId': target, 'attachments': 'true'})}"
                response = await self._request(url)
                if response.status_code == 404:  # the target is unknown to the source too
                    index += 1
                    continue
                found, found_parts, _ = _page(_ok(response, url), single=True)
                for part in found_parts.values():
                    parts.setdefault(part.sha2, part)
                statements[index:index] = found
                present.add(target.lower())
                index += len(found)
            index += 1

    async def _add_missing_attachments(self, statements: list[Any], parts: dict[str, AttachmentPart]) -> None:
        """Fetch one by one the statements whose attachment data the page lacks: an LRS may leave
        ``attachments=true`` out of its `more` links (this one's do), and the data must come with them."""
        for statement in statements:
            wanted = _attachment_hashes(statement) - parts.keys()
            if not wanted or not isinstance(statement.get("id"), str):
                continue
            url = f"{self.source}?{urlencode({'statementId': statement['id'], 'attachments': 'true'})}"
            _found, found_parts, _ = _page(_ok(await self._request(url), url), single=True)
            for part in found_parts.values():
                parts.setdefault(part.sha2, part)

    # -- our side ------------------------------------------------------------------------------------------

    def _prepared(self, statement: Any) -> dict[str, Any]:
        try:
            validate_statement(statement, version="2.0.0" if self.version == V2 else "1.0.3")
        except StatementValidationError as exc:
            ident = statement.get("id") if isinstance(statement, dict) else None
            raise LrsImportError(
                f"statement {ident or '(without an id)'} from the source is not valid xAPI {self.version}:"
                f" {exc.message}; nothing of its page was stored"
            ) from exc
        prepared = prepare(statement, self.credential, self.version)
        if isinstance(statement.get("authority"), dict):
            prepared["authority"] = statement["authority"]
        if isinstance(statement.get("stored"), str):
            prepared["stored"] = statement["stored"]  # only kept here, to remember progress; popped before storing
        return prepared

    async def _store(
        self, prepared: list[dict[str, Any]], parts: dict[str, AttachmentPart], progress: ImportProgress
    ) -> int:
        """Store a page and the progress after it in one transaction (or the progress alone when the page
        holds nothing new); the number of statements new to this LRS."""
        for statement in prepared:
            statement.pop("stored", None)  # ours is set on append
        fresh: list[int] = []

        async def with_progress(conn: AsyncConnection, new_events: Sequence[StoredEvent]) -> None:
            await save_progress(conn, progress)
            fresh.append(sum(1 for e in new_events if e.event_type in _STATEMENT_EVENTS))

        if prepared:
            try:
                check_attachments(prepared, parts)
                for statement in prepared:
                    check_signed_statement(statement, parts)
                await self.service.store(self.tenant, self.credential, prepared, parts, also=with_progress)
            except Conflict as exc:
                raise LrsImportError(f"{exc.message} (this LRS holds other statements under the same ids)") from exc
            except BadRequest as exc:
                raise LrsImportError(
                    f"a page from the source was refused: {exc.message}; nothing of it was stored"
                ) from exc
        if not fresh:  # nothing new was appended, so the inline work did not run: save the progress alone
            async with self.log.transaction() as conn:
                await save_progress(conn, progress)
        return sum(fresh)


class _StaleLink(Exception):
    """A `more` link the source refuses (expired, or from before a restart of a source that forgets them)."""


_STATEMENT_EVENTS = frozenset({projection.STATEMENT_STORED, projection.STATEMENT_VOIDED})


def _ok(response: httpx.Response, url: str) -> httpx.Response:
    if response.status_code != 200:
        raise LrsImportError(f"the source LRS answered {response.status_code} to {url}: {_reason(response)}")
    return response


def _millisecond_before(stored: str) -> str:
    moment = parse_timestamp(stored, path="stored") - timedelta(milliseconds=1)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reason(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"])
    except orjson.JSONDecodeError:
        pass
    return response.text[:200] or response.reason_phrase


def _attachment_hashes(statement: Any) -> set[str]:
    """The sha2 of each attachment of a statement (and of a SubStatement) that has no fileUrl: data it must carry."""
    found: set[str] = set()
    if not isinstance(statement, dict):
        return found
    holders = [statement, statement.get("object")]
    for holder in holders:
        if not isinstance(holder, dict) or not isinstance(holder.get("attachments"), list):
            continue
        for attachment in holder["attachments"]:
            if isinstance(attachment, dict) and attachment.get("fileUrl") is None:
                sha2 = attachment.get("sha2")
                if isinstance(sha2, str):
                    found.add(sha2.lower())
    return found


def _voided_target(statement: Any) -> str | None:
    if not isinstance(statement, dict) or not projection.is_voiding(statement):
        return None
    target = statement.get("object", {}).get("id")
    return target if isinstance(target, str) else None


def _page(response: httpx.Response, *, single: bool = False) -> tuple[list[Any], dict[str, AttachmentPart], str]:
    """The statements, attachment parts and `more` link of a Statements response (JSON or multipart/mixed)."""
    content_type = response.headers.get("content-type", "")
    try:
        if content_type.split(";", 1)[0].strip().lower() == "multipart/mixed":
            parsed = parse_multipart_mixed(response.content, content_type)
            body, parts = orjson.loads(parsed.statement_json), parsed.parts
        else:
            body, parts = orjson.loads(response.content), {}
    except (BadRequest, orjson.JSONDecodeError) as exc:
        reason = exc.message if isinstance(exc, BadRequest) else str(exc)
        raise LrsImportError(f"the source's answer is not a statement result: {reason}") from exc
    if single:
        return ([body] if isinstance(body, dict) else []), parts, ""
    if not isinstance(body, dict) or not isinstance(body.get("statements"), list):
        raise LrsImportError("the source's answer is not a StatementResult (no statements array)")
    more = body.get("more") or ""
    if not isinstance(more, str):
        raise LrsImportError("the source's StatementResult has a `more` that is not a string")
    return list(body["statements"]), parts, more


async def run_import(
    log: EventLog,
    url: str,
    key: str,
    secret: str,
    tenant: str,
    *,
    since: str | None = None,
    page_size: int = 500,
    max_pages: int | None = None,
    report: Callable[[str], None] = lambda _: None,
) -> ImportResult:
    """Import from the LRS at ``url`` (its xAPI base or Statements resource) with HTTP Basic ``key``/``secret``."""
    source = statements_endpoint(url)
    async with httpx.AsyncClient(auth=(key, secret), follow_redirects=True) as client:
        importer = LrsImport(log, tenant, source, client, page_size=page_size, since=since, report=report)
        return await importer.run(max_pages)


__all__ = ["ImportProgress", "ImportResult", "LrsImport", "LrsImportError", "load_progress", "run_import"]
