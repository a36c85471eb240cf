"""The storefront port this adapter is written to, until the storefront
process (connectors/storefront/base.py, branch ``issue5-shopify``) is merged.

The same shapes as there: :class:`CatalogueLookup` (our product -> the
storefront variant) and :class:`PushOutcome` (counts of writes and changes by
result). ``storefront.py`` imports them from ``connectors.storefront.base``
when it exists and from here otherwise; once that module is on main, delete
this file and the fallback import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from models.webhook_routing import CatalogueVariant


class CatalogueLookup(Protocol):
    def variant(self, store_id: str, product_id: str, variant_id: str | None) -> CatalogueVariant | None:
        """The storefront variant our product (variant) is, or None when unmapped."""


@dataclass
class PushOutcome:
    """What one ``push`` did: counts by (write kind, result) and of changes by result."""

    writes: dict[tuple[str, str], int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)

    def write(self, kind: str, result: str, n: int = 1) -> None:
        self.writes[(kind, result)] = self.writes.get((kind, result), 0) + n

    def change(self, result: str, n: int = 1) -> None:
        self.changes[result] = self.changes.get(result, 0) + n
