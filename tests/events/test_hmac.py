"""``hmac_sha256``: the digest ``hmac.digest`` gives, from the padded key blocks hashed once per key."""

from __future__ import annotations

import hmac

from hypothesis import given
from hypothesis import strategies as st

from proficio_events import _hmac, hmac_sha256


@given(key=st.binary(min_size=0, max_size=200), messages=st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_the_same_digest_as_hmac_for_any_key_and_message(key: bytes, messages: list[bytes]) -> None:
    # Keys shorter than, as long as and longer than SHA-256's 64-byte block (a longer key is hashed first); each
    # key used several times, so that the kept state is used again and must not change.
    for message in messages:
        assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")


def test_keys_not_bytes_and_many_keys() -> None:
    assert hmac_sha256(bytearray(b"k" * 32), b"m") == hmac.digest(b"k" * 32, b"m", "sha256")
    keys = [i.to_bytes(32, "big") for i in range(_hmac.MAX_KEYS * 2 + 3)]  # past the bound: states made again
    for key in keys + keys:
        assert hmac_sha256(key, b"identity") == hmac.digest(key, b"identity", "sha256")
    assert len(_hmac._states) <= _hmac.MAX_KEYS
