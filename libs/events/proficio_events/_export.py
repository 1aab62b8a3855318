"""A segment of the log as NDJSON, with its checkpoints, and the check an outside party runs on one.

The file, one JSON object per line:

1. the header: ``{"type": "proficio-export", "format": 1, "segment": "tenant" | "learner", "tenant": T,
   "stream": S or null, "from": P, "to": P or null, "exported_at": ISO 8601}``;
2. the checkpoints that fall on the segment's events: ``{"type": "checkpoint", "tenant", "position",
   "chain_hash" (hex), "signed_us", "signed_at", "key_id", "signature" (hex)}``;
3. the events in log order: ``{"type": "event", "position", "tenant", "stream", "stream_version",
   "event_type", "schema_version", "recorded_us", "key", "fingerprint" (hex or null), "payload" (the
   payload's JSON text; "payload_base64" instead if it is not UTF-8), "sealed_base64" (or null),
   "key_id", "prev_hash" (hex), "hash" (hex)}``: every field the hash covers, byte for byte.

What ``verify_export`` proves with the public key alone:

* **Tenant segment** (every event of the tenant in [from, to]): each event's hash is the hash of its
  content and of the previous event's hash, so the events form one unbroken piece of the tenant's chain:
  none was left out, added, altered or moved between the first and the last. If the first event links to
  GENESIS, the piece starts at the tenant's very first event. A valid checkpoint at position P attests
  the chain up to P (everything before P, in this file and before it), as the key holder saw it when
  signing. Not provable from the file: that no event of the tenant came after the last one exported
  (a later checkpoint or a later export shows that).
* **Learner segment** (one learner's stream, which is interleaved with other learners' in the tenant's
  chain, so the events do not link to one another): each event's content matches its hash given the
  ``prev_hash`` it states; the stream versions run on without a gap, so no event of the stream between
  the first and the last is missing (stream versions are inside the hash); and each event with a
  checkpoint at its position, the last one always when the export signed one, is attested as part of
  the tenant's chain. The earlier events are bound to the chain only through ``prev_hash`` links whose
  other ends (other learners' events) are not in the file: proving that they were in the chain when
  the checkpoint was signed takes the tenant segment between them and the checkpoint.

``ok`` is True only when every check holds and the last event is attested by a checkpoint of the key.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal

import orjson

from ._chain import ChainWalk, Row, row_hash
from ._checkpoints import Checkpoint, iso_from_us, key_id_of
from ._envelope import GENESIS
from ._schema import EVENT_COLUMNS

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ._checkpoints import Signer
    from ._sql import RawReader, SqlEventLog

EXPORT_TYPE = "proficio-export"
EXPORT_FORMAT = 1
Segment = Literal["tenant", "learner"]
_EXPORT_BATCH = 2000


# -- writing --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportSummary:
    events: int
    checkpoints: int
    first_position: int | None
    last_position: int | None
    #: The checkpoint signed for this export at its last event (None: no key, or the segment is empty).
    signed: Checkpoint | None


def event_line(row: Row) -> dict[str, Any]:
    """An event row (``EVENT_COLUMNS`` order) as its export line."""
    (position, tenant, stream, stream_version, event_type, schema_version, recorded_us, key, fingerprint,
     payload, sealed, key_id, prev_hash, digest) = row  # fmt: skip
    line: dict[str, Any] = {
        "type": "event",
        "position": position,
        "tenant": tenant,
        "stream": stream,
        "stream_version": stream_version,
        "event_type": event_type,
        "schema_version": schema_version,
        "recorded_us": recorded_us,
        "key": key,
        "fingerprint": None if fingerprint is None else bytes(fingerprint).hex(),
    }
    try:
        line["payload"] = bytes(payload).decode()  # JSON text: readable, and exact as a JSON string
    except UnicodeDecodeError:
        line["payload_base64"] = base64.b64encode(payload).decode()
    line["sealed_base64"] = None if sealed is None else base64.b64encode(sealed).decode()
    line["key_id"] = key_id
    line["prev_hash"] = bytes(prev_hash).hex()
    line["hash"] = bytes(digest).hex()
    return line


async def export_segment(
    log: SqlEventLog,
    out: IO[bytes],
    tenant: str,
    *,
    stream: str | None = None,
    first: int = 1,
    last: int | None = None,
    signer: Signer | None = None,
) -> ExportSummary:
    """Write the tenant's events (or one ``stream``'s) with positions in [first, last] and their checkpoints.

    With ``signer``, a checkpoint at the segment's last event is recorded first (after the chain up to
    it is verified: a tampered log is refused, ``LogTamperedError``), so the whole export is attested.
    """
    async with log.snapshot() as reader:
        end = await _segment_end(reader, tenant, stream, first, last)
    signed = None
    if signer is not None and end is not None:
        signed = await log.record_checkpoint(tenant, signer, position=end)
    header = {
        "type": EXPORT_TYPE,
        "format": EXPORT_FORMAT,
        "segment": "learner" if stream is not None else "tenant",
        "tenant": tenant,
        "stream": stream,
        "from": first,
        "to": last,
        "exported_at": iso_from_us(_now_us()),
    }
    out.write(orjson.dumps(header) + b"\n")
    if end is None:
        return ExportSummary(0, 0, None, None, None)
    count = 0
    first_position: int | None = None
    async with log.snapshot() as reader:
        found = await _segment_checkpoints(reader, tenant, stream, first, end)
        for checkpoint in found:
            out.write(orjson.dumps({"type": "checkpoint", **checkpoint.to_json()}) + b"\n")
        where = "tenant = $1 AND position >= $2 AND position <= $3" + (" AND stream = $4" if stream else "")
        args: tuple[Any, ...] = (tenant, first, end, *((stream,) if stream else ()))
        query = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE {where} ORDER BY position"
        async with contextlib.aclosing(reader.scan(query, args, _EXPORT_BATCH)) as batches:
            async for rows in batches:
                if first_position is None:
                    first_position = int(rows[0][0])
                out.write(b"".join(orjson.dumps(event_line(row)) + b"\n" for row in rows))
                count += len(rows)
    return ExportSummary(count, len(found), first_position, end, signed)


async def _segment_end(reader: RawReader, tenant: str, stream: str | None, first: int, last: int | None) -> int | None:
    where = "tenant = $1 AND position >= $2 AND position <= $3" + (" AND stream = $4" if stream else "")
    args = (tenant, first, last if last is not None else 2**62, *((stream,) if stream else ()))
    rows = await reader.fetch(f"SELECT max(position) FROM events WHERE {where}", *args)
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


async def _segment_checkpoints(
    reader: RawReader, tenant: str, stream: str | None, first: int, end: int
) -> list[Checkpoint]:
    """The tenant's checkpoints that fall on the segment's events."""
    query = (
        "SELECT c.tenant, c.position, c.chain_hash, c.signed_us, c.key_id, c.signature FROM signed_checkpoints c"
        " JOIN events e ON e.position = c.position AND e.tenant = c.tenant"
        " WHERE c.tenant = $1 AND c.position >= $2 AND c.position <= $3"
        + (" AND e.stream = $4" if stream else "")
        + " ORDER BY c.position, c.key_id"
    )
    rows = await reader.fetch(query, tenant, first, end, *((stream,) if stream else ()))
    return [Checkpoint(str(t), int(p), bytes(h), int(s), str(k), bytes(sig)) for t, p, h, s, k, sig in rows]


def _now_us() -> int:
    return time.time_ns() // 1000


# -- checking ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ExportReport:
    """What ``verify_export`` found. ``problem`` is the first thing that does not hold (with its line)."""

    segment: Segment | None = None
    tenant: str | None = None
    stream: str | None = None
    events: int = 0
    first_position: int | None = None
    last_position: int | None = None
    #: Tenant segments: the first event is the tenant's first (it links to GENESIS).
    starts_at_genesis: bool = False
    checkpoints_valid: int = 0
    #: Checkpoints signed by another key than the one given: not checked, and attesting nothing here.
    checkpoints_other_key: int = 0
    #: The last position a valid checkpoint attests (tenant segments: every event up to it).
    attested_through: int | None = None
    #: Events a valid checkpoint attests: tenant segments, all up to ``attested_through``; learner
    #: segments, those with a checkpoint at their own position.
    attested_events: int = 0
    problem: str | None = None
    signers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.problem is None
            and self.events > 0
            and self.attested_through is not None
            and self.attested_through == self.last_position
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "segment": self.segment,
            "tenant": self.tenant,
            "stream": self.stream,
            "events": self.events,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "starts_at_genesis": self.starts_at_genesis,
            "checkpoints_valid": self.checkpoints_valid,
            "checkpoints_other_key": self.checkpoints_other_key,
            "attested_through": self.attested_through,
            "attested_events": self.attested_events,
            "unattested_events": self.events - self.attested_events,
            "problem": self.problem,
        }


class _Malformed(Exception):
    pass


def _text(data: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Malformed(f"{name} must be a string")
    return value


def _integer(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if type(value) is not int:
        raise _Malformed(f"{name} must be an integer")
    return value


def _hex(data: dict[str, Any], name: str, *, optional: bool = False) -> bytes | None:
    value = _text(data, name, optional=optional)
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _Malformed(f"{name} must be hexadecimal") from None


def _base64(data: dict[str, Any], name: str, *, optional: bool = False) -> bytes | None:
    value = _text(data, name, optional=optional)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise _Malformed(f"{name} must be base64") from None


def _payload(data: dict[str, Any]) -> bytes | None:
    return _text(data, "payload").encode() if "payload" in data else _base64(data, "payload_base64")


def event_row(data: dict[str, Any]) -> tuple[Any, ...]:
    """An export's event line back into a row (``EVENT_COLUMNS`` order); ``_Malformed`` if it is not one."""
    return (
        _integer(data, "position"),
        _text(data, "tenant"),
        _text(data, "stream"),
        _integer(data, "stream_version"),
        _text(data, "event_type"),
        _integer(data, "schema_version"),
        _integer(data, "recorded_us"),
        _text(data, "key", optional=True),
        _hex(data, "fingerprint", optional=True),
        _payload(data),
        _base64(data, "sealed_base64", optional=True),
        _text(data, "key_id", optional=True),
        _hex(data, "prev_hash"),
        _hex(data, "hash"),
    )


class _ExportCheck:
    """The state of one pass over an export file."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self.public_key = public_key
        self.key_id = key_id_of(public_key)
        self.report = ExportReport()
        self.header: dict[str, Any] | None = None
        self.anchors: dict[int, Checkpoint] = {}
        self.pending: list[tuple[Any, ...]] = []
        self.pending_lines: dict[int, int] = {}  # position -> line, for messages about a batch's events
        self.walk: ChainWalk | None = None
        self.previous: tuple[Any, ...] | None = None
        self.line = 0
        #: How many events the file holds up to each checkpointed position (what a checkpoint there attests).
        self.events_through: dict[int, int] = {}

    def fail(self, message: str) -> None:
        if self.report.problem is None:
            self.report.problem = f"line {self.line}: {message}"

    def take(self, number: int, data: Any) -> None:
        self.line = number
        if not isinstance(data, dict):
            raise _Malformed("not a JSON object")
        kind = data.get("type")
        if self.header is None:
            if kind != EXPORT_TYPE:
                raise _Malformed(f"the first line must be the export's header (type {EXPORT_TYPE!r})")
            self.take_header(data)
        elif kind == "checkpoint":
            if self.report.events:
                raise _Malformed("checkpoints come before the events")
            self.take_checkpoint(data)
        elif kind == "event":
            self.take_event(event_row(data))
        else:
            raise _Malformed(f"unknown line type {kind!r}")

    def take_header(self, data: dict[str, Any]) -> None:
        if data.get("format") != EXPORT_FORMAT:
            raise _Malformed(f"export format {data.get('format')!r} is not one this tool reads ({EXPORT_FORMAT})")
        segment = data.get("segment")
        if segment not in ("tenant", "learner"):
            raise _Malformed("segment must be 'tenant' or 'learner'")
        self.header = data
        self.report.segment = segment
        self.report.tenant = _text(data, "tenant")
        self.report.stream = _text(data, "stream", optional=segment == "tenant")
        if segment == "tenant" and self.report.stream is not None:
            raise _Malformed("a tenant segment names no stream")

    def take_checkpoint(self, data: dict[str, Any]) -> None:
        try:
            checkpoint = Checkpoint.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise _Malformed(f"not a checkpoint: {exc}") from None
        if checkpoint.key_id != self.key_id:
            self.report.checkpoints_other_key += 1
            return
        if checkpoint.tenant != self.report.tenant:
            raise _Malformed(f"a checkpoint of tenant {checkpoint.tenant!r} in an export of {self.report.tenant!r}")
        if not checkpoint.signature_valid(self.public_key):
            self.fail(f"the checkpoint at position {checkpoint.position} does not carry the key's signature")
            return
        self.report.checkpoints_valid += 1
        self.anchors[checkpoint.position] = checkpoint

    def take_event(self, row: tuple[Any, ...]) -> None:
        report = self.report
        position, tenant, stream = row[0], row[1], row[2]
        if tenant != report.tenant:
            self.fail(f"event {position} is tenant {tenant!r}'s, not {report.tenant!r}'s")
        if report.segment == "learner" and stream != report.stream:
            self.fail(f"event {position} is of stream {stream!r}, not {report.stream!r}")
        assert self.header is not None
        low, high = self.header.get("from"), self.header.get("to")
        if (isinstance(low, int) and position < low) or (isinstance(high, int) and position > high):
            self.fail(f"event {position} lies outside the segment's positions")
        previous = self.previous
        if previous is not None and position <= previous[0]:
            self.fail(f"event {position} comes after event {previous[0]}: out of order")
        if report.events == 0:
            report.first_position = position
            report.starts_at_genesis = row[12] == GENESIS
        report.events += 1
        report.last_position = position
        self.previous = row
        if position in self.anchors:
            self.events_through[position] = report.events
        if report.segment == "tenant":
            self.pending.append(row)
            self.pending_lines.setdefault(position, self.line)
            if len(self.pending) >= _EXPORT_BATCH:
                self.flush()
        else:
            self.check_learner_event(row, previous)

    def flush(self) -> None:
        if not self.pending:
            return
        if self.walk is None:
            first = self.pending[0]
            # The segment hangs on its first event's prev_hash: GENESIS, or the hash of the tenant's event before.
            self.walk = ChainWalk(
                {first[1]: first[12]}, after=first[0] - 1, anchors=[c.anchor() for c in self.anchors.values()]
            )
        if not self.walk.feed(self.pending) and self.report.problem is None:
            self.report.problem = self.walk_problem()
        self.pending = []
        self.pending_lines = {}

    def walk_problem(self) -> str:
        walk = self.walk
        assert walk is not None
        if walk.broken is not None:
            position = walk.broken.position
            message = (
                f"event {position} does not link to the tenant's event before it in the file: an event between"
                " them is missing, or one of the two was altered"
            )
        else:
            assert walk.problem is not None
            position = walk.problem.position
            message = f"event {position} was {walk.problem.kind}: {walk.problem.detail}"
        line = self.pending_lines.get(position)
        return f"line {line}: {message}" if line is not None else message

    def check_learner_event(self, row: tuple[Any, ...], previous: tuple[Any, ...] | None) -> None:
        position = row[0]
        if row_hash(row, row[12]) != row[13]:
            self.fail(f"event {position}'s content no longer matches its hash")
        if previous is not None and row[3] != previous[3] + 1:
            self.fail(
                f"event {position} is version {row[3]} of the stream, after version {previous[3]}:"
                " events of the stream are missing or out of order"
            )
        checkpoint = self.anchors.get(position)
        if checkpoint is not None:
            if checkpoint.chain_hash != row[13]:
                self.fail(f"event {position}'s hash differs from the one in {checkpoint.label}")
            else:
                self.report.attested_events += 1
                self.report.attested_through = position

    def finish(self) -> ExportReport:
        report = self.report
        if self.header is None:
            report.problem = report.problem or "the file is empty: no export header"
            return report
        if report.segment == "tenant":
            self.flush()
            walk = self.walk
            if walk is not None and report.problem is None:
                if not walk.finish():
                    report.problem = self.walk_problem()
                attested = [p for p in self.anchors if p <= (report.last_position or 0)]
                if attested:
                    report.attested_through = max(attested)
                    report.attested_events = self.events_through.get(report.attested_through, 0)
        else:
            for position, checkpoint in sorted(self.anchors.items()):
                if (
                    report.last_position is None
                    or position > report.last_position
                    or position < (report.first_position or 0)
                ):
                    self.fail(f"{checkpoint.label} falls on position {position}, which holds no event of the file")
        if report.events == 0:
            report.problem = report.problem or "the export holds no events"
        return report


def verify_export(lines: Iterable[bytes], public_key: Ed25519PublicKey) -> ExportReport:
    """Check an export file's lines with nothing but the signer's public key (see the module's notes)."""
    check = _ExportCheck(public_key)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            check.line = number
            check.fail(f"not JSON ({exc})")
            break
        try:
            check.take(number, data)
        except _Malformed as exc:
            check.fail(str(exc))
            break
    return check.finish()


__all__ = ["ExportReport", "ExportSummary", "event_line", "event_row", "export_segment", "verify_export"]
