"""The portal links' port: a project's links (:mod:`hookcast.domain.portal_links`), kept by
the store (:mod:`hookcast.store.portal_links`)."""

from __future__ import annotations

from typing import Protocol

from hookcast.domain.models import Endpoint
from hookcast.domain.paging import Page, PageRequest
from hookcast.domain.portal_links import PortalLink


class PortalLinks(Protocol):
    async def create_portal_link(self, link: PortalLink) -> None: ...

    async def get_portal_link(self, project_id: str, link_id: str) -> PortalLink | None:
        """The project's link (None when there is none, or it was revoked)."""
        ...

    async def find_portal_link(self, mask: str) -> PortalLink | None:
        """The link whose current token has this mask, revoked or not (authentication)."""
        ...

    async def list_portal_links(
        self, project_id: str, owner_id: str | None, q: str | None, page: PageRequest
    ) -> Page[PortalLink]:
        """The project's links not revoked, of *owner_id* when given, whose name contains
        *q* when given."""
        ...

    async def update_portal_link(self, link: PortalLink) -> None:
        """Write the link's fields (not its token, unless its token was voided: an
        empty hash); 404 when it is gone or revoked."""
        ...

    async def set_portal_token(self, link: PortalLink) -> PortalLink | None:
        """Replace the link's token by *link*'s (mask, hash, expiry); None when the link
        is gone or revoked."""
        ...

    async def revoke_portal_link(
        self, project_id: str, link_id: str, now_us: int
    ) -> PortalLink | None:
        """Revoke a link: None when there is none (or it was revoked already)."""
        ...

    async def delete_portal_links(self, project_id: str) -> int:
        """Remove a deleted project's links."""
        ...

    async def owner_endpoints(
        self, project_id: str, owner_id: str, limit: int
    ) -> tuple[int, list[Endpoint]]:
        """How many endpoints the owner has in the project, and the newest *limit*."""
        ...
