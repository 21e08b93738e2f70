"""The portal links' store (:class:`hookcast.domain.ports.portal_links.PortalLinks`), for
both dialects, on the same :class:`~hookcast.store.db.Database` as the records.

A revoked link keeps its row (its token then answers "revoked", not "unknown") but is
gone from every read but :meth:`PortalLinkStore.find_portal_link`. A token is replaced
by one single-row UPDATE, and updating a link's other fields never writes its token, so
an update racing a refresh cannot bring a voided token back.
"""

from __future__ import annotations

from typing import Any

from hookcast.domain.errors import NotFoundError
from hookcast.domain.models import Endpoint
from hookcast.domain.paging import Page, PageRequest
from hookcast.domain.portal_links import AuthType, PortalLink
from hookcast.store.db import Database, Row, Tx
from hookcast.store.records import paged
from hookcast.store.rows import ENDPOINT, Mapping, dumps, loads


def _load(r: Row) -> PortalLink:
    return PortalLink(
        id=r[0],
        project_id=r[1],
        name=r[2],
        owner_id=r[3],
        can_manage_endpoint=bool(r[4]),
        auth_type=AuthType(r[5]),
        endpoints=tuple(loads(r[6]) or ()),
        token_mask=r[7],
        token_hash=r[8],
        token_expires_at_us=r[9],
        revoked_at_us=r[10],
        created_at_us=r[11],
        updated_at_us=r[12],
    )


def _dump(link: PortalLink) -> tuple[Any, ...]:
    return (
        link.id,
        link.project_id,
        link.name,
        link.owner_id,
        link.can_manage_endpoint,
        link.auth_type.value,
        dumps(list(link.endpoints)),
        link.token_mask,
        link.token_hash,
        link.token_expires_at_us,
        link.revoked_at_us,
        link.created_at_us,
        link.updated_at_us,
    )


PORTAL_LINK = Mapping[PortalLink](
    "portal_links",
    (
        "id",
        "project_id",
        "name",
        "owner_id",
        "can_manage_endpoint",
        "auth_type",
        "endpoints",
        "token_mask",
        "token_hash",
        "token_expires_at_us",
        "revoked_at_us",
        "created_at_us",
        "updated_at_us",
    ),
    _load,
    _dump,
)

_LIVE = "id = :id AND project_id = :p AND revoked_at_us IS NULL"


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PortalLinkStore:
    """A project's portal links, in the ``portal_links`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_portal_link(self, link: PortalLink) -> None:
        await self.db.write(lambda tx: tx.run(PORTAL_LINK.insert, **PORTAL_LINK.args(link)))

    async def get_portal_link(self, project_id: str, link_id: str) -> PortalLink | None:
        async def run(tx: Tx) -> PortalLink | None:
            row = await tx.row(
                f"SELECT {PORTAL_LINK.select} FROM portal_links WHERE {_LIVE}",
                id=link_id,
                p=project_id,
            )
            return None if row is None else _load(row)

        return await self.db.read(run)

    async def find_portal_link(self, mask: str) -> PortalLink | None:
        async def run(tx: Tx) -> PortalLink | None:
            row = await tx.row(
                f"SELECT {PORTAL_LINK.select} FROM portal_links WHERE token_mask = :mask",
                mask=mask,
            )
            return None if row is None else _load(row)

        return await self.db.read(run)

    async def list_portal_links(
        self, project_id: str, owner_id: str | None, q: str | None, page: PageRequest
    ) -> Page[PortalLink]:
        where = ["project_id = :project", "revoked_at_us IS NULL"]
        args: dict[str, Any] = {"project": project_id}
        if owner_id:
            where.append("owner_id = :owner")
            args["owner"] = owner_id
        if q:
            where.append("name LIKE :q ESCAPE '\\'")
            args["q"] = _like(q)
        return await self.db.read(lambda tx: paged(tx, PORTAL_LINK, where, args, page))

    async def update_portal_link(self, link: PortalLink) -> None:
        # the token's columns are written only to void it (an empty hash matches nothing)
        void = ", token_hash = '', token_expires_at_us = :expires" if not link.token_hash else ""

        async def run(tx: Tx) -> None:
            changed = await tx.run(
                "UPDATE portal_links SET name = :name, owner_id = :owner, "
                "can_manage_endpoint = :manage, auth_type = :auth_type, "
                f"endpoints = :endpoints, updated_at_us = :now{void} WHERE {_LIVE}",
                name=link.name,
                owner=link.owner_id,
                manage=link.can_manage_endpoint,
                auth_type=link.auth_type.value,
                endpoints=dumps(list(link.endpoints)),
                now=link.updated_at_us,
                id=link.id,
                p=link.project_id,
                expires=link.token_expires_at_us,
            )
            if not changed:
                raise NotFoundError("Resource not found")

        await self.db.write(run)

    async def set_portal_token(self, link: PortalLink) -> PortalLink | None:
        async def run(tx: Tx) -> PortalLink | None:
            row = await tx.row(
                "UPDATE portal_links SET token_mask = :mask, token_hash = :hash, "
                f"token_expires_at_us = :expires, updated_at_us = :now WHERE {_LIVE} "
                f"RETURNING {PORTAL_LINK.select}",
                mask=link.token_mask,
                hash=link.token_hash,
                expires=link.token_expires_at_us,
                now=link.updated_at_us,
                id=link.id,
                p=link.project_id,
            )
            return None if row is None else _load(row)

        return await self.db.write(run)

    async def revoke_portal_link(
        self, project_id: str, link_id: str, now_us: int
    ) -> PortalLink | None:
        async def run(tx: Tx) -> PortalLink | None:
            row = await tx.row(
                "UPDATE portal_links SET revoked_at_us = :now, updated_at_us = :now "
                f"WHERE {_LIVE} RETURNING {PORTAL_LINK.select}",
                now=now_us,
                id=link_id,
                p=project_id,
            )
            return None if row is None else _load(row)

        return await self.db.write(run)

    async def delete_portal_links(self, project_id: str) -> int:
        return await self.db.write(
            lambda tx: tx.run("DELETE FROM portal_links WHERE project_id = :p", p=project_id)
        )

    async def owner_endpoints(
        self, project_id: str, owner_id: str, limit: int
    ) -> tuple[int, list[Endpoint]]:
        async def run(tx: Tx) -> tuple[int, list[Endpoint]]:
            count = await tx.value(
                "SELECT COUNT(*) FROM endpoints WHERE project_id = :p AND owner_id = :o",
                p=project_id,
                o=owner_id,
            )
            rows = await tx.rows(
                f"SELECT {ENDPOINT.select} FROM endpoints WHERE project_id = :p "
                "AND owner_id = :o ORDER BY id DESC LIMIT :limit",
                p=project_id,
                o=owner_id,
                limit=limit,
            )
            return int(count or 0), ENDPOINT.all(rows)

        return await self.db.read(run)
