"""Carry out one supplier order command, exactly once at the supplier.

``Executor.run(command)`` returns the order event to publish (or None):

PLACE_SUPPLIER_ORDER, under the key's advisory lock (records.py):

1. claim the key's row: a new key is inserted IN_FLIGHT (committed before
   the call); PLACED already: report SUPPLIER_ORDER_PLACED again (a replayed
   or re-issued command never places twice);
2. a row left IN_FLIGHT or UNKNOWN by an earlier attempt: the supplier may
   have the order, so look it up by our reference first;
3. otherwise mark it IN_FLIGHT, call the supplier with our reference, and
   record the outcome (with the lock's release, in one round trip when placed):
   placed -> PLACED; certainly not placed (rejected, rate limited,
   unreachable) -> FAILED; not known (timeout, reset, 5xx) -> look it up at
   once, and if it is not there UNKNOWN (the next attempt looks again).

The events carry ids made from the key (``{key}:placed``,
``{key}:failed:{attempt}``), so a command handled twice publishes the same
event twice and the order machine keeps one.

CANCEL_SUPPLIER_ORDER marks the row CANCELLED (so no later placement happens)
and cancels the supplier's order when there is one. A cancel the supplier
cannot take now leaves the row CANCELLING (no placement passes it either) and
``retry_cancels``, run by the executor's reconciler loop, tries it again until
the supplier answers: the command itself is done and holds up nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import asyncpg

from connectors.fulfillment import records
from connectors.fulfillment.metrics import SUPPLIER_CALLS
from connectors.suppliers.base import (
    OutcomeUnknown,
    PlacedOrder,
    SupplierError,
    SupplierOrders,
)
from models.orders import (
    CommandType,
    OrderEvent,
    SupplierOrderCommand,
    SupplierOrderFailed,
    SupplierOrderPlaced,
)

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, pool: asyncpg.Pool, clients: dict[str, SupplierOrders]) -> None:
        self.pool = pool
        self.clients = clients

    async def run(self, command: SupplierOrderCommand) -> OrderEvent | None:
        client = self.clients.get(command.provider)
        if command.type is CommandType.CANCEL_SUPPLIER_ORDER:
            await self._cancel(command, client)
            return None
        if client is None:
            return self._failed(command, f"no supplier account configured for {command.provider}", retryable=False)
        async with records.locked(self.pool, command.idempotency_key) as rows:
            return await self._place(command, client, rows)

    # ------------------------------------------------------------------ #

    async def _place(
        self, command: SupplierOrderCommand, client: SupplierOrders, rows: records.SupplierOrderRecords
    ) -> OrderEvent:
        key = command.idempotency_key
        # New key (the usual case): inserted IN_FLIGHT, one round trip before the call.
        row, fresh = await rows.claim(command, status="IN_FLIGHT")
        if not fresh:
            if row.status == "PLACED":
                assert row.supplier_order_id is not None
                return self._placed(command, row.supplier_order_id)
            if row.status in ("CANCELLED", "CANCELLING"):
                return self._failed(command, "the order was cancelled before it was placed", retryable=False)
            if row.status in ("IN_FLIGHT", "UNKNOWN"):
                found = await self._find(command, client, rows)
                if found is not None:
                    return found
            await rows.mark(key, "IN_FLIGHT", count_attempt=True)
        try:
            placed = await client.place_order(
                command.reference, command.lines, command.shipping_address, command.customer
            )
        except OutcomeUnknown as exc:
            SUPPLIER_CALLS.labels(command.provider, "place", "UNKNOWN").inc()
            found = await self._find(command, client, rows, after=exc.reason)
            if found is not None:
                return found
            return self._failed(command, f"outcome unknown ({exc.reason}); not found at the supplier", retryable=True)
        except SupplierError as exc:
            SUPPLIER_CALLS.labels(command.provider, "place", type(exc).__name__.upper()).inc()
            await rows.mark(key, "FAILED", error=exc.reason)
            return self._failed(command, exc.reason, retryable=exc.retryable)
        SUPPLIER_CALLS.labels(command.provider, "place", "OK").inc()
        await rows.mark(key, "PLACED", supplier_order_id=placed.supplier_order_id, unlock=True)
        return self._placed(command, placed.supplier_order_id)

    async def _find(
        self,
        command: SupplierOrderCommand,
        client: SupplierOrders,
        rows: records.SupplierOrderRecords,
        after: str | None = None,
    ) -> OrderEvent | None:
        """Look the order up by our reference. The event to publish when that
        settles it (found, or the lookup itself failed); None: not there, place it."""
        key = command.idempotency_key
        try:
            found = await client.find_order(command.reference)
        except SupplierError as exc:
            SUPPLIER_CALLS.labels(command.provider, "find", type(exc).__name__.upper()).inc()
            reason = f"outcome unknown ({after or 'earlier attempt'}); lookup failed: {exc.reason}"
            await rows.mark(key, "UNKNOWN", error=reason)
            return self._failed(command, reason, retryable=True)
        SUPPLIER_CALLS.labels(command.provider, "find", "FOUND" if found else "NOT_FOUND").inc()
        if found is not None:
            await rows.mark(key, "PLACED", supplier_order_id=found.supplier_order_id)
            log.info("order %s found at %s as %s", key, command.provider, found.supplier_order_id)
            return self._placed(command, found.supplier_order_id)
        if after is not None:
            await rows.mark(key, "UNKNOWN", error=after)
        return None

    async def _cancel(self, command: SupplierOrderCommand, client: SupplierOrders | None) -> None:
        key = command.idempotency_key
        async with records.locked(self.pool, key) as rows:
            row, fresh = await rows.claim(command, status="CANCELLED")
            if fresh or row.status == "CANCELLED":
                return
            await self._cancel_at_supplier(rows, row, client)

    async def retry_cancels(self, older_than_s: float, limit: int = 100) -> int:
        """The reconciler of cancels: try again the CANCELLING rows not tried for
        ``older_than_s`` (the supplier could not take them when asked). Returns how
        many were tried."""
        tried = 0
        for claimed in await records.claim_cancel_batch(self.pool, older_than_s, limit):
            async with records.locked(self.pool, claimed.idempotency_key) as rows:
                row = await rows.current(claimed.idempotency_key)
                if row is None or row.status != "CANCELLING":
                    continue  # done meanwhile
                await self._cancel_at_supplier(rows, row, self.clients.get(row.provider))
                tried += 1
        return tried

    async def _cancel_at_supplier(
        self, rows: records.SupplierOrderRecords, row: records.Row, client: SupplierOrders | None
    ) -> None:
        """Cancel the supplier's order of a row that is not CANCELLED (under the key's lock).

        A cancel the supplier cannot take now (a retryable failure of the lookup or
        of the cancel) leaves the row CANCELLING, which no placement passes, for
        ``retry_cancels``: the command is done, and the commands after it on its
        partition are not held up while the supplier is down.
        """
        key = row.idempotency_key
        supplier_order_id = row.supplier_order_id
        unsure = row.status in ("IN_FLIGHT", "UNKNOWN") or (row.status == "CANCELLING" and supplier_order_id is None)
        if unsure and client is not None:
            try:
                found = await client.find_order(row.reference)
            except SupplierError as exc:
                log.warning("cancel of %s: lookup failed (%s)", key, exc.reason)
                if exc.retryable:
                    await rows.mark(key, "CANCELLING", error=f"cancel: lookup failed: {exc.reason}")
                elif row.status == "CANCELLING":  # no use trying again: as unknown as before
                    await rows.mark(key, "UNKNOWN", error=f"cancel: lookup failed: {exc.reason}")
                # else: the row stays as it is (a later PLACE still looks up first)
                return
            supplier_order_id = found.supplier_order_id if found else None
        if supplier_order_id is None:
            await rows.mark(key, "CANCELLED", error="cancelled before placement")
            return
        if client is None:
            log.error("cancel of %s: no supplier account for %s", key, row.provider)
            return
        placed = PlacedOrder(supplier_order_id=supplier_order_id, reference=row.reference, status="PLACED")
        try:
            done = await client.cancel_order(placed)
        except SupplierError as exc:
            SUPPLIER_CALLS.labels(row.provider, "cancel", type(exc).__name__.upper()).inc()
            log.warning("cancel of %s at %s failed: %s", key, row.provider, exc.reason)
            if exc.retryable:  # retry_cancels tries it again until the supplier answers
                await rows.mark(key, "CANCELLING", supplier_order_id=supplier_order_id,
                                error=f"cancel: {exc.reason}")
            elif row.status == "CANCELLING":  # refused for good: no use trying again
                await rows.mark(key, "PLACED", supplier_order_id=supplier_order_id, error=f"cancel: {exc.reason}")
            return
        SUPPLIER_CALLS.labels(row.provider, "cancel", "OK" if done else "REFUSED").inc()
        if done:
            await rows.mark(key, "CANCELLED", supplier_order_id=supplier_order_id, error="cancelled")
        else:
            log.error("supplier %s refused to cancel %s (%s): already shipped?", row.provider, key, supplier_order_id)
            if row.status == "CANCELLING":  # nothing to try again: the supplier has it, the poller watches it
                await rows.mark(key, "PLACED", supplier_order_id=supplier_order_id, error="cancel refused")

    # ------------------------------------------------------------------ #

    @staticmethod
    def _placed(command: SupplierOrderCommand, supplier_order_id: str) -> SupplierOrderPlaced:
        return SupplierOrderPlaced(
            event_id=f"{command.idempotency_key}:placed",
            order_id=command.order_id,
            store_id=command.store_id,
            occurred_at=datetime.now(timezone.utc),
            group_id=command.group_id,
            supplier_order_id=supplier_order_id,
            attempt=command.attempt,
        )

    @staticmethod
    def _failed(command: SupplierOrderCommand, error: str, retryable: bool) -> SupplierOrderFailed:
        return SupplierOrderFailed(
            event_id=f"{command.idempotency_key}:failed:{command.attempt}",
            order_id=command.order_id,
            store_id=command.store_id,
            occurred_at=datetime.now(timezone.utc),
            group_id=command.group_id,
            error=error[:2000],
            retryable=retryable,
            attempt=command.attempt,
        )
