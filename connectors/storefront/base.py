"""The storefront port: what the storefront process asks of a shop platform.

The process (runner.py) consumes ``inventory.changes`` and ``storefront.commands``,
finds each store's account (settings.py) and hands the work to the store's
adapter, an object with the :class:`Storefront` protocol built by
:func:`build_storefront` from the account's ``platform``:

- ``SHOPIFY``: connectors/shopify/storefront.py;
- ``WOOCOMMERCE``: connectors/woocommerce/storefront.py (its account model,
  connectors/woocommerce/settings.py, is in settings.py's union).

What an adapter must do, and may rely on
----------------------------------------
``push(changes, catalogue)`` gets the changes of ONE store, in their order on
the topic (a product may appear more than once). It writes the quantity and
price each change asks for (models/storefront.py decides which writes a change
needs and how a stale quantity is handled) and returns a :class:`PushOutcome`
counting what it did. It must be idempotent: the process commits the offsets
only after ``push`` returns, so after a crash or a rebalance the same changes
come again (use the change ids for idempotency keys, compare-and-set, or read
before writing). An exception means "try the whole batch again later";
a write the shop refuses for good (a 4xx, a userError) is counted as REJECTED,
logged, and not raised (it would block the store forever). A change whose
product the catalogue does not map to the shop is counted UNMAPPED and skipped.

A refusal of the account itself (HTTP 401 or 403: a wrong or revoked token, the
app uninstalled) is raised as :class:`AccountRefused`, by ``push`` and
``show_tracking`` alike: no write of that store can pass until a person fixes
the account, and retrying would hold up every other store. The process sends
the store's records of the batch to ``deadletter`` (reason
``STOREFRONT_REFUSED``), to be replayed once the account is fixed.

``show_tracking(command)`` makes the shop show a shipment's tracking on the
order (and notify the customer as the account says). Idempotent the same way:
if the shop already shows that tracking number, do nothing. Returns an
outcome label (:data:`TRACKING_OUTCOMES`).

``catalogue`` maps our (store_id, product_id, variant_id) to the shop's ids
(:class:`CatalogueLookup`, read from ``catalog.variants``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.events import InventoryChange
from models.orders import StorefrontCommand
from models.webhook_routing import CatalogueVariant

class AccountRefused(Exception):
    """The platform refused the store's account itself (HTTP 401/403): nothing of the
    store can be written until a person fixes it. A mixin of the adapters' own
    refusal classes, so that what catches those catches it too."""


#: HTTP statuses that refuse the account, not one write.
ACCOUNT_STATUSES = (401, 403)


def refuses_account(exc: BaseException) -> bool:
    """Whether ``exc`` is the platform refusing the store's account (see ``AccountRefused``):
    raised as such, or a refusal tagged with HTTP 401/403 (connectors/suppliers/http.py)."""
    return isinstance(exc, AccountRefused) or getattr(exc, "http_status", None) in ACCOUNT_STATUSES


#: What ``show_tracking`` may answer.
TRACKING_OUTCOMES = ("CREATED", "ALREADY_SHOWN", "NOTHING_OPEN", "ORDER_NOT_FOUND", "NOT_THIS_PLATFORM", "REJECTED")


class CatalogueLookup(Protocol):
    def variant(self, store_id: str, product_id: str, variant_id: str | None) -> CatalogueVariant | None:
        """The storefront variant our product (variant) is, or None when unmapped."""


@dataclass
class PushOutcome:
    """What one ``push`` did: counts by (write kind, result) and of changes by result."""

    writes: dict[tuple[str, str], int] = field(default_factory=dict)  # ("quantity"|"price", result) -> n
    changes: dict[str, int] = field(default_factory=dict)  # UNMAPPED, PUSHED, NOTHING -> n

    def write(self, kind: str, result: str, n: int = 1) -> None:
        self.writes[(kind, result)] = self.writes.get((kind, result), 0) + n

    def change(self, result: str, n: int = 1) -> None:
        self.changes[result] = self.changes.get(result, 0) + n


class Storefront(Protocol):
    platform: str
    store_id: str

    @property
    def shop(self) -> str:
        """The shop's domain (Shopify) or site host (WooCommerce), for people to read."""

    async def push(self, changes: Sequence[InventoryChange], catalogue: CatalogueLookup) -> PushOutcome: ...

    async def show_tracking(self, command: StorefrontCommand) -> str: ...

    async def reachable(self) -> None:
        """One cheap read of the shop (no retries beyond the client's): returns if it answers,
        raises if not. The probe of a store set aside because its shop failed every try."""

    async def aclose(self) -> None: ...


#: platform -> builder(store_id, account) of its adapter.
BUILDERS: dict[str, Callable[[str, Any], Storefront]] = {}


def build_storefront(store_id: str, account: Any) -> Storefront:
    """The adapter of one store's account (by its ``platform``)."""
    if not BUILDERS:
        _register_builtin()
    try:
        builder = BUILDERS[account.platform]
    except KeyError:
        raise ValueError(f"no storefront adapter for platform {account.platform}") from None
    return builder(store_id, account)


def _register_builtin() -> None:
    from connectors.shopify.storefront import ShopifyStorefront
    from connectors.woocommerce.storefront import WooCommerceStorefront

    BUILDERS.setdefault("SHOPIFY", ShopifyStorefront.of)
    BUILDERS.setdefault("WOOCOMMERCE", WooCommerceStorefront.of)
