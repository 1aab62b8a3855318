"""Signed statements (xAPI 1.0.3 Data §2.6, same rules in 2.0): statements carrying a JWS of themselves as attachment.

The LRS must reject malformed signatures with 400: it decodes the JWS, checks that the signed payload is a statement
equivalent to the one received (see ``_compare``), requires RS256, RS384 or RS512, and where the JWS header carries an
``x5c`` certificate chain it verifies the signature with the first certificate. Without ``x5c`` the LRS has no key, so
only the structure is checked; the spec calls the check a way to catch mistakes, not a security measure.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.util import urlsafe_b64decode

from ._compare import statements_equivalent
from ._errors import BadRequest
from ._multipart import AttachmentPart

__all__ = ["SIGNATURE_USAGE", "check_signed_statement"]

SIGNATURE_USAGE = "http://adlnet.gov/expapi/attachments/signature"
_SIGNATURE_CONTENT_TYPE = "application/octet-stream"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}


def _registry() -> jws.JWSRegistry:
    # Unknown non-critical header parameters are ignored, as RFC 7515 §4 asks; "crit" ones are still refused. joserfc's
    # default size limits fit tokens, not statements: an x5c chain alone is larger than its 512-byte header limit. The
    # request's own size limit bounds all of these anyway.
    registry = jws.JWSRegistry(algorithms=list(_HASHES), strict_check_header=False)
    registry.max_header_length = 1 << 20
    registry.max_payload_length = 1 << 28
    registry.max_signature_length = 1 << 12
    return registry


_REGISTRY = _registry()


def check_signed_statement(statement: dict[str, Any], parts: dict[str, AttachmentPart]) -> None:
    """Raise ``BadRequest`` unless every signature attachment of ``statement`` holds a well-formed JWS of it.

    A statement without a signature attachment passes. ``parts`` are the request's attachment parts by sha2.
    """
    attachments = statement.get("attachments")
    if not isinstance(attachments, list):
        return
    for index, attachment in enumerate(attachments):
        if isinstance(attachment, dict) and attachment.get("usageType") == SIGNATURE_USAGE:
            _check_signature(statement, attachment, parts, f"attachments[{index}]")


def _check_signature(
    statement: dict[str, Any], attachment: dict[str, Any], parts: dict[str, AttachmentPart], where: str
) -> None:
    declared_type = attachment.get("contentType")
    if not isinstance(declared_type, str) or _media_type(declared_type) != _SIGNATURE_CONTENT_TYPE:
        raise BadRequest(
            f"{where} is a signature (usageType {SIGNATURE_USAGE}), so its contentType must be "
            f"{_SIGNATURE_CONTENT_TYPE}, not {declared_type!r}"
        )
    sha2 = attachment.get("sha2")
    part = parts.get(sha2.lower()) if isinstance(sha2, str) else None
    if part is None:
        raise BadRequest(
            f"{where} is a signature, but no multipart/mixed part carries its data (sha2 {sha2}); a signature must "
            "be sent with the statement, not by fileUrl"
        )
    if _media_type(part.content_type) != _SIGNATURE_CONTENT_TYPE:
        raise BadRequest(
            f"{where}: the part holding the signature has Content-Type {part.content_type!r}, "
            f"not {_SIGNATURE_CONTENT_TYPE}"
        )

    try:
        token = jws.extract_compact(part.data, registry=_REGISTRY)
    except (JoseError, ValueError) as error:
        raise BadRequest(f"{where}: the signature is not a JWS in compact serialization ({error})") from error
    header: object = token.headers()
    if not isinstance(header, dict):  # joserfc lets a JSON array or string through as the header
        raise BadRequest(f"{where}: the JWS header must be a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _HASHES:
        raise BadRequest(f"{where}: the JWS algorithm must be RS256, RS384 or RS512, not {alg!r}")
    try:
        _REGISTRY.check_header(header)
        signature = urlsafe_b64decode(token.segments["signature"])
    except (JoseError, ValueError) as error:
        raise BadRequest(f"{where}: the JWS is malformed ({error})") from error
    if not signature:
        raise BadRequest(f"{where}: the JWS has an empty signature")

    try:
        signed = orjson.loads(token.payload)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"{where}: the JWS payload is not valid JSON ({error})") from error
    if not isinstance(signed, dict):
        raise BadRequest(f"{where}: the JWS payload must be a JSON object, the statement as it was signed")
    # The payload is the statement "before the signature was added", so attachments are compared on neither side.
    received = {key: value for key, value in statement.items() if key != "attachments"}
    signed.pop("attachments", None)
    if not statements_equivalent(signed, received):
        raise BadRequest(
            f"{where}: the statement in the JWS payload is not equivalent to the statement sent "
            "(xAPI statement comparison requirements)"
        )

    chain = header.get("x5c")
    if chain:
        _verify_with_certificate(chain[0], token, signature, _HASHES[alg], where)


def _verify_with_certificate(
    encoded: str, token: jws.CompactSignature, signature: bytes, digest: type[hashes.HashAlgorithm], where: str
) -> None:
    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f"{where}: x5c[0] in the JWS header is not a base64 DER X.509 certificate") from error
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise BadRequest(f"{where}: the x5c certificate does not hold an RSA key, which RS256/384/512 need")
    # Verified with cryptography directly: joserfc's key import warns about key sizes, which is policy, not validity.
    signing_input = token.segments["header"] + b"." + token.segments["payload"]
    try:
        key.verify(signature, signing_input, padding.PKCS1v15(), digest())
    except InvalidSignature as error:
        raise BadRequest(
            f"{where}: the JWS signature does not verify against the certificate in its x5c header"
        ) from error


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()
