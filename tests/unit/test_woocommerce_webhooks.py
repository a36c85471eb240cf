"""WooCommerce webhooks: the signature, the site, the delivery id, the ping and
the secrets (models/webhooks.py, connectors/ingress/settings.py), and what an
order webhook means (models/webhook_routing.py), on REST v3 order payloads
(tests/fixtures/webhooks/woocommerce_order_processing.json)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.fulfillment import GroupStatus, OrderStatus, decide
from models.orders import OrderEventType
from models.webhook_routing import CatalogueVariant, route, woocommerce_item_ref
from models.webhooks import (
    SECRET_HEADERS,
    WOOCOMMERCE_HEADERS,
    InboundWebhook,
    WebhookSource,
    body_digest,
    dedup_key,
    is_woocommerce_ping,
    select_headers,
    sign_woocommerce,
    verify_woocommerce,
    woocommerce_delivery_id,
    woocommerce_site,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
BODY = (FIXTURES / "woocommerce_order_processing.json").read_bytes()
SITE = "woo.example.com"
SECRET = "wc-secret-current-0123456789"
PREVIOUS = "wc-secret-previous-9876543210"
AT = datetime(2026, 11, 24, 10, 12, 41, tzinfo=timezone.utc)


def woo_sig(body: bytes, secret: str) -> str:
    # Independent of sign_woocommerce: WC_Webhook::generate_signature, base64(hash_hmac('sha256', body, secret, true)).
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# --------------------------------------------------------------------------- #
# Signature, site, ids
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("case", "header", "secrets", "ok"),
    [
        ("current secret", woo_sig(BODY, SECRET), [SECRET, PREVIOUS], True),
        ("previous secret during a rotation", woo_sig(BODY, PREVIOUS), [SECRET, PREVIOUS], True),
        ("rotation over", woo_sig(BODY, PREVIOUS), [SECRET], False),
        ("other secret", woo_sig(BODY, "nope"), [SECRET], False),
        ("hex, not base64", hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest(), [SECRET], False),
        ("garbage", "%%%", [SECRET], False),
        ("missing", None, [SECRET], False),
        ("no secret", woo_sig(BODY, SECRET), [], False),
        ("empty secret", woo_sig(BODY, ""), [""], False),
    ],
)
def test_signature_matrix(case: str, header: str | None, secrets: list[str], ok: bool) -> None:
    assert verify_woocommerce(BODY, header, secrets) is ok, case


def test_signature_covers_every_byte() -> None:
    assert sign_woocommerce(BODY, SECRET) == woo_sig(BODY, SECRET)
    assert not verify_woocommerce(BODY + b"\n", woo_sig(BODY, SECRET), [SECRET])
    assert not verify_woocommerce(BODY.replace(b'"58.35"', b'"0.01"'), woo_sig(BODY, SECRET), [SECRET])


@pytest.mark.parametrize(
    ("given", "site"),
    [
        ("https://woo.example.com/", SITE),
        ("https://Woo.Example.com", SITE),
        ("http://woo.example.com:8080/shop/", SITE),
        ("woo.example.com", SITE),
        ("woo.example.com.", SITE),
        ("http://localhost/", "localhost"),
        ("https://user@evil.example/", None),
        ("https:///", None),
        ("", None),
        ("shop example.com", None),
        (None, None),
    ],
)
def test_site_is_the_host_of_the_source(given: str | None, site: str | None) -> None:
    assert woocommerce_site(given) == site


def test_delivery_id_and_its_fallback() -> None:
    payload = orjson.loads(BODY)
    headers = {"x-wc-webhook-delivery-id": "8f5a3f1b0d8e4f6c", "x-wc-webhook-id": "12"}
    assert woocommerce_delivery_id(headers, payload, BODY) == "8f5a3f1b0d8e4f6c"
    # No delivery id: the webhook, the resource and its modification time.
    assert woocommerce_delivery_id({"x-wc-webhook-id": "12"}, payload, BODY) == "wc:12:727:2026-11-24T10:12:41"
    assert woocommerce_delivery_id({"x-wc-webhook-delivery-id": "bad id\r\n", "x-wc-webhook-id": "12"},
                                   payload, BODY) == "wc:12:727:2026-11-24T10:12:41"
    # Not even that: the body's digest.
    assert woocommerce_delivery_id({}, payload, BODY) == body_digest(BODY)
    assert woocommerce_delivery_id({"x-wc-webhook-id": "12"}, {"id": 5}, b"{}") == body_digest(b"{}")
    assert dedup_key(WebhookSource.WOOCOMMERCE, "d1", shop_domain=SITE) == f"woocommerce:{SITE}:d1"


def test_the_ping_is_recognised_and_nothing_else() -> None:
    assert is_woocommerce_ping(b"webhook_id=17")
    assert is_woocommerce_ping(b"webhook_id=123456\n")
    for other in (b"", b"webhook_id=", b"webhook_id=1&x=2", b'{"webhook_id": 1}', b"webhook_id=" + b"9" * 60):
        assert not is_woocommerce_ping(other), other


def test_headers_kept_never_hold_the_signature() -> None:
    incoming = {name: "v" for name in WOOCOMMERCE_HEADERS} | {"x-wc-webhook-signature": "c2ln", "user-agent": "WC"}
    kept = select_headers(incoming, [*WOOCOMMERCE_HEADERS, "X-WC-Webhook-Signature"])
    assert set(kept) == set(WOOCOMMERCE_HEADERS) and "x-wc-webhook-signature" in SECRET_HEADERS


def test_record_is_keyed_by_the_site() -> None:
    record = InboundWebhook(
        source=WebhookSource.WOOCOMMERCE, topic="order.created", delivery_id="d1",
        dedup_key=f"woocommerce:{SITE}:d1", shop_domain=SITE, headers={}, body=BODY.decode(), received_at=AT,
    )
    back = InboundWebhook.model_validate_json(record.model_dump_json())
    assert back == record and back.key == SITE.encode()  # meets the site's catalogue (keyed so too)


# --------------------------------------------------------------------------- #
# Settings
# --------------------------------------------------------------------------- #


def test_secrets_per_site_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.ingress.settings import IngressSettings

    for name in ("OPS_SHOPIFY_WEBHOOK_SECRETS", "OPS_STRIPE_WEBHOOK_SECRETS", "OPS_SUPPLIER_WEBHOOK_SECRETS",
                 "OPS_WOOCOMMERCE_WEBHOOK_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps({"woocommerce_webhook_secrets": {
        "woo.example.com": ["new", "old", " "], "https://Second.Example.org/": "only", "empty.example.org": [""],
    }}))
    path.chmod(0o600)
    monkeypatch.setenv("OPS_WEBHOOK_SECRETS_FILE", str(path))
    settings = IngressSettings.load()
    assert settings.woocommerce_keys() == {SITE: (b"new", b"old"), "second.example.org": (b"only",)}
    assert "'new'" not in repr(settings) and "'only'" not in str(settings)
    monkeypatch.setenv("OPS_WOOCOMMERCE_WEBHOOK_SECRETS", json.dumps({SITE: "from-env"}))
    # The environment wins, site by site.
    assert IngressSettings.load().woocommerce_keys() == {SITE: (b"from-env",), "second.example.org": (b"only",)}


def test_a_bad_site_names_the_variable_not_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.ingress.settings import IngressSettings
    from streams.settings import SettingsError

    monkeypatch.delenv("OPS_WEBHOOK_SECRETS_FILE", raising=False)
    monkeypatch.setenv("OPS_WOOCOMMERCE_WEBHOOK_SECRETS", json.dumps({"not a host": "hunter2"}))
    with pytest.raises(SettingsError) as info:
        IngressSettings.load()
    assert "OPS_WOOCOMMERCE_WEBHOOK_SECRETS" in str(info.value) and "hunter2" not in str(info.value)


# --------------------------------------------------------------------------- #
# Routing
# --------------------------------------------------------------------------- #

CATALOGUE = {
    (SITE, "93"): CatalogueVariant(platform="WOOCOMMERCE", shop_domain=SITE, shopify_variant_id="93",
                                   store_id="store-w", product_id="p-single", provider="ALIEXPRESS",
                                   source_id="1005001"),
    (SITE, "23"): CatalogueVariant(platform="WOOCOMMERCE", shop_domain=SITE, shopify_variant_id="23",
                                   store_id="store-w", product_id="p-idea", variant_id="black-m",
                                   provider="CJ_DROPSHIPPING", source_id="CJ-9", source_variant_id="CJ-9-BM"),
    (SITE, "41"): CatalogueVariant(platform="WOOCOMMERCE", shop_domain=SITE, shopify_variant_id="41",
                                   store_id="store-w", product_id="p-hoodie", variant_id="blue-l",
                                   provider="SPOCKET", source_id="SP-4"),
}


def catalogue(site: str, ref: str) -> CatalogueVariant | None:
    return CATALOGUE.get((site, ref))


def order(**changes: Any) -> dict[str, Any]:
    return {**orjson.loads(BODY), **changes}


def test_a_paid_order_is_created_and_paid_with_mapped_items() -> None:
    routed = route("WOOCOMMERCE", "order.created", SITE, order(), AT, catalogue)
    assert routed.refused is None and routed.ignored is None
    created, paid = routed.events
    assert created.type is OrderEventType.ORDER_CREATED and paid.type is OrderEventType.PAYMENT_CONFIRMED
    assert created.order_id == paid.order_id == f"woocommerce-{SITE}-727"
    assert (created.event_id, paid.event_id) == (f"woocommerce:{SITE}:order:727", f"woocommerce:{SITE}:order:727:paid")
    assert created.store_id == "store-w" and created.order_number == "727"
    assert [(i.line_id, i.provider, i.source_id, i.source_variant_id, i.quantity, i.unit_price) for i in created.items] == [
        ("315", "ALIEXPRESS", "1005001", None, 2, Decimal("3.00")),
        ("316", "CJ_DROPSHIPPING", "CJ-9", "CJ-9-BM", 1, Decimal("12.00")),
        ("317", "SPOCKET", "SP-4", None, 3, Decimal("9.666667")),  # 29.00 / 3, six places
    ]
    assert created.customer.email == "john.doe@example.com" and created.customer.name == "John Doe"
    address = created.shipping_address
    assert (address.line1, address.line2, address.province, address.postal_code, address.country_code) == (
        "969 Market", "Suite 400", "CA", "94103", "US")
    assert address.phone == "(555) 555-5555"  # the shipping phone is empty: the billing one
    assert (created.subtotal, created.shipping_total, created.tax_total, created.total) == (
        Decimal("47.00"), Decimal("10.00"), Decimal("1.35"), Decimal("58.35"))
    assert created.currency == "USD" and paid.amount == Decimal("58.35") and paid.payment_id == "pi_3QFakeWooTxn0001"
    state = decide(decide(None, created).state, paid).state
    assert state.status is OrderStatus.PROCESSING and len(state.groups) == 3


def test_created_and_updated_name_the_same_events_and_payment_waits_for_it() -> None:
    pending = order(status="pending", date_paid=None, date_paid_gmt=None, transaction_id="")
    first = route("WOOCOMMERCE", "order.created", SITE, pending, AT, catalogue).events
    assert [e.type for e in first] == [OrderEventType.ORDER_CREATED]
    later = route("WOOCOMMERCE", "order.updated", SITE, order(), AT, catalogue).events
    assert [e.event_id for e in later] == [first[0].event_id, f"woocommerce:{SITE}:order:727:paid"]
    # Paid by its date alone (on-hold after a paid bank transfer, say).
    on_hold = route("WOOCOMMERCE", "order.updated", SITE, order(status="on-hold"), AT, catalogue).events
    assert [e.type for e in on_hold] == [OrderEventType.ORDER_CREATED, OrderEventType.PAYMENT_CONFIRMED]
    completed = order(status="completed", date_paid=None, date_paid_gmt=None)
    assert len(route("WOOCOMMERCE", "order.updated", SITE, completed, AT, catalogue).events) == 2
    failed = route("WOOCOMMERCE", "order.updated", SITE, order(status="failed"), AT, catalogue).events
    assert [e.type for e in failed] == [OrderEventType.ORDER_CREATED]


def test_cancelled_and_refunded() -> None:
    (cancel,) = route("WOOCOMMERCE", "order.updated", SITE, order(status="cancelled"), AT, catalogue).events
    assert cancel.type is OrderEventType.CANCEL_REQUESTED and cancel.event_id == f"woocommerce:{SITE}:order:727:cancelled"
    assert cancel.order_id == f"woocommerce-{SITE}-727" and cancel.store_id == "store-w"
    refunds = [{"id": 730, "reason": "damaged in transit", "total": "-58.35"}]
    (refund,) = route("WOOCOMMERCE", "order.updated", SITE, order(status="refunded", refunds=refunds), AT,
                      catalogue).events
    assert refund.type is OrderEventType.REFUND_REQUESTED and refund.amount == Decimal("58.35")
    assert refund.reason == "damaged in transit" and refund.event_id.endswith(":refunded")


def test_an_unmapped_item_makes_its_group_need_a_person() -> None:
    lines = orjson.loads(BODY)["line_items"]
    lines[2] = {**lines[2], "variation_id": 99, "sku": "NOT-IN-CATALOGUE"}
    created, paid = route("WOOCOMMERCE", "order.created", SITE, order(line_items=lines), AT, catalogue).events
    assert created.items[2].provider == "UNMAPPED"
    assert "variation 99" in created.items[2].source_id and "NOT-IN-CATALOGUE" in created.items[2].source_id
    state = decide(decide(None, created).state, paid).state
    unmapped = next(g for g in state.groups if g.provider == "UNMAPPED")
    assert unmapped.status is GroupStatus.FAILED
    assert state.status is OrderStatus.INTERVENTION_REQUIRED
    assert state.reason == ("UNMAPPED: no catalogue mapping for Hoodie \u2013 Blue, L "
                            "(woocommerce variation 99 at woo.example.com, sku NOT-IN-CATALOGUE)")
    # The mapped groups are placed all the same.
    assert sorted(g.group_id for g in state.groups if g.status is GroupStatus.PLACING) == [
        "ALIEXPRESS", "CJ_DROPSHIPPING"]


def test_a_shopify_record_under_the_same_host_is_not_a_woocommerce_product() -> None:
    shopify = CatalogueVariant(shop_domain=SITE, shopify_variant_id="93", store_id="s", product_id="p",
                               provider="ALIEXPRESS", source_id="x")
    assert shopify.platform == "SHOPIFY"
    created = route("WOOCOMMERCE", "order.created", SITE, order(), AT, lambda s, v: shopify).events[0]
    assert {i.provider for i in created.items} == {"UNMAPPED"} and created.store_id == SITE


def test_the_catalogue_record_stays_backward_compatible() -> None:
    old = {"shop_domain": "demo.myshopify.com", "shopify_variant_id": "4001", "store_id": "store-1",
           "product_id": "p-1", "provider": "ALIEXPRESS", "source_id": "AE-1", "shopify_inventory_item_id": "808"}
    parsed = CatalogueVariant.model_validate_json(orjson.dumps(old))
    assert parsed.platform == "SHOPIFY" and parsed.shopify_variant_id == "4001"
    woo = CatalogueVariant.model_validate({**old, "platform": "WOOCOMMERCE", "shop_domain": SITE})
    assert woo.model_dump(mode="json")["platform"] == "WOOCOMMERCE"
    with pytest.raises(ValueError):
        CatalogueVariant.model_validate({**old, "platform": "MAGENTO"})
    assert woocommerce_item_ref({"product_id": 93, "variation_id": 0}) == "93"
    assert woocommerce_item_ref({"product_id": 22, "variation_id": 23}) == "23"


def test_what_is_not_an_order_event_is_ignored_or_refused() -> None:
    for topic, body in (("order.deleted", {"id": 727}), ("product.updated", {"id": 93}),
                        ("order.updated", order(status="checkout-draft"))):
        routed = route("WOOCOMMERCE", topic, SITE, body, AT, catalogue)
        assert routed.events == [] and routed.ignored and routed.refused is None, topic
    for body, reason in ((order(line_items=[]), "no line items"),
                         (order(shipping={}, billing={"email": "a@b.c"}), "no shipping or billing address"),
                         (order(id=None), "no order id"),
                         (order(total="-5.00"), "negative amount")):
        routed = route("WOOCOMMERCE", "order.created", SITE, body, AT, catalogue)
        assert routed.refused and reason in routed.refused, (reason, routed.refused)
    assert route("WOOCOMMERCE", None, SITE, order(), AT, catalogue).refused
    # Shipping to the billing address when the shipping one is empty.
    billing_only = order(shipping={"first_name": "", "address_1": "", "country": ""})
    created = route("WOOCOMMERCE", "order.created", SITE, billing_only, AT, catalogue).events[0]
    assert created.shipping_address.line1 == "969 Market" and created.shipping_address.line2 is None


# --------------------------------------------------------------------------- #
# What the storefront push writes (models/woocommerce.py)
# --------------------------------------------------------------------------- #


def test_push_fields_stock_status_and_prices_as_strings() -> None:
    from models.events import ChangedField, ChangeReason, InventoryChange, ProductStatus, ProductView
    from models.woocommerce import decimal_string, merged_fields, update_fields

    def view(stock: int, price: str, status: ProductStatus = ProductStatus.ACTIVE, available: bool = True,
             compare: str | None = None) -> ProductView:
        return ProductView(status=status, available=available, stock=stock, cost_price=Decimal("1"),
                           shipping_cost=Decimal("0"), currency="USD", selling_price=Decimal(price),
                           compare_at_price=None if compare is None else Decimal(compare))

    def change(after: ProductView, before: ProductView | None, *changed: ChangedField) -> InventoryChange:
        return InventoryChange(change_id="c", store_id="s", product_id="p", provider="ALIEXPRESS", source_id="x",
                               reason=ChangeReason.SNAPSHOT, changed=changed, before=before, after=after, captured_at=AT)

    assert decimal_string(Decimal("1E+1")) == "10" and decimal_string(Decimal("12.50")) == "12.50"
    gone = change(view(30, "9.99", ProductStatus.OUT_OF_STOCK, available=False), view(30, "9.99"), ChangedField.STATUS)
    assert update_fields(gone) == {"manage_stock": True, "stock_quantity": 0, "stock_status": "outofstock"}
    repriced = change(view(3, "11.00", compare="10.00"), view(3, "9.00"), ChangedField.SELLING_PRICE)
    assert update_fields(repriced) == {"regular_price": "11.00", "sale_price": ""}  # compare-at not above: no sale
    assert update_fields(change(view(3, "11.00"), view(3, "11.00"), ChangedField.COST)) == {}
    assert merged_fields([gone, repriced]) == {"manage_stock": True, "stock_quantity": 3, "stock_status": "instock",
                                               "regular_price": "11.00", "sale_price": ""}


def test_order_ids_notes_and_completion() -> None:
    from models.orders import StorefrontCommand, StorefrontCommandType
    from models.woocommerce import covers_order, note_shows, woo_order_id

    assert woo_order_id(f"woocommerce-{SITE}-727", SITE) == "727"
    assert woo_order_id(f"woocommerce-{SITE}-727", "other.example.com") is None
    assert woo_order_id("shopify-727", SITE) is None and woo_order_id(f"woocommerce-{SITE}-x1", SITE) is None
    assert note_shows([{"note": "Tracking number: LP1."}, {"note": None}], "LP1")
    assert not note_shows([{"note": "Tracking number: LP2."}], "LP1")
    shipped = StorefrontCommand(command_id="c", type=StorefrontCommandType.SHOW_TRACKING, store_id="s",
                                order_id="o", order_number="1", group_id="g", line_ids=("315", "316"),
                                tracking_number="LP1", issued_at=AT)
    assert covers_order(shipped, {"line_items": [{"id": 315}, {"id": 316}]})
    assert not covers_order(shipped, {"line_items": [{"id": 315}, {"id": 317}]})
    assert not covers_order(shipped, {"line_items": []})
    assert covers_order(shipped.model_copy(update={"line_ids": ()}), {"line_items": [{"id": 1}]})


# --------------------------------------------------------------------------- #
# Reconciliation and webhook registration
# --------------------------------------------------------------------------- #


def test_a_pulled_order_is_the_webhook_the_ingress_stores() -> None:
    from models.woocommerce_orders import webhook_of

    pulled = orjson.loads(BODY)  # GET /orders answers the body an order webhook (API v3) carries
    hook = webhook_of(SITE, pulled, AT)
    assert (hook.source, hook.topic, hook.shop_domain) == (WebhookSource.WOOCOMMERCE, "order.updated", SITE)
    assert hook.delivery_id == "reconcile:order:727:2026-11-24T10:12:41"
    assert hook.dedup_key == dedup_key(WebhookSource.WOOCOMMERCE, hook.delivery_id, shop_domain=SITE)
    assert hook.key == SITE.encode()  # the site's partition, where its catalogue is
    # the headers are the ingress's allow-list, and name the site and topic as a delivery does
    assert set(hook.headers) <= set(WOOCOMMERCE_HEADERS) and not set(hook.headers) & SECRET_HEADERS
    assert woocommerce_site(hook.headers["x-wc-webhook-source"]) == SITE
    assert hook.headers["x-wc-webhook-topic"] == "order.updated"
    assert orjson.loads(hook.body) == pulled
    # a second pull of the unchanged order is the same delivery (the router drops it); a change is a new one
    assert webhook_of(SITE, pulled, AT).dedup_key == hook.dedup_key
    assert webhook_of(SITE, {**pulled, "date_modified_gmt": "2026-11-24T11:00:00"}, AT).dedup_key != hook.dedup_key
    assert InboundWebhook.model_validate_json(hook.model_dump_json()) == hook


def test_a_pulled_order_routes_like_its_webhook() -> None:
    from models.woocommerce_orders import webhook_of

    for status in ("processing", "pending", "cancelled", "refunded"):
        pulled = order(status=status)
        hook = webhook_of(SITE, pulled, AT)
        from_pull = route(hook.source.value, hook.topic, hook.shop_domain, orjson.loads(hook.body), AT, catalogue)
        from_webhook = route("WOOCOMMERCE", "order.updated", SITE, pulled, AT, catalogue)
        assert from_pull == from_webhook and from_pull.events, status
    created = route("WOOCOMMERCE", "order.created", SITE, order(), AT, catalogue).events
    pulled = route("WOOCOMMERCE", "order.updated", SITE, orjson.loads(webhook_of(SITE, order(), AT).body), AT,
                   catalogue).events
    assert [e.event_id for e in pulled] == [e.event_id for e in created]  # the order machine drops the copy


def test_the_registered_topics_are_the_ones_the_router_acts_on() -> None:
    from connectors.woocommerce.webhooks import TOPICS

    assert {"order.created", "order.updated"} <= set(TOPICS)
    for topic in TOPICS:
        routed = route("WOOCOMMERCE", topic, SITE, order(), AT, catalogue)
        assert routed.events and routed.ignored is None, topic
    for topic in ("order.deleted", "product.updated", "customer.created"):  # no action: not registered
        assert route("WOOCOMMERCE", topic, SITE, order(), AT, catalogue).ignored and topic not in TOPICS


def test_an_order_first_heard_of_completed_is_marked_fulfilled_in_the_store() -> None:
    """A WooCommerce order the engine first hears of as ``completed`` (the reconciliation's
    first pull, say) was shipped by the store: the machine must not place it again."""
    assert route("WOOCOMMERCE", "order.created", SITE, order(), AT, catalogue).events[0].fulfilled_in_store is False
    created = route("WOOCOMMERCE", "order.updated", SITE, order(status="completed"), AT, catalogue).events[0]
    assert created.type is OrderEventType.ORDER_CREATED and created.fulfilled_in_store is True
