"""The executor's PostgreSQL record: one ``supplier_orders`` row per idempotency key.

The row is the eventsourcing-style tracking record of the side effect: it is
claimed (``INSERT ... ON CONFLICT DO NOTHING``) before the supplier is called
and completed after, and its status says what a later attempt may do:

- ``CLAIMED`` / ``FAILED``: the supplier certainly has no order: place it.
- ``IN_FLIGHT`` / ``UNKNOWN``: a call was made and its outcome is not known
  (a crash during the call, a timeout, a 5xx): look the order up by our
  reference first; place it only if the supplier does not have it.
- ``PLACED``: done; report it again, never place again.
- ``CANCELLING``: the order was cancelled, and the supplier could not take the
  cancel when asked (down, 5xx, the lookup failed): never place; the
  executor's reconciler tries the cancel again (``claim_cancel_batch``).
- ``CANCELLED``: the order was cancelled; never place.

Work on one key is serialised across executors by a session-level advisory
lock held for the whole attempt (``locked``); a crashed executor's connection
closes and its lock goes with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from models.orders import SupplierOrderCommand


@dataclass(frozen=True)
class Row:
    idempotency_key: str
    order_id: str
    store_id: str
    group_id: str
    provider: str
    reference: str
    status: str
    supplier_order_id: str | None
    attempts: int
    last_error: str | None
    tracking_number: str | None
    delivered_at: datetime | None


_COLUMNS = (
    "idempotency_key, order_id, store_id, group_id, provider, reference, status, supplier_order_id, "
    "attempts, last_error, tracking_number, delivered_at"
)


def _row(record: asyncpg.Record) -> Row:  # extra columns (``inserted``) are ignored
    return Row(**{name: record[name] for name in Row.__dataclass_fields__})


class SupplierOrderRecords:
    """Statements on ``supplier_orders``, each a single round trip on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.unlocked = False  # the lock went with the last update (mark(..., unlock=True))

    async def claim(self, command: SupplierOrderCommand, status: str = "CLAIMED") -> tuple[Row, bool]:
        """The key's row, inserted with ``status`` first if it is new (a replay inserts
        nothing); and whether this call inserted it. A row inserted IN_FLIGHT counts
        its first attempt."""
        record = await self.conn.fetchrow(
            f"""
            WITH inserted AS (
              INSERT INTO supplier_orders
                (idempotency_key, order_id, store_id, group_id, provider, reference, status, attempts)
              VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $7 = 'IN_FLIGHT' THEN 1 ELSE 0 END)
              ON CONFLICT (idempotency_key) DO NOTHING
              RETURNING {_COLUMNS}, true AS inserted
            )
            SELECT * FROM inserted
            UNION ALL
            SELECT {_COLUMNS}, false AS inserted FROM supplier_orders WHERE idempotency_key = $1
            LIMIT 1
            """,
            command.idempotency_key,
            command.order_id,
            command.store_id,
            command.group_id,
            command.provider,
            command.reference,
            status,
        )
        assert record is not None
        return _row(record), bool(record["inserted"])

    async def current(self, key: str) -> Row | None:
        """The key's row as it is now (read under the key's lock)."""
        record = await self.conn.fetchrow(f"SELECT {_COLUMNS} FROM supplier_orders WHERE idempotency_key = $1", key)
        return None if record is None else _row(record)

    async def mark(
        self,
        key: str,
        status: str,
        *,
        supplier_order_id: str | None = None,
        error: str | None = None,
        count_attempt: bool = False,
        unlock: bool = False,
    ) -> None:
        """Set the row's status; with ``unlock``, release the key's lock in the same round trip."""
        update = """
            UPDATE supplier_orders
               SET status = $2,
                   supplier_order_id = COALESCE($3, supplier_order_id),
                   last_error = $4,
                   attempts = attempts + $5,
                   updated_at = now()
             WHERE idempotency_key = $1
        """
        args = (key, status, supplier_order_id, error, 1 if count_attempt else 0)
        if not unlock:
            await self.conn.execute(update, *args)
            return
        released = await self.conn.fetchval(
            f"WITH u AS ({update} RETURNING 1) SELECT pg_advisory_unlock(hashtextextended($1, 0)) FROM u", *args
        )
        self.unlocked = bool(released)


@asynccontextmanager
async def locked(pool: asyncpg.Pool, key: str) -> AsyncIterator[SupplierOrderRecords]:
    """A connection holding the key's advisory lock for the whole attempt."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
        rows = SupplierOrderRecords(conn)
        try:
            yield rows
        finally:
            if not rows.unlocked:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)


async def _claim_batch(pool: asyncpg.Pool, column: str, due: str, older_than_s: float, limit: int) -> list[Row]:
    """Up to ``limit`` rows matching ``due`` (``$1``: ``older_than_s``), oldest ``column`` first,
    with ``column`` set to now (``SKIP LOCKED``: several executors share the work)."""
    records = await pool.fetch(
        f"""
        UPDATE supplier_orders SET {column} = now()
         WHERE idempotency_key IN (
           SELECT idempotency_key FROM supplier_orders
            WHERE {due}
            ORDER BY {column} NULLS FIRST
            LIMIT $2
            FOR UPDATE SKIP LOCKED)
        RETURNING {_COLUMNS}
        """,
        older_than_s,
        limit,
    )
    return [_row(r) for r in records]


async def claim_tracking_batch(pool: asyncpg.Pool, older_than_s: float, limit: int) -> list[Row]:
    """Placed rows not yet delivered whose tracking was not checked for ``older_than_s``,
    marked checked now."""
    due = """status = 'PLACED' AND delivered_at IS NULL
              AND (tracking_checked_at IS NULL OR tracking_checked_at < now() - make_interval(secs => $1))"""
    return await _claim_batch(pool, "tracking_checked_at", due, older_than_s, limit)


async def claim_cancel_batch(pool: asyncpg.Pool, older_than_s: float, limit: int) -> list[Row]:
    """CANCELLING rows not tried for ``older_than_s``, marked tried now (``updated_at``)."""
    due = "status = 'CANCELLING' AND updated_at < now() - make_interval(secs => $1)"
    return await _claim_batch(pool, "updated_at", due, older_than_s, limit)


async def find(pool: asyncpg.Pool, provider: str, reference: str | None, supplier_order_id: str | None) -> Row | None:
    """The supplier order of ``provider`` with our ``reference`` or the supplier's id."""
    record = await pool.fetchrow(
        f"""
        SELECT {_COLUMNS} FROM supplier_orders
         WHERE provider = $1 AND ((reference = $2) OR (supplier_order_id = $3))
         ORDER BY (reference = $2) DESC NULLS LAST
         LIMIT 1
        """,
        provider,
        reference,
        supplier_order_id,
    )
    return None if record is None else _row(record)


async def record_tracking(
    pool: asyncpg.Pool, key: str, number: str, carrier: str | None, url: str | None, delivered: bool
) -> None:
    await pool.execute(
        """
        UPDATE supplier_orders
           SET tracking_number = $2, carrier = $3, tracking_url = $4,
               delivered_at = CASE WHEN $5 THEN COALESCE(delivered_at, now()) ELSE delivered_at END,
               updated_at = now()
         WHERE idempotency_key = $1
        """,
        key,
        number,
        carrier,
        url,
        delivered,
    )
