"""``hookcast outbox install``: the outbox table in the application's database."""

from __future__ import annotations

import asyncpg

from hookcast.outbox.table import OutboxTable


async def install(url: str, table: OutboxTable) -> bool:
    """Create *table* (schema, table, index) in the database at *url* if it is not there:
    idempotent, safe to run concurrently. Whether it was created now."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(table.install_lock())
            existed = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table.name)
            for statement in table.ddl():
                await conn.execute(statement)
        return not existed
    finally:
        await conn.close()
