"""The worker's directory of endpoints: each one with its project's settings and what
sending to it needs (signing keys, header block), prepared once per version.

Every lease carries the versions (``updated_at``) of its endpoint and project as the claim
saw them; an entry is reloaded only when one of them changed, so a steady stream to the
same endpoints reads no endpoint row at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hookcast.domain.config import ProjectConfig
from hookcast.domain.headers import encode_header_block
from hookcast.domain.models import Endpoint
from hookcast.domain.outbound import Prepared
from hookcast.domain.ports.queue import Lease, Targets

#: a broadcast walks every endpoint once: entries are cheap to rebuild, memory is not
_MAX_ENTRIES = 10_000


@dataclass(slots=True)
class Entry:
    endpoint: Endpoint
    config: ProjectConfig
    #: (endpoint updated_at, project updated_at) it was built from
    versions: tuple[int, int]
    prepared: Prepared | None
    #: the static header lines, encoded and checked once
    static: bytes
    #: why nothing can be sent to it ("" when all is well)
    problem: str


def prepare(endpoint: Endpoint, config: ProjectConfig, versions: tuple[int, int]) -> Entry:
    try:
        prepared = Prepared(endpoint, config)
        static = encode_header_block(prepared.static)
    except ValueError as exc:  # a value stored before today's checks (UnsafeHeaderError too)
        return Entry(endpoint, config, versions, None, b"", f"not sent: {exc}")
    return Entry(endpoint, config, versions, prepared, static, "")


class Directory:
    def __init__(self, targets: Targets) -> None:
        self._targets = targets
        self._entries: dict[str, Entry] = {}

    def get(self, endpoint_id: str) -> Entry | None:
        return self._entries.get(endpoint_id)

    async def refresh(self, leases: Sequence[Lease]) -> None:
        """Load the entries these leases need that are missing or out of date (one read)."""
        entries = self._entries
        stale = set()
        for lease in leases:
            if lease.endpoint_version is None or lease.project_version is None:
                entries.pop(lease.endpoint_id, None)  # deleted
                continue
            entry = entries.get(lease.endpoint_id)
            if entry is None or entry.versions != (lease.endpoint_version, lease.project_version):
                stale.add(lease.endpoint_id)
        if not stale:
            return
        if len(entries) + len(stale) > _MAX_ENTRIES:
            entries.clear()
        for endpoint, config in await self._targets.load_targets(sorted(stale)):
            project_version = next(
                (le.project_version for le in leases if le.endpoint_id == endpoint.id), None
            )
            entries[endpoint.id] = prepare(
                endpoint, config, (endpoint.updated_at_us, project_version or 0)
            )

    def forget(self, endpoint_id: str) -> None:
        self._entries.pop(endpoint_id, None)
