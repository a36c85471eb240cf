"""Pricing rules and the pure function that turns a supplier cost into a price.

Money is ``Decimal`` throughout (never float). Every amount in a
:class:`PriceQuote` is quantized to the cent (``ROUND_HALF_UP``) except the
prices themselves, which are built on the cent grid by rounding *up*.

Algorithm of :func:`quote` (``k = 1 - fee_percent/100``, ``outlay = basis + fee_fixed``;
the profit at a price ``P`` is ``P*k - outlay``, its margin ``profit / P``):

1. ``basis = cost_price (+ shipping_cost when include_shipping)``.
2. ``raw`` from the strategy: ``basis * (1 + markup_percent/100)``,
   ``basis + fixed_markup``, ``basis * multiplier``, or for ``TIERED`` the
   tier whose ``[min_cost, max_cost)`` band holds ``cost_price`` (its strategy
   applied to ``basis``); a cost in no band falls back to ``markup_percent``.
3. ``floor``: the smallest cent ``P >= 0.01`` with
   ``P*k - outlay >= min_profit`` and, when set,
   ``P*k - outlay >= P * min_margin_percent/100``. Closed form
   ``max((outlay + min_profit) / k, outlay / (k - min_margin/100))``, rounded
   UP to the cent, then re-checked exactly and bumped a cent if ever needed.
   It is at least one cent: a product is never priced at zero.
4. ``price = max(raw, floor)``; with ``max_margin_percent``, ``price`` is
   capped at the largest cent whose margin is ``<= max_margin_percent``
   (``outlay / (k - max/100)`` rounded DOWN), but never below ``floor``.
5. The ending rounds up: the smallest amount ``>= price`` whose cents are
   ``.99`` / ``.95`` (``NONE``: the next cent). Rounding up never lowers the
   profit or the margin, so the floor still holds.

Precedence: the floor wins over everything, the ending wins over the
max-margin cap (an ending can lift the price a little above the cap).

The optional compare-at price is ``selling * (1 + compare_at_percent/100)``
given the same ending (rounded up), and always strictly above the selling price.

Fees are taken on the exact selling price (no rounding of the fee itself).
Arithmetic runs in a private 34-digit Decimal context (entered once per
computed quote), so the caller's thread context never changes the result;
:func:`quote` is memoised with ``functools.lru_cache`` on
``(cost_price, shipping_cost, rules)`` — the rules are frozen and hashable.
"""

from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from enum import Enum
from functools import _CacheInfo, lru_cache
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CENT",
    "PriceEnding",
    "PriceQuote",
    "PriceTier",
    "PricingRules",
    "Strategy",
    "price_change_percent",
    "quote",
    "quote_cache_clear",
    "quote_cache_info",
]

CENT = Decimal("0.01")
_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
_CTX = Context(
    prec=34,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)


def _no_float(value: Any) -> Any:
    # Same contract as the events: a float cannot carry cents exactly, so a
    # decimal travels as a string ("12.50") or an integer.
    if isinstance(value, float):
        raise ValueError('must be a decimal string such as "12.50" or an integer, not a float')
    return value


_Dec = Annotated[Decimal, BeforeValidator(_no_float)]


class PriceEnding(str, Enum):
    NINETY_NINE = ".99"
    NINETY_FIVE = ".95"
    NONE = "none"


class Strategy(str, Enum):
    PERCENT_MARKUP = "PERCENT_MARKUP"
    FIXED_MARKUP = "FIXED_MARKUP"
    MULTIPLIER = "MULTIPLIER"
    TIERED = "TIERED"


_ENDING_CENTS: dict[PriceEnding, Decimal] = {
    PriceEnding.NINETY_NINE: Decimal("0.99"),
    PriceEnding.NINETY_FIVE: Decimal("0.95"),
}


class PriceTier(BaseModel):
    """One cost band ``[min_cost, max_cost)`` of a ``TIERED`` rule set.

    ``value`` is a percent (``PERCENT_MARKUP``), an amount (``FIXED_MARKUP``)
    or a factor >= 1 (``MULTIPLIER``), applied to the cost basis.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    min_cost: _Dec = Field(ge=0, description="inclusive lower bound of cost_price")
    max_cost: _Dec | None = Field(default=None, ge=0, description="exclusive upper bound; None = unbounded")
    strategy: Strategy
    value: _Dec = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.strategy is Strategy.TIERED:
            raise ValueError("a price tier cannot itself use the TIERED strategy")
        if self.max_cost is not None and self.max_cost <= self.min_cost:
            raise ValueError(f"tier max_cost ({self.max_cost}) must be greater than min_cost ({self.min_cost})")
        if self.strategy is Strategy.MULTIPLIER and self.value < _ONE:
            raise ValueError(f"a MULTIPLIER tier needs value >= 1, got {self.value}")
        return self

    def contains(self, cost: Decimal) -> bool:
        return self.min_cost <= cost and (self.max_cost is None or cost < self.max_cost)


class PricingRules(BaseModel):
    """A store's pricing rules. The defaults give "50 % markup ending in .99"."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    strategy: Strategy = Strategy.PERCENT_MARKUP
    markup_percent: _Dec = Field(default=Decimal("50"), ge=0)
    fixed_markup: _Dec = Field(default=Decimal("0"), ge=0)
    multiplier: _Dec = Field(default=Decimal("2"), ge=1)
    tiers: tuple[PriceTier, ...] = Field(
        default=(), description="TIERED bands, kept sorted by min_cost; must not overlap"
    )
    include_shipping: bool = True
    fee_percent: _Dec = Field(default=Decimal("0"), ge=0, lt=100, description="percent of the selling price")
    fee_fixed: _Dec = Field(default=Decimal("0"), ge=0, description="fixed fee per sale")
    # Two places at most, so the reported (cent-rounded) profit and margin
    # provably meet these bounds too.
    min_profit: _Dec = Field(default=Decimal("0"), ge=0, decimal_places=2)
    min_margin_percent: _Dec | None = Field(default=None, ge=0, lt=100, decimal_places=2)
    max_margin_percent: _Dec | None = Field(default=None, ge=0, lt=100, decimal_places=2)
    ending: PriceEnding = PriceEnding.NINETY_NINE
    compare_at_percent: _Dec | None = Field(default=None, gt=0)

    @field_validator("tiers", mode="after")
    @classmethod
    def _disjoint_tiers(cls, tiers: tuple[PriceTier, ...]) -> tuple[PriceTier, ...]:
        ordered = tuple(sorted(tiers, key=lambda t: t.min_cost))
        for low, high in zip(ordered, ordered[1:]):
            if low.max_cost is None or low.max_cost > high.min_cost:
                upper = "unbounded" if low.max_cost is None else f"{low.max_cost})"
                raise ValueError(
                    f"price tiers overlap: [{low.min_cost}, {upper} and [{high.min_cost}, ...)"
                )
        return ordered

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        lo, hi = self.min_margin_percent, self.max_margin_percent
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_margin_percent ({lo}) must not exceed max_margin_percent ({hi})")
        if lo is not None and lo + self.fee_percent >= _HUNDRED:
            # The margin can never reach 100 - fee_percent: no price would do.
            raise ValueError(
                f"min_margin_percent ({lo}) + fee_percent ({self.fee_percent}) must be below 100"
            )
        return self


class PriceQuote(BaseModel):
    """The price of one product under one set of rules."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    selling_price: Decimal = Field(gt=0)
    compare_at_price: Decimal | None = Field(default=None, gt=0, description="the 'was' price, if configured")
    cost_basis: Decimal = Field(ge=0)
    floor: Decimal = Field(gt=0, description="lowest price meeting break-even, min_profit and min margin")
    profit: Decimal = Field(ge=0, description="profit after fees at the selling price")
    margin_percent: Decimal = Field(ge=0, description="profit / selling_price * 100")


# --------------------------------------------------------------------------- #
# Computation
# --------------------------------------------------------------------------- #


def _apply(strategy: Strategy, value: Decimal, basis: Decimal) -> Decimal:
    if strategy is Strategy.PERCENT_MARKUP:
        return basis + basis * value / _HUNDRED
    if strategy is Strategy.FIXED_MARKUP:
        return basis + value
    if strategy is Strategy.MULTIPLIER:
        return basis * value
    raise ValueError(f"strategy {strategy} has no single formula")  # pragma: no cover


def _raw_price(cost: Decimal, basis: Decimal, rules: PricingRules) -> Decimal:
    strategy = rules.strategy
    if strategy is Strategy.PERCENT_MARKUP:
        return _apply(strategy, rules.markup_percent, basis)
    if strategy is Strategy.FIXED_MARKUP:
        return _apply(strategy, rules.fixed_markup, basis)
    if strategy is Strategy.MULTIPLIER:
        return _apply(strategy, rules.multiplier, basis)
    for tier in rules.tiers:  # TIERED: band chosen by cost_price
        if tier.contains(cost):
            return _apply(tier.strategy, tier.value, basis)
    return _apply(Strategy.PERCENT_MARKUP, rules.markup_percent, basis)


def _meets_floor(price: Decimal, k: Decimal, outlay: Decimal, rules: PricingRules) -> bool:
    profit = price * k - outlay
    if profit < rules.min_profit:
        return False
    min_margin = rules.min_margin_percent
    return min_margin is None or profit * _HUNDRED >= min_margin * price


def _floor(k: Decimal, outlay: Decimal, rules: PricingRules) -> Decimal:
    bound = (outlay + rules.min_profit) / k
    if rules.min_margin_percent is not None:
        # k - m > 0 is guaranteed by the PricingRules validator.
        bound = max(bound, outlay / (k - rules.min_margin_percent / _HUNDRED))
    price = max(bound.quantize(CENT, rounding=ROUND_CEILING), CENT)
    while not _meets_floor(price, k, outlay, rules):  # guards a rounded division
        price += CENT
    return price


def _cap(k: Decimal, outlay: Decimal, max_margin: Decimal) -> Decimal | None:
    """Largest cent whose margin is <= max_margin, None when there is no cap."""
    m = max_margin / _HUNDRED
    if k <= m:
        return None  # the margin is below k <= m at any price
    cap = (outlay / (k - m)).quantize(CENT, rounding=ROUND_FLOOR)
    while cap > _ZERO and (cap * k - outlay) * _HUNDRED > max_margin * cap:
        cap -= CENT
    return cap


def _with_ending(price: Decimal, ending: PriceEnding) -> Decimal:
    """Smallest amount >= price with the ending (NONE: on the cent grid)."""
    if ending is PriceEnding.NONE:
        return price.quantize(CENT, rounding=ROUND_CEILING)
    cents = _ENDING_CENTS[ending]
    return (price - cents).to_integral_value(rounding=ROUND_CEILING).copy_abs() + cents


@lru_cache(maxsize=65536)
def _quote(cost: Decimal, shipping: Decimal, rules: PricingRules) -> PriceQuote:
    with localcontext(_CTX):
        basis = cost + shipping if rules.include_shipping else cost
        k = _ONE - rules.fee_percent / _HUNDRED
        outlay = basis + rules.fee_fixed

        floor = _floor(k, outlay, rules)
        price = max(_raw_price(cost, basis, rules), floor)
        if rules.max_margin_percent is not None:
            cap = _cap(k, outlay, rules.max_margin_percent)
            if cap is not None and price > cap:
                price = max(cap, floor)
        selling = _with_ending(price, rules.ending)

        compare_at: Decimal | None = None
        if rules.compare_at_percent is not None:
            compare_at = _with_ending(selling + selling * rules.compare_at_percent / _HUNDRED, rules.ending)
            if compare_at <= selling:  # defensive: a positive percent already lifts it
                compare_at = _with_ending(selling + CENT, rules.ending)

        profit = selling * k - outlay
        return PriceQuote(
            selling_price=selling,
            compare_at_price=compare_at,
            cost_basis=basis.quantize(CENT, rounding=ROUND_HALF_UP),
            floor=floor,
            profit=profit.quantize(CENT, rounding=ROUND_HALF_UP),
            margin_percent=(profit * _HUNDRED / selling).quantize(CENT, rounding=ROUND_HALF_UP),
        )


def _amount(name: str, value: object) -> Decimal:
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    else:
        raise TypeError(f"{name} must be a Decimal (or int), got {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError(f"{name} must be finite, got {amount}")
    if amount < _ZERO:
        raise ValueError(f"{name} must be >= 0, got {amount}")
    return amount.copy_abs()  # turns -0 into 0


def quote(cost_price: Decimal, shipping_cost: Decimal, rules: PricingRules) -> PriceQuote:
    """Price one product: see the module docstring for the algorithm.

    Raises ``TypeError`` for a non-Decimal amount (a float is refused) and
    ``ValueError`` for a negative or non-finite one.
    """
    return _quote(_amount("cost_price", cost_price), _amount("shipping_cost", shipping_cost), rules)


def quote_cache_info() -> _CacheInfo:
    """Hits/misses of the memoised core of :func:`quote`."""
    return _quote.cache_info()


def quote_cache_clear() -> None:
    _quote.cache_clear()


def price_change_percent(old: Decimal, new: Decimal) -> Decimal:
    """Percent change from ``old`` to ``new`` cost, quantized to 0.01 (HALF_UP).

    ``old == 0`` gives ``100`` when ``new > 0`` and ``0`` otherwise.
    """
    old = _amount("old", old)
    new = _amount("new", new)
    with localcontext(_CTX):
        if old == _ZERO:
            change = _HUNDRED if new > _ZERO else _ZERO
        else:
            change = (new - old) * _HUNDRED / old
        return change.quantize(CENT, rounding=ROUND_HALF_UP)
