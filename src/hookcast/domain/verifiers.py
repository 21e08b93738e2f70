"""Is an incoming request really from the source's sender? Pure verifiers over the raw
request (body bytes, headers, query), the clock passed in.

A source's ``verifier`` (Convoy's ``{type, hmac, basic_auth, api_key}``) and its
``provider`` are compiled once by :func:`build_verifier` (a bad config is a
:class:`ValidationError` naming the field), then :func:`verify` answers ``None`` (let it
in) or why the request is refused. Every comparison of a secret is constant-time
(:func:`hmac.compare_digest`); no secret is ever put in a reason.

* ``noop``: everything passes.
* ``hmac``: ``header`` carries ``HMAC(secret, raw body)`` with ``hash`` SHA256 or SHA512,
  ``encoding`` hex or base64 (Convoy's; no timestamp, so no replay check).
* ``basic_auth``: ``Authorization: Basic base64(username:password)``.
* ``api_key``: ``header_name: header_value``, or ``Authorization: <scheme> <value>``
  when no header name is given (as Convoy).
* Provider presets (the secret in ``verifier.hmac.secret``): ``github``
  (``X-Hub-Signature-256: sha256=<hex>``), ``shopify`` (``X-Shopify-Hmac-SHA256``,
  base64), ``stripe`` (``Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`` over
  ``"{t}.{body}"``, at most ``tolerance`` seconds old or ahead) and
  ``standard_webhooks`` (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64> …`` over ``"{id}.{timestamp}.{body}"``, secret
  ``whsec_<base64>``, the same tolerance).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hookcast.domain.errors import ValidationError

#: how far a signed timestamp may be from now (Stripe's and Standard Webhooks' default)
DEFAULT_TOLERANCE_S = 300
MAX_SECRET_CHARS = 1_000


class Kind(enum.StrEnum):
    NOOP = "noop"
    HMAC = "hmac"
    BASIC_AUTH = "basic_auth"
    API_KEY = "api_key"
    GITHUB = "github"
    SHOPIFY = "shopify"
    STRIPE = "stripe"
    STANDARD_WEBHOOKS = "standard_webhooks"


#: ``provider`` values a source may name (Convoy's github and shopify, and two more)
PROVIDERS = frozenset({"github", "shopify", "stripe", "standard_webhooks"})
VERIFIER_TYPES = frozenset({"noop", "hmac", "basic_auth", "api_key"})
_HASHES = {"SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


@dataclass(frozen=True, slots=True)
class Verifier:
    """A compiled verifier. ``header`` is lower-case (requests' headers are looked up
    lower-cased); ``key`` is the HMAC key as bytes."""

    kind: Kind
    header: str = ""
    hash: str = "SHA256"
    encoding: str = "hex"
    key: bytes = b""
    username: str = ""
    password: str = ""
    value: str = ""
    tolerance_s: int = DEFAULT_TOLERANCE_S


@dataclass(frozen=True, slots=True)
class Request:
    """What a verifier reads of an incoming request: the raw body, the headers with
    lower-case names (repeated ones joined by ``", "``) and the query."""

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]


NOOP = Verifier(Kind.NOOP)


def _text(doc: Mapping[str, Any], name: str, where: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"verifier.{where}.{name}: required, a non-empty string")
    if len(value) > MAX_SECRET_CHARS:
        raise ValidationError(f"verifier.{where}.{name}: at most {MAX_SECRET_CHARS} characters")
    return value


def _part(verifier: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    doc = verifier.get(name)
    if not isinstance(doc, Mapping):
        raise ValidationError(f"verifier.{name}: required for a {name} verifier, an object")
    return doc


def _whsec_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationError(
            "verifier.hmac.secret: a Standard Webhooks secret is whsec_ followed by base64"
        ) from exc


def _tolerance(doc: Mapping[str, Any]) -> int:
    value = doc.get("tolerance", DEFAULT_TOLERANCE_S)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 86_400:
        raise ValidationError("verifier.hmac.tolerance: whole seconds from 1 to 86400")
    return value


def _preset(provider: str, verifier: Mapping[str, Any]) -> Verifier:
    doc = _part(verifier, "hmac")
    secret = _text(doc, "secret", "hmac")
    if provider == "github":
        return Verifier(Kind.GITHUB, "x-hub-signature-256", key=secret.encode())
    if provider == "shopify":
        return Verifier(
            Kind.SHOPIFY, "x-shopify-hmac-sha256", encoding="base64", key=secret.encode()
        )
    if provider == "stripe":
        return Verifier(
            Kind.STRIPE, "stripe-signature", key=secret.encode(), tolerance_s=_tolerance(doc)
        )
    return Verifier(
        Kind.STANDARD_WEBHOOKS,
        "webhook-signature",
        encoding="base64",
        key=_whsec_key(secret),
        tolerance_s=_tolerance(doc),
    )


def build_verifier(provider: str, verifier: Mapping[str, Any] | None) -> Verifier:
    """Compile a source's verifier; a *provider* preset wins over ``verifier.type`` (its
    secret is ``verifier.hmac.secret``). Raises :class:`ValidationError` naming the field."""
    verifier = verifier or {}
    if provider:
        if provider not in PROVIDERS:
            raise ValidationError(f"provider: one of {', '.join(sorted(PROVIDERS))}")
        return _preset(provider, verifier)
    kind = verifier.get("type") or "noop"
    if kind not in VERIFIER_TYPES:
        raise ValidationError(f"verifier.type: one of {', '.join(sorted(VERIFIER_TYPES))}")
    if kind == "noop":
        return NOOP
    if kind == "hmac":
        doc = _part(verifier, "hmac")
        algo = _text(doc, "hash", "hmac").upper()
        encoding = _text(doc, "encoding", "hmac").lower()
        if algo not in _HASHES:
            raise ValidationError("verifier.hmac.hash: SHA256 or SHA512")
        if encoding not in ("hex", "base64"):
            raise ValidationError("verifier.hmac.encoding: hex or base64")
        header = _text(doc, "header", "hmac").lower()
        secret = _text(doc, "secret", "hmac")
        return Verifier(Kind.HMAC, header, algo, encoding, secret.encode())
    if kind == "basic_auth":
        doc = _part(verifier, "basic_auth")
        user = _text(doc, "username", "basic_auth")
        return Verifier(
            Kind.BASIC_AUTH, password=_text(doc, "password", "basic_auth"), username=user
        )
    doc = _part(verifier, "api_key")
    name = doc.get("header_name") or ""
    if not isinstance(name, str):
        raise ValidationError("verifier.api_key.header_name: a string")
    return Verifier(Kind.API_KEY, name.lower(), value=_text(doc, "header_value", "api_key"))


def secret_headers(v: Verifier) -> frozenset[str]:
    """The (lower-case) request headers that carry this verifier's credentials: never
    stored on the event nor forwarded."""
    if v.kind is Kind.BASIC_AUTH or (v.kind is Kind.API_KEY and not v.header):
        return frozenset({"authorization"})
    if v.kind is Kind.API_KEY:
        return frozenset({v.header})
    return frozenset()


# ---------------------------------------------------------------- verification


def _digest(v: Verifier, payload: bytes) -> bytes:
    return hmac.new(v.key, payload, _HASHES[v.hash]).digest()


def _decode(value: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(value)
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None


def _same(given: bytes | None, expected: bytes) -> bool:
    return given is not None and hmac.compare_digest(given, expected)


def _hmac(v: Verifier, req: Request, prefix: str = "") -> str | None:
    value = req.headers.get(v.header, "").strip()
    if not value:
        return f"missing signature header {v.header}"
    if prefix:
        if not value.startswith(prefix):
            return f"signature header {v.header} does not start with {prefix!r}"
        value = value[len(prefix) :]
    if not _same(_decode(value, v.encoding), _digest(v, req.body)):
        return f"signature in {v.header} does not match the body"
    return None


def _timestamp_problem(ts: str, v: Verifier, now_s: int) -> str | None:
    if not ts.isdigit():
        return "signature timestamp is not a Unix time"
    if abs(now_s - int(ts)) > v.tolerance_s:
        return f"signature timestamp is more than {v.tolerance_s} s from now (replayed?)"
    return None


def _stripe(v: Verifier, req: Request, now_s: int) -> str | None:
    value = req.headers.get(v.header, "")
    if not value:
        return f"missing signature header {v.header}"
    ts, signatures = "", []
    for item in value.split(","):
        name, _, part = item.strip().partition("=")
        if name == "t":
            ts = part
        elif name == "v1":
            signatures.append(part)
    if not ts or not signatures:
        return f"{v.header} must hold t=<unix time> and at least one v1=<signature>"
    expected = _digest(v, ts.encode() + b"." + req.body)
    if not any(_same(_decode(s, "hex"), expected) for s in signatures):
        return f"no v1 signature in {v.header} matches the body"
    return _timestamp_problem(ts, v, now_s)


def _standard(v: Verifier, req: Request, now_s: int) -> str | None:
    msg_id = req.headers.get("webhook-id", "")
    ts = req.headers.get("webhook-timestamp", "")
    value = req.headers.get(v.header, "")
    if not (msg_id and ts and value):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    problem = _timestamp_problem(ts, v, now_s)
    if problem is not None:
        return problem
    expected = _digest(v, f"{msg_id}.{ts}.".encode() + req.body)
    for item in value.split():
        version, _, sig = item.partition(",")
        if version == "v1" and _same(_decode(sig, "base64"), expected):
            return None
    return "no v1 signature in webhook-signature matches the body"


def _basic(v: Verifier, req: Request) -> str | None:
    scheme, _, token = req.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "missing Authorization: Basic credentials"
    decoded = _decode(token.strip(), "base64")
    expected = f"{v.username}:{v.password}".encode()
    if not _same(decoded, expected):
        return "wrong basic auth credentials"
    return None


def _api_key(v: Verifier, req: Request) -> str | None:
    if v.header:
        given = req.headers.get(v.header, "")
    else:
        given = req.headers.get("authorization", "").partition(" ")[2].strip()
    if not given:
        return f"missing API key header {v.header or 'Authorization'}"
    if not hmac.compare_digest(given.encode(), v.value.encode()):
        return "wrong API key"
    return None


def verify(v: Verifier, req: Request, now_s: int) -> str | None:
    """None when *req* passes *v*; else why it does not (safe to show: no secret)."""
    if v.kind is Kind.NOOP:
        return None
    if v.kind is Kind.HMAC or v.kind is Kind.SHOPIFY:
        return _hmac(v, req)
    if v.kind is Kind.GITHUB:
        return _hmac(v, req, prefix="sha256=")
    if v.kind is Kind.STRIPE:
        return _stripe(v, req, now_s)
    if v.kind is Kind.STANDARD_WEBHOOKS:
        return _standard(v, req, now_s)
    if v.kind is Kind.BASIC_AUTH:
        return _basic(v, req)
    return _api_key(v, req)
