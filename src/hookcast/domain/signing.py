"""Payload signatures: Convoy's ``X-Convoy-Signature`` and the Standard Webhooks headers.

Everything here runs once per delivery, so each function does the least it can: one
one-shot HMAC per secret and per signature version, and nothing cached at module level
that depends on a secret. Time and randomness come in as arguments; this module never
reads the clock or an entropy source on its own.

Convoy's two header forms:

* simple: the encoded HMAC of the body under the newest secret, e.g. ``9f2c...``;
* advanced: ``t=<unix seconds>,v1=<sig>,v1=<sig>,v2=<sig>``, where every signature covers
  ``"<t>," + body``, the ``vN`` label is the 1-based position of the signature version in
  the project's list, and each version carries one value per live secret (so a receiver
  keeps verifying while secrets rotate).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Sequence
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HashName = Literal["SHA256", "SHA512"]
Encoding = Literal["hex", "base64"]

_DIGEST_NAMES: dict[str, str] = {"SHA256": "sha256", "SHA512": "sha512"}
_WHSEC_PREFIX = "whsec_"


def _mac(key: bytes, message: bytes, hash_name: HashName) -> bytes:
    return hmac.digest(key, message, _DIGEST_NAMES[hash_name])


def _encode(digest: bytes, encoding: Encoding) -> str:
    if encoding == "hex":
        return digest.hex()
    return base64.b64encode(digest).decode("ascii")


def _convoy_value(secret: str, message: bytes, hash_name: HashName, encoding: Encoding) -> str:
    return _encode(_mac(secret.encode("utf-8"), message, hash_name), encoding)


def _advanced_message(timestamp: int, payload: bytes) -> bytes:
    return b"%d," % timestamp + payload


def convoy_signature(
    payload: bytes,
    secrets: Sequence[str],
    *,
    timestamp: int,
    advanced: bool,
    versions: Sequence[tuple[HashName, Encoding]] = (("SHA256", "hex"),),
) -> str:
    """Build the value of Convoy's signature header for one delivery.

    ``secrets`` are the endpoint's live secrets, oldest first; each is used as an HMAC key
    through its UTF-8 bytes. In simple mode only the newest secret and the newest (last)
    version count, and ``timestamp`` is ignored. In advanced mode every version signs the
    timestamped body with every secret, versions outermost, secrets in the order given.
    Raises ``ValueError`` when there is no secret or no version to sign with.
    """
    if not secrets:
        raise ValueError("an endpoint needs at least one secret to sign a payload")
    if not versions:
        raise ValueError("at least one signature version is needed")
    if not advanced:
        hash_name, encoding = versions[-1]
        return _convoy_value(secrets[-1], payload, hash_name, encoding)
    message = _advanced_message(timestamp, payload)
    parts = [f"t={timestamp}"]
    for index, (hash_name, encoding) in enumerate(versions, start=1):
        label = f"v{index}="
        parts.extend(label + _convoy_value(s, message, hash_name, encoding) for s in secrets)
    return ",".join(parts)


def _parse_advanced(header_value: str) -> tuple[int, list[str]] | None:
    """Split an advanced header into its timestamp and its ``v1`` values, or None if the
    header is malformed (no timestamp, two timestamps, or a non-numeric one)."""
    timestamp: int | None = None
    v1_values: list[str] = []
    for part in header_value.split(","):
        label, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if label == "t":
            if timestamp is not None or not (value.isascii() and value.isdigit()):
                return None
            timestamp = int(value)
        elif label == "v1":
            v1_values.append(value)
    if timestamp is None:
        return None
    return timestamp, v1_values


def _matches_any(candidates: Sequence[str], expected: Sequence[str]) -> bool:
    """Constant-time comparison of every candidate against every expected value; the loop
    does not stop early, so timing reveals nothing about which one matched."""
    found = False
    for candidate in candidates:
        given = candidate.encode("utf-8", "replace")
        for value in expected:
            found |= hmac.compare_digest(given, value.encode("ascii"))
    return found


def verify_convoy_signature(
    payload: bytes,
    header_value: str,
    secrets: Sequence[str],
    *,
    now: int,
    tolerance: int = 300,
    advanced: bool,
    hash_name: HashName = "SHA256",
    encoding: Encoding = "hex",
) -> bool:
    """Check a Convoy signature header the way a receiving endpoint would.

    Any of ``secrets`` may have produced the signature (a receiver keeps its old secret
    while a rotation is under way). Advanced headers are accepted only when their
    timestamp lies within ``tolerance`` seconds of ``now``, in either direction, and one of
    their ``v1`` values matches; ``hash_name`` and ``encoding`` describe that ``v1``
    version. Malformed headers return False rather than raising. Raises ``ValueError``
    when ``secrets`` is empty, since nothing could ever verify.
    """
    if not secrets:
        raise ValueError("at least one secret is needed to verify a signature")
    if not advanced:
        expected = [_convoy_value(s, payload, hash_name, encoding) for s in secrets]
        return _matches_any([header_value.strip()], expected)
    parsed = _parse_advanced(header_value)
    if parsed is None:
        return False
    timestamp, v1_values = parsed
    if abs(now - timestamp) > tolerance or not v1_values:
        return False
    message = _advanced_message(timestamp, payload)
    expected = [_convoy_value(s, message, hash_name, encoding) for s in secrets]
    return _matches_any(v1_values, expected)


def standard_webhooks_key(secret: str) -> bytes:
    """Turn an endpoint secret into a Standard Webhooks HMAC key.

    A ``whsec_``-prefixed secret carries its key in standard base64 after the prefix (the
    padding may be left off); any other secret is used as its UTF-8 bytes. Raises
    ``ValueError`` when the base64 is invalid or the resulting key is empty.
    """
    if secret.startswith(_WHSEC_PREFIX):
        encoded = secret[len(_WHSEC_PREFIX) :]
        encoded += "=" * (-len(encoded) % 4)
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ValueError("the whsec_ secret is not valid base64") from exc
    else:
        key = secret.encode("utf-8")
    if not key:
        raise ValueError("an empty secret cannot sign anything")
    return key


def standard_webhooks_headers(
    msg_id: str, timestamp: int, payload: bytes, keys: Sequence[bytes]
) -> dict[str, str]:
    """The three Standard Webhooks headers for one message.

    Each key contributes one ``v1,<base64 HMAC-SHA256>`` entry over
    ``"<msg_id>.<timestamp>." + payload``; entries are separated by single spaces so a
    receiver holding any one of the keys can verify. Raises ``ValueError`` without keys.
    """
    if not keys:
        raise ValueError("at least one key is needed to sign a message")
    message = f"{msg_id}.{timestamp}.".encode() + payload
    signatures = " ".join(
        "v1," + base64.b64encode(_mac(key, message, "SHA256")).decode("ascii") for key in keys
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def generate_secret(randbytes: Callable[[int], bytes]) -> str:
    """A fresh Standard Webhooks style secret: ``whsec_`` and 32 random bytes in padded
    standard base64. The caller supplies the random source (``secrets.token_bytes`` in
    production, something fixed in tests)."""
    return _WHSEC_PREFIX + base64.b64encode(randbytes(32)).decode("ascii")


# ---------------------------------------------------------------- Standard Webhooks v1a

V1A_PRIVATE_PREFIX = "whsk_"
V1A_PUBLIC_PREFIX = "whpk_"


def is_ed25519_secret(secret: str) -> bool:
    return secret.startswith(V1A_PRIVATE_PREFIX)


def _ed25519_key(secret: str) -> Ed25519PrivateKey:
    raw = base64.b64decode(secret[len(V1A_PRIVATE_PREFIX) :])
    if len(raw) not in (32, 64):
        raise ValueError("an Ed25519 secret holds a 32-byte seed (and optionally its public key)")
    return Ed25519PrivateKey.from_private_bytes(raw[:32])


def generate_ed25519_secret(randbytes: Callable[[int], bytes]) -> str:
    """``whsk_`` + base64(seed ‖ public key), the form Svix and the spec use."""
    seed = randbytes(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return V1A_PRIVATE_PREFIX + base64.b64encode(seed + public).decode("ascii")


def ed25519_public_key(secret: str) -> str:
    """The ``whpk_`` public key receivers verify v1a signatures with."""
    public = _ed25519_key(secret).public_key().public_bytes_raw()
    return V1A_PUBLIC_PREFIX + base64.b64encode(public).decode("ascii")


def standard_webhooks_v1a(msg_id: str, timestamp: int, payload: bytes, secret: str) -> str:
    """One ``v1a,<base64 Ed25519 signature>`` entry over ``"<id>.<timestamp>." + payload``."""
    message = f"{msg_id}.{timestamp}.".encode() + payload
    return "v1a," + base64.b64encode(_ed25519_key(secret).sign(message)).decode("ascii")


# ---------------------------------------------------------------- prepared, per endpoint


class Signer:
    """Both signatures for one endpoint, with the keys derived once: each secret's HMAC
    state is prepared when the endpoint is loaded and copied per message (cheaper than
    keying a new HMAC every time). Signs exactly as :func:`convoy_signature` and
    :func:`standard_webhooks_headers` (plus v1a for Ed25519 secrets) do."""

    __slots__ = ("_advanced", "_convoy", "_ed25519", "_header", "_problem", "_std")

    def __init__(
        self,
        secrets: Sequence[tuple[str, int | None]],
        *,
        header: str,
        advanced: bool,
        versions: Sequence[tuple[HashName, Encoding]] = (("SHA256", "hex"),),
    ) -> None:
        """*secrets*: (value, expires_at_us or None), oldest first."""
        self._header = header
        self._advanced = advanced
        versions = list(versions) or [("SHA256", "hex")]
        if not advanced:
            versions = versions[-1:]
        # per secret: its expiry, its Convoy states (one per version), its Standard key state
        self._convoy: list[tuple[int | None, list[tuple[str, Any, Encoding]]]] = []
        self._std: list[tuple[int | None, Any]] = []
        self._ed25519: list[tuple[int | None, Ed25519PrivateKey]] = []
        self._problem = ""
        for value, expires in secrets:
            try:
                if is_ed25519_secret(value):
                    self._ed25519.append((expires, _ed25519_key(value)))
                    continue
                key = value.encode("utf-8")
                states = [
                    (f"v{i}=", hmac.new(key, digestmod=_DIGEST_NAMES[h]), e)
                    for i, (h, e) in enumerate(versions, start=1)
                ]
                self._convoy.append((expires, states))
                self._std.append(
                    (expires, hmac.new(standard_webhooks_key(value), digestmod="sha256"))
                )
            except (ValueError, binascii.Error) as exc:
                self._problem = f"an endpoint secret cannot sign: {exc}"

    def sign(self, msg_id: str, body: bytes, now_us: int) -> list[tuple[str, str]]:
        """The signature headers for *body*, by the secrets live at *now_us*. Raises
        ValueError when a secret is unusable."""
        if self._problem:
            raise ValueError(self._problem)
        now_s = now_us // 1_000_000
        headers: list[tuple[str, str]] = []
        signatures: list[str] = []
        convoy = [states for expires, states in self._convoy if expires is None or expires > now_us]
        if convoy:
            headers.append((self._header, self._convoy_value(convoy, body, now_s)))
            message = f"{msg_id}.{now_s}.".encode()
            for expires, state in self._std:
                if expires is None or expires > now_us:
                    mac = state.copy()
                    mac.update(message)
                    mac.update(body)
                    signatures.append("v1," + base64.b64encode(mac.digest()).decode("ascii"))
        for expires, key in self._ed25519:
            if expires is None or expires > now_us:
                message = f"{msg_id}.{now_s}.".encode() + body
                signatures.append("v1a," + base64.b64encode(key.sign(message)).decode("ascii"))
        if signatures:
            headers += [
                ("webhook-id", msg_id),
                ("webhook-timestamp", str(now_s)),
                ("webhook-signature", " ".join(signatures)),
            ]
        return headers

    def _convoy_value(
        self, live: list[list[tuple[str, Any, Encoding]]], body: bytes, now_s: int
    ) -> str:
        if not self._advanced:
            _, state, encoding = live[-1][0]
            mac = state.copy()
            mac.update(body)
            return _encode(mac.digest(), encoding)
        prefix = _advanced_message(now_s, b"")
        parts = [f"t={now_s}"]
        for index in range(len(live[0])):  # versions outermost, secrets in order
            for states in live:
                label, state, encoding = states[index]
                mac = state.copy()
                mac.update(prefix)
                mac.update(body)
                parts.append(label + _encode(mac.digest(), encoding))
        return ",".join(parts)
