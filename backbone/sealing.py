"""Sealed bytes: what must be kept for replay but may hold personal data (the original bytes of a
rejected input) is kept only encrypted, with AES-256-GCM from the `cryptography` package.

The key comes from the settings (`BACKBONE_DEAD_LETTER_KEY`, or a random one created once in the
run folder with mode 0600): the analyst role reads dead letters but never this key. A sealed value
is `BBS1` + 12-byte nonce + ciphertext with its tag; anything else is refused on unsealing.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"BBS1"
_NONCE = 12


class SealError(ValueError):
    """Not a sealed value, or sealed with another key."""


class Sealer:
    def __init__(self, secret: str | bytes) -> None:
        material = secret.encode() if isinstance(secret, str) else secret
        # Any configured text becomes a 256-bit key; the text itself is never used as the key.
        self._aead = AESGCM(hashlib.sha256(b"backbone-dead-letters\0" + material).digest())

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return MAGIC + nonce + self._aead.encrypt(nonce, data, MAGIC)

    def unseal(self, sealed: bytes) -> bytes:
        if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + _NONCE + 16:
            raise SealError("not a sealed value")
        nonce = sealed[len(MAGIC) : len(MAGIC) + _NONCE]
        try:
            return self._aead.decrypt(nonce, sealed[len(MAGIC) + _NONCE :], MAGIC)
        except InvalidTag:
            raise SealError("sealed with another key, or altered") from None
