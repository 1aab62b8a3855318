"""Signed checkpoints: the operator's ed25519 key attests that a tenant's chain had a hash at a position.

A checkpoint is (tenant, position, the chain hash at that position, the time it was signed), signed
with the key the operator configures (``PROFICIO_SIGNING_KEY_FILE``). Because every hash covers the
hash before it, a checkpoint at position P commits to the tenant's whole history up to P: whoever
holds it (and the public key) can later tell whether an exported segment, or the log itself, still
matches, even against someone able to rewrite and re-hash rows (which the chain alone cannot catch),
or who deletes the newest events (which leave no broken link behind).

The signed message is the UTF-8 JSON array (compact, no spaces)::

    ["proficio-checkpoint-v1", tenant, position, "<chain hash, lowercase hex>", signed_at_microseconds]

so that anyone can check a checkpoint with any ed25519 implementation. The key id is the first 16 hex
digits of the SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._chain import Anchor
from ._errors import SigningKeyError

CHECKPOINT_FORMAT = "proficio-checkpoint-v1"


def checkpoint_message(tenant: str, position: int, chain_hash: bytes, signed_us: int) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return orjson.dumps([CHECKPOINT_FORMAT, tenant, position, chain_hash.hex(), signed_us])


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def iso_from_us(moment_us: int) -> str:
    return datetime.fromtimestamp(moment_us / 1_000_000, tz=UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that ``tenant``'s chain had ``chain_hash`` at ``position`` at ``signed_us``."""

    tenant: str
    position: int
    chain_hash: bytes
    signed_us: int
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return checkpoint_message(self.tenant, self.position, self.chain_hash, self.signed_us)

    def signature_valid(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(self.signature, self.message())
        except InvalidSignature:
            return False
        return True

    @property
    def label(self) -> str:
        return f"the checkpoint signed {iso_from_us(self.signed_us)} by key {self.key_id}"

    def anchor(self) -> Anchor:
        return Anchor(self.tenant, self.position, self.chain_hash, self.label)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "position": self.position,
            "chain_hash": self.chain_hash.hex(),
            "signed_us": self.signed_us,
            "signed_at": iso_from_us(self.signed_us),
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """From ``to_json``'s form; ValueError, KeyError or TypeError when it is not one."""
        tenant, position, signed_us, key_id = data["tenant"], data["position"], data["signed_us"], data["key_id"]
        if not isinstance(tenant, str) or not isinstance(key_id, str):
            raise TypeError("tenant and key_id must be strings")
        if type(position) is not int or type(signed_us) is not int:
            raise TypeError("position and signed_us must be integers")
        return cls(tenant, position, bytes.fromhex(data["chain_hash"]), signed_us, key_id,
                   bytes.fromhex(data["signature"]))  # fmt: skip


class Signer:
    """The operator's private key, which signs checkpoints."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    def sign(self, tenant: str, position: int, chain_hash: bytes, signed_us: int | None = None) -> Checkpoint:
        moment = signed_us if signed_us is not None else time.time_ns() // 1000
        signature = self._private_key.sign(checkpoint_message(tenant, position, chain_hash, moment))
        return Checkpoint(tenant, position, chain_hash, moment, self.key_id, signature)

    def public_pem(self) -> bytes:
        return public_key_pem(self.public_key)


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_file_for(private_key_file: Path) -> Path:
    """Where ``generate_key_files`` puts the public half: beside the private key, with ``.pub`` added."""
    return private_key_file.with_name(private_key_file.name + ".pub")


def generate_key_files(path: Path) -> Signer:
    """A new ed25519 key: the private key at ``path`` (PEM, PKCS#8, readable by the owner only) and the
    public key beside it (``public_key_file_for``). Existing files are never overwritten."""
    public_path = public_key_file_for(path)
    for existing in (path, public_path):
        if existing.exists():
            raise SigningKeyError(f"{existing} exists already; it is never overwritten (choose another path)")
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created with the owner-only mode from the start, not chmod-ed after being readable.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
        signer = Signer(private_key)
        public_path.write_bytes(signer.public_pem())
    except OSError as exc:
        raise SigningKeyError(f"cannot write the key files: {exc}") from exc
    return signer


def load_signer(path: Path) -> Signer:
    """The ed25519 private key in a PEM file (unencrypted PKCS#8, as ``generate_key_files`` writes)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__.removeprefix('_')}, not an ed25519 key")
    return Signer(key)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An ed25519 public key from a PEM file (or the public half of a PEM private key file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the public key {path}: {exc.strerror or exc}") from exc
    if b"PRIVATE KEY" in data:
        return load_signer(path).public_key
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__.removeprefix('_')}, not an ed25519 key")
    return key


class CheckpointSettings(BaseSettings):
    """``PROFICIO_SIGNING_KEY_FILE``: the operator's private key (``proficio keys generate`` makes one);
    ``PROFICIO_CHECKPOINT_INTERVAL_S``: how often ``proficio serve`` checkpoints every tenant whose
    chain grew (0: never; needs the key)."""

    model_config = SettingsConfigDict(env_prefix="PROFICIO_", extra="ignore")

    signing_key_file: Path | None = None
    checkpoint_interval_s: float = 3600.0

    def signer(self) -> Signer | None:
        return load_signer(self.signing_key_file) if self.signing_key_file is not None else None


__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointSettings",
    "Signer",
    "checkpoint_message",
    "generate_key_files",
    "iso_from_us",
    "key_id_of",
    "load_public_key",
    "load_signer",
    "public_key_file_for",
    "public_key_pem",
]
