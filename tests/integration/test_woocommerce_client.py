"""The WooCommerce REST client and storefront adapter against a fake
WooCommerce site on loopback (tests/fakes/woocommerce_server.py): what is
written (absolute stock, prices as decimal strings), batches of at most 100,
per-item refusals, retries, both ways of authenticating, and tracking notes
added once."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from connectors.storefront.base import refuses_account
from connectors.suppliers.base import OutcomeUnknown
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.settings import WooCommerceAccount
from connectors.woocommerce.storefront import WooCommerceStorefront
from models.events import ChangedField, ChangeReason, InventoryChange, ProductStatus, ProductView
from models.orders import StorefrontCommand, StorefrontCommandType
from models.webhook_routing import CatalogueVariant
from tests.fakes.woocommerce_server import FakeWooCommerce

SITE = "woo.example.com"
STORE = "store-w"
AT = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


def account(fake: FakeWooCommerce, **extra: Any) -> WooCommerceAccount:
    return WooCommerceAccount(site_url=fake.site_url, site_host=SITE, consumer_key=fake.consumer_key,
                              consumer_secret=fake.consumer_secret, **extra)


def adapter(fake: FakeWooCommerce, **extra: Any) -> WooCommerceStorefront:
    acct = account(fake, **extra)
    return WooCommerceStorefront(STORE, acct, WooCommerceClient(acct, base_delay=0.01))


class Catalogue:
    def __init__(self, *variants: CatalogueVariant) -> None:
        self.by_product = {(v.store_id, v.product_id, v.variant_id): v for v in variants}

    def variant(self, store_id: str, product_id: str, variant_id: str | None) -> CatalogueVariant | None:
        return self.by_product.get((store_id, product_id, variant_id))


def woo(product: str, ref: str, parent: str | None = None, site: str = SITE, variant: str | None = None) -> CatalogueVariant:
    return CatalogueVariant(platform="WOOCOMMERCE", shop_domain=site, shopify_variant_id=ref, store_id=STORE,
                            product_id=product, variant_id=variant, provider="ALIEXPRESS", source_id=f"AE-{product}",
                            woocommerce_parent_id=parent)


def view(stock: int, price: str, compare: str | None = None, available: bool = True) -> ProductView:
    return ProductView(status=ProductStatus.ACTIVE if available else ProductStatus.OUT_OF_STOCK, available=available,
                       stock=stock, cost_price=Decimal("4.00"), shipping_cost=Decimal("1.00"), currency="USD",
                       selling_price=Decimal(price), compare_at_price=None if compare is None else Decimal(compare))


def change(product: str, after: ProductView, before: ProductView | None = None,
           changed: tuple[ChangedField, ...] = (), variant: str | None = None, n: int = 0) -> InventoryChange:
    return InventoryChange(change_id=f"{product}:{variant}:{n}", store_id=STORE, product_id=product, variant_id=variant,
                           provider="ALIEXPRESS", source_id=f"AE-{product}",
                           reason=ChangeReason.NEW if before is None else ChangeReason.SNAPSHOT,
                           changed=changed, before=before, after=after, captured_at=AT)


def command(order_id: str, number: str, lines: tuple[str, ...] = ("315",), carrier: str | None = "Cainiao") -> StorefrontCommand:
    return StorefrontCommand(command_id=f"show:{order_id}:{number}", type=StorefrontCommandType.SHOW_TRACKING,
                             store_id=STORE, order_id=order_id, order_number="727", group_id="ALIEXPRESS",
                             line_ids=lines, tracking_number=number, carrier=carrier,
                             tracking_url=f"https://global.cainiao.com/detail.htm?mailNoList={number}", issued_at=AT)


def test_push_writes_absolute_stock_and_string_prices_and_is_idempotent() -> None:
    products = {93: {"type": "simple", "regular_price": "9.00", "stock_quantity": 1, "manage_stock": False},
                22: {"type": "variable"}}
    variations = {22: {23: {"regular_price": "20.00", "stock_quantity": 3}, 24: {"regular_price": "20.00"}}}
    catalogue = Catalogue(woo("p-93", "93"), woo("p-22", "23", parent="22", variant="black-m"),
                          woo("p-22", "24", parent="22", variant="black-l"),
                          woo("p-other-site", "50", site="other.example.com"))
    changes = [
        change("p-93", view(7, "12.50")),  # NEW: stock and price
        change("p-22", view(5, "17.99", compare="24.00"), variant="black-m"),
        change("p-22", view(0, "17.99"), before=view(4, "17.99"), changed=(ChangedField.STOCK,), variant="black-l"),
        change("p-22", view(0, "17.99"), before=view(0, "17.99"), changed=(ChangedField.COST,), variant="black-l", n=1),
        change("p-unknown", view(1, "1.00")),
        change("p-other-site", view(1, "1.00")),
    ]
    with FakeWooCommerce(products=products, variations=variations) as fake:
        shop = adapter(fake)

        async def run() -> Any:
            try:
                return await shop.push(changes, catalogue), await shop.push(changes, catalogue)
            finally:
                await shop.aclose()

        first, again = asyncio.run(run())
        simple, black_m, black_l = fake.product(93), fake.variation(22, 23), fake.variation(22, 24)
        writes = fake.writes
        requests = fake.requests

    assert first.changes == {"PUSHED": 4, "UNMAPPED": 2}
    assert first.writes == {("quantity", "OK"): 3, ("price", "OK"): 2}
    assert again.writes == first.writes  # the same absolute values again
    assert (simple["stock_quantity"], simple["manage_stock"], simple["stock_status"], simple["regular_price"],
            simple["sale_price"]) == (7, True, "instock", "12.50", "")
    # A compare-at price above the selling price: "was 24.00, now 17.99".
    assert (black_m["regular_price"], black_m["sale_price"], black_m["stock_quantity"]) == ("24.00", "17.99", 5)
    # Stock only for black-l: its later COST change (no shown field moved) adds no price write.
    assert (black_l["stock_quantity"], black_l["stock_status"], black_l["regular_price"]) == (0, "outofstock", "20.00")
    paths = [w["path"] for w in writes]
    assert paths == ["/products/batch", "/products/22/variations/batch"] * 2
    assert writes[0]["body"] == {"update": [{"id": 93, "manage_stock": True, "stock_quantity": 7,
                                             "stock_status": "instock", "regular_price": "12.50", "sale_price": ""}]}
    assert {r["auth"] for r in requests} == {"basic"}


def test_batches_of_at_most_100_and_refused_items_are_counted() -> None:
    products = {n: {"type": "simple"} for n in range(1000, 1150)}
    catalogue = Catalogue(*(woo(f"p-{n}", str(n)) for n in range(1000, 1151)),  # 1150 is not in the shop
                          woo("p-bad", "sku-1"), woo("p-bad-parent", "5", parent="gid://x"))  # no WooCommerce ids
    changes = [change(f"p-{n}", view(n % 7, "3.10")) for n in range(1000, 1151)]
    changes += [change("p-bad", view(1, "1.00")), change("p-bad-parent", view(1, "1.00"))]
    with FakeWooCommerce(products=products) as fake:
        shop = adapter(fake)

        async def run() -> Any:
            try:
                return await shop.push(changes, catalogue)
            finally:
                await shop.aclose()

        outcome = asyncio.run(run())
        sizes = [len(w["body"]["update"]) for w in fake.writes]
        last = fake.product(1149)
    assert sizes == [100, 51]
    assert outcome.changes == {"PUSHED": 151, "UNMAPPED": 2}
    assert outcome.writes == {("quantity", "OK"): 150, ("price", "OK"): 150,
                              ("quantity", "REJECTED"): 1, ("price", "REJECTED"): 1}
    assert last["stock_quantity"] == 1149 % 7 and last["regular_price"] == "3.10"


def test_5xx_and_429_are_retried_and_query_auth_keeps_the_secret_out_of_logs(caplog: pytest.LogCaptureFixture) -> None:
    catalogue = Catalogue(woo("p-93", "93"))
    with FakeWooCommerce(products={93: {"type": "simple"}}) as fake:
        shop = adapter(fake, auth="query")
        fake.fail_next = ["500", "429"]

        async def run() -> Any:
            try:
                return await shop.push([change("p-93", view(2, "5.00"))], catalogue)
            finally:
                await shop.aclose()

        with caplog.at_level(logging.DEBUG):
            outcome = asyncio.run(run())
        requests = fake.requests
        secret = fake.consumer_secret
        stock = fake.product(93)["stock_quantity"]
    assert outcome.writes == {("quantity", "OK"): 1, ("price", "OK"): 1} and stock == 2
    assert len(requests) == 3 and {r["auth"] for r in requests} == {"query"}
    assert all(r["query"].get("consumer_key") for r in requests)
    assert secret not in caplog.text and "consumer_secret=***" in caplog.text


def test_the_probe_of_a_set_aside_site_reads_one_order_and_raises_while_the_site_fails() -> None:
    """``reachable``: what the storefront process asks of a site it set aside (every try failed)."""
    with FakeWooCommerce() as fake:
        shop = adapter(fake)

        async def run() -> bool:
            try:
                await shop.reachable()  # answers: returns
                fake.fail_next = ["500"] * 20  # more than the client's retries
                try:
                    await shop.reachable()
                except Exception:
                    return True
                return False
            finally:
                await shop.aclose()

        failing_raised = asyncio.run(run())
        orders_read = [r for r in fake.requests if r["path"].endswith("/orders")]
    assert failing_raised
    assert orders_read and orders_read[0]["query"].get("per_page") == ["1"]


def test_bad_credentials_are_raised_as_a_refusal_of_the_account_and_nothing_is_written() -> None:
    """A 401 refuses the site's account, not one write: counted REJECTED it was lost; raised,
    the storefront process sends the store's batch to deadletter (STOREFRONT_REFUSED) for a
    replay once the key is fixed (tests/integration/test_storefront.py)."""
    catalogue = Catalogue(woo("p-93", "93"))
    with FakeWooCommerce(products={93: {"type": "simple"}}) as fake:
        acct = WooCommerceAccount(site_url=fake.site_url, site_host=SITE, consumer_key=fake.consumer_key,
                                  consumer_secret="cs_wrong")
        shop = WooCommerceStorefront(STORE, acct, WooCommerceClient(acct, base_delay=0.01))

        async def run() -> Any:
            try:
                return await shop.push([change("p-93", view(2, "5.00"))], catalogue)
            finally:
                await shop.aclose()

        with pytest.raises(Exception) as raised:
            asyncio.run(run())
        assert fake.writes == []
    assert refuses_account(raised.value) and "401" in str(raised.value)


def test_tracking_note_is_added_once_and_the_order_completed_when_all_lines_shipped() -> None:
    orders = {727: {"status": "processing", "line_items": [{"id": 315}, {"id": 316}]},
              728: {"status": "processing", "line_items": [{"id": 320}]}}
    with FakeWooCommerce(orders=orders) as fake:
        shop = adapter(fake, complete_on_tracking=True)
        private = adapter(fake, customer_note=False)
        first = command(f"woocommerce-{SITE}-727", "LP00123456789012CN", lines=("315",))
        single = command(f"woocommerce-{SITE}-728", "LP00999999999999CN", lines=("320",))

        async def run() -> list[str]:
            try:
                return [
                    await shop.show_tracking(first),
                    await shop.show_tracking(first),  # delivered again
                    await shop.show_tracking(single),
                    await shop.show_tracking(command("shopify-5550001", "LP1")),
                    await shop.show_tracking(command(f"woocommerce-other.example.com-727", "LP2")),
                    await shop.show_tracking(command(f"woocommerce-{SITE}-999", "LP3")),
                    await private.show_tracking(command(f"woocommerce-{SITE}-727", "YT2412345678901", lines=("316",))),
                ]
            finally:
                await shop.aclose()
                await private.aclose()

        results = asyncio.run(run())
        notes_727, notes_728 = fake.order_notes(727), fake.order_notes(728)
        statuses = (fake.orders[727]["status"], fake.orders[728]["status"])
    assert results == ["CREATED", "ALREADY_SHOWN", "CREATED", "NOT_THIS_PLATFORM", "NOT_THIS_PLATFORM",
                       "ORDER_NOT_FOUND", "CREATED"]
    assert [n["customer_note"] for n in notes_727] == [True, False] and len(notes_728) == 1
    assert notes_727[0]["note"] == ("Order 727 has shipped. Carrier: Cainiao. Tracking number: LP00123456789012CN. "
                                    "Track it at https://global.cainiao.com/detail.htm?mailNoList=LP00123456789012CN")
    # 728's one line shipped: completed; 727's first shipment covered one of two lines: left as it was.
    assert statuses == ("processing", "completed")


def test_a_note_whose_answer_was_lost_is_not_added_twice() -> None:
    with FakeWooCommerce(orders={727: {"line_items": [{"id": 315}]}}) as fake:
        shop = adapter(fake)
        shipped = command(f"woocommerce-{SITE}-727", "LP00123456789012CN")
        fake.fail_next = ["", "500_after"]  # the notes list answers; the note is added, then a 500

        async def run() -> list[str]:
            out = []
            try:
                with pytest.raises(OutcomeUnknown):
                    await shop.show_tracking(shipped)
                out.append(await shop.show_tracking(shipped))  # the process tries again
            finally:
                await shop.aclose()
            return out

        assert asyncio.run(run()) == ["ALREADY_SHOWN"]
        assert len(fake.order_notes(727)) == 1


def test_register_webhooks_creates_the_order_topics_once(tmp_path: Any) -> None:
    """``ops-engine woocommerce register-webhooks``: what is missing is created, a disabled webhook
    re-activated, one with an old secret given the current one, and a second run changes nothing."""
    import json
    import os
    import subprocess
    import sys

    from connectors.woocommerce.webhooks import TOPICS
    from tests.harness import ROOT

    ours = "https://ops.example.com/webhooks/woocommerce"
    current, previous = "wc-secret-current-0123456789", "wc-secret-previous-9876543210"
    with FakeWooCommerce() as fake:
        for n in range(130):  # the site's own webhooks: the list spans two pages
            fake.add_webhook("product.updated", f"https://erp.example.com/hook/{n}", "theirs")
        other = fake.add_webhook("order.created", "https://crm.example.com/hook", "theirs")
        disabled = fake.add_webhook("order.updated", ours, previous, status="disabled")
        secrets = tmp_path / "storefront.json"
        secrets.write_text(json.dumps({"storefront_accounts": {"store-w": {
            "platform": "WOOCOMMERCE", "site_url": fake.site_url, "site_host": SITE,
            "consumer_key": fake.consumer_key, "consumer_secret": fake.consumer_secret}}}))
        secrets.chmod(0o600)
        env = {**os.environ, "OPS_STOREFRONT_SECRETS_FILE": str(secrets), "OPS_PUBLIC_URL": "https://ops.example.com",
               "OPS_WOOCOMMERCE_WEBHOOK_SECRETS": json.dumps({SITE: [current, previous]}), "PYTHONPATH": str(ROOT)}

        def register(arg: str, **extra: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([sys.executable, "-m", "connectors.cli", "woocommerce", "register-webhooks", arg],
                                  env={**env, **extra}, cwd=ROOT, capture_output=True, text=True, timeout=60)
            for secret in (current, previous, fake.consumer_secret):
                assert secret not in done.stdout + done.stderr
            return done

        def results(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
            assert done.returncode == 0, done.stderr
            return dict(line.split(None, 1) for line in done.stdout.splitlines())

        first = results(register("store-w"))
        writes = len(fake.writes)
        second = results(register(SITE))  # by the site's host too
        hooks = fake.webhooks_list()
        assert len(fake.writes) == writes  # the second run wrote nothing

        # The site's secret is rotated: each webhook is given the new one, nothing is created.
        third = results(register("store-w", OPS_WOOCOMMERCE_WEBHOOK_SECRETS=json.dumps({SITE: ["wc-rotated-42", current]})))
        rotated = [h for h in fake.webhooks_list() if h["delivery_url"] == ours]
        unknown = register("store-x")
        no_secret = register("store-w", OPS_WOOCOMMERCE_WEBHOOK_SECRETS="{}")
        final = fake.webhooks_list()

    assert first == {"order.created": "CREATED", "order.updated": "ACTIVATED", "order.restored": "CREATED"}
    assert second == {topic: "EXISTS" for topic in TOPICS}
    mine = [h for h in hooks if h["delivery_url"] == ours]
    assert sorted(h["topic"] for h in mine) == sorted(TOPICS)
    assert all(h["status"] == "active" and h["secret"] == current for h in mine)
    assert next(h for h in mine if h["topic"] == "order.updated")["id"] == disabled  # re-activated, not duplicated
    assert len(hooks) == 130 + 2 + 2
    assert next(h for h in hooks if h["id"] == other)["secret"] == "theirs"  # another URL's: left alone
    assert third == {topic: "SECRET_UPDATED" for topic in TOPICS}
    assert len(rotated) == 3 and {h["secret"] for h in rotated} == {"wc-rotated-42"}
    assert unknown.returncode != 0 and "store-x" in unknown.stderr
    assert no_secret.returncode != 0 and "no webhook secret" in no_secret.stderr
    assert len(final) == len(hooks)
    created = [w["body"] for w in fake.writes if w["method"] == "POST" and w["path"].endswith("/webhooks")]
    assert sorted(b["topic"] for b in created) == ["order.created", "order.restored"]
    assert all(b["status"] == "active" and b["delivery_url"] == ours and b["name"].startswith("ops-engine")
               for b in created)
