"""Who is calling, and may they do this here? And are they calling too often?

``Authorization: Bearer <key>``. Verified keys (and refused ones) are cached for a second,
so a revoked key stops working within that second on every API process.

A portal-link token (``Bearer PRT.…``) is a principal scoped to its link's project and
``owner_id`` (:class:`PortalScope`). Every route is refused to it (403) unless the route
says otherwise when it authorizes (:class:`PortalAccess`); a route that lets it in applies
its owner scope through :mod:`hookcast.api.scope`.

The per-key rate limit (``HOOKCAST_API_RATE_LIMIT`` requests per second, bursts of twice
that) is a GCRA bucket per key held in memory: each API process enforces it on its own,
so N processes behind a balancer let a key through up to N times the limit.
"""

from __future__ import annotations

import enum
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from hookcast.domain.errors import (
    AuthenticationError,
    HookcastError,
    NotFoundError,
    PermissionDeniedError,
)
from hookcast.domain.keys import PORTAL_PREFIX, hash_key, mask_of, matches
from hookcast.domain.limits import Bucket, take
from hookcast.domain.models import ApiKey, KeyRole, Project
from hookcast.domain.portal_links import token_problem
from hookcast.domain.ports import Catalog
from hookcast.domain.ports.portal_links import PortalLinks


def _now_us() -> int:
    return time.time_ns() // 1000


_CACHE_TTL_S = 1.0
_CACHE_MAX = 10_000
#: the bucket of the configured admin key (it has no row, so no id)
_ADMIN_BUCKET = "instance-admin"


class RateLimitedError(HookcastError):
    """429: the key sent more requests than its rate allows; retry after some seconds."""

    status_code = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("exceeded rate limit")
        self.retry_after_s = retry_after_s


class Permission(enum.Enum):
    READ = "read"
    PUBLISH = "publish"
    MANAGE = "manage"
    BROADCAST = "broadcast"


class PortalAccess(enum.Enum):
    """What a route lets a portal token do: nothing (the default: a route that does not
    say is refused to portal tokens), read its owner's resources, or manage them (when
    its link has ``can_manage_endpoint``)."""

    NONE = "none"
    READ = "read"
    MANAGE = "manage"


@dataclass(frozen=True, slots=True)
class PortalScope:
    """What a portal token may see: its link's project and owner."""

    link_id: str
    project_id: str
    owner_id: str
    can_manage_endpoint: bool
    expires_at_us: int | None


_ROLE_GRANTS = {
    KeyRole.VIEWER: {Permission.READ},
    KeyRole.PUBLISHER: {Permission.READ, Permission.PUBLISH},
    KeyRole.ADMIN: {Permission.READ, Permission.PUBLISH, Permission.MANAGE},
    KeyRole.INSTANCE_ADMIN: {Permission.READ, Permission.PUBLISH, Permission.MANAGE},
}


@dataclass(frozen=True, slots=True)
class Principal:
    key: ApiKey | None  # None for the configured admin key and for portal tokens
    is_instance_admin: bool
    portal: PortalScope | None = None

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key.id

    @property
    def owner_scope(self) -> str | None:
        """The only ``owner_id`` this caller sees (a portal token's), or None: all."""
        return None if self.portal is None else self.portal.owner_id

    @property
    def bucket(self) -> str:
        """Whose rate limit a request of this caller counts against."""
        if self.portal is not None:
            return f"portal-link\x1f{self.portal.link_id}"
        return self.key_id or _ADMIN_BUCKET

    def may(self, permission: Permission) -> bool:
        """What a key's role grants (a portal token: nothing: see :class:`PortalAccess`)."""
        if self.is_instance_admin:
            return True
        if self.key is None or self.portal is not None:
            return False
        if permission is Permission.BROADCAST:
            return self.key.can_broadcast and Permission.PUBLISH in _ROLE_GRANTS[self.key.role]
        return permission in _ROLE_GRANTS[self.key.role]


class Authenticator:
    def __init__(
        self,
        store: Catalog,
        admin_api_key: str,
        *,
        rate_limit: int = 0,
        portal_links: PortalLinks | None = None,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        """*rate_limit*: requests per second per key (bursts of twice that); 0 = off.
        Without *portal_links*, portal tokens are refused. *clock*: microseconds since the
        epoch, for expiry."""
        self._store = store
        self._portal_links = portal_links
        self.clock = clock
        self._admin_hash = hash_key(admin_api_key) if admin_api_key else ""
        # token -> (until, the principal or why the token was refused)
        self._keys: dict[str, tuple[float, Principal | str]] = {}
        self._projects: dict[str, tuple[float, Project]] = {}
        self._rate = max(rate_limit, 0)
        self._buckets: dict[str, Bucket] = {}

    def forget_project(self, project_id: str) -> None:
        self._projects.pop(project_id, None)

    def forget_key(self, key_id: str) -> None:
        """Drop a (revoked) key from this process's cache at once."""
        for token, (_, found) in list(self._keys.items()):
            if isinstance(found, Principal) and found.key_id == key_id:
                del self._keys[token]

    def forget_portal_link(self, link_id: str) -> None:
        """Drop a (revoked, refreshed or changed) portal link's tokens from this process's
        cache at once; other API processes follow within their one-second cache."""
        for token, (_, found) in list(self._keys.items()):
            if isinstance(found, Principal) and found.portal and found.portal.link_id == link_id:
                del self._keys[token]

    async def principal(self, request: web.Request) -> Principal:
        token = _bearer(request.headers.get("Authorization", ""))
        now = time.monotonic()
        cached = self._keys.get(token)
        if cached is None or cached[0] <= now:
            try:
                found: Principal | str = await self._verify(token)
            except AuthenticationError as exc:
                found = exc.message
            if len(self._keys) >= _CACHE_MAX:
                self._keys.clear()
            cached = (now + _CACHE_TTL_S, found)
            self._keys[token] = cached
        if isinstance(cached[1], str):
            raise AuthenticationError(cached[1])
        portal = cached[1].portal
        expires = None if portal is None else portal.expires_at_us
        if expires is not None and expires <= self.clock():  # expired while cached
            raise AuthenticationError("authorization failed: the portal token has expired")
        return cached[1]

    async def _verify(self, token: str) -> Principal:
        if self._admin_hash and hmac.compare_digest(hash_key(token), self._admin_hash):
            return Principal(None, True)
        if token.startswith(PORTAL_PREFIX + "."):
            return await self._verify_portal(token)
        mask = mask_of(token)
        found = await self._store.find_api_key(mask) if mask else None
        if found is None and mask:
            # a well-formed key this server never made: most often one made by the CLI
            # against another database file
            raise AuthenticationError(_UNKNOWN_KEY)
        if found is None or not matches(token, found[1]):
            raise AuthenticationError("authorization failed")
        key = found[0]
        now_us = self.clock()
        if key.revoked_at_us is not None:
            raise AuthenticationError("authorization failed: the key was revoked")
        if key.expires_at_us is not None and key.expires_at_us <= now_us:
            raise AuthenticationError("authorization failed: the key has expired")
        return Principal(key, key.role is KeyRole.INSTANCE_ADMIN)

    async def _verify_portal(self, token: str) -> Principal:
        mask = mask_of(token, PORTAL_PREFIX)
        link = None
        if mask and self._portal_links is not None:
            link = await self._portal_links.find_portal_link(mask)
        if link is None or not matches(token, link.token_hash):
            raise AuthenticationError("authorization failed")
        problem = token_problem(link, self.clock())
        if problem is not None:
            raise AuthenticationError(f"authorization failed: {problem}")
        scope = PortalScope(
            link.id,
            link.project_id,
            link.owner_id,
            link.can_manage_endpoint,
            link.token_expires_at_us,
        )
        return Principal(None, False, scope)

    async def throttle(self, request: web.Request) -> None:
        """Take one request from the caller's bucket, or raise :class:`RateLimitedError`.
        A missing or refused key passes here: the route answers it with 401."""
        if not self._rate or "Authorization" not in request.headers:
            return
        try:
            principal = await self.principal(request)
        except AuthenticationError:
            return
        name = principal.bucket
        now_us = time.monotonic_ns() // 1000
        # a burst of two seconds' worth, refilled at the rate
        bucket, retry_at_us = take(self._buckets.get(name, Bucket()), 2 * self._rate, 2, now_us)
        if retry_at_us is not None:
            raise RateLimitedError(max(1, math.ceil((retry_at_us - now_us) / 1_000_000)))
        if len(self._buckets) >= _CACHE_MAX and name not in self._buckets:
            # full buckets are the same as absent ones
            self._buckets = {k: b for k, b in self._buckets.items() if b.tat_us > now_us}
        self._buckets[name] = bucket

    async def project(self, project_id: str) -> Project:
        now = time.monotonic()
        cached = self._projects.get(project_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        project = await self._store.get_project(project_id)
        if project is None:
            raise NotFoundError("project not found")
        self._projects[project_id] = (now + _CACHE_TTL_S, project)
        return project

    async def authorize(
        self,
        request: web.Request,
        permission: Permission,
        portal: PortalAccess = PortalAccess.NONE,
    ) -> tuple[Principal, Project]:
        """The caller and the project of the URL, or 401/403/404. A key needs
        *permission*; a portal token is let in as far as *portal* says (and then sees only
        its owner's resources: :mod:`hookcast.api.scope`)."""
        principal = await self.principal(request)
        project_id = request.match_info["project_id"]
        if principal.portal is not None:
            if principal.portal.project_id != project_id:
                raise NotFoundError("project not found")
            project = await self.project(project_id)
            if portal is PortalAccess.NONE:
                raise PermissionDeniedError("a portal token may not use this route")
            if portal is PortalAccess.MANAGE and not principal.portal.can_manage_endpoint:
                raise PermissionDeniedError("this portal link may not manage endpoints")
            return principal, project
        if not principal.is_instance_admin:
            assert principal.key is not None
            if principal.key.project_id != project_id:
                # never reveal whether another project exists
                raise NotFoundError("project not found")
        project = await self.project(project_id)
        if not principal.may(permission):
            raise PermissionDeniedError(_denied(permission, project_id))
        return principal, project

    async def require_instance_admin(self, request: web.Request) -> Principal:
        principal = await self.principal(request)
        if not principal.is_instance_admin:
            raise PermissionDeniedError("this route needs an instance admin key")
        return principal


_UNKNOWN_KEY = (
    "authorization failed: this server has no such key. A key belongs to the database it"
    " was created in: if `hookcast project create` or `hookcast apikey create` made it,"
    " check that they used the server's database (--database-url or HOOKCAST_DATABASE_URL)"
)


def _denied(permission: Permission, project_id: str) -> str:
    if permission is Permission.BROADCAST:
        return (
            "this key lacks the broadcast permission, which is granted to a key explicitly:"
            f" create one with `hookcast apikey create --project {project_id} --broadcast`"
        )
    return f"this key's role lacks the {permission.value} permission"


def _bearer(header: str) -> str:
    parts = header.split(" ")
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
        raise AuthenticationError("Authentication required")
    return parts[1]
