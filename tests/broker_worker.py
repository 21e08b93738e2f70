"""``python tests/broker_worker.py DATABASE_URL SOURCES_JSON COMMIT_PAUSE_S``: the broker
runner alone in a process, storing the given pub_sub sources' messages in the database
through the group commit (as ``hookcast worker`` does), until SIGTERM or kill -9.

COMMIT_PAUSE_S holds each commit that long before the consumer hears of it, so a kill -9
often lands between a commit and its acknowledgement: the messages come back and must
become duplicates, not second events.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from hookcast import bootstrap
from hookcast.api.ingest import IngestQueue
from hookcast.brokers import BrokerRunner
from hookcast.domain.ports import IngestResult, NewEvent, Records
from hookcast.logs import configure as configure_logs
from hookcast.settings import Settings


@dataclass(frozen=True)
class Source:
    id: str
    project_id: str
    name: str
    pub_sub: dict[str, Any]


class PausedCommits:
    def __init__(self, records: Records, pause_s: float) -> None:
        self._records = records
        self._pause_s = pause_s

    async def ingest(self, batch: Sequence[NewEvent]) -> list[IngestResult]:
        results = await self._records.ingest(batch)
        await asyncio.sleep(self._pause_s)  # committed, not yet acknowledged
        return results


async def main(database_url: str, sources_doc: str, pause_s: float) -> None:
    sources = [Source(**s) for s in orjson.loads(sources_doc)]
    settings = Settings(database_url=database_url)
    store = bootstrap.build_store(settings, api=False, worker=True)
    await store.open()
    ingest = IngestQueue(
        PausedCommits(store.records, pause_s),  # type: ignore[arg-type]
        max_batch=500,
        wait_ms=1.0,
        on_commit=lambda: None,
    )

    async def listed() -> list[Source]:
        return sources

    runner = BrokerRunner(
        listed, store.records, ingest, refresh_s=0.5, backoff_base_s=0.1, backoff_max_s=1.0
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, runner.request_stop)
    try:
        await runner.run()
    finally:
        await ingest.close()
        await store.close()


if __name__ == "__main__":
    configure_logs("INFO", "json")
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
