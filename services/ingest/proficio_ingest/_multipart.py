"""xAPI statement requests with attachments: ``multipart/mixed`` bodies (xAPI 1.0.3 Communication §1.5.2, 2.0 §4.1.3).

A request body is a JSON part holding one statement or an array of them, then one part per attachment carrying the raw
octets, found again by the SHA-2 digest in its ``X-Experience-API-Hash`` header. Everything here is pure: bytes in,
values or ``BadRequest`` out.

Why a hand-written framer rather than ``email.parser.BytesParser``: RFC 2046 says a delimiter is CRLF ``--boundary``,
but the email feed parser also splits on a bare CR or LF, so binary data holding ``\\n--boundary`` is cut in two (an
extra part, and no defect reported). It also turns every body into surrogate-escaped text line by line, and quietly
takes text before the first boundary as a preamble, where the xAPI conformance suite wants a 400. Splitting the bytes
ourselves keeps attachment data byte-exact and every rejection explicit. The stdlib ``email`` package is still used
where it is exact: parsing ``Content-Type`` values and their parameters (quoted boundaries and all), rejecting any value
it reports a defect in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email import policy
from email.headerregistry import BaseHeader, ContentTypeHeader
from typing import Any

from ._errors import BadRequest

__all__ = [
    "AttachmentPart",
    "StatementRequest",
    "build_multipart_mixed",
    "check_attachments",
    "parse_multipart_mixed",
]


@dataclass(frozen=True, slots=True)
class AttachmentPart:
    sha2: str  # from the part's X-Experience-API-Hash header, lower-cased, checked against the data
    content_type: str  # the part's Content-Type as sent; application/octet-stream when it has none
    data: bytes


@dataclass(frozen=True, slots=True)
class StatementRequest:
    statement_json: bytes  # the first part (application/json): one statement or an array
    parts: dict[str, AttachmentPart]  # by sha2 (lower-case hex)


_CRLF = b"\r\n"
_LWSP = b" \t"
# RFC 2046 §5.1.1 bchars; a space is allowed but not as the last character.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
# X-Experience-API-Hash is "the SHA-2 of the raw data"; the digest length tells which member of the family was used.
_SHA2_BY_HEX_LENGTH: dict[int, Callable[[bytes], Any]] = {
    56: hashlib.sha224,
    64: hashlib.sha256,
    96: hashlib.sha384,
    128: hashlib.sha512,
}
_SINGLE_HEADERS = ("content-type", "content-transfer-encoding", "x-experience-api-hash")


def parse_multipart_mixed(body: bytes, content_type_header: str) -> StatementRequest:
    """Split a ``multipart/mixed`` statement request into its statement JSON and its attachment parts.

    Checks the framing and each part's headers; whether the parts match the statements' ``attachments`` is
    ``check_attachments``'s job, once the JSON has been parsed.
    """
    boundary = _boundary_of(content_type_header)
    raw_parts = list(_split(body, boundary.encode("ascii")))
    if not raw_parts:
        raise BadRequest("the multipart/mixed body has no parts; the first part must hold the statements")

    first_headers, first_data = _headers_and_body(raw_parts[0], 1)
    first_type = first_headers.get("content-type")
    if first_type is None or _media_type(first_type, "part 1") != "application/json":
        raise BadRequest(
            f"the first part of a multipart/mixed statement request must have Content-Type application/json, "
            f"not {first_type or 'none'}"
        )
    first_encoding = first_headers.get("content-transfer-encoding")
    if first_encoding is not None and first_encoding.lower() not in ("binary", "8bit", "7bit"):
        raise BadRequest(
            f"part 1 (the statements) has Content-Transfer-Encoding {first_encoding}; "
            "only binary (or 8bit, 7bit) is allowed"
        )

    parts: dict[str, AttachmentPart] = {}
    for number, raw in enumerate(raw_parts[1:], start=2):
        part = _attachment_part(raw, number)
        parts.setdefault(part.sha2, part)  # the same hash twice means the same octets (checked): keep one copy
    return StatementRequest(statement_json=first_data, parts=parts)


def check_attachments(statements: list[dict[str, Any]], parts: dict[str, AttachmentPart]) -> None:
    """Match the received parts with the attachments the statements declare, by SHA-2 only (Communication §1.5.2).

    Every part must be declared by some attachment's ``sha2``, and every attachment without a ``fileUrl`` must have a
    part. ``length`` is deliberately not compared with the part's size: the spec never asks for it, and the conformance
    suite sends a part whose size differs from the declared length and expects it to be accepted. For an
    ``application/json`` request pass ``parts={}``: then every attachment needs a ``fileUrl``.
    """
    declared: set[str] = set()
    missing: list[str] = []
    for path, attachment in _declared_attachments(statements):
        sha2 = attachment.get("sha2")
        if not isinstance(sha2, str):
            continue  # a malformed attachment is the statement validator's to report
        declared.add(sha2.lower())
        if attachment.get("fileUrl") is None and sha2.lower() not in parts:
            missing.append(f"{path} (sha2 {sha2})")
    undeclared = sorted(sha2 for sha2 in parts if sha2 not in declared)
    problems = []
    if missing:
        problems.append(
            "attachments without a fileUrl must have their data in a multipart/mixed part with a matching "
            f"X-Experience-API-Hash, and none was sent for: {', '.join(missing)}"
        )
    if undeclared:
        problems.append(
            "every multipart part after the first must be the data of an attachment a statement declares, but no "
            f"attachment has sha2 {', '.join(undeclared)}"
        )
    if problems:
        raise BadRequest("; ".join(problems))


def build_multipart_mixed(first_json: bytes, parts: list[AttachmentPart]) -> tuple[bytes, str]:
    """A ``multipart/mixed`` response body and its ``Content-Type`` value: ``first_json`` first, then each part once.

    The boundary is made of ``[A-Za-z0-9-]`` only, because the conformance suite finds parts with a regular expression
    built from it, and it is chosen so that it occurs in none of the contents.
    """
    unique: dict[str, AttachmentPart] = {}
    for part in parts:
        for name, value in (("content type", part.content_type), ("sha2", part.sha2)):
            if not value or any(c in value for c in "\r\n\0"):
                raise ValueError(f"attachment part {part.sha2!r}: {name} {value!r} cannot be a header value")
        unique.setdefault(part.sha2, part)  # one copy of data that several statements share (§1.5.2.s2.b2.b5)

    contents = [first_json, *(part.data for part in unique.values())]
    while True:
        boundary = f"proficio-{secrets.token_hex(16)}"
        delimiter = b"--" + boundary.encode("ascii")
        if not any(delimiter in content for content in contents):
            break

    chunks = [delimiter, b"\r\nContent-Type: application/json\r\n\r\n", first_json, _CRLF]
    for part in unique.values():
        chunks += [
            delimiter,
            b"\r\nContent-Type: ",
            part.content_type.encode("utf-8"),
            b"\r\nContent-Transfer-Encoding: binary\r\nX-Experience-API-Hash: ",
            part.sha2.encode("utf-8"),
            b"\r\n\r\n",
            part.data,
            _CRLF,
        ]
    chunks += [delimiter, b"--\r\n"]
    return b"".join(chunks), f"multipart/mixed; boundary={boundary}"


def _boundary_of(content_type_header: str) -> str:
    media_type, params = _content_type(content_type_header, "the request's Content-Type")
    if media_type != "multipart/mixed":
        raise BadRequest(f"expected a multipart/mixed Content-Type, got {media_type}")
    boundary = params.get("boundary")
    if not boundary:
        raise BadRequest("the multipart/mixed Content-Type has no boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        raise BadRequest(
            f"the multipart/mixed boundary {boundary!r} is not 1 to 70 RFC 2046 boundary characters "
            "(letters, digits, '()+_,-./:=? and inner spaces)"
        )
    return boundary


def _content_type(value: str, where: str) -> tuple[str, Mapping[str, str]]:
    """The lower-cased media type and the parameters of a Content-Type value."""
    header = policy.default.header_factory("content-type", value)
    if not isinstance(header, BaseHeader) or not isinstance(header, ContentTypeHeader):  # pragma: no cover
        raise TypeError("the default email policy makes Content-Type headers ContentTypeHeader instances")
    if header.defects:
        raise BadRequest(f"{where} {value!r} is malformed: {header.defects[0]}")
    return header.content_type, header.params


def _media_type(value: str, where: str) -> str:
    return _content_type(value, f"the Content-Type of {where}")[0]


def _split(body: bytes, boundary: bytes) -> Iterator[bytes]:
    """The encapsulated parts between the delimiters, per RFC 2046 §5.1.1 with CRLF line ends only."""
    dash_boundary = b"--" + boundary
    delimiter = _CRLF + dash_boundary
    if body.startswith(dash_boundary):
        position = len(dash_boundary)
    else:
        # Only blank lines may come before the first boundary (the suite's signed bodies start with a CRLF); any
        # other preamble means the statements are not in a part, which the suite expects to be rejected.
        found = body.find(delimiter)
        if found < 0:
            raise BadRequest("the multipart/mixed body does not contain its boundary line --" + boundary.decode())
        if body[:found].strip(b" \t\r\n"):
            raise BadRequest("the multipart/mixed body must start with its boundary line, but text comes before it")
        position = found + len(delimiter)

    number = 1
    while True:
        if body.startswith(b"--", position):
            rest = body[position + 2 :].lstrip(_LWSP)
            if rest and not rest.startswith(_CRLF):
                raise BadRequest("the closing boundary line of the multipart/mixed body is followed by other text")
            return  # anything after the closing line's CRLF is the epilogue, which RFC 2046 says to ignore
        line_end = position
        while body[line_end : line_end + 1] in (b" ", b"\t"):
            line_end += 1
        if not body.startswith(_CRLF, line_end):
            where = "the first boundary line" if number == 1 else f"the boundary line after part {number - 1}"
            raise BadRequest(f"{where} must end with CRLF; a boundary may not appear inside a part")
        start = line_end + 2
        end = body.find(delimiter, start)
        if end < 0:
            raise BadRequest(f"part {number} of the multipart/mixed body is not followed by a boundary line")
        yield body[start:end]
        position = end + len(delimiter)
        number += 1


def _headers_and_body(raw: bytes, number: int) -> tuple[dict[str, str], bytes]:
    if raw.startswith(_CRLF):
        return {}, raw[2:]  # no headers at all, only the blank line
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise BadRequest(f"part {number} has no blank line between its headers and its content")
    headers: dict[str, str] = {}
    lines: list[bytes] = []
    for line in raw[:end].split(_CRLF):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b" " + line.strip(_LWSP)  # an obsolete folded header line continues the one before
        else:
            lines.append(line)
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise BadRequest(f"part {number} has a malformed header line {line[:80]!r}")
        try:
            text = value.decode("utf-8").strip(" \t")
        except UnicodeDecodeError as error:
            raise BadRequest(f"part {number}: header {name.decode()} is not UTF-8") from error
        key = name.decode("ascii").lower()
        if key in headers and key in _SINGLE_HEADERS:
            raise BadRequest(f"part {number} has more than one {name.decode()} header")
        headers.setdefault(key, text)
    return headers, raw[end + 4 :]


def _attachment_part(raw: bytes, number: int) -> AttachmentPart:
    headers, data = _headers_and_body(raw, number)
    content_type = headers.get("content-type")
    sha2 = headers.get("x-experience-api-hash")
    if not sha2:
        if content_type is not None and _media_type(content_type, f"part {number}") == "application/json":
            raise BadRequest(
                f"part {number} is application/json without an X-Experience-API-Hash header: all statements must "
                "be in the first part, and every later part must be an attachment's data"
            )
        raise BadRequest(f"part {number} has no X-Experience-API-Hash header; every attachment part needs one")
    encoding = headers.get("content-transfer-encoding")
    if encoding is None or encoding.lower() != "binary":
        # XAPI-00135: the header is required and must say binary; base64 or quoted-printable data is rejected.
        raise BadRequest(
            f"part {number} must have Content-Transfer-Encoding: binary, not {encoding or 'none'}; "
            "attachment data is sent as raw octets"
        )
    if content_type is not None:
        _media_type(content_type, f"part {number}")
    digest = _SHA2_BY_HEX_LENGTH.get(len(sha2))
    if digest is None or not _HEX.fullmatch(sha2):
        raise BadRequest(f"part {number}: X-Experience-API-Hash {sha2[:140]!r} is not a hex SHA-224/256/384/512 digest")
    sha2 = sha2.lower()
    if digest(data).hexdigest() != sha2:
        # Parts are kept by their hash, so data that does not hash to it must never be stored under it.
        raise BadRequest(f"part {number}: its data does not hash to its X-Experience-API-Hash {sha2}")
    return AttachmentPart(sha2=sha2, content_type=content_type or "application/octet-stream", data=data)


def _declared_attachments(statements: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for index, statement in enumerate(statements):
        if not isinstance(statement, dict):
            continue
        yield from _attachments_at(statement, f"statements[{index}]")
        target = statement.get("object")
        if isinstance(target, dict) and target.get("objectType") == "SubStatement":
            yield from _attachments_at(target, f"statements[{index}].object")


def _attachments_at(statement: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    attachments = statement.get("attachments")
    if isinstance(attachments, list):
        for position, attachment in enumerate(attachments):
            if isinstance(attachment, dict):
                yield f"{path}.attachments[{position}]", attachment
