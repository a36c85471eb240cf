"""Supplier freight quotes: which to ask for, the cheapest option, and the shipping
cost a snapshot carries (pure: no I/O).

AliExpress's and CJ's product answers carry no freight fee; each has a call
that quotes one product variant to one country (``aliexpress.ds.freight.query``,
CJ ``freightCalculate``). Asking it for every product at every sync would
double AliExpress's calls and multiply CJ's by 20, so the syncer keeps quotes
(``FreightQuote``, keyed by ``FreightKey``: provider, source id, the supplier's
variant, destination country) and asks again only for a quote older than its
maximum age, at most a few per sync page and provider (``plan_lookups``). A
product without a quote yet keeps the shipping the engine last knew for it
(0 before any): ``with_shipping``. The quote taken is the cheapest delivery
option in the product's currency (``cheapest``).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from models.events import SupplierSnapshot


def _check_amount(amount: Decimal) -> None:
    """A fee a snapshot can carry (``models.events.Money``): a finite decimal, at
    least 0, below 10**12, at most 6 decimal places and 18 digits."""
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0 or amount >= 10**12:
        raise ValueError(f"not a freight amount: {amount!r}")
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    if exponent < -6 or max(len(digits), -exponent) > 18:
        raise ValueError(f"not a freight amount (at most 6 decimals): {amount!r}")


@dataclass(frozen=True, slots=True)
class FreightOption:
    """One delivery option a supplier offers: its service name and fee for one unit."""

    service: str
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        _check_amount(self.amount)


def cheapest(options: Iterable[FreightOption], currency: str) -> FreightOption | None:
    """The cheapest option priced in ``currency`` (the first of equal ones), or None
    when no option is in that currency (or there is none)."""
    best: FreightOption | None = None
    for option in options:
        if option.currency == currency and (best is None or option.amount < best.amount):
            best = option
    return best


@dataclass(frozen=True, slots=True)
class FreightKey:
    """What a quote is for. ``variant`` is the supplier's variant id of the entry that
    feeds the store product, None for a product-level item (several supplier
    variants summed: the quote of the first variant stands for them)."""

    provider: str
    source_id: str
    variant: str | None
    country: str


@dataclass(frozen=True, slots=True)
class FreightQuote:
    """A supplier's cheapest freight of one unit to the key's country, when fetched.
    ``amount`` None: the supplier offered no delivery there (kept, so that it is
    not asked again before the quote's maximum age)."""

    amount: Decimal | None
    currency: str
    fetched_at: datetime
    service: str | None = None

    def __post_init__(self) -> None:
        if self.amount is not None:
            _check_amount(self.amount)
        if self.fetched_at.tzinfo is None:
            raise ValueError("fetched_at must be timezone-aware")

    def age_s(self, now: datetime) -> float:
        return (now - self.fetched_at).total_seconds()


@dataclass(frozen=True, slots=True)
class FreightWant:
    """A quote a page's product needs: its key, and the id the supplier's freight call
    takes for the variant (AliExpress's SKU id, CJ's vid; None if the supplier gave none)."""

    key: FreightKey
    ref: str | None


@dataclass(frozen=True)
class LookupPlan:
    """What to ask the supplier for now.

    ``start``: new lookups (at most the limit); ``join``: due quotes another page is
    already asking for (wait for that answer; no call of ours); ``deferred``: due
    quotes past the limit, left to a following sync (the product keeps its last
    shipping meanwhile).
    """

    start: tuple[FreightWant, ...] = ()
    join: tuple[FreightKey, ...] = ()
    deferred: int = 0


def plan_lookups(
    wants: Iterable[FreightWant],
    known: Mapping[FreightKey, FreightQuote],
    now: datetime,
    max_age_s: float,
    limit: int,
    in_flight: Container[FreightKey] = frozenset(),
) -> LookupPlan:
    """The lookups of one page and provider.

    Due: a key with no quote known, or whose quote is ``max_age_s`` old or older.
    Each key counts once however many of the page's products share it. Keys
    never quoted go first, then the oldest quotes, so that a product without any
    quote gets one before a known quote is refreshed; a key already being looked
    up is joined, not asked again, and does not count against ``limit``.
    """
    due: dict[FreightKey, tuple[int, float, FreightWant]] = {}
    for want in wants:
        if want.key in due:
            continue
        quote = known.get(want.key)
        if quote is None:
            due[want.key] = (0, 0.0, want)
        elif quote.age_s(now) >= max_age_s:
            due[want.key] = (1, -quote.age_s(now), want)
    ranked = sorted(due.values(), key=lambda entry: (entry[0], entry[1]))
    start: list[FreightWant] = []
    join: list[FreightKey] = []
    deferred = 0
    for _, _, want in ranked:
        if want.key in in_flight:
            join.append(want.key)
        elif len(start) < limit:
            start.append(want)
        else:
            deferred += 1
    return LookupPlan(tuple(start), tuple(join), deferred)


def shipping_of(quote: FreightQuote | None, currency: str, last_shipping: Decimal) -> Decimal:
    """The shipping cost of a product: its quote's amount when the quote has one in the
    product's currency; else the shipping the engine last knew for it (0 before any)."""
    if quote is not None and quote.amount is not None and quote.currency == currency:
        return quote.amount
    return last_shipping


def with_shipping(snapshot: SupplierSnapshot, quote: FreightQuote | None, last_shipping: Decimal) -> SupplierSnapshot:
    """``snapshot`` carrying the shipping cost ``shipping_of`` gives (a removed product,
    never quoted, keeps its last shipping as it keeps its last cost)."""
    shipping = shipping_of(quote if snapshot.available else None, snapshot.currency, last_shipping)
    if shipping == snapshot.shipping_cost and str(shipping) == str(snapshot.shipping_cost):
        return snapshot
    # Both values are validated Money (the quote's was read at the edge), so no re-validation.
    return snapshot.model_copy(update={"shipping_cost": shipping})
