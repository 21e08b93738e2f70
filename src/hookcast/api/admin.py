"""Operator actions shared by the CLI and the API: projects and API keys."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pydantic

from hookcast.domain.config import ProjectConfig
from hookcast.domain.errors import NotFoundError, ValidationError
from hookcast.domain.ids import new_id
from hookcast.domain.keys import generate_key
from hookcast.domain.models import ApiKey, KeyRole, Project
from hookcast.domain.ports import Catalog


def _now_us() -> int:
    return time.time_ns() // 1000


async def create_api_key(
    store: Catalog,
    *,
    project_id: str | None,
    role: KeyRole,
    can_broadcast: bool = False,
    name: str = "",
    expires_at_us: int | None = None,
    clock: Callable[[], int] = _now_us,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> tuple[ApiKey, str]:
    """Make a key; returns it with its token, which is shown once and never stored."""
    if project_id is not None and await store.get_project(project_id) is None:
        raise NotFoundError(f"project {project_id} not found")
    if project_id is None and role is not KeyRole.INSTANCE_ADMIN:
        raise ValidationError("a key without a project must be an instance admin key")
    generated = generate_key(randbytes)
    key = ApiKey(
        id=new_id(),
        mask=generated.mask,
        name=name,
        role=role,
        project_id=project_id,
        can_broadcast=can_broadcast,
        expires_at_us=expires_at_us,
        revoked_at_us=None,
        created_at_us=clock(),
    )
    await store.create_api_key(key, generated.key_hash)
    return key, generated.token


def key_state(key: ApiKey, now_us: int) -> str:
    """``active``, ``revoked`` or ``expired``."""
    if key.revoked_at_us is not None:
        return "revoked"
    if key.expires_at_us is not None and key.expires_at_us <= now_us:
        return "expired"
    return "active"


async def list_api_keys(store: Catalog, project_id: str | None) -> list[ApiKey]:
    """The keys of a project (every key, instance admin keys too, when None). The rows
    hold no secret: only a hash of each key is stored, and it is not returned."""
    if project_id is not None and await store.get_project(project_id) is None:
        raise NotFoundError(f"project {project_id} not found")
    return await store.list_api_keys(project_id)


async def revoke_api_key(
    store: Catalog,
    key_id: str,
    *,
    project_id: str | None = None,
    clock: Callable[[], int] = _now_us,
) -> ApiKey:
    """Revoke a key (only one of *project_id* when given). API processes stop accepting
    it within their one-second key cache. Revoking twice is harmless."""
    key = await store.revoke_api_key(key_id, project_id, clock())
    if key is None:
        raise NotFoundError(f"API key {key_id} not found")
    return key


def build_config(
    overrides: dict[str, Any] | None, base: ProjectConfig | None = None
) -> ProjectConfig:
    """Merge *overrides* into *base* (or the defaults), one level of objects deep."""
    doc = (base or ProjectConfig()).model_dump(mode="json")
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    try:
        return ProjectConfig.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise ValidationError(f"invalid project config: {_describe(exc)}") from exc


def _describe(exc: pydantic.ValidationError) -> str:
    """``retention_hours: Input should be less than or equal to 87600; ...``"""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def create_project(
    store: Catalog,
    name: str,
    *,
    config: dict[str, Any] | None = None,
    project_type: str = "outgoing",
    can_broadcast: bool = False,
    clock: Callable[[], int] = _now_us,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> tuple[Project, ApiKey, str]:
    """A project and its first (admin) key; the key may broadcast only when
    *can_broadcast* grants it (``hookcast project create NAME --broadcast``)."""
    name = name.strip()
    if not name:
        raise ValidationError("please provide a project name")
    now = clock()
    project = Project(new_id(), name, project_type, build_config(config), now, now)
    await store.create_project(project)
    key, token = await create_api_key(
        store,
        project_id=project.id,
        role=KeyRole.ADMIN,
        can_broadcast=can_broadcast,
        name=f"{name} default key",
        clock=clock,
        randbytes=randbytes,
    )
    return project, key, token


async def projects_named(store: Catalog, name: str) -> list[Project]:
    """The projects called *name* (names need not be unique: ids tell projects apart)."""
    name = name.strip()
    return [p for p in await store.list_projects() if p.name == name]
