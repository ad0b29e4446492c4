"""Pseudonyms of personal data: one keyed hash per scope, on a normalised form of the value, so one
person gets one pseudonym however a system wrote the value, and pseudonyms join only within a scope."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

_SEPARATORS = re.compile(r"[\s\-.()/]+")


def normalise_identity(value: str) -> str:
    """The form a personal value is hashed in, so that one person gives one pseudonym however a
    system wrote it: Unicode compatibility form, any script's digits as ASCII digits, trimmed and
    single-spaced, case-folded; a number-like value (NIK, phone) without separators, and an
    Indonesian phone number in its national form (+62 812... -> 0812...)."""
    if value.isascii():  # already in compatibility form, digits already ASCII: the common case, kept cheap
        text = value
    else:
        text = unicodedata.normalize("NFKC", value)
        text = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)
    text = " ".join(text.split()).casefold()
    compact = _SEPARATORS.sub("", text)
    if compact.lstrip("+").isdigit():
        return "0" + compact[3:] if compact.startswith("+62") else compact.lstrip("+")
    return text


def scope_secret(master: bytes, scope: str) -> bytes:
    """The pseudonymisation key of one scope (a domain, or a scope the catalog names), derived from
    the one master key: pseudonyms join within a scope and cannot be linked across scopes."""
    return hmac.new(master, b"pseudonym-scope\x00" + scope.encode(), hashlib.sha256).digest()


def pseudonymise(secret: bytes, value: str) -> str:
    """Keyed hash of the normalised value: stable across events and the systems of one scope (joins
    still work there), irreversible without the key."""
    keyed = _keyed.get(secret)
    if keyed is None:
        if len(_keyed) >= 64:
            _keyed.clear()
        keyed = _keyed[secret] = hmac.new(secret, digestmod=hashlib.sha256)
    mac = keyed.copy()  # the key's set-up done once per scope, not once per value
    mac.update(normalise_identity(value).encode())
    return mac.hexdigest()[:32]


# One keyed HMAC per scope secret, copied for each value (a handful of scopes per worker).
_keyed: dict[bytes, hmac.HMAC] = {}
