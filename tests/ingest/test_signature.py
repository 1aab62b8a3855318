"""Signed statements: JWS signatures made here with cryptography keys, sent the way the conformance suite sends them."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import hmac
import json
import uuid
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from joserfc import jws
from joserfc.jwk import RSAKey

from proficio_ingest._errors import BadRequest
from proficio_ingest._multipart import AttachmentPart, check_attachments, parse_multipart_mixed
from proficio_ingest._signature import SIGNATURE_USAGE, check_signed_statement

Statement = dict[str, Any]
OCTET_STREAM = "application/octet-stream"
RSA_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def certificate(key: rsa.RSAPrivateKey) -> str:
    """A self-signed certificate for ``key``, base64 DER as x5c wants it."""
    return x5c_entry(key, key.public_key())


def x5c_entry(signer: Any, public_key: Any) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Proficio test signer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(signer, hashes.SHA256())
    )
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def a_statement() -> Statement:
    return {
        "id": str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "name": "xAPI mbox", "mbox": "mailto:xapi@adlnet.gov"},
        "verb": {
            "id": "http://adlnet.gov/expapi/verbs/attended",
            "display": {"en-GB": "attended", "en-US": "attended"},
        },
        "object": {"objectType": "Activity", "id": "http://www.example.com/meetings/occurances/34534"},
    }


def stringify(value: Any) -> str:
    """What JavaScript's JSON.stringify produces."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign(payload: str | bytes, key: rsa.RSAPrivateKey, alg: str = "RS256", **header: Any) -> bytes:
    """A compact JWS made by joserfc, the way a client library would make it."""
    return jws.serialize_compact({"alg": alg, **header}, payload, RSAKey.import_key(key), algorithms=[alg]).encode()


def hand_made(header: dict[str, Any], payload: bytes, signature: bytes) -> bytes:
    """A compact JWS assembled by hand, for headers and algorithms a library would refuse to produce."""
    return b64url(json.dumps(header).encode()) + b"." + b64url(payload) + b"." + b64url(signature)


def rsa_signature(header: dict[str, Any], payload: bytes, key: rsa.RSAPrivateKey, alg: str = "RS256") -> bytes:
    signing_input = b64url(json.dumps(header).encode()) + b"." + b64url(payload)
    signature = key.sign(signing_input, padding.PKCS1v15(), RSA_HASHES[alg]())
    return signing_input + b"." + b64url(signature)


def signed(
    statement: Statement, token: bytes, *, content_type: str = OCTET_STREAM, part_type: str | None = None
) -> tuple[Statement, dict[str, AttachmentPart]]:
    """The statement as posted with its signature attachment, and the request's parts (as helper.signStatement)."""
    sha2 = hashlib.sha256(token).hexdigest()
    posted = copy.deepcopy(statement)
    posted["attachments"] = [
        {
            "usageType": SIGNATURE_USAGE,
            "display": {"en-US": "Signed by the Test Suite"},
            "description": {"en-US": "Signed by the Test Suite"},
            "contentType": content_type,
            "length": len(token),
            "sha2": sha2,
        }
    ]
    return posted, {sha2: AttachmentPart(sha2, part_type or content_type, token)}


def suite_body(posted: Statement, token: bytes, boundary: str) -> bytes:
    """helper.signStatement's body: CRLF preamble, headers without a space, no CRLF after the closing boundary."""
    signature = posted["attachments"][0]
    return (
        f"\r\n--{boundary}\r\nContent-Type:application/json\r\n\r\n".encode()
        + stringify(posted).encode()
        + f"\r\n--{boundary}\r\nContent-Type:{signature['contentType']}\r\nContent-Transfer-Encoding:binary\r\n"
        f"X-Experience-API-Hash:{signature['sha2']}\r\n\r\n".encode()
        + token
        + f"\r\n--{boundary}--".encode()
    )


def receive(body: bytes, boundary: str) -> None:
    """The ingest path for one posted statement: parse, match attachments, check the signature."""
    request = parse_multipart_mixed(body, f"multipart/mixed; boundary={boundary}")
    statement = orjson.loads(request.statement_json)
    check_attachments([statement], request.parts)
    check_signed_statement(statement, request.parts)


def rejected(posted: Statement, parts: dict[str, AttachmentPart], match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        check_signed_statement(posted, parts)


# ---------------------------------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
def test_accepts_rsa_signatures_sent_as_the_suite_sends_them(key: rsa.RSAPrivateKey, alg: str) -> None:
    statement = a_statement()
    token = sign(stringify(statement), key, alg)
    posted, _ = signed(statement, token)
    boundary = "-------------" + str(uuid.uuid4().int % 0xFFFFFFFF)

    receive(suite_body(posted, token, boundary), boundary)


def test_accepts_a_duration_beyond_hundredths_in_the_statement(key: rsa.RSAPrivateKey) -> None:
    # 2.0 §4.2.7 as the suite checks it: sign 0.12S, then replace it by 0.1237S in the body (the JWS is base64, so
    # only the statement JSON changes).
    statement = {**a_statement(), "result": {"duration": "P1DT12H36M0.12S"}}
    token = sign(stringify(statement), key)
    posted, _ = signed(statement, token)
    boundary = f"-------------__{uuid.uuid4()}__123__456"
    body = suite_body(posted, token, boundary).replace(b"P1DT12H36M0.12S", b"P1DT12H36M0.1237S", 1)

    receive(body, boundary)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
def test_verifies_against_an_x5c_certificate(key: rsa.RSAPrivateKey, certificate: str, alg: str) -> None:
    statement = a_statement()
    token = sign(stringify(statement), key, alg, x5c=[certificate, certificate])

    check_signed_statement(*signed(statement, token))


def test_payload_may_differ_in_what_the_lrs_sets_and_in_formatting(key: rsa.RSAPrivateKey) -> None:
    statement = a_statement()
    payload = {
        **statement,
        "id": statement["id"].upper(),
        "stored": "2024-01-01T00:00:00Z",
        "authority": {"mbox": "mailto:someone@example.com"},
        "version": "1.0.3",
        "verb": {"id": statement["verb"]["id"]},
        "attachments": [],
    }
    token = sign(json.dumps(payload, indent=4, sort_keys=True), key)

    check_signed_statement(*signed(statement, token))


def test_a_large_statement_with_a_long_header(key: rsa.RSAPrivateKey, certificate: str) -> None:
    # Past joserfc's default limits (512-byte header, 128 kB payload), which fit tokens, not statements.
    statement = {**a_statement(), "result": {"extensions": {"http://example.com/big": "x" * 300_000}}}
    token = sign(stringify(statement), key, x5c=[certificate] * 3, kid="k" * 600)

    check_signed_statement(*signed(statement, token))


def test_unknown_non_critical_header_parameters_are_ignored(key: rsa.RSAPrivateKey) -> None:
    statement = a_statement()
    token = rsa_signature({"alg": "RS256", "http://example.com/private": 1}, stringify(statement).encode(), key)

    check_signed_statement(*signed(statement, token))


def test_without_x5c_only_the_structure_is_checked(key: rsa.RSAPrivateKey) -> None:
    # No key is known, so a tampered signature cannot be told from a good one (the spec: SHOULD verify where it can).
    statement = a_statement()

    check_signed_statement(*signed(statement, tampered(sign(stringify(statement), key))))


def test_statements_without_signatures_pass() -> None:
    statement = a_statement()
    check_signed_statement(statement, {})
    statement["attachments"] = [
        {"usageType": "http://example.com/other", "contentType": "text/plain", "length": 1, "sha2": "ab"},
        "not an object",
    ]
    check_signed_statement(statement, {})
    check_signed_statement({**statement, "attachments": "not a list"}, {})


# ---------------------------------------------------------------------------------------------------- rejected


def tampered(token: bytes) -> bytes:
    header, payload, signature = token.split(b".")
    raw = bytearray(base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return header + b"." + payload + b"." + b64url(bytes(raw))


def test_rejects_a_tampered_signature_when_x5c_is_given(key: rsa.RSAPrivateKey, certificate: str) -> None:
    statement = a_statement()
    token = tampered(sign(stringify(statement), key, x5c=[certificate]))

    rejected(*signed(statement, token), "does not verify against the certificate")


def test_rejects_a_signature_by_another_key_than_the_certificate(
    other_key: rsa.RSAPrivateKey, certificate: str
) -> None:
    statement = a_statement()
    token = sign(stringify(statement), other_key, x5c=[certificate])

    rejected(*signed(statement, token), "does not verify against the certificate")


def test_rejects_hs256(key: rsa.RSAPrivateKey) -> None:
    # The suite "signs" with HMAC, using the PEM of its private key as the secret.
    secret = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    statement = a_statement()
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = b64url(json.dumps(header).encode()) + b"." + b64url(stringify(statement).encode())
    token = signing_input + b"." + b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())

    rejected(*signed(statement, token), "must be RS256, RS384 or RS512, not 'HS256'")


@pytest.mark.parametrize("alg", ["none", "PS256", "ES256", "rs256"])
def test_rejects_other_algorithms(key: rsa.RSAPrivateKey, alg: str) -> None:
    statement = a_statement()
    token = hand_made({"alg": alg}, stringify(statement).encode(), b"\x01" * 32)

    rejected(*signed(statement, token), f"not '{alg}'")


@pytest.mark.parametrize("alg", [["RS256"], {"RS256": 1}, 256, None])
def test_rejects_an_alg_that_is_not_a_string(alg: Any) -> None:
    statement = a_statement()
    token = hand_made({"alg": alg}, stringify(statement).encode(), b"\x01" * 32)

    rejected(*signed(statement, token), "must be RS256, RS384 or RS512")


def test_rejects_a_missing_alg(key: rsa.RSAPrivateKey) -> None:
    statement = a_statement()

    rejected(*signed(statement, hand_made({"typ": "JOSE"}, b"{}", b"\x01")), "not a JWS in compact serialization")


def test_rejects_a_signature_attachment_that_is_not_octet_stream(key: rsa.RSAPrivateKey) -> None:
    # The suite's "bad content type" case.
    statement = a_statement()
    posted, parts = signed(statement, sign(stringify(statement), key), content_type="text/plain; charset=ascii")

    rejected(posted, parts, "contentType must be application/octet-stream, not 'text/plain; charset=ascii'")


def test_rejects_a_signature_part_that_is_not_octet_stream(key: rsa.RSAPrivateKey) -> None:
    statement = a_statement()
    posted, parts = signed(statement, sign(stringify(statement), key), part_type="text/plain")

    rejected(posted, parts, "the part holding the signature has Content-Type 'text/plain'")


def test_accepts_octet_stream_with_parameters_and_any_case(key: rsa.RSAPrivateKey) -> None:
    statement = a_statement()
    token = sign(stringify(statement), key)

    check_signed_statement(*signed(statement, token, content_type="Application/Octet-Stream; x=y"))


def test_rejects_a_signature_without_its_part(key: rsa.RSAPrivateKey) -> None:
    statement = a_statement()
    posted, _ = signed(statement, sign(stringify(statement), key))
    posted["attachments"][0]["fileUrl"] = "http://example.com/signature.jws"

    rejected(posted, {}, "no multipart/mixed part carries its data")


def test_rejects_a_payload_that_is_not_json(key: rsa.RSAPrivateKey) -> None:
    # The suite's "breakJson": the first double quote replaced by a single one.
    statement = a_statement()
    token = sign(stringify(statement).replace('"', "'", 1), key)

    rejected(*signed(statement, token), "the JWS payload is not valid JSON")


@pytest.mark.parametrize("payload", ["[]", '"statement"', "null", "1"])
def test_rejects_a_payload_that_is_not_an_object(key: rsa.RSAPrivateKey, payload: str) -> None:
    statement = a_statement()

    rejected(*signed(statement, sign(payload, key)), "the JWS payload must be a JSON object")


@pytest.mark.parametrize(
    "change",
    [
        {"verb": {"id": "http://adlnet.gov/expapi/verbs/attempted"}},
        {"actor": {"mbox": "mailto:someone.else@adlnet.gov"}},
        {"result": {"duration": "P1DT12H36M0.13S"}},
        {"result": {"success": True}},
    ],
    ids=["verb", "actor", "duration", "extra-result"],
)
def test_rejects_a_payload_that_differs_from_the_statement(key: rsa.RSAPrivateKey, change: Statement) -> None:
    statement = {**a_statement(), "result": {"duration": "P1DT12H36M0.1237S"}}
    token = sign(stringify({**statement, **change}), key)

    rejected(*signed(statement, token), "not equivalent to the statement sent")


@pytest.mark.parametrize(
    "token",
    [
        b"not a jws",
        b"a.b",
        b"a.b.c.d",
        b"!!!." + b64url(b"{}") + b".c2ln",
        b64url(b"not json") + b"." + b64url(b"{}") + b".c2ln",
        b64url(b'["alg"]') + b"." + b64url(b"{}") + b".c2ln",
        b64url(b'{"alg":"RS256"}') + b".!!!.c2ln",
        b64url(b'{"alg":"RS256"}') + b"." + b64url(b"{}") + b".c2ln=",
        b64url(b'{"alg":"RS256"}') + b"." + b64url(b"{}") + b".",
        b64url(b'{"alg":"RS256"}') + b"." + b64url(b"{}") + b".c2ln\n",
        "é".encode() + b"." + b64url(b"{}") + b".c2ln",
    ],
    ids=[
        "one-segment",
        "two-segments",
        "four-segments",
        "header-not-base64url",
        "header-not-json",
        "header-not-object",
        "payload-not-base64url",
        "signature-padded",
        "empty-signature",
        "trailing-newline",
        "non-ascii",
    ],
)
def test_rejects_malformed_jws(token: bytes) -> None:
    rejected(*signed(a_statement(), token), "JWS|signature")


def test_rejects_an_unknown_critical_header(key: rsa.RSAPrivateKey) -> None:
    statement = a_statement()
    token = rsa_signature(
        {"alg": "RS256", "crit": ["http://example.com/must"], "http://example.com/must": 1},
        stringify(statement).encode(),
        key,
    )

    rejected(*signed(statement, token), "JWS is malformed")


@pytest.mark.parametrize(
    ("x5c", "match"),
    [
        (["not base64!"], "not a base64 DER X.509 certificate"),
        ([base64.b64encode(b"not a certificate").decode()], "not a base64 DER X.509 certificate"),
        ("not a list", "JWS is malformed"),
    ],
)
def test_rejects_a_bad_x5c(key: rsa.RSAPrivateKey, x5c: Any, match: str) -> None:
    statement = a_statement()
    token = rsa_signature({"alg": "RS256", "x5c": x5c}, stringify(statement).encode(), key)

    rejected(*signed(statement, token), match)


def test_rejects_an_x5c_certificate_without_an_rsa_key(key: rsa.RSAPrivateKey) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    statement = a_statement()
    token = rsa_signature(
        {"alg": "RS256", "x5c": [x5c_entry(ec_key, ec_key.public_key())]}, stringify(statement).encode(), key
    )

    rejected(*signed(statement, token), "does not hold an RSA key")


def test_every_signature_attachment_is_checked(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    statement = a_statement()
    good = sign(stringify(statement), key)
    bad = sign(stringify({**statement, "verb": {"id": "http://example.com/other"}}), other_key)
    posted, parts = signed(statement, good)
    second, more = signed(statement, bad)
    posted["attachments"] += second["attachments"]

    rejected(posted, {**parts, **more}, r"attachments\[1\]: the statement in the JWS payload is not equivalent")
