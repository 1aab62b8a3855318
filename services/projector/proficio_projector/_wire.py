"""Log events as Kafka records: the key is the tenant and stream, the value the whole envelope.

The value carries every field of the stored event (the payload JSON inline, binary fields in base64
or hex), so a consumer can check an event's hash link as well as fold it.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from proficio_events import StoredEvent


def record_key(event: StoredEvent) -> bytes:
    """Events of one stream (one learner's, for statements) share a key, hence a partition and its order."""
    return f"{event.tenant}/{event.stream}".encode()


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def encode(event: StoredEvent) -> bytes:
    return orjson.dumps(
        {
            "position": event.position,
            "tenant": event.tenant,
            "stream": event.stream,
            "stream_version": event.stream_version,
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "recorded_us": event.recorded_us,
            "key": event.key,
            "fingerprint": _b64(event.fingerprint),
            "payload": orjson.Fragment(event.payload),
            "sealed": _b64(event.sealed),
            "key_id": event.key_id,
            "prev_hash": event.prev_hash.hex(),
            "hash": event.hash.hex(),
        }
    )


def _unb64(value: Any) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def decode(value: bytes) -> StoredEvent:
    data = orjson.loads(value)
    payload = data["payload"]
    return StoredEvent(
        data["position"], data["tenant"], data["stream"], data["stream_version"], data["event_type"],
        data["schema_version"], data["recorded_us"], data["key"], _unb64(data["fingerprint"]),
        orjson.dumps(payload), _unb64(data["sealed"]), data["key_id"], bytes.fromhex(data["prev_hash"]),
        bytes.fromhex(data["hash"]), payload,
    )  # fmt: skip
