"""Log events as Kafka records: the key is the tenant and stream, the value the whole envelope.

The value is ``PF1`` + a 4-byte header length + a JSON header (every envelope field but the bodies,
binary fields in hex) + the payload's JSON bytes as stored + the sealed bytes. The payload is
carried byte for byte, so a consumer can check an event's hash link, and it is parsed once, by the
projection that reads it (``StoredEvent.data()``), not by the transport.
"""

from __future__ import annotations

import base64
import hashlib

import orjson

from proficio_events import StoredEvent

MAGIC = b"PF1"


def record_key(event: StoredEvent) -> bytes:
    """Events of one stream (one learner's, for statements) share a key, hence a partition and its order."""
    return f"{event.tenant}/{event.stream}".encode()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a key: a stable hash in C (kafka-python's murmur2 runs in Python, per record)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % partitions


def encode(event: StoredEvent) -> bytes:
    header = orjson.dumps(
        [
            event.position,
            event.tenant,
            event.stream,
            event.stream_version,
            event.event_type,
            event.schema_version,
            event.recorded_us,
            event.key,
            None if event.fingerprint is None else base64.b64encode(event.fingerprint).decode(),
            event.key_id,
            event.prev_hash.hex(),
            event.hash.hex(),
            len(event.payload),
            None if event.sealed is None else len(event.sealed),
        ]
    )
    return b"".join((MAGIC, len(header).to_bytes(4, "big"), header, event.payload, event.sealed or b""))


def decode(value: bytes) -> StoredEvent:
    if value[:3] != MAGIC:
        raise ValueError("not a Proficio event record")
    size = int.from_bytes(value[3:7], "big")
    end = 7 + size
    (position, tenant, stream, stream_version, event_type, schema_version, recorded_us, key, fingerprint, key_id,
     prev_hash, digest, payload_size, sealed_size) = orjson.loads(value[7:end])  # fmt: skip
    payload = value[end : end + payload_size]
    sealed = None if sealed_size is None else value[end + payload_size : end + payload_size + sealed_size]
    return StoredEvent(
        position, tenant, stream, stream_version, event_type, schema_version, recorded_us, key,
        None if fingerprint is None else base64.b64decode(fingerprint), payload, sealed, key_id,
        bytes.fromhex(prev_hash), bytes.fromhex(digest),
    )  # fmt: skip
