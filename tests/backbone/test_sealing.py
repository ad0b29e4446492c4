"""Sealed dead-letter bytes: only the key opens them, and tampering or another key is refused."""

from __future__ import annotations

import pytest

from backbone.sealing import Sealer, SealError


def test_sealed_bytes_open_with_the_key_only():
    original = b'{"nik": "3522011201900001", "name": "Siti"}'
    sealed = Sealer("key-one").seal(original)
    assert b"3522011201900001" not in sealed and b"Siti" not in sealed
    assert Sealer("key-one").unseal(sealed) == original
    assert Sealer("key-one").seal(original) != sealed  # a fresh nonce each time
    with pytest.raises(SealError):
        Sealer("key-two").unseal(sealed)
    with pytest.raises(SealError):
        Sealer("key-one").unseal(sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(SealError):
        Sealer("key-one").unseal(original)
