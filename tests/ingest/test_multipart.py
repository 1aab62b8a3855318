"""multipart/mixed statement requests: bodies built byte for byte the way the conformance suite builds them."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proficio_ingest._errors import BadRequest
from proficio_ingest._multipart import (
    AttachmentPart,
    build_multipart_mixed,
    check_attachments,
    parse_multipart_mixed,
)

CRLF = b"\r\n"
B = "-------314159265358979323846"  # the boundary of the suite's 4.1.3 tests
HEADER = f"multipart/mixed; boundary={B}"
TEXT1 = b"here is a simple attachment"
TEXT2 = b"here is another simple attachment"
TEXT3 = b"and a third one, never declared"
# Every byte value, CRLFs, and things that look like a boundary but are not a delimiter (RFC 2046 needs CRLF "--" B).
BINARY = (
    bytes(range(256))
    + b"\r\n--not-the-boundary\r\n"
    + b"\n--"
    + B.encode()
    + b"\n"
    + b"\r--"
    + B.encode()
    + b"\r"
    + b"--"
    + B.encode()
    + b"--"
    + b"\r\n\r\n\x00\xff\r\n"
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stringify(value: Any) -> bytes:
    """What JavaScript's JSON.stringify sends."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def statement(*attachments: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "name": "xAPI mbox", "mbox": "mailto:xapi@adlnet.gov"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/attended", "display": {"en-US": "attended"}},
        "object": {"objectType": "Activity", "id": "http://www.example.com/meetings/occurances/34534"},
    }
    if attachments:
        out["attachments"] = list(attachments)
    return out


def attachment(data: bytes | None = None, *, sha2: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "usageType": "http://example.com/attachment-usage/test",
        "display": {"en-US": "A test attachment"},
        "contentType": "text/plain",
        "length": len(data or b""),
        "sha2": sha2 if sha2 is not None else sha256(data or b""),
    }
    out.update(extra)
    return out


def part(data: bytes, *headers: str) -> bytes:
    return CRLF.join(h.encode() for h in headers) + CRLF + CRLF + data


def attachment_part(data: bytes, content_type: str = "text/plain", sha2: str | None = None) -> bytes:
    return part(
        data,
        f"Content-Type: {content_type}",
        "Content-Transfer-Encoding: binary",
        f"X-Experience-API-Hash: {sha256(data) if sha2 is None else sha2}",
    )


def json_part(value: Any) -> bytes:
    return part(stringify(value), "Content-Type: application/json")


def body(*parts: bytes, boundary: str = B, preamble: bytes = b"", end: bytes = CRLF) -> bytes:
    """``--B CRLF part CRLF`` for each part, then ``--B--`` and ``end``: the suite's 4.1.3 layout."""
    delimiter = b"--" + boundary.encode()
    return preamble + b"".join(delimiter + CRLF + p + CRLF for p in parts) + delimiter + b"--" + end


def parse(raw: bytes, header: str = HEADER) -> tuple[list[dict[str, Any]], dict[str, AttachmentPart]]:
    """The whole request path: parse, read the JSON, match the attachments."""
    request = parse_multipart_mixed(raw, header)
    loaded = orjson.loads(request.statement_json)
    statements = loaded if isinstance(loaded, list) else [loaded]
    check_attachments(statements, request.parts)
    return statements, request.parts


def rejects(raw: bytes, match: str, header: str = HEADER) -> None:
    with pytest.raises(BadRequest, match=match):
        parse(raw, header)


# ---------------------------------------------------------------------------------------------------- accepted


def test_raw_data_as_the_suite_sends_it_with_a_length_that_differs() -> None:
    # 4.1.3: a JPEG sent as hex text, hashed as that text, with "length" the binary file's size.
    picture = bytes(range(256)).hex().encode()
    stmt = statement(attachment(picture, contentType="image/jpeg", length=256))
    raw = body(json_part(stmt), attachment_part(picture, "image/jpeg"))

    statements, parts = parse(raw)

    assert statements == [stmt]
    assert parts == {sha256(picture): AttachmentPart(sha256(picture), "image/jpeg", picture)}


def test_the_suite_signed_body_layout() -> None:
    # helper.signStatement: a CRLF preamble, no space after header colons, no CRLF after the closing boundary.
    signature = b"eyJhbGciOiJSUzI1NiJ9.e30.c2ln"
    boundary = "-------------__" + str(uuid.uuid4()) + "__123__456"
    stmt = statement(attachment(signature, contentType="application/octet-stream"))
    raw = (
        CRLF
        + f"--{boundary}".encode()
        + CRLF
        + b"Content-Type:application/json"
        + CRLF
        + CRLF
        + stringify(stmt)
        + CRLF
        + f"--{boundary}".encode()
        + CRLF
        + b"Content-Type:application/octet-stream"
        + CRLF
        + b"Content-Transfer-Encoding:binary"
        + CRLF
        + f"X-Experience-API-Hash:{sha256(signature)}".encode()
        + CRLF
        + CRLF
        + signature
        + f"\r\n--{boundary}--".encode()
    )

    statements, parts = parse(raw, f"multipart/mixed; boundary={boundary}")

    assert statements == [stmt]
    assert parts[sha256(signature)] == AttachmentPart(sha256(signature), "application/octet-stream", signature)


@pytest.mark.parametrize(
    "data",
    [
        BINARY,
        b"",
        CRLF,
        b"ends with a CRLF\r\n",
        b"\r\n\r\nstarts with blank lines",
        b"text --" + B.encode(),  # not after a CRLF, so not a delimiter
    ],
    ids=["every-byte", "empty", "crlf", "trailing-crlf", "leading-blank-lines", "boundary-not-after-crlf"],
)
def test_binary_data_comes_back_byte_for_byte(data: bytes) -> None:
    stmt = statement(attachment(data, contentType="application/octet-stream"))

    _, parts = parse(body(json_part(stmt), attachment_part(data, "application/octet-stream")))

    assert parts[sha256(data)].data == data


def test_the_json_part_is_returned_as_sent() -> None:
    stmt = statement()
    sent = json.dumps(stmt, indent=2).encode() + b"\r\n"  # trailing CRLF belongs to the content

    request = parse_multipart_mixed(body(part(sent, "Content-Type: application/json; charset=utf-8")), HEADER)

    assert request.statement_json == sent
    assert request.parts == {}


def test_the_spec_example_boundary_quoted_with_its_special_characters() -> None:
    boundary = "abcABC0123'()+_,-./:=?"
    stmt = statement(attachment(TEXT1))

    statements, parts = parse(
        body(json_part(stmt), attachment_part(TEXT1), boundary=boundary),
        f'multipart/mixed; boundary="{boundary}"',
    )

    assert statements == [stmt]
    assert list(parts) == [sha256(TEXT1)]


def test_a_batch_sharing_one_attachment_sends_and_keeps_it_once() -> None:
    first = statement(attachment(TEXT1), attachment(TEXT2))
    second = statement(attachment(TEXT1))

    statements, parts = parse(body(json_part([first, second]), attachment_part(TEXT1), attachment_part(TEXT2)))

    assert statements == [first, second]
    assert set(parts) == {sha256(TEXT1), sha256(TEXT2)}


def test_the_same_part_twice_is_kept_once() -> None:
    stmt = statement(attachment(TEXT1))

    _, parts = parse(body(json_part(stmt), attachment_part(TEXT1), attachment_part(TEXT1)))

    assert list(parts) == [sha256(TEXT1)]


@pytest.mark.parametrize(
    "stmt",
    [statement(), statement(attachment(TEXT1, fileUrl="http://over.there.com/file.txt"))],
    ids=["no-attachments", "file-url-only"],
)
def test_multipart_without_attachment_parts(stmt: dict[str, Any]) -> None:
    statements, parts = parse(body(json_part(stmt)))

    assert statements == [stmt]
    assert parts == {}


def test_application_json_with_file_url_attachments_needs_no_parts() -> None:
    check_attachments([statement(attachment(TEXT1, fileUrl="http://over.there.com/file.txt"))], {})


def test_header_names_and_hash_case_and_whitespace_do_not_matter() -> None:
    stmt = statement(attachment(TEXT1, sha2=sha256(TEXT1).upper()))
    raw = body(
        part(stringify(stmt), "content-type:   application/JSON  "),
        part(
            TEXT1,
            "CONTENT-TYPE:text/plain",
            "content-transfer-encoding: BINARY",
            f"x-experience-api-hash:\t{sha256(TEXT1).upper()} ",
        ),
    )

    _, parts = parse(raw)

    assert list(parts) == [sha256(TEXT1)]


def test_a_part_may_carry_other_headers_and_a_folded_line() -> None:
    stmt = statement(attachment(TEXT1))
    raw = body(
        json_part(stmt),
        part(
            TEXT1,
            "Content-Type: text/plain;",
            '  charset="us-ascii"',
            'Content-Disposition: attachment; filename="a.txt"',
            "Content-Transfer-Encoding: binary",
            f"X-Experience-API-Hash: {sha256(TEXT1)}",
        ),
    )

    _, parts = parse(raw)

    assert parts[sha256(TEXT1)].content_type == 'text/plain; charset="us-ascii"'


def test_a_part_without_content_type_is_octet_stream() -> None:
    stmt = statement(attachment(TEXT1))
    raw = body(
        json_part(stmt), part(TEXT1, "Content-Transfer-Encoding: binary", f"X-Experience-API-Hash: {sha256(TEXT1)}")
    )

    _, parts = parse(raw)

    assert parts[sha256(TEXT1)].content_type == "application/octet-stream"


@pytest.mark.parametrize("digest", ["sha224", "sha256", "sha384", "sha512"])
def test_any_sha2_digest_length(digest: str) -> None:
    sha2 = hashlib.new(digest, TEXT1).hexdigest()
    stmt = statement(attachment(TEXT1, sha2=sha2))

    _, parts = parse(body(json_part(stmt), attachment_part(TEXT1, sha2=sha2)))

    assert list(parts) == [sha2]


@pytest.mark.parametrize(
    ("preamble", "end"),
    [
        (b"", b""),
        (CRLF, CRLF),
        (CRLF + CRLF, b"  \r\nan epilogue, ignored as RFC 2046 says\r\n--" + B.encode() + b"\r\nnot a part"),
    ],
    ids=["bare", "crlf", "blank-lines-and-epilogue"],
)
def test_blank_preamble_and_any_closing(preamble: bytes, end: bytes) -> None:
    stmt = statement(attachment(TEXT1))

    statements, _ = parse(body(json_part(stmt), attachment_part(TEXT1), preamble=preamble, end=end))

    assert statements == [stmt]


def test_transport_padding_after_a_boundary() -> None:
    stmt = statement()
    raw = f"--{B} \t\r\n".encode() + json_part(stmt) + f"\r\n--{B}-- \r\n".encode()

    statements, _ = parse(raw)

    assert statements == [stmt]


def test_attachments_of_a_substatement_count_as_declared() -> None:
    stmt = statement()
    stmt["object"] = {
        "objectType": "SubStatement",
        "actor": stmt["actor"],
        "verb": stmt["verb"],
        "object": {"id": "http://example.com/a"},
        "attachments": [attachment(TEXT1)],
    }

    _, parts = parse(body(json_part(stmt), attachment_part(TEXT1)))

    assert list(parts) == [sha256(TEXT1)]


# ---------------------------------------------------------------------------------------------------- rejected


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("multipart/mixed;", "no boundary parameter"),
        ("multipart/mixed", "no boundary parameter"),
        ("multipart/mixed; boundary=", "malformed"),
        ("multipart/mixed; boundary=a b", "malformed"),
        (f"multipart/mixed; boundary={'x' * 71}", "1 to 70"),
        ('multipart/mixed; boundary="bad\x01"', "boundary"),
        (f"multipart/form-data; boundary={B}", "expected a multipart/mixed"),
        ("application/json", "expected a multipart/mixed"),
        ("", "malformed"),
    ],
)
def test_the_content_type_header_needs_multipart_mixed_with_a_boundary(header: str, match: str) -> None:
    stmt = statement(attachment(TEXT1))

    rejects(body(json_part(stmt), attachment_part(TEXT1)), match, header)


def test_statement_part_not_preceded_by_the_boundary() -> None:
    # XAPI-00131: the body starts with the JSON part's headers.
    stmt = statement(attachment(TEXT1))
    raw = json_part(stmt) + CRLF + f"--{B}".encode() + CRLF + attachment_part(TEXT1) + CRLF + f"--{B}--".encode() + CRLF

    rejects(raw, "must start with its boundary line")


def test_no_boundary_anywhere_in_the_body() -> None:
    rejects(stringify(statement()), "does not contain its boundary")


def test_attachment_part_not_preceded_by_the_boundary() -> None:
    # XAPI-00130: the attachment's headers follow the JSON inside the first part, so the data never arrives.
    stmt = statement(attachment(TEXT1))
    first = json_part(stmt) + CRLF + attachment_part(TEXT1)

    with pytest.raises((BadRequest, orjson.JSONDecodeError)):
        parse(body(first))
    request = parse_multipart_mixed(body(first), HEADER)
    assert request.parts == {}
    with pytest.raises(BadRequest, match=r"none was sent for: statements\[0\]\.attachments\[0\]"):
        check_attachments([stmt], request.parts)


@pytest.mark.parametrize(
    "first",
    [
        part(b"{}", "Content-Type: text/plain"),
        part(b"{}", "Content-Type: application/jsonx"),
        part(b"{}", "Content-Disposition: inline"),
        CRLF + b"{}",
    ],
    ids=["text-plain", "other-type", "no-content-type", "no-headers"],
)
def test_the_first_part_must_be_application_json(first: bytes) -> None:
    rejects(body(first, attachment_part(TEXT1)), "first part .* must have Content-Type application/json")


def test_the_first_part_must_not_be_base64() -> None:
    first = part(b"e30=", "Content-Type: application/json", "Content-Transfer-Encoding: base64")

    rejects(body(first), "only binary")


def test_statements_split_across_two_json_parts() -> None:
    # XAPI-00133
    stmt = statement(attachment(TEXT1))

    rejects(body(json_part(stmt), json_part(stmt), attachment_part(TEXT1)), "all statements must be in the first part")


def test_part_without_hash_header() -> None:
    # XAPI-00132
    stmt = statement(attachment(TEXT1))
    raw = body(json_part(stmt), part(TEXT1, "Content-Type: text/plain", "Content-Transfer-Encoding: binary"))

    rejects(raw, "part 2 has no X-Experience-API-Hash header")


def test_hash_header_that_no_statement_declares() -> None:
    # XAPI-00132: the header is a real hash of the data, but of no declared attachment.
    stmt = statement(attachment(TEXT1))

    rejects(body(json_part(stmt), attachment_part(TEXT2)), f"no attachment has sha2 {sha256(TEXT2)}")


def test_hash_header_that_is_not_the_hash_of_the_data() -> None:
    stmt = statement(attachment(TEXT1))
    raw = body(json_part(stmt), attachment_part(TEXT1, sha2=sha256(TEXT2)))

    rejects(raw, "part 2: its data does not hash to its X-Experience-API-Hash")


@pytest.mark.parametrize("sha2", ["xyz", "ab" * 20, "g" * 64, ""], ids=["short", "sha1-length", "not-hex", "empty"])
def test_hash_header_that_is_not_a_sha2_digest(sha2: str) -> None:
    stmt = statement(attachment(TEXT1))

    rejects(body(json_part(stmt), attachment_part(TEXT1, sha2=sha2)), "X-Experience-API-Hash")


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable", "8bit", None])
def test_attachment_parts_must_be_binary(encoding: str | None) -> None:
    # XAPI-00135: base64 is the suite's case; a missing header is not "a value of binary" either.
    stmt = statement(attachment(TEXT1))
    headers = ["Content-Type: text/plain", f"X-Experience-API-Hash: {sha256(TEXT1)}"]
    if encoding:
        headers.append(f"Content-Transfer-Encoding: {encoding}")

    rejects(body(json_part(stmt), part(TEXT1, *headers)), "must have Content-Transfer-Encoding: binary")


def test_excess_part_that_is_not_an_attachment() -> None:
    # XAPI-00128
    stmt = statement(attachment(TEXT1), attachment(TEXT2))
    raw = body(json_part(stmt), attachment_part(TEXT1), attachment_part(TEXT2), attachment_part(TEXT3))

    rejects(raw, f"no attachment has sha2 {sha256(TEXT3)}")


def test_missing_part_for_an_attachment_without_file_url() -> None:
    # XAPI-00129
    stmt = statement(attachment(TEXT1), attachment(TEXT2))

    rejects(body(json_part(stmt), attachment_part(TEXT1)), r"none was sent for: statements\[0\]\.attachments\[1\]")


def test_application_json_with_an_attachment_without_file_url() -> None:
    with pytest.raises(BadRequest, match="without a fileUrl"):
        check_attachments([statement(attachment(TEXT1))], {})


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "does not contain its boundary"),
        (f"--{B}--\r\n".encode(), "has no parts"),
        (f"--{B}\r\n".encode() + json_part(statement()), "part 1 .* is not followed by a boundary line"),
        (f"--{B}\r\n".encode() + json_part(statement()) + f"\r\n--{B}".encode(), "must end with CRLF"),
        (body(json_part(statement()), end=b"junk"), "closing boundary line .* followed by other text"),
        (body(json_part(statement()) + f"\r\n--{B}X".encode()), "a boundary may not appear inside a part"),
        (f"--{B}X\r\n".encode() + json_part(statement()) + f"\r\n--{B}--".encode(), "first boundary line must end"),
        (b"some preamble\r\n" + body(json_part(statement())), "text comes before it"),
        (body(json_part(statement())).replace(CRLF, b"\n"), "must end with CRLF"),
        (body(b"Content-Type: application/json\r\n{}"), "no blank line between its headers"),
        (body(b"Content-Type application/json\r\n\r\n{}"), "malformed header line"),
        (body(b": application/json\r\n\r\n{}"), "malformed header line"),
        (body(b"Content-Type: application/json\r\nX: \xff\r\n\r\n{}"), "not UTF-8"),
        (body(part(b"{}", "Content-Type: application/json", "Content-Type: text/plain")), "more than one"),
        (body(part(b"{}", "Content-Type: application/json; charset")), "malformed"),
    ],
    ids=[
        "empty",
        "closing-only",
        "no-closing",
        "closing-without-dashes",
        "junk-after-closing",
        "boundary-inside-part",
        "longer-first-boundary",
        "text-preamble",
        "bare-lf",
        "no-blank-line",
        "header-without-colon",
        "empty-header-name",
        "header-not-utf8",
        "duplicate-content-type",
        "bad-parameter",
    ],
)
def test_malformed_framing(raw: bytes, match: str) -> None:
    rejects(raw, match)


def test_duplicate_hash_headers() -> None:
    stmt = statement(attachment(TEXT1))
    raw = body(
        json_part(stmt),
        part(
            TEXT1,
            "Content-Transfer-Encoding: binary",
            f"X-Experience-API-Hash: {sha256(TEXT1)}",
            f"X-Experience-API-Hash: {sha256(TEXT2)}",
        ),
    )

    rejects(raw, "more than one X-Experience-API-Hash")


# ---------------------------------------------------------------------------------------------------- building


def split_like_the_suite(raw: bytes, content_type: str) -> list[bytes]:
    """multipartParser.js: boundary from the header, then split on ``--*boundary``, dropping the closing piece."""
    boundary = content_type.split(";")[1].replace(" boundary=", "")
    pieces = re.split(b"--*" + re.escape(boundary.encode()), raw)
    return [p[2 : -len(CRLF)].split(CRLF + CRLF, 1)[1] for p in pieces[1:] if not p.startswith(b"--")]


def test_build_layout_and_header() -> None:
    first = stringify(statement(attachment(TEXT1)))

    raw, content_type = build_multipart_mixed(first, [AttachmentPart(sha256(TEXT1), "text/plain", TEXT1)])

    boundary = content_type.removeprefix("multipart/mixed; boundary=")
    assert re.fullmatch(r"[A-Za-z0-9-]+", boundary)
    assert raw == (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode()
        + first
        + f"\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n"
        f"X-Experience-API-Hash: {sha256(TEXT1)}\r\n\r\n".encode()
        + TEXT1
        + f"\r\n--{boundary}--\r\n".encode()
    )
    assert raw.count(sha256(TEXT1).encode()) == 2  # once in the JSON, once as the part's header: the suite checks it
    assert split_like_the_suite(raw, content_type) == [first, TEXT1]


def test_build_sends_shared_data_once() -> None:
    shared = AttachmentPart(sha256(TEXT1), "text/plain", TEXT1)

    raw, content_type = build_multipart_mixed(b"[]", [shared, shared])

    assert parse_multipart_mixed(raw, content_type).parts == {shared.sha2: shared}
    assert raw.count(TEXT1) == 1


def test_build_picks_a_boundary_that_is_in_no_content(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = iter(["0" * 32, "1" * 32])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(tokens))
    data = b"--proficio-" + b"0" * 32

    raw, content_type = build_multipart_mixed(b"{}", [AttachmentPart(sha256(data), "text/plain", data)])

    assert content_type == "multipart/mixed; boundary=proficio-" + "1" * 32
    assert parse_multipart_mixed(raw, content_type).parts[sha256(data)].data == data


@pytest.mark.parametrize(
    "bad",
    [
        AttachmentPart(sha256(TEXT1), "text/plain\r\nX-Injected: 1", TEXT1),
        AttachmentPart("abc\n", "text/plain", TEXT1),
        AttachmentPart(sha256(TEXT1), "", TEXT1),
    ],
)
def test_build_refuses_values_that_cannot_be_headers(bad: AttachmentPart) -> None:
    with pytest.raises(ValueError, match="cannot be a header value"):
        build_multipart_mixed(b"{}", [bad])


content_types = st.sampled_from(["text/plain", "image/jpeg", "application/octet-stream", "application/json"])


@settings(max_examples=150, deadline=None)
@given(
    first=st.binary(max_size=200),
    payloads=st.lists(st.tuples(st.binary(max_size=600), content_types), max_size=5),
)
def test_build_then_parse_round_trips(first: bytes, payloads: Sequence[tuple[bytes, str]]) -> None:
    parts = [AttachmentPart(sha256(data), content_type, data) for data, content_type in payloads]

    raw, content_type = build_multipart_mixed(first, parts)
    request = parse_multipart_mixed(raw, content_type)

    assert request.statement_json == first
    expected: dict[str, AttachmentPart] = {}
    for p in parts:
        expected.setdefault(p.sha2, p)
    assert request.parts == expected
    check_attachments([statement(*(attachment(p.data) for p in parts))], request.parts)


@settings(max_examples=150, deadline=None)
@given(
    chunks=st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b"--", B.encode(), b"\x00", b"\xff", b" "]), max_size=40)
)
def test_data_made_of_delimiter_fragments_survives_unless_it_holds_a_delimiter(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    stmt = statement(attachment(data))
    raw = body(json_part(stmt), attachment_part(data))

    if b"\r\n--" + B.encode() in CRLF + data:  # the blank line after the headers ends with a CRLF too
        with pytest.raises(BadRequest):
            parse(raw)
    else:
        _, parts = parse(raw)
        assert parts[sha256(data)].data == data
