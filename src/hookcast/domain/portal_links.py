"""Portal links (Convoy's ``portal-links``): a bearer token for one customer of a project,
the endpoints' ``owner_id``, that sees only that owner's endpoints and what was sent to
them, and (when ``can_manage_endpoint``) manages those endpoints.

Pure decisions only: a new link and its token, a new token (``refresh_token``), what an
update changes, whether a token is still good, and how a token is shown once it is no
longer shown in full.

Tokens have the API keys' shape and storage (:mod:`hookcast.domain.keys`):
``PRT.<mask>.<secret>``, 256 random bits, only a SHA-256 of the whole token stored, the
mask finding the row. A link holds one token at a time: a new one voids the last. Tokens
of ``refresh_token`` links expire an hour after they are made; those of
``static_token`` links do not (until the link is revoked or its token refreshed).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hookcast.domain.errors import ValidationError
from hookcast.domain.keys import PORTAL_PREFIX, generate_key

#: how long a token of a ``refresh_token`` link is good for (Convoy: an hour)
REFRESH_TOKEN_TTL_US = 3600 * 1_000_000
MAX_NAME_CHARS = 200
MAX_OWNER_CHARS = 200
#: ids in the (deprecated) ``endpoints`` list
MAX_ENDPOINTS = 100
#: what a token is shown as once it is no longer shown in full
_HIDDEN = "*" * 8


class AuthType(enum.StrEnum):
    STATIC_TOKEN = "static_token"  # noqa: S105 (a kind of token, not one)
    REFRESH_TOKEN = "refresh_token"  # noqa: S105


@dataclass(frozen=True, slots=True)
class PortalLink:
    id: str
    project_id: str
    name: str
    owner_id: str
    can_manage_endpoint: bool
    auth_type: AuthType
    #: Convoy's deprecated ``endpoints``: stored and given back, never used for scoping
    endpoints: tuple[str, ...]
    token_mask: str
    #: SHA-256 of the current token; empty when the token was voided (matches nothing)
    token_hash: str = field(repr=False)
    token_expires_at_us: int | None
    revoked_at_us: int | None
    created_at_us: int
    updated_at_us: int


@dataclass(frozen=True, slots=True)
class PortalLinkFields:
    """What a create or an update says; None: not given (an update keeps the value)."""

    name: str | None = None
    owner_id: str | None = None
    can_manage_endpoint: bool | None = None
    auth_type: AuthType | None = None
    endpoints: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token of a link: shown once, in full; the link keeps its mask and hash."""

    token: str
    mask: str
    token_hash: str
    expires_at_us: int | None


def expiry(auth_type: AuthType, now_us: int) -> int | None:
    return now_us + REFRESH_TOKEN_TTL_US if auth_type is AuthType.REFRESH_TOKEN else None


def issue_token(auth_type: AuthType, now_us: int, randbytes: Callable[[int], bytes]) -> IssuedToken:
    key = generate_key(randbytes, PORTAL_PREFIX)
    return IssuedToken(key.token, key.mask, key.key_hash, expiry(auth_type, now_us))


def _text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise ValidationError(f"please provide the {what}")
    if not value.isprintable():
        raise ValidationError(f"{what} must not contain control characters")
    return value


def check_fields(fields: PortalLinkFields) -> PortalLinkFields:
    """*fields* with names checked (a given name or owner must not be blank)."""
    endpoints = fields.endpoints
    if endpoints is not None:
        endpoints = tuple(dict.fromkeys(e for e in endpoints if e))
    return replace(
        fields,
        name=_text(fields.name, "portal link name"),
        owner_id=_text(fields.owner_id, "owner_id"),
        endpoints=endpoints,
    )


def new_portal_link(
    project_id: str,
    fields: PortalLinkFields,
    link_id: str,
    now_us: int,
    randbytes: Callable[[int], bytes],
) -> tuple[PortalLink, IssuedToken]:
    fields = check_fields(fields)
    if fields.name is None:
        raise ValidationError("please provide the portal link name")
    if fields.owner_id is None:
        raise ValidationError("please provide the owner_id")
    auth_type = fields.auth_type or AuthType.STATIC_TOKEN
    issued = issue_token(auth_type, now_us, randbytes)
    link = PortalLink(
        id=link_id,
        project_id=project_id,
        name=fields.name,
        owner_id=fields.owner_id,
        can_manage_endpoint=bool(fields.can_manage_endpoint),
        auth_type=auth_type,
        endpoints=fields.endpoints or (),
        token_mask=issued.mask,
        token_hash=issued.token_hash,
        token_expires_at_us=issued.expires_at_us,
        revoked_at_us=None,
        created_at_us=now_us,
        updated_at_us=now_us,
    )
    return link, issued


def apply_update(
    link: PortalLink, fields: PortalLinkFields, now_us: int
) -> tuple[PortalLink, bool]:
    """The link after an update, and whether its current token must be voided: changing
    ``auth_type`` does (a static token must not outlive a switch to expiring ones, nor an
    expiring one pass as static); ``refresh_token`` then issues one of the new kind."""
    fields = check_fields(fields)
    auth_type = fields.auth_type or link.auth_type
    void = auth_type is not link.auth_type
    updated = replace(
        link,
        name=fields.name if fields.name is not None else link.name,
        owner_id=fields.owner_id if fields.owner_id is not None else link.owner_id,
        can_manage_endpoint=(
            fields.can_manage_endpoint
            if fields.can_manage_endpoint is not None
            else link.can_manage_endpoint
        ),
        auth_type=auth_type,
        endpoints=fields.endpoints if fields.endpoints is not None else link.endpoints,
        token_hash="" if void else link.token_hash,
        token_expires_at_us=now_us if void else link.token_expires_at_us,
        updated_at_us=now_us,
    )
    return updated, void


def with_token(link: PortalLink, issued: IssuedToken, now_us: int) -> PortalLink:
    return replace(
        link,
        token_mask=issued.mask,
        token_hash=issued.token_hash,
        token_expires_at_us=issued.expires_at_us,
        updated_at_us=now_us,
    )


def token_problem(link: PortalLink, now_us: int) -> str | None:
    """Why the link's token is refused now, or None when it is good."""
    if link.revoked_at_us is not None:
        return "the portal link was revoked"
    if link.token_expires_at_us is not None and link.token_expires_at_us <= now_us:
        return "the portal token has expired"
    return None


def masked(link: PortalLink) -> str:
    """The token as shown after its creation: its mask, never its secret."""
    return f"{PORTAL_PREFIX}.{link.token_mask}.{_HIDDEN}"
