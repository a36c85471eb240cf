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
from decimal import Decimal
from typing import Protocol

from models.freight import FreightOption
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


@dataclass(frozen=True)
class SupplierProduct:
    """What a supplier says of one product variant now (``fetch_products``).

    Money is ``Decimal`` (parsed at the edge from the supplier's string or
    number, never through a float). A product the supplier no longer has
    (not found, delisted, offline) is ONE entry with ``available=False``,
    ``stock=0``, ``source_variant_id=None``; its ``cost_price`` is None when
    the supplier gives no price for it (the only case it is None).
    ``freight_ref``: the id the supplier's freight quote takes for this variant
    (AliExpress's SKU id, CJ's vid), where the adapter quotes freight.
    """

    source_id: str
    source_variant_id: str | None
    available: bool
    stock: int
    cost_price: Decimal | None
    shipping_cost: Decimal
    currency: str
    title: str | None = None
    images: tuple[str, ...] = ()
    freight_ref: str | None = None

    def __post_init__(self) -> None:
        if self.stock < 0:
            raise ValueError("stock must be >= 0")
        if self.cost_price is None and self.available:
            raise ValueError("an available product needs a cost price")
        for value in (self.cost_price, self.shipping_cost):
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value < 0):
                raise ValueError(f"money must be a finite, non-negative Decimal, not {value!r}")

    @classmethod
    def gone(cls, source_id: str, currency: str, title: str | None = None) -> SupplierProduct:
        """The entry of a product the supplier no longer has."""
        return cls(source_id, None, False, 0, None, Decimal("0"), currency, title)


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


class SupplierCatalog(Protocol):
    """The products of one supplier account (read only)."""

    provider: str
    #: ids per call: the API's batch size; 1 where the API has no batch.
    max_batch: int

    async def fetch_products(self, source_ids: Sequence[str], country: str | None = None) -> list[SupplierProduct]:
        """One entry per variant of each product found; ONE ``available=False,
        stock=0`` entry for a product the supplier no longer has. Duplicates in
        ``source_ids`` are fetched once; the adapter splits the ids into calls
        of ``max_batch`` with bounded concurrency. Raises the port's errors
        (``Rejected``, ``RateLimited``, ``Unavailable``, ``OutcomeUnknown``)
        after the read retries; a failure fails the whole fetch. ``country``:
        where the store ships (ISO 3166-1 alpha-2, a sync job's
        ``ship_to_country``); an API whose prices and stock depend on the
        destination asks for that one (else the account's default), the
        others ignore it."""

    async def aclose(self) -> None:
        """Close the HTTP client."""


class SupplierFreight(Protocol):
    """Freight quotes of one supplier account (read only), for a supplier whose product
    answer carries no shipping fee. Same account, token bucket and breaker as its
    product fetch and orders."""

    provider: str

    async def quote_freight(self, source_id: str, ref: str | None, country: str) -> FreightOption | None:
        """The cheapest delivery option for one unit of the variant ``ref`` (the
        product's ``freight_ref``) of ``source_id`` to ``country`` (ISO 3166-1
        alpha-2), in the account's currency; None when the supplier offers no
        delivery there. Raises the port's errors after the read retries."""
