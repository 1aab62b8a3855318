"""HMAC-SHA256 under a few long-lived keys (the tenants' identifier secrets), for short messages.

``hmac.digest`` sets up the key's padded blocks and fetches the digest from OpenSSL on every call: ~1.5 µs for a
short message, where the hashing itself is a third of that. A batched POST makes three or four such digests per
statement (the directory's, the index's and the fingerprint's). Here the two padded key blocks are hashed once
per key (RFC 2104: H(K ^ opad, H(K ^ ipad, message))) and copied for each message: the same digest, ~0.6 µs.
The states are kept per key in this process, as the secrets themselves already are (``_keyring``).
"""

from __future__ import annotations

import hashlib
import hmac

_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
#: Past this many keys the states are dropped and made again (a process serves a handful of tenants).
MAX_KEYS = 256

_states: dict[bytes, tuple[hashlib._Hash, hashlib._Hash]] = {}


def _state(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    block = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
    block = block.ljust(_BLOCK, b"\0")
    if len(_states) >= MAX_KEYS:
        _states.clear()
    state = _states[key] = (hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD)))
    return state


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """``hmac.digest(key, message, "sha256")``, faster for a key used again."""
    if type(key) is not bytes:  # bytearray, memoryview: not a dict key
        return hmac.digest(key, message, "sha256")
    state = _states.get(key) or _state(key)
    inner = state[0].copy()
    inner.update(message)
    outer = state[1].copy()
    outer.update(inner.digest())
    return outer.digest()
