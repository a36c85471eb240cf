"""Freight quotes: the pure rules (models/freight.py), a page's quote keys and shipping
(connectors/sync/pages.py), the memory store, the store's destination country, and the
worker's repricing of a shipping change."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError

from connectors.suppliers.base import SupplierProduct
from connectors.sync.pages import PageFreight, freight_wants, snapshots_of_page
from connectors.sync.quote_store import MemoryQuoteStore
from models.events import ChangedField, ChangeReason, StoreSettings, SupplierSnapshot, default_settings
from models.freight import (
    FreightKey,
    FreightOption,
    FreightQuote,
    FreightWant,
    cheapest,
    plan_lookups,
    shipping_of,
    with_shipping,
)
from models.inventory import apply_snapshot
from models.product import encode_state, product_key
from models.sync import SyncItem, SyncJob, SyncRequest, SyncTier, TrackedProduct, start_run
from tests.unit.test_inventory_resend import RecordingOutputs, processor

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
DAY = 86400.0
AE, CJ, SP = "ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET"
D = Decimal


def key(source: str, variant: str | None = None, country: str = "US", provider: str = AE) -> FreightKey:
    return FreightKey(provider, source, variant, country)


def want(source: str, variant: str | None = None, provider: str = AE) -> FreightWant:
    return FreightWant(key(source, variant, provider=provider), f"ref-{source}")


def quote(amount: str | None, age_s: float = 0.0, currency: str = "USD") -> FreightQuote:
    return FreightQuote(None if amount is None else D(amount), currency, T0 - timedelta(seconds=age_s), "STD")


# --------------------------------------------------------------------------- #
# the cheapest option
# --------------------------------------------------------------------------- #


def test_cheapest_is_the_lowest_fee_in_the_currency_the_first_of_equals() -> None:
    options = [FreightOption("DHL", D("12.00"), "USD"), FreightOption("Saver", D("2.10"), "USD"),
               FreightOption("Post", D("2.10"), "USD"), FreightOption("Local", D("0.50"), "CNY")]
    assert cheapest(options, "USD") == FreightOption("Saver", D("2.10"), "USD")
    assert cheapest(options, "CNY") == FreightOption("Local", D("0.50"), "CNY")
    assert cheapest(options, "EUR") is None and cheapest([], "USD") is None
    assert cheapest([FreightOption("Free", D("0"), "USD"), *options], "USD").amount == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [D("-1"), D("NaN"), D("Infinity"), D("1.1234567"), D(10**12)])
def test_a_fee_a_snapshot_cannot_carry_is_refused(bad: Decimal) -> None:
    with pytest.raises(ValueError):
        FreightOption("x", bad, "USD")
    with pytest.raises(ValueError):
        FreightQuote(bad, "USD", T0)


def test_a_quote_time_must_be_aware() -> None:
    with pytest.raises(ValueError):
        FreightQuote(D("1"), "USD", datetime(2026, 1, 1))


# --------------------------------------------------------------------------- #
# which quotes are due
# --------------------------------------------------------------------------- #


def test_due_are_the_unknown_first_then_the_oldest_and_fresh_ones_are_left() -> None:
    wants = [want("fresh"), want("old"), want("new-1"), want("older"), want("new-2")]
    known = {key("fresh"): quote("1.00", age_s=DAY - 1), key("old"): quote("2.00", age_s=DAY),
             key("older"): quote("3.00", age_s=3 * DAY)}
    plan = plan_lookups(wants, known, T0, DAY, limit=10)
    assert [w.key.source_id for w in plan.start] == ["new-1", "new-2", "older", "old"]
    assert (plan.join, plan.deferred) == ((), 0)


def test_at_most_the_limit_the_rest_deferred_and_zero_asks_nothing() -> None:
    wants = [want(f"p{i}") for i in range(5)]
    plan = plan_lookups(wants, {}, T0, DAY, limit=2)
    assert [w.key.source_id for w in plan.start] == ["p0", "p1"] and plan.deferred == 3
    off = plan_lookups(wants, {}, T0, DAY, limit=0)
    assert (off.start, off.deferred) == ((), 5)


def test_a_key_counts_once_and_one_in_flight_is_joined_not_asked_again() -> None:
    shared = want("same")  # two store products fed by one supplier variant
    wants = [shared, shared, want("busy"), want("other")]
    plan = plan_lookups(wants, {}, T0, DAY, limit=1, in_flight={key("busy")})
    assert [w.key for w in plan.start] == [key("same")]
    assert plan.join == (key("busy"),)  # joined without using the limit
    assert plan.deferred == 1  # "other"


def test_a_quote_of_no_delivery_is_kept_until_its_age() -> None:
    assert plan_lookups([want("nowhere")], {key("nowhere"): quote(None, age_s=10)}, T0, DAY, 5).start == ()


# --------------------------------------------------------------------------- #
# the shipping a snapshot carries
# --------------------------------------------------------------------------- #


def snapshot(shipping: str = "0", available: bool = True, currency: str = "USD") -> SupplierSnapshot:
    return SupplierSnapshot(store_id="s", product_id="p", provider=AE, source_id="A1", available=available,
                            stock=5 if available else 0, cost_price=D("10.00"), shipping_cost=D(shipping),
                            currency=currency, captured_at=T0)


def test_shipping_is_the_quote_else_the_last_known() -> None:
    assert shipping_of(quote("4.20"), "USD", D("1.00")) == D("4.20")
    assert shipping_of(quote("4.20", age_s=9 * DAY), "USD", D("1.00")) == D("4.20")  # old, not yet refreshed
    assert shipping_of(None, "USD", D("1.00")) == D("1.00")  # no quote yet: the last one
    assert shipping_of(None, "USD", D("0")) == 0  # none ever: 0, as before quotes
    assert shipping_of(quote(None), "USD", D("1.00")) == D("1.00")  # no delivery there
    assert shipping_of(quote("4.20", currency="EUR"), "USD", D("1.00")) == D("1.00")  # not in the product's currency


def test_with_shipping_applies_the_quote_and_a_removed_product_keeps_its_last() -> None:
    quoted = with_shipping(snapshot(), quote("4.20"), D("1.00"))
    assert quoted.shipping_cost == D("4.20") and quoted.cost_price == D("10.00")
    assert SupplierSnapshot.model_validate_json(quoted.model_dump_json()) == quoted
    same = snapshot("4.20")
    assert with_shipping(same, quote("4.20"), D("0")) is same
    removed = with_shipping(snapshot(available=False), quote("4.20"), D("3.00"))
    assert removed.shipping_cost == D("3.00")


def test_a_shipping_change_reprices_the_product() -> None:
    """A quote that arrives at a later sync: reason SNAPSHOT, SHIPPING and the price changed."""
    settings = default_settings("s")
    first = apply_snapshot(None, snapshot("0"), settings)
    later = snapshot("4.20").model_copy(update={"captured_at": T0 + timedelta(minutes=15)})
    out = apply_snapshot(first.state, later, settings)
    assert out.change is not None and out.state is not None and first.state is not None
    assert out.change.reason is ChangeReason.SNAPSHOT
    assert {ChangedField.SHIPPING, ChangedField.SELLING_PRICE} <= set(out.change.changed)
    assert out.state.selling_price > first.state.selling_price  # cost + shipping is the basis by default
    assert out.change.after.shipping_cost == D("4.20")


# --------------------------------------------------------------------------- #
# a page's quote keys and snapshots
# --------------------------------------------------------------------------- #


def item(product_id: str, provider: str, source: str, variant: str | None = None, shipping: str = "0",
         cost: str = "10.00", stock: int = 5) -> SyncItem:
    return SyncItem(product_id=product_id, variant_id=variant, provider=provider, source_id=source,
                    last_cost=D(cost), last_stock=stock, last_available=True, last_shipping=D(shipping))


def entry(source: str, variant: str | None, ref: str | None, cost: str = "10.00", stock: int = 5,
          shipping: str = "0") -> SupplierProduct:
    return SupplierProduct(source, variant, True, stock, D(cost), D(shipping), "USD", freight_ref=ref)


ITEMS = (
    item("one", AE, "A1"),  # a single-variant product
    item("many", AE, "A2"),  # a product-level item over several variants
    item("mine", CJ, "C1", variant="cv2"),  # a store variant = the supplier's
    item("gone", CJ, "C2", shipping="2.50"),
    item("spk", SP, "S1", shipping="1.00"),
)
FETCHED = {
    AE: {"A1": [entry("A1", "14:193#Red", "sku-1")],
         "A2": [entry("A2", "14:193#Red", "sku-21", cost="5.00"), entry("A2", "14:194#Blue", "sku-22")]},
    CJ: {"C1": [entry("C1", "cv1", "cv1"), entry("C1", "cv2", "cv2")], "C2": [SupplierProduct.gone("C2", "USD")]},
    SP: {"S1": [entry("S1", "sv", None, shipping="1.00")]},
}


def test_each_available_product_wants_the_quote_of_the_entry_that_feeds_it() -> None:
    wants = freight_wants(ITEMS, FETCHED, "GB", frozenset({AE, CJ}))
    assert wants == {
        AE: [FreightWant(FreightKey(AE, "A1", "14:193#Red", "GB"), "sku-1"),
             FreightWant(FreightKey(AE, "A2", None, "GB"), "sku-21")],  # summed: the first variant's quote
        CJ: [FreightWant(FreightKey(CJ, "C1", "cv2", "GB"), "cv2")],  # the removed C2 wants none
    }
    assert freight_wants(ITEMS, {CJ: FETCHED[CJ]}, "GB", frozenset({AE, CJ})) == {CJ: wants[CJ]}  # AE failed


def test_page_snapshots_carry_the_quotes_and_count_a_shipping_change() -> None:
    quotes = {FreightKey(AE, "A1", "14:193#Red", "US"): quote("4.20"),
              FreightKey(CJ, "C1", "cv2", "US"): quote("0.00")}
    freight = PageFreight("US", frozenset({AE, CJ}), quotes)
    result = snapshots_of_page("s", "run-1", ITEMS, FETCHED, {}, T0, freight)
    shipping = {s.product_id: s.shipping_cost for s in result.snapshots}
    assert shipping == {"one": D("4.20"), "many": D("0"), "mine": D("0.00"), "gone": D("2.50"), "spk": D("1.00")}
    # "one" changed (shipping 0 -> 4.20: only that), "many" (its variants' stock summed), "gone" (removed);
    # "mine" (0 -> 0.00) and "spk" did not.
    assert (result.changed, result.failed) == (3, 0)
    without = snapshots_of_page("s", "run-1", ITEMS, FETCHED, {}, T0)  # freight off: the answers' own shipping
    assert {s.product_id: s.shipping_cost for s in without.snapshots}["gone"] == 0


# --------------------------------------------------------------------------- #
# the memory store
# --------------------------------------------------------------------------- #


def test_the_memory_store_keeps_the_newest_and_at_most_its_size() -> None:
    async def main() -> None:
        store = MemoryQuoteStore(max_quotes=2)
        await store.put_many({key("a"): quote("1.00", age_s=10), key("b"): quote("2.00")})
        await store.put_many({key("a"): quote("9.00", age_s=20)})  # older: ignored
        assert (await store.get_many([key("a")]))[key("a")].amount == D("1.00")  # "a" used last now
        await store.put_many({key("c"): quote("3.00")})  # "b", least recently used, goes
        assert set(await store.get_many([key("a"), key("b"), key("c")])) == {key("a"), key("c")}
        assert len(store) == 2

    asyncio.run(main())


# --------------------------------------------------------------------------- #
# the store's country, carried by the sync jobs
# --------------------------------------------------------------------------- #


def test_ship_to_country_defaults_to_us_and_is_validated() -> None:
    assert default_settings("s").ship_to_country == "US"
    assert StoreSettings(store_id="s", ship_to_country="gb").ship_to_country == "GB"
    for bad in ("UK", "XX", "USA", "U", "1A"):
        with pytest.raises(ValidationError, match="ship_to_country"):
            StoreSettings(store_id="s", ship_to_country=bad)


def test_a_sync_job_from_before_the_fields_validates_with_their_defaults() -> None:
    old = {"run_id": "r", "store_id": "s", "page": 0, "pages": 1, "items": [
        {"product_id": "p", "provider": AE, "source_id": "A1", "last_cost": "3.00", "last_stock": 1,
         "last_available": True}]}
    job = SyncJob.model_validate_json(orjson.dumps(old))
    assert job.ship_to_country == "US" and job.items[0].last_shipping == 0


def test_a_run_carries_the_country_and_each_product_its_last_shipping() -> None:
    request = SyncRequest(request_id="s:MANUAL:1", store_id="s", tier=SyncTier.MANUAL, requested_at=T0)
    tracked = [TrackedProduct("p1", None, AE, "A1", D("5.00"), 10, True, D("3.10")),
               TrackedProduct("p2", None, CJ, "C1", D("5.00"), 10, True)]
    jobs = start_run(None, request, tracked, T0, 1, 1800, ship_to_country="DE").jobs
    assert [j.ship_to_country for j in jobs] == ["DE", "DE"]
    assert [i.last_shipping for j in jobs for i in j.items] == [D("3.10"), D("0")]


class ValueOutputs(RecordingOutputs):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[tuple[str, bytes]] = []

    def add(self, topic: str, partition: int | None, key: bytes, value: bytes | None) -> None:
        super().add(topic, partition, key, value)
        self.values.append((topic, value or b""))


def test_the_worker_builds_a_runs_pages_with_the_stores_country_and_shipping() -> None:
    proc, _ = processor()
    outputs = ValueOutputs()
    proc.sync.outputs = outputs
    proc._tp = type("TP", (), {"topic": "sync.requests", "partition": 0})()  # type: ignore[assignment]
    settings = StoreSettings(store_id="s", ship_to_country="fr", updated_at=T0)
    proc.settings.data["s"] = settings.model_dump_json().encode()
    state = apply_snapshot(None, snapshot("2.75"), default_settings("s")).state
    assert state is not None
    proc.products.data[product_key("s", "p", None)] = encode_state(state)
    request = SyncRequest(request_id="s:MANUAL:1", store_id="s", tier=SyncTier.MANUAL, requested_at=datetime.now(timezone.utc))
    message = type("Msg", (), {"value": request.model_dump_json().encode(), "key": b"s", "topic": "sync.requests",
                               "partition": 0, "offset": 0})()
    proc.sync.on_request(message)
    [job] = [SyncJob.model_validate_json(v) for t, v in outputs.values if t == "sync.jobs"]
    assert job.ship_to_country == "FR"
    assert [(i.product_id, i.last_shipping) for i in job.items] == [("p", D("2.75"))]


def test_an_item_whose_source_id_has_spaces_finds_what_the_adapter_fetched_for_it() -> None:
    """The adapters fetch a source id stripped (connectors.suppliers.catalog.unique_ids) and
    key their answers so: a tracked id with spaces around it must find them, not fail
    quietly on every run."""
    padded = (item("one", AE, " A1 "), item("spk", SP, "S1\t"))
    result = snapshots_of_page("s", "run-1", padded, FETCHED, {}, T0)
    assert [s.product_id for s in result.snapshots] == ["one", "spk"] and result.failed == 0
    assert freight_wants(padded, FETCHED, "GB", frozenset({AE}))[AE][0].ref == "sku-1"
