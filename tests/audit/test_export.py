"""Export of a tenant's or a learner's segment, and the check an outside party runs with only the public key."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proficio_events import (
    EventLog,
    ExportReport,
    LogTamperedError,
    NewEvent,
    Signer,
    export_segment,
    verify_export,
)
from proficio_events._sql import SqlEventLog

T = "district-1"
ANN, BEN = "learner:" + "a" * 32, "learner:" + "b" * 32


@pytest.fixture
def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


async def fill(log: EventLog) -> None:
    """Two learners of T interleaved, another tenant between, a binary body and a non-UTF-8 payload."""
    for n in range(12):
        await log.append(T, [NewEvent.of(ANN if n % 2 else BEN, "StatementStored", {"n": n, "text": 'é\n"\\'})])
        if n % 4 == 0:
            await log.append("district-2", [NewEvent.of(ANN, "StatementStored", {"n": n})])
    await log.append(T, [NewEvent(ANN, "Sealed", b"\xff\xfe not utf-8", sealed=bytes(range(256)), key_id="k1")])


async def export(log: EventLog, signer: Signer | None, **kwargs: Any) -> list[bytes]:
    assert isinstance(log, SqlEventLog)
    out = io.BytesIO()
    await export_segment(log, out, T, signer=signer, **kwargs)
    return out.getvalue().splitlines(keepends=True)


def check(lines: list[bytes], signer: Signer) -> ExportReport:
    return verify_export(lines, signer.public_key)


def events_of(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if b'"type":"event"' in line]


def edited(line: bytes, **changes: Any) -> bytes:
    return orjson.dumps({**orjson.loads(line), **changes}) + b"\n"


async def test_a_tenant_segment_verifies_with_the_public_key_alone(log: EventLog, signer: Signer) -> None:
    await fill(log)
    lines = await export(log, signer)
    report = check(lines, signer)
    assert report.ok, report.problem
    assert (report.segment, report.tenant, report.events) == ("tenant", T, 13)
    assert report.starts_at_genesis
    assert (report.checkpoints_valid, report.attested_through, report.attested_events) == (1, 16, 13)
    # every field the hash covers is there byte for byte, binary bodies included
    last = orjson.loads(lines[-1])
    assert (last["payload_base64"], last["key_id"]) == ("//4gbm90IHV0Zi04", "k1")
    assert len(last["sealed_base64"]) == 344
    assert orjson.loads(orjson.loads(lines[2])["payload"]) == {"n": 0, "text": 'é\n"\\'}


async def test_any_change_to_a_tenant_export_is_caught(log: EventLog, signer: Signer) -> None:
    await fill(log)
    lines = await export(log, signer)
    rows = events_of(lines)
    payload = orjson.loads(lines[rows[3]])["payload"].replace('"n":', '"n": 1')
    cases = {
        "altered": [*lines[: rows[3]], edited(lines[rows[3]], payload=payload), *lines[rows[3] + 1 :]],
        "removed": [*lines[: rows[3]], *lines[rows[3] + 1 :]],
        "reordered": [*lines[: rows[3]], lines[rows[4]], lines[rows[3]], *lines[rows[4] + 1 :]],
        "moved": [*lines[: rows[3]], edited(lines[rows[3]], position=99), *lines[rows[3] + 1 :]],
        "cut at the end": lines[:-1],
    }
    for name, changed in cases.items():
        report = check(changed, signer)
        assert not report.ok, name
        assert report.problem is not None, name
    # a forged or dropped checkpoint leaves the events unattested
    forged = edited(lines[1], chain_hash="00" * 32)
    assert "signature" in (check([lines[0], forged, *lines[2:]], signer).problem or "")
    unsigned = check([lines[0], *lines[2:]], signer)
    assert (unsigned.problem, unsigned.attested_through, unsigned.ok) == (None, None, False)
    # a key that signed none of it attests nothing
    stranger = check(lines, Signer(Ed25519PrivateKey.generate()))
    assert (stranger.checkpoints_other_key, stranger.attested_events, stranger.ok) == (1, 0, False)


async def test_a_segment_hangs_on_the_hash_before_it(log: EventLog, signer: Signer) -> None:
    await fill(log)
    lines = await export(log, signer, first=5, last=12)
    report = check(lines, signer)
    assert report.ok, report.problem
    assert not report.starts_at_genesis
    assert (report.first_position, report.last_position) == (5, 11)
    # without a key, only the checkpoints already stored go in: the tail after the last one is unattested
    lines = await export(log, None)
    report = check(lines, signer)
    assert report.problem is None
    assert (report.attested_through, report.last_position, report.ok) == (11, 16, False)
    assert report.events - report.attested_events == 4


async def test_a_learner_segment_proves_each_event_and_the_last_ones_place(log: EventLog, signer: Signer) -> None:
    await fill(log)
    lines = await export(log, signer, stream=ANN)
    report = check(lines, signer)
    assert report.ok, report.problem
    assert (report.segment, report.stream, report.events) == ("learner", ANN, 7)
    assert (report.attested_events, report.attested_through) == (1, 16)  # the checkpoint at the last event
    rows = events_of(lines)
    assert "version" in (check([*lines[: rows[2]], *lines[rows[2] + 1 :]], signer).problem or "")
    payload = orjson.loads(lines[rows[1]])["payload"].replace("é", "e")
    altered = [*lines[: rows[1]], edited(lines[rows[1]], payload=payload), *lines[rows[1] + 1 :]]
    assert "no longer matches its hash" in (check(altered, signer).problem or "")
    other = [*lines[: rows[1]], edited(lines[rows[1]], stream=BEN), *lines[rows[1] + 1 :]]
    assert check(other, signer).problem is not None


async def test_malformed_files_are_named_by_line(signer: Signer) -> None:
    assert check([], signer).problem == "the file is empty: no export header"
    assert (check([b"not json\n"], signer).problem or "").startswith("line 1: not JSON")
    header = orjson.dumps({"type": "proficio-export", "format": 1, "segment": "tenant", "tenant": T}) + b"\n"
    assert check([header, b'{"type":"event","position":"x"}\n'], signer).problem == (
        "line 2: position must be an integer"
    )
    assert check([header], signer).problem == "the export holds no events"


async def test_a_tampered_log_is_not_signed_for_export(log: EventLog, signer: Signer) -> None:
    await fill(log)
    async with log.engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM events WHERE position = 7"))
    with pytest.raises(LogTamperedError):
        await export(log, signer)
