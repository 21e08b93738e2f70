"""API keys: ``CO.<mask>.<secret>`` (Convoy's shape), and portal-link tokens of the same
shape, ``PRT.<mask>.<secret>``. Only a SHA-256 of the whole key is stored; the mask finds
the row. Keys carry 256 bits of randomness, so a fast hash is as safe as a slow one here."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

PREFIX = "CO"
#: portal-link tokens (Convoy's ``PRT.``)
PORTAL_PREFIX = "PRT"
_MASK_BYTES = 10
_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    token: str  # shown once
    mask: str
    key_hash: str


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()


def generate_key(randbytes: Callable[[int], bytes], prefix: str = PREFIX) -> GeneratedKey:
    mask = _b32(randbytes(_MASK_BYTES))
    secret = base64.urlsafe_b64encode(randbytes(_SECRET_BYTES)).decode().rstrip("=")
    token = f"{prefix}.{mask}.{secret}"
    return GeneratedKey(token, mask, hash_key(token))


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mask_of(token: str, prefix: str = PREFIX) -> str | None:
    """The mask of a well-formed key (of *prefix*), or None."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2]:
        return None
    return parts[1]


def matches(token: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_key(token), key_hash)
