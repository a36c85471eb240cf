"""The supplier port: what the engine asks of any supplier, and how a call fails.

An adapter speaks one supplier's API over httpx and maps it to this interface.
The failure types say what the executor must know to stay exactly-once at the
supplier: whether the supplier may have acted (``OutcomeUnknown``: never
repeat blindly, look the order up first) or certainly did not
(``Rejected``, ``RateLimited``, ``Unavailable``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from models.orders import Address, Customer, SupplierLine


@dataclass(frozen=True)
class PlacedOrder:
    supplier_order_id: str
    reference: str
    status: str  # the supplier's own status word, for the record


@dataclass(frozen=True)
class TrackingInfo:
    number: str
    carrier: str | None = None
    url: str | None = None
    delivered: bool = False


class SupplierError(Exception):
    """A supplier call that did not give an answer."""

    retryable: bool = True
    outcome_known: bool = True  # False: the supplier may have acted

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Rejected(SupplierError):
    """The supplier refused the request (4xx, a business error): it did not act."""

    retryable = False


class RateLimited(SupplierError):
    """429 or the API's own throttling answer: it did not act; retry after a while."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Unavailable(SupplierError):
    """The request never reached the supplier (connection refused, circuit open)."""


class OutcomeUnknown(SupplierError):
    """Timeout, connection reset, 5xx: the supplier may or may not have acted."""

    outcome_known = False


class SupplierOrders(Protocol):
    """Orders at one supplier account."""

    provider: str

    async def place_order(
        self, reference: str, lines: Sequence[SupplierLine], address: Address, customer: Customer
    ) -> PlacedOrder:
        """Place an order carrying our ``reference``; raise a SupplierError when it did not."""

    async def find_order(self, reference: str) -> PlacedOrder | None:
        """The order placed with our ``reference``, or None if the supplier has none."""

    async def get_tracking(self, order: PlacedOrder) -> TrackingInfo | None:
        """The parcel's tracking once the supplier has one."""

    async def cancel_order(self, order: PlacedOrder) -> bool:
        """Cancel an order not yet shipped; False when the supplier refuses (already shipped)."""

    async def aclose(self) -> None:
        """Close the HTTP client."""
