"""Unit and property tests of ``models.pricing`` (pure functions, no broker)."""

from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.pricing import (
    CENT,
    PriceEnding,
    PriceQuote,
    PriceTier,
    PricingRules,
    Strategy,
    price_change_percent,
    quote,
    quote_cache_clear,
    quote_cache_info,
)

D = Decimal
NONE = PriceEnding.NONE

# --------------------------------------------------------------------------- #
# Independent re-computation (wide context, straight from the definitions)
# --------------------------------------------------------------------------- #


def basis_of(cost: Decimal, shipping: Decimal, rules: PricingRules) -> Decimal:
    return cost + shipping if rules.include_shipping else cost


def exact_profit(price: Decimal, basis: Decimal, rules: PricingRules) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return price * (1 - rules.fee_percent / 100) - rules.fee_fixed - basis


def meets_floor(price: Decimal, basis: Decimal, rules: PricingRules) -> bool:
    profit = exact_profit(price, basis, rules)
    if profit < rules.min_profit:
        return False
    if rules.min_margin_percent is not None:
        with localcontext() as ctx:
            ctx.prec = 60
            return profit * 100 >= rules.min_margin_percent * price
    return True


def margin_at_most(price: Decimal, basis: Decimal, rules: PricingRules, max_margin: Decimal) -> bool:
    with localcontext() as ctx:
        ctx.prec = 60
        return exact_profit(price, basis, rules) * 100 <= max_margin * price


def strategy_price(basis: Decimal, rules: PricingRules) -> Decimal:
    """The raw price of a non-tiered strategy."""
    with localcontext() as ctx:
        ctx.prec = 60
        if rules.strategy is Strategy.PERCENT_MARKUP:
            return basis * (1 + rules.markup_percent / 100)
        if rules.strategy is Strategy.FIXED_MARKUP:
            return basis + rules.fixed_markup
        assert rules.strategy is Strategy.MULTIPLIER
        return basis * rules.multiplier


def half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def is_cents(value: Decimal) -> bool:
    return value == value.quantize(CENT) and value.as_tuple().exponent == -2


# --------------------------------------------------------------------------- #
# Examples, one table per concern
# --------------------------------------------------------------------------- #

# (cost, shipping, rules, selling, profit, margin_percent)
EXAMPLES: list[Any] = [
    # defaults: 50 % markup on cost + shipping, ending .99
    pytest.param("10", "5", {}, "22.99", "7.99", "34.75", id="defaults"),
    # each strategy
    pytest.param("10", "0", {"markup_percent": 100, "ending": NONE}, "20.00", "10.00", "50.00", id="percent"),
    pytest.param("3", "0", {"markup_percent": "33.333", "ending": NONE}, "4.00", "1.00", "25.00",
                 id="percent-sub-cent-rounds-up"),
    pytest.param("10", "2.5", {"strategy": "FIXED_MARKUP", "fixed_markup": "7.5", "ending": NONE},
                 "20.00", "7.50", "37.50", id="fixed"),
    pytest.param("10", "2.5", {"strategy": "FIXED_MARKUP", "fixed_markup": "7.5"}, "20.99", "8.49", "40.45",
                 id="fixed-99"),
    pytest.param("10", "0", {"strategy": "MULTIPLIER", "multiplier": "2.5", "ending": NONE},
                 "25.00", "15.00", "60.00", id="multiplier"),
    pytest.param("10", "0", {"strategy": "MULTIPLIER", "multiplier": "2.5", "ending": ".95"},
                 "25.95", "15.95", "61.46", id="multiplier-95"),
    # ties round HALF_UP: profit 2.465 -> 2.47, margin 12.325 -> 12.33
    pytest.param("17.535", "0", {"strategy": "FIXED_MARKUP", "fixed_markup": "2.465", "ending": NONE},
                 "20.00", "2.47", "12.33", id="half-up-ties"),
    # shipping in / out of the cost basis
    pytest.param("10", "5", {"ending": NONE}, "22.50", "7.50", "33.33", id="shipping-in"),
    pytest.param("10", "5", {"ending": NONE, "include_shipping": False}, "15.00", "5.00", "33.33",
                 id="shipping-out"),
    # fees: break-even is the smallest cent where 0.971 P - 0.30 - 10 >= 0 (10.61 -> 0.00231)
    pytest.param("10", "0", {"markup_percent": 0, "fee_percent": "2.9", "fee_fixed": "0.30", "ending": NONE},
                 "10.61", "0.00", "0.02", id="fees-break-even"),
    # 30.99 * 0.9 - 1 - 20 = 6.891
    pytest.param("20", "0", {"fee_percent": 10, "fee_fixed": 1}, "30.99", "6.89", "22.24", id="fees-markup"),
    # min profit: 15/0.95 = 15.789.. -> 15.79, profit 15.79*0.95 - 10 = 5.0005
    pytest.param("10", "0", {"markup_percent": 0, "min_profit": 5, "ending": NONE}, "15.00", "5.00", "33.33",
                 id="min-profit"),
    pytest.param("10", "0", {"markup_percent": 0, "min_profit": 5, "fee_percent": 5, "ending": NONE},
                 "15.79", "5.00", "31.67", id="min-profit-with-fee"),
    # min margin: 12 / (1 - 0.4) = 20
    pytest.param("12", "0", {"markup_percent": 10, "min_margin_percent": 40, "ending": NONE},
                 "20.00", "8.00", "40.00", id="min-margin"),
    # 10 / 0.7 = 14.2857 -> 14.29 (14.28 would be 29.97 %)
    pytest.param("10", "0", {"markup_percent": 0, "min_margin_percent": 30, "ending": NONE},
                 "14.29", "4.29", "30.02", id="min-margin-rounds-up"),
    # 7 / (0.9 - 0.2) = 10
    pytest.param("7", "0", {"markup_percent": 0, "min_margin_percent": 20, "fee_percent": 10, "ending": NONE},
                 "10.00", "2.00", "20.00", id="min-margin-with-fee"),
    # max margin: 300 % would be 66.67 % margin, capped at 10 / 0.5 = 20
    pytest.param("10", "0", {"markup_percent": 200, "max_margin_percent": 50, "ending": NONE},
                 "20.00", "10.00", "50.00", id="max-margin-cap"),
    # the ending wins over the cap
    pytest.param("10", "0", {"markup_percent": 200, "max_margin_percent": 50}, "20.99", "10.99", "52.36",
                 id="max-margin-ending-wins"),
    # the floor wins over the cap: cap 16.66 (39.98 %), floor 16.67
    pytest.param("10", "0", {"markup_percent": 200, "min_margin_percent": 40, "max_margin_percent": 40,
                             "ending": NONE}, "16.67", "6.67", "40.01", id="max-margin-floor-wins"),
    pytest.param("10", "0", {"markup_percent": 50, "max_margin_percent": 60, "ending": NONE},
                 "15.00", "5.00", "33.33", id="max-margin-not-reached"),
    # cap with fees: 11 / (0.9 - 0.3) = 18.333 -> 18.33 (29.99 %)
    pytest.param("10", "0", {"markup_percent": 200, "fee_percent": 10, "fee_fixed": 1, "max_margin_percent": 30,
                             "ending": NONE}, "18.33", "5.50", "29.99", id="max-margin-with-fees"),
    # zero cost: the floor is one cent, then the ending
    pytest.param("0", "0", {}, "0.99", "0.99", "100.00", id="zero-cost"),
    pytest.param("0", "0", {"ending": NONE}, "0.01", "0.01", "100.00", id="zero-cost-no-ending"),
    pytest.param("0", "0", {"ending": ".95"}, "0.95", "0.95", "100.00", id="zero-cost-95"),
    pytest.param("0", "0", {"fee_fixed": "0.30", "ending": NONE}, "0.30", "0.00", "0.00", id="zero-cost-fee"),
    pytest.param("0", "0", {"max_margin_percent": 50, "ending": NONE}, "0.01", "0.01", "100.00",
                 id="zero-cost-floor-beats-cap"),
    pytest.param("0", "0", {"min_margin_percent": 50, "ending": NONE}, "0.01", "0.01", "100.00",
                 id="zero-cost-min-margin"),
]


@pytest.mark.parametrize(("cost", "shipping", "rules", "selling", "profit", "margin"), EXAMPLES)
def test_quote_examples(cost: str, shipping: str, rules: dict[str, Any], selling: str, profit: str,
                        margin: str) -> None:
    r = PricingRules(**rules)
    q = quote(D(cost), D(shipping), r)
    assert (q.selling_price, q.profit, q.margin_percent) == (D(selling), D(profit), D(margin))
    # The reported profit is the profit arithmetic at the selling price.
    basis = basis_of(D(cost), D(shipping), r)
    assert q.profit == half_up(exact_profit(q.selling_price, basis, r))
    assert q.cost_basis == half_up(basis)
    assert meets_floor(q.floor, basis, r)
    assert q.compare_at_price is None


def test_quote_full_default() -> None:
    assert quote(D("10"), D("5"), PricingRules()) == PriceQuote(
        selling_price=D("22.99"), compare_at_price=None, cost_basis=D("15.00"), floor=D("15.00"),
        profit=D("7.99"), margin_percent=D("34.75"),
    )


@pytest.mark.parametrize(
    ("rules", "floor", "selling"),
    [
        ({"markup_percent": 0, "fee_percent": "2.9", "fee_fixed": "0.30"}, "10.61", "10.99"),
        ({"markup_percent": 0, "min_margin_percent": 30}, "14.29", "14.99"),
        ({"markup_percent": 0, "min_profit": "2.50", "fee_fixed": "0.50"}, "13.00", "13.99"),
        ({"markup_percent": 500}, "10.00", "60.99"),  # floor is break-even when nothing else asked
    ],
)
def test_floor_is_the_smallest_cent(rules: dict[str, Any], floor: str, selling: str) -> None:
    r = PricingRules(**rules)
    q = quote(D("10"), D("0"), r)
    assert (q.floor, q.selling_price) == (D(floor), D(selling))
    assert meets_floor(q.floor, D("10"), r)
    assert not meets_floor(q.floor - CENT, D("10"), r)


@pytest.mark.parametrize(
    ("cost", "ending", "selling"),
    [
        ("10.00", ".99", "10.99"),
        ("10.99", ".99", "10.99"),
        ("10.995", ".99", "11.99"),
        ("11.00", ".99", "11.99"),
        ("10.90", ".95", "10.95"),
        ("10.95", ".95", "10.95"),
        ("10.96", ".95", "11.95"),
        ("10.97", ".99", "10.99"),
        ("1.005", "none", "1.01"),
        ("1.00", "none", "1.00"),
    ],
)
def test_endings_round_up(cost: str, ending: str, selling: str) -> None:
    q = quote(D(cost), D("0"), PricingRules(markup_percent=0, ending=ending))
    assert q.selling_price == D(selling)
    assert q.selling_price >= D(cost)


@pytest.mark.parametrize(
    ("rules", "selling", "compare_at"),
    [
        ({"compare_at_percent": 30}, "15.99", "20.99"),  # 15.99 * 1.3 = 20.787
        ({"compare_at_percent": 30, "ending": NONE}, "15.00", "19.50"),
        ({"compare_at_percent": 20, "ending": ".95"}, "15.95", "19.95"),  # 19.14 -> 19.95
        ({"compare_at_percent": "0.01"}, "15.99", "16.99"),  # tiny: still strictly above
        ({"compare_at_percent": "0.01", "ending": NONE}, "15.00", "15.01"),  # 15.0015 rounds UP
        ({"compare_at_percent": 100, "ending": NONE}, "15.00", "30.00"),
    ],
)
def test_compare_at(rules: dict[str, Any], selling: str, compare_at: str) -> None:
    q = quote(D("10"), D("0"), PricingRules(**rules))
    assert (q.selling_price, q.compare_at_price) == (D(selling), D(compare_at))
    assert q.compare_at_price is not None and q.compare_at_price > q.selling_price


TIERS = (
    {"min_cost": "0", "max_cost": "10", "strategy": "PERCENT_MARKUP", "value": "100"},
    {"min_cost": "10", "max_cost": "50", "strategy": "FIXED_MARKUP", "value": "15"},
    {"min_cost": "50", "max_cost": None, "strategy": "MULTIPLIER", "value": "1.5"},
)
GAPPED = (
    {"min_cost": "0", "max_cost": "10", "strategy": "PERCENT_MARKUP", "value": "100"},
    {"min_cost": "20", "strategy": "MULTIPLIER", "value": "3"},
)


@pytest.mark.parametrize(
    ("tiers", "cost", "shipping", "selling"),
    [
        pytest.param(TIERS, "0", "0", "0.01", id="zero-in-first-band"),
        pytest.param(TIERS, "9.99", "0", "19.98", id="below-edge"),
        pytest.param(TIERS, "10", "0", "25.00", id="min-inclusive"),
        pytest.param(TIERS, "49.99", "0", "64.99", id="max-exclusive"),
        pytest.param(TIERS, "50", "0", "75.00", id="open-band-start"),
        pytest.param(TIERS, "1000", "0", "1500.00", id="open-band"),
        # band chosen by cost_price (9), the tier applied to the basis (11)
        pytest.param(TIERS, "9", "2", "22.00", id="band-by-cost-not-basis"),
        pytest.param(tuple(reversed(TIERS)), "10", "0", "25.00", id="unsorted-input"),
        pytest.param(GAPPED, "15", "0", "22.50", id="gap-falls-back-to-markup"),
        pytest.param(GAPPED, "19.99", "0", "29.99", id="gap-edge"),  # 29.985 rounds up
        pytest.param(GAPPED, "20", "0", "60.00", id="after-gap"),
        pytest.param((), "10", "0", "15.00", id="no-tiers-fallback"),
    ],
)
def test_tiered(tiers: tuple[dict[str, Any], ...], cost: str, shipping: str, selling: str) -> None:
    r = PricingRules(strategy="TIERED", tiers=tiers, ending=NONE)
    assert quote(D(cost), D(shipping), r).selling_price == D(selling)
    assert [t.min_cost for t in r.tiers] == sorted(t.min_cost for t in r.tiers)


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def _tier(lo: str, hi: str | None, strategy: str = "PERCENT_MARKUP", value: str = "10") -> dict[str, Any]:
    return {"min_cost": lo, "max_cost": hi, "strategy": strategy, "value": value}


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"markup_percent": "-1"}, "greater than or equal to 0"),
        ({"fixed_markup": -5}, "greater than or equal to 0"),
        ({"multiplier": "0.5"}, "greater than or equal to 1"),
        ({"fee_percent": 100}, "less than 100"),
        ({"fee_percent": "-0.1"}, "greater than or equal to 0"),
        ({"fee_fixed": "-0.30"}, "greater than or equal to 0"),
        ({"min_profit": "-1"}, "greater than or equal to 0"),
        ({"min_profit": "1.005"}, "decimal places"),
        ({"min_margin_percent": 100}, "less than 100"),
        ({"max_margin_percent": "-5"}, "greater than or equal to 0"),
        ({"min_margin_percent": 50, "max_margin_percent": 40}, "must not exceed max_margin_percent"),
        ({"min_margin_percent": 60, "fee_percent": 40}, "must be below 100"),
        ({"compare_at_percent": 0}, "greater than 0"),
        ({"markup_percent": 50.5}, "not a float"),
        ({"ending": ".49"}, "Input should be"),
        ({"tiers": [_tier("-1", "10")]}, "greater than or equal to 0"),
        ({"tiers": [_tier("0", "-10")]}, "greater than or equal to 0"),
        ({"tiers": [_tier("0", "10", value="-3")]}, "greater than or equal to 0"),
        ({"tiers": [_tier("0", "10"), _tier("5", "20")]}, "price tiers overlap"),
        ({"tiers": [_tier("0", None), _tier("10", "20")]}, "price tiers overlap"),
        ({"tiers": [_tier("0", "10", strategy="TIERED")]}, "cannot itself use the TIERED"),
        ({"tiers": [_tier("10", "10")]}, "must be greater than min_cost"),
        ({"tiers": [_tier("0", "10", strategy="MULTIPLIER", value="0.5")]}, "value >= 1"),
    ],
)
def test_invalid_rules(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PricingRules(**rules)


def test_adjacent_tiers_do_not_overlap() -> None:
    r = PricingRules(strategy="TIERED", tiers=[_tier("10", "20"), _tier("0", "10")])
    assert [(t.min_cost, t.max_cost) for t in r.tiers] == [(D(0), D(10)), (D(10), D(20))]
    assert isinstance(r.tiers, tuple)


@pytest.mark.parametrize(
    ("cost", "shipping", "error"),
    [
        (D("-0.01"), D("0"), ValueError),
        (D("0"), D("-1"), ValueError),
        (D("NaN"), D("0"), ValueError),
        (D("Infinity"), D("0"), ValueError),
        (10.5, D("0"), TypeError),
        ("10", D("0"), TypeError),
    ],
)
def test_invalid_quote_inputs(cost: Any, shipping: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        quote(cost, shipping, PricingRules())


def test_int_and_negative_zero_inputs() -> None:
    assert quote(10, 0, PricingRules()) == quote(D("10.00"), D("0"), PricingRules())  # type: ignore[arg-type]
    q = quote(D("-0"), D("-0.00"), PricingRules(ending=NONE))
    assert (str(q.cost_basis), str(q.selling_price)) == ("0.00", "0.01")


def test_rules_json_frozen_hashable() -> None:
    payload = (
        '{"strategy": "TIERED", "markup_percent": "12.50", "fee_fixed": 1, "min_profit": "0.50",'
        ' "unknown": "ignored", "tiers": [{"min_cost": "0", "max_cost": "10", "strategy": "FIXED_MARKUP",'
        ' "value": "2.5"}], "ending": ".95", "compare_at_percent": "20"}'
    )
    r = PricingRules.model_validate_json(payload)
    assert r.markup_percent == D("12.50") and r.fee_fixed == D(1) and r.ending is PriceEnding.NINETY_FIVE
    dumped = r.model_dump(mode="json")
    assert dumped["markup_percent"] == "12.50" and dumped["fee_fixed"] == "1"
    assert dumped["tiers"][0]["value"] == "2.5" and "unknown" not in dumped
    assert PricingRules.model_validate(dumped) == r
    assert hash(PricingRules.model_validate_json(payload)) == hash(r)
    assert {r: 1}[PricingRules.model_validate(dumped)] == 1
    with pytest.raises(ValidationError):
        r.markup_percent = D(1)  # type: ignore[misc]


def test_defaults_are_fifty_percent_ending_99() -> None:
    r = PricingRules()
    assert (r.strategy, r.markup_percent, r.ending, r.include_shipping) == (
        Strategy.PERCENT_MARKUP, D(50), PriceEnding.NINETY_NINE, True,
    )
    assert PriceTier(min_cost=D(0), strategy=Strategy.MULTIPLIER, value=D(2)).max_cost is None


def test_quote_serializes_cents_as_strings() -> None:
    q = quote(D("10"), D("0"), PricingRules(compare_at_percent=D(30), ending=NONE))
    assert q.model_dump(mode="json") == {
        "selling_price": "15.00", "compare_at_price": "19.50", "cost_basis": "10.00",
        "floor": "10.00", "profit": "5.00", "margin_percent": "33.33",
    }


def test_quote_is_cached() -> None:
    quote_cache_clear()
    rules = PricingRules(markup_percent=D("42"))
    first = quote(D("12.34"), D("1"), rules)
    second = quote(D("12.340"), D("1.0"), PricingRules(markup_percent=D("42.0")))  # equal keys
    info = quote_cache_info()
    assert second is first
    assert (info.hits, info.misses) == (1, 1)


@pytest.mark.parametrize(
    ("old", "new", "change"),
    [
        ("10", "12", "20.00"),
        ("10", "9", "-10.00"),
        ("10", "10", "0.00"),
        ("3", "4", "33.33"),
        ("3", "5", "66.67"),
        ("8", "8.001", "0.01"),  # 0.0125 -> 0.01
        ("8", "8.0004", "0.01"),  # 0.005 -> 0.01 (HALF_UP)
        ("0", "5", "100"),
        ("0", "0", "0"),
        ("5", "0", "-100.00"),
    ],
)
def test_price_change_percent(old: str, new: str, change: str) -> None:
    result = price_change_percent(D(old), D(new))
    assert result == D(change)
    assert is_cents(result)


def test_price_change_percent_rejects_negative() -> None:
    with pytest.raises(ValueError):
        price_change_percent(D("-1"), D("1"))


# --------------------------------------------------------------------------- #
# Properties
# --------------------------------------------------------------------------- #


def amounts(max_value: str = "100000") -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=D(0), max_value=D(max_value), places=2, allow_nan=False, allow_infinity=False)


def percents(low: Decimal, high: Decimal) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=low, max_value=high, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def price_tiers(draw: st.DrawFn) -> tuple[PriceTier, ...]:
    edges = sorted(draw(st.lists(amounts(), min_size=1, max_size=5, unique=True)))
    bounds: list[tuple[Decimal, Decimal | None]] = list(zip(edges, [*edges[1:], None]))
    tiers = []
    for low, high in bounds:
        if not draw(st.booleans()):  # leave a gap
            continue
        kind = draw(st.sampled_from([Strategy.PERCENT_MARKUP, Strategy.FIXED_MARKUP, Strategy.MULTIPLIER]))
        value = draw(percents(D(1), D(10)) if kind is Strategy.MULTIPLIER else amounts("500"))
        tiers.append(PriceTier(min_cost=low, max_cost=high, strategy=kind, value=value))
    return tuple(tiers)


@st.composite
def pricing_rules(draw: st.DrawFn, kinds: tuple[Strategy, ...] = tuple(Strategy)) -> PricingRules:
    fee_percent = draw(percents(D(0), D(60)))
    min_margin = draw(st.none() | percents(D(0), D(100) - fee_percent - CENT))
    max_margin = draw(st.none() | percents(min_margin or D(0), D("99.99")))
    strategy = draw(st.sampled_from(kinds))
    return PricingRules(
        strategy=strategy,
        markup_percent=draw(amounts("500")),
        fixed_markup=draw(amounts("1000")),
        multiplier=draw(st.decimals(min_value=D(1), max_value=D(10), places=3)),
        tiers=draw(price_tiers()) if strategy is Strategy.TIERED else (),
        include_shipping=draw(st.booleans()),
        fee_percent=fee_percent,
        fee_fixed=draw(amounts("50")),
        min_profit=draw(amounts("100")),
        min_margin_percent=min_margin,
        max_margin_percent=max_margin,
        ending=draw(st.sampled_from(PriceEnding)),
        compare_at_percent=draw(st.none() | st.decimals(min_value=CENT, max_value=D(200), places=2)),
    )


costs = st.decimals(min_value=D(0), max_value=D(100000), places=2)
NON_TIERED = (Strategy.PERCENT_MARKUP, Strategy.FIXED_MARKUP, Strategy.MULTIPLIER)


@settings(max_examples=300, deadline=None)
@given(cost=costs, shipping=amounts("1000"), rules=pricing_rules())
def test_quote_properties(cost: Decimal, shipping: Decimal, rules: PricingRules) -> None:
    q = quote(cost, shipping, rules)
    basis = basis_of(cost, shipping, rules)
    selling = q.selling_price

    # (e) every amount sits on the cent grid
    for value in (selling, q.floor, q.cost_basis, q.profit, q.margin_percent):
        assert is_cents(value), value
    assert q.cost_basis == half_up(basis)

    # (a) never below the floor, and the floor is the smallest cent meeting the bounds
    assert selling >= q.floor >= CENT
    assert meets_floor(q.floor, basis, rules)
    if q.floor > CENT:
        assert not meets_floor(q.floor - CENT, basis, rules)

    # (b) profit and margin at the selling price, exact and as reported
    profit = exact_profit(selling, basis, rules)
    assert profit >= rules.min_profit and q.profit >= rules.min_profit
    assert q.profit == half_up(profit)
    if rules.min_margin_percent is not None:
        assert profit * 100 >= rules.min_margin_percent * selling
        assert q.margin_percent >= rules.min_margin_percent

    # (c) the ending (NONE: the cent grid, checked above)
    if rules.ending is not PriceEnding.NONE:
        assert selling % 1 == D(rules.ending.value[1:]) / 100

    # (d) compare-at strictly above, with the same ending
    if rules.compare_at_percent is None:
        assert q.compare_at_price is None
    else:
        assert q.compare_at_price is not None and q.compare_at_price > selling
        assert is_cents(q.compare_at_price)
        assert q.compare_at_price >= selling * (1 + rules.compare_at_percent / 100)
        if rules.ending is not PriceEnding.NONE:
            assert q.compare_at_price % 1 == selling % 1

    # the cap holds unless the floor or an ending lifted the price over it
    if rules.max_margin_percent is not None and rules.ending is PriceEnding.NONE and selling > q.floor:
        assert margin_at_most(selling, basis, rules, rules.max_margin_percent)

    # uncapped, the strategy's own price is a lower bound
    if rules.max_margin_percent is None and rules.strategy is not Strategy.TIERED:
        assert selling >= strategy_price(basis, rules)


@settings(max_examples=200, deadline=None)
@given(
    costs=st.tuples(costs, costs).map(sorted),
    shipping=amounts("1000"),
    rules=pricing_rules(kinds=NON_TIERED),
)
def test_higher_cost_never_lowers_price(costs: list[Decimal], shipping: Decimal, rules: PricingRules) -> None:
    low, high = (quote(c, shipping, rules) for c in costs)
    assert low.selling_price <= high.selling_price
    assert low.floor <= high.floor


@settings(max_examples=100, deadline=None)
@given(cost=costs, shipping=amounts("1000"), rules=pricing_rules(kinds=NON_TIERED))
def test_ending_only_rounds_up(cost: Decimal, shipping: Decimal, rules: PricingRules) -> None:
    # The same rules without an ending never give a higher price than with one,
    # and the ending adds less than one currency unit.
    with_ending = quote(cost, shipping, rules).selling_price
    plain = quote(cost, shipping, rules.model_copy(update={"ending": PriceEnding.NONE})).selling_price
    assert plain <= with_ending < plain + 1


@settings(max_examples=100, deadline=None)
@given(old=costs, new=costs)
def test_price_change_percent_properties(old: Decimal, new: Decimal) -> None:
    change = price_change_percent(old, new)
    assert is_cents(change)
    if new > old:
        assert change >= 0
    elif new < old:
        assert change <= 0
    else:
        assert change == 0
    if old > 0:
        assert abs(change - (new - old) * 100 / old) <= D("0.005")
