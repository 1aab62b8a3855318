"""Walking hash chains fast: the loop behind ``verify``, checkpoints and the check of an exported segment.

Rows are plain tuples in ``EVENT_COLUMNS`` order, straight from the database driver (or an export
file): no ``StoredEvent`` per row, no keyword call per hash. The hash is the one ``chain_hash``
defines, computed from one joined buffer with one ``sha256`` call; ``test_chain.py`` holds the two
equal on every kind of row.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ._envelope import GENESIS, HASH_FORMAT, ChainProblem

#: A row in ``EVENT_COLUMNS`` order.
Row = Sequence[Any]

_ABSENT = b"\xff" * 8  # what ``_length_prefixed`` gives for None
_LENGTH = struct.Struct(">Q").pack
_NEVER = sys.maxsize  # the next anchor's position when there is none: one comparison per row either way


def row_hash(row: Row, prev_hash: bytes) -> bytes:
    """The hash a row should carry, given the hash it links to (``chain_hash`` on a row)."""
    (position, tenant, stream, stream_version, event_type, schema_version, recorded_us, key, fingerprint, payload,
     sealed, key_id) = row[:12]  # fmt: skip
    header = orjson.dumps(
        (HASH_FORMAT, position, tenant, stream, stream_version, event_type, schema_version, recorded_us, key, key_id)
    )
    return hashlib.sha256(
        b"".join(
            (
                prev_hash,
                _LENGTH(len(header)),
                header,
                _ABSENT if fingerprint is None else _LENGTH(len(fingerprint)) + fingerprint,
                _LENGTH(len(payload)),
                payload,
                _ABSENT if sealed is None else _LENGTH(len(sealed)) + sealed,
            )
        )
    ).digest()


@dataclass(frozen=True, slots=True)
class Anchor:
    """A hash the chain must show at a position: a signed checkpoint's (``label`` says which, for messages)."""

    tenant: str
    position: int
    chain_hash: bytes
    label: str


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """A row whose ``prev_hash`` is not the hash of its tenant's previous row: removed, reordered or rewritten.

    The walker cannot tell which without looking the ``prev_hash`` up; the caller can.
    """

    tenant: str
    position: int
    prev_hash: bytes
    expected_prev: bytes


class ChainWalk:
    """Checks rows fed in log order, batch after batch, and stops at the first problem.

    The walk covers the positions after ``after``. For every row: it links to its tenant's previous row
    (``heads``: the tenants' hashes at ``after``; a tenant not in it starts at GENESIS), and its hash is
    the hash of its content. With ``contiguous``, positions must also run without holes (a whole-log
    walk: the log never skips a position, so a hole is a deleted row). ``anchors`` (checkpoints) must be
    met: the row at each anchor's position is the anchor's tenant's and carries its hash.
    """

    def __init__(
        self,
        heads: dict[str, bytes] | None = None,
        *,
        after: int = 0,
        contiguous: bool = False,
        anchors: Iterable[Anchor] = (),
    ) -> None:
        self.heads: dict[str, bytes] = dict(heads or {})
        self.checked = 0
        self.last_position = 0
        self.anchors_met = 0
        self.problem: ChainProblem | None = None
        self.broken: BrokenLink | None = None
        self._next_position = after + 1 if contiguous else None
        self._anchors = sorted((a for a in anchors if a.position > after), key=lambda a: a.position)
        self._anchor_index = 0
        self._last_met: dict[str, Anchor] = {}

    @property
    def failed(self) -> bool:
        return self.problem is not None or self.broken is not None

    def feed(self, rows: Sequence[Row]) -> bool:
        """Check ``rows``; False (and ``problem`` or ``broken`` set) at the first that does not hold."""
        if self.failed:
            return False
        # Locals, not attributes or globals, in the loop: this is the whole cost of verify.
        heads = self.heads
        head_of = heads.get
        sha256 = hashlib.sha256
        dumps = orjson.dumps
        length = _LENGTH
        absent = _ABSENT
        genesis = GENESIS
        hash_format = HASH_FORMAT
        expected_position = self._next_position
        anchors = self._anchors
        next_anchor = anchors[self._anchor_index].position if self._anchor_index < len(anchors) else _NEVER
        checked = 0
        row: Row = ()
        try:
            for row in rows:
                (position, tenant, stream, stream_version, event_type, schema_version, recorded_us, key,
                 fingerprint, payload, sealed, key_id, prev_hash, stored_hash) = row  # fmt: skip
                if expected_position is not None:
                    if position != expected_position:
                        self._hole(expected_position, position)
                        return False
                    expected_position += 1
                head = head_of(tenant, genesis)
                if prev_hash != head:
                    self.broken = BrokenLink(tenant, position, bytes(prev_hash), head)
                    return False
                header = dumps(
                    (hash_format, position, tenant, stream, stream_version, event_type, schema_version, recorded_us,
                     key, key_id)
                )  # fmt: skip
                digest = sha256(
                    b"".join(
                        (
                            prev_hash,
                            length(len(header)),
                            header,
                            absent if fingerprint is None else length(len(fingerprint)) + fingerprint,
                            length(len(payload)),
                            payload,
                            absent if sealed is None else length(len(sealed)) + sealed,
                        )
                    )
                ).digest()
                if digest != stored_hash:
                    self.problem = ChainProblem(
                        tenant, position, "altered", "the event's content no longer matches its hash"
                    )
                    return False
                heads[tenant] = digest
                checked += 1
                self.last_position = position
                if position >= next_anchor:
                    self.checked += checked
                    checked = 0
                    if not self._meet_anchors(position, tenant, digest):
                        return False
                    next_anchor = anchors[self._anchor_index].position if self._anchor_index < len(anchors) else _NEVER
        except (TypeError, ValueError, AttributeError):
            # A column edited to a value of the wrong type (text where bytes belong, say) is an alteration too.
            position = row[0] if len(row) > 0 else self.last_position + 1
            tenant = row[1] if len(row) > 1 and isinstance(row[1], str) else None
            self.problem = ChainProblem(tenant, position, "altered", "a column holds a value of the wrong type")
            return False
        finally:
            self.checked += checked
            self._next_position = expected_position
        return True

    def _hole(self, expected: int, found: int) -> None:
        if found < expected:
            self.problem = ChainProblem(None, found, "reordered", f"position {found} comes after {expected - 1}")
            return
        whose = "the log's first events" if expected == 1 else f"the event after position {expected - 1}"
        self.problem = ChainProblem(
            None,
            expected,
            "removed",
            f"there is no event at position {expected}: {whose} were deleted (positions never skip a number);"
            " the tenant it belonged to cannot be told",
        )

    def _meet_anchors(self, position: int, tenant: str, digest: bytes) -> bool:
        """Check the anchors up to ``position`` (the row just checked, of ``tenant`` with hash ``digest``)."""
        anchors = self._anchors
        while self._anchor_index < len(anchors) and anchors[self._anchor_index].position <= position:
            anchor = anchors[self._anchor_index]
            if anchor.position < position:
                if self._next_position is None and anchor.tenant != tenant:
                    # A tenant walk skips other tenants' positions; the anchor is checked when that tenant is.
                    self._anchor_index += 1
                    continue
                self.problem = ChainProblem(
                    anchor.tenant,
                    anchor.position,
                    "removed",
                    f"{anchor.label} attests an event of tenant {anchor.tenant!r} at position {anchor.position},"
                    " and the tenant's chain no longer holds one there",
                )
                return False
            if anchor.tenant != tenant:
                self.problem = ChainProblem(
                    anchor.tenant,
                    position,
                    "altered",
                    f"{anchor.label} attests an event of tenant {anchor.tenant!r} here; the event is {tenant!r}'s",
                )
                return False
            if anchor.chain_hash != digest:
                since = self._last_met.get(tenant)
                where = f"after position {since.position}" if since is not None else "at or before this position"
                self.problem = ChainProblem(
                    tenant,
                    position,
                    "altered",
                    f"the chain was rewritten and re-hashed {where}: its hash here differs from the one in"
                    f" {anchor.label}",
                )
                return False
            self._last_met[tenant] = anchor
            self.anchors_met += 1
            self._anchor_index += 1
        return True

    def finish(self) -> bool:
        """After the last row: anchors past the end mean events were removed from a chain's end."""
        if self.failed:
            return False
        for anchor in self._anchors[self._anchor_index :]:
            end = f"the last event is at position {self.last_position}" if self.checked else "no event is left"
            self.problem = ChainProblem(
                anchor.tenant,
                anchor.position,
                "removed",
                f"{anchor.label} attests an event of tenant {anchor.tenant!r} at position {anchor.position},"
                f" past the end of what was walked ({end}): events were removed from the end",
            )
            return False
        return True


__all__ = ["Anchor", "BrokenLink", "ChainWalk", "Row", "row_hash"]
