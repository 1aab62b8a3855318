"""Frameworks in the log: importing a CASE package is a ``FrameworkVersionImported`` event, and the
``frameworks`` projection keeps each tenant's current frameworks, competencies and relations.

A framework is a stream (``framework:<CFDocument identifier>``) whose versions are its events; nothing
is changed in place. Importing the same package again appends nothing. The importer works out which
competencies and relations the new version drops (from the previous version in the log), so the
projection, a pure fold, can remove them.
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from proficio_events import EventLog, NewEvent, StoredEvent

from .._model import Change, Put, Remove, RowRef, State, ViewTable
from ._case import FrameworkError, parse_package

FRAMEWORK_IMPORTED = "FrameworkVersionImported"
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024


def framework_stream(identifier: str) -> str:
    return f"framework:{identifier}"


@dataclass(frozen=True)
class ImportResult:
    identifier: str
    title: str
    version: int
    created: bool
    competencies: int
    removed: int


def read_source(source: str, *, timeout: float = 30.0) -> bytes:
    """A package from a file path or an http(s) address."""
    if source.startswith(("http://", "https://")):
        request = urllib.request.Request(source, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body: bytes = response.read(MAX_DOWNLOAD_BYTES + 1)
        except OSError as exc:
            raise FrameworkError(f"cannot fetch {source}: {exc}") from None
        return body
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise FrameworkError(f"cannot read {source}: {exc.strerror or exc}") from None


async def import_framework(log: EventLog, tenant: str, raw: bytes, *, source: str = "") -> ImportResult:
    """Check a CASE package and append it as the framework's next version (nothing if it is unchanged)."""
    framework = parse_package(raw)
    stream = framework_stream(framework.identifier)
    history = await log.read_stream(tenant, stream)
    previous = history[-1].data() if history else None
    kept = {c["uri"] for c in framework.competencies}
    kept_relations = {_relation_key(r) for r in framework.relations}
    removed = sorted(c["uri"] for c in (previous or {}).get("competencies", []) if c["uri"] not in kept)
    removed_relations = sorted(
        list(_relation_key(r)) for r in (previous or {}).get("relations", []) if _relation_key(r) not in kept_relations
    )
    content = orjson.dumps(framework.data, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(content).hexdigest()
    if previous is not None and previous.get("digest") == digest:
        last = history[-1]
        return ImportResult(framework.identifier, framework.title, last.stream_version, False,
                            len(framework.competencies), 0)  # fmt: skip
    payload = {
        **framework.data,
        "digest": digest,
        "source": source,
        "removed_competencies": removed,
        "removed_relations": removed_relations,
    }
    event = NewEvent.of(stream, FRAMEWORK_IMPORTED, payload, expected_version=len(history))
    result = await log.append(tenant, [event])
    stored = result.events[0]
    return ImportResult(framework.identifier, framework.title, stored.stream_version, True,
                        len(framework.competencies), len(removed))  # fmt: skip


def _relation_key(relation: dict[str, Any]) -> tuple[str, str, str]:
    return (relation["origin"], relation["type"], relation["destination"])


class Frameworks:
    """Each tenant's current frameworks, competencies and relations (one worker: rows span frameworks)."""

    name = "frameworks"
    version = 1
    event_types: frozenset[str] | None = frozenset({FRAMEWORK_IMPORTED})
    partitioned = False
    tables: Sequence[ViewTable] = (
        ViewTable(
            "frameworks",
            key=(sa.Column("tenant", sa.Text), sa.Column("framework", sa.Text)),
            values=(
                sa.Column("uri", sa.Text, nullable=False),
                sa.Column("title", sa.Text, nullable=False),
                sa.Column("version", sa.Integer, nullable=False),
                sa.Column("imported_us", sa.BigInteger, nullable=False),
                sa.Column("competencies", sa.Integer, nullable=False),
                sa.Column("scale", sa.Text, nullable=False),
            ),
        ),
        ViewTable(
            "competencies",
            key=(sa.Column("tenant", sa.Text), sa.Column("uri", sa.Text)),
            values=(
                sa.Column("framework", sa.Text, nullable=False),
                sa.Column("code", sa.Text, nullable=True),
                sa.Column("statement", sa.Text, nullable=False),
                sa.Column("type", sa.Text, nullable=True),
                sa.Column("parent", sa.Text, nullable=True),
                sa.Column("sequence", sa.Integer, nullable=True),
            ),
            indexes=(("tenant", "framework"),),
        ),
        ViewTable(
            "relations",
            key=(
                sa.Column("tenant", sa.Text),
                sa.Column("origin", sa.Text),
                sa.Column("type", sa.Text),
                sa.Column("destination", sa.Text),
            ),
            values=(sa.Column("framework", sa.Text, nullable=False), sa.Column("sequence", sa.Integer, nullable=True)),
        ),
    )

    def reads(self, event: StoredEvent) -> Iterable[RowRef]:
        data = event.data()
        yield RowRef("frameworks", (event.tenant, data["identifier"]))
        for uri in [c["uri"] for c in data["competencies"]] + data["removed_competencies"]:
            yield RowRef("competencies", (event.tenant, uri))
        for key in [_relation_key(r) for r in data["relations"]] + [tuple(r) for r in data["removed_relations"]]:
            yield RowRef("relations", (event.tenant, *key))

    def apply(self, state: State, event: StoredEvent) -> Sequence[Change]:
        data = event.data()
        tenant, framework = event.tenant, data["identifier"]
        changes: list[Change] = [
            Put("frameworks", (tenant, framework), {
                "uri": data["uri"], "title": data["title"], "version": event.stream_version,
                "imported_us": event.recorded_us, "competencies": len(data["competencies"]),
                "scale": orjson.dumps(data["scale"]).decode(),
            })
        ]  # fmt: skip
        for c in data["competencies"]:
            changes.append(Put("competencies", (tenant, c["uri"]), {
                "framework": framework, "code": c["code"], "statement": c["statement"], "type": c["type"],
                "parent": c["parent"], "sequence": c["sequence"],
            }))  # fmt: skip
        for uri in data["removed_competencies"]:
            changes.append(Remove("competencies", (tenant, uri)))
        for r in data["relations"]:
            changes.append(
                Put("relations", (tenant, *_relation_key(r)), {"framework": framework, "sequence": r["sequence"]})
            )
        for key in data["removed_relations"]:
            changes.append(Remove("relations", (tenant, *key)))
        return changes
