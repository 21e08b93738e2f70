"""Who is calling, and may they do this here? And are they calling too often?

``Authorization: Bearer <key>``. Verified keys (and refused ones) are cached for a second,
so a revoked key stops working within that second on every API process.

The per-key rate limit (``HOOKCAST_API_RATE_LIMIT`` requests per second, bursts of twice
that) is a GCRA bucket per key held in memory: each API process enforces it on its own,
so N processes behind a balancer let a key through up to N times the limit.
"""

from __future__ import annotations

import enum
import hmac
import math
import time
from dataclasses import dataclass

from aiohttp import web

from hookcast.domain.errors import (
    AuthenticationError,
    HookcastError,
    NotFoundError,
    PermissionDeniedError,
)
from hookcast.domain.keys import hash_key, mask_of, matches
from hookcast.domain.limits import Bucket, take
from hookcast.domain.models import ApiKey, KeyRole, Project
from hookcast.domain.ports import Catalog

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


_ROLE_GRANTS = {
    KeyRole.VIEWER: {Permission.READ},
    KeyRole.PUBLISHER: {Permission.READ, Permission.PUBLISH},
    KeyRole.ADMIN: {Permission.READ, Permission.PUBLISH, Permission.MANAGE},
    KeyRole.INSTANCE_ADMIN: {Permission.READ, Permission.PUBLISH, Permission.MANAGE},
}


@dataclass(frozen=True, slots=True)
class Principal:
    key: ApiKey | None  # None for the configured admin key
    is_instance_admin: bool

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key.id

    def may(self, permission: Permission) -> bool:
        if self.is_instance_admin:
            return True
        assert self.key is not None
        if permission is Permission.BROADCAST:
            return self.key.can_broadcast and Permission.PUBLISH in _ROLE_GRANTS[self.key.role]
        return permission in _ROLE_GRANTS[self.key.role]


class Authenticator:
    def __init__(self, store: Catalog, admin_api_key: str, *, rate_limit: int = 0) -> None:
        """*rate_limit*: requests per second per key (bursts of twice that); 0 = off."""
        self._store = store
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
        return cached[1]

    async def _verify(self, token: str) -> Principal:
        if self._admin_hash and hmac.compare_digest(hash_key(token), self._admin_hash):
            return Principal(None, True)
        mask = mask_of(token)
        found = await self._store.find_api_key(mask) if mask else None
        if found is None and mask:
            # a well-formed key this server never made: most often one made by the CLI
            # against another database file
            raise AuthenticationError(_UNKNOWN_KEY)
        if found is None or not matches(token, found[1]):
            raise AuthenticationError("authorization failed")
        key = found[0]
        now_us = time.time_ns() // 1000
        if key.revoked_at_us is not None:
            raise AuthenticationError("authorization failed: the key was revoked")
        if key.expires_at_us is not None and key.expires_at_us <= now_us:
            raise AuthenticationError("authorization failed: the key has expired")
        return Principal(key, key.role is KeyRole.INSTANCE_ADMIN)

    async def throttle(self, request: web.Request) -> None:
        """Take one request from the caller's bucket, or raise :class:`RateLimitedError`.
        A missing or refused key passes here: the route answers it with 401."""
        if not self._rate or "Authorization" not in request.headers:
            return
        try:
            principal = await self.principal(request)
        except AuthenticationError:
            return
        name = principal.key_id or _ADMIN_BUCKET
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
        self, request: web.Request, permission: Permission
    ) -> tuple[Principal, Project]:
        """The caller and the project of the URL, or 401/403/404."""
        principal = await self.principal(request)
        project_id = request.match_info["project_id"]
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
