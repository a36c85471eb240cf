"""Webhook signatures (models/webhooks.py), the record, and the ingress settings.

Payloads are shaped like Shopify's orders/create and Stripe's
payment_intent.succeeded (tests/fixtures/webhooks/), signed here the way the
providers sign them: Shopify base64(HMAC-SHA256(raw body)); Stripe hex
HMAC-SHA256 of "{t}.{raw body}".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from models.webhooks import (
    SECRET_HEADERS,
    SHOPIFY_HEADERS,
    InboundWebhook,
    StripeCheck,
    WebhookSource,
    body_digest,
    dedup_key,
    parse_stripe_header,
    select_headers,
    shopify_delivery_id,
    sign_hmac,
    sign_shopify,
    sign_stripe,
    stripe_delivery_id,
    stripe_header,
    supplier_event,
    verify_hmac,
    verify_hmac_hex,
    verify_shopify,
    verify_stripe,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SHOPIFY_BODY = (FIXTURES / "shopify_orders_create.json").read_bytes()
STRIPE_BODY = (FIXTURES / "stripe_payment_intent_succeeded.json").read_bytes()
SECRET = "shpss_current_0123456789abcdef"
PREVIOUS = "shpss_previous_fedcba9876543210"
WHSEC = "whsec_test_current_0123456789"
WHSEC_OLD = "whsec_test_previous_9876543210"
NOW = 1_724_330_000


def shopify_sig(body: bytes, secret: str) -> str:
    # Independent of sign_shopify: what Shopify's docs say it sends.
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def stripe_v1(body: bytes, secret: str, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- #
# Shopify
# --------------------------------------------------------------------------- #


def test_fixtures_are_the_real_shapes() -> None:
    order = orjson.loads(SHOPIFY_BODY)
    assert order["line_items"] and order["customer"]["email"] and order["admin_graphql_api_id"].startswith("gid://")
    event = orjson.loads(STRIPE_BODY)
    assert event["type"] == "payment_intent.succeeded" and event["id"].startswith("evt_")
    assert event["data"]["object"]["object"] == "payment_intent"


def test_shopify_signed_body_is_accepted() -> None:
    header = shopify_sig(SHOPIFY_BODY, SECRET)
    assert header == sign_shopify(SHOPIFY_BODY, SECRET)
    assert verify_shopify(SHOPIFY_BODY, header, [SECRET])


@pytest.mark.parametrize(
    ("case", "header", "secrets", "ok"),
    [
        ("current secret", "current", [SECRET, PREVIOUS], True),
        ("rotated: signed with the previous secret", "previous", [SECRET, PREVIOUS], True),
        ("wrong secret", "other", [SECRET, PREVIOUS], False),
        ("previous secret no longer configured", "previous", [SECRET], False),
        ("missing header", None, [SECRET], False),
        ("empty header", "", [SECRET], False),
        ("not base64", "not base64 !!", [SECRET], False),
        ("base64 of the wrong length", base64.b64encode(b"short").decode(), [SECRET], False),
        ("hex instead of base64", "hex", [SECRET], False),
        ("non-ascii header", "ü" * 44, [SECRET], False),
        ("no secret", "current", [], False),
        ("only an empty secret", "empty", [""], False),
    ],
)
def test_shopify_matrix(case: str, header: str | None, secrets: list[str], ok: bool) -> None:
    value: str | None = {
        "current": shopify_sig(SHOPIFY_BODY, SECRET),
        "previous": shopify_sig(SHOPIFY_BODY, PREVIOUS),
        "other": shopify_sig(SHOPIFY_BODY, "someone-else"),
        "hex": hmac.new(SECRET.encode(), SHOPIFY_BODY, hashlib.sha256).hexdigest(),
        "empty": shopify_sig(SHOPIFY_BODY, ""),
    }.get(header or "", header)
    assert verify_shopify(SHOPIFY_BODY, value, secrets) is ok, case


def test_shopify_any_change_of_the_body_is_refused() -> None:
    header = shopify_sig(SHOPIFY_BODY, SECRET)
    # The raw bytes are signed: the same JSON re-serialized is another body.
    reformatted = json.dumps(json.loads(SHOPIFY_BODY)).encode()
    assert not verify_shopify(reformatted, header, [SECRET])
    assert not verify_shopify(SHOPIFY_BODY + b"\n", header, [SECRET])
    assert not verify_shopify(SHOPIFY_BODY.replace(b"388.00", b"0.01"), header, [SECRET])


def test_shopify_header_whitespace_is_tolerated_but_not_garbage() -> None:
    header = shopify_sig(SHOPIFY_BODY, SECRET)
    assert verify_shopify(SHOPIFY_BODY, f"  {header} ", [SECRET])
    assert not verify_shopify(SHOPIFY_BODY, header[:-4], [SECRET])
    assert not verify_shopify(SHOPIFY_BODY, header + "AAAA", [SECRET])


def test_secrets_as_bytes_work_too() -> None:
    assert verify_shopify(SHOPIFY_BODY, shopify_sig(SHOPIFY_BODY, SECRET), [SECRET.encode()])


# --------------------------------------------------------------------------- #
# Stripe
# --------------------------------------------------------------------------- #


def test_stripe_signed_event_is_accepted() -> None:
    header = f"t={NOW},v1={stripe_v1(STRIPE_BODY, WHSEC, NOW)}"
    assert header == stripe_header(STRIPE_BODY, [WHSEC], NOW)
    assert verify_stripe(STRIPE_BODY, header, [WHSEC], now=NOW) == (True, StripeCheck.OK)


def _sig(secret: str, t: int = NOW, body: bytes = STRIPE_BODY) -> str:
    return stripe_v1(body, secret, t)


@pytest.mark.parametrize(
    ("case", "header", "secrets", "check"),
    [
        ("one v1", f"t={NOW},v1={_sig(WHSEC)}", [WHSEC], StripeCheck.OK),
        ("v0 and spaces ignored", f"t={NOW}, v1={_sig(WHSEC)}, v0=abc", [WHSEC], StripeCheck.OK),
        ("several v1, the second matches", f"t={NOW},v1={_sig('x')},v1={_sig(WHSEC)}", [WHSEC], StripeCheck.OK),
        ("several v1, the first matches", f"t={NOW},v1={_sig(WHSEC)},v1={'0' * 64}", [WHSEC], StripeCheck.OK),
        ("roll: signed with the old secret", f"t={NOW},v1={_sig(WHSEC_OLD)}", [WHSEC, WHSEC_OLD], StripeCheck.OK),
        ("uppercase hex", f"t={NOW},v1={_sig(WHSEC).upper()}", [WHSEC], StripeCheck.OK),
        ("wrong secret", f"t={NOW},v1={_sig('whsec_other')}", [WHSEC], StripeCheck.NO_MATCH),
        ("signature of another t", f"t={NOW},v1={_sig(WHSEC, NOW + 1)}", [WHSEC], StripeCheck.NO_MATCH),
        ("only v0", f"t={NOW},v0={_sig(WHSEC)}", [WHSEC], StripeCheck.MALFORMED),
        ("no t", f"v1={_sig(WHSEC)}", [WHSEC], StripeCheck.MALFORMED),
        ("two t", f"t={NOW},t={NOW},v1={_sig(WHSEC)}", [WHSEC], StripeCheck.MALFORMED),
        ("t not a number", f"t=now,v1={_sig(WHSEC)}", [WHSEC], StripeCheck.MALFORMED),
        ("negative t", f"t=-{NOW},v1={_sig(WHSEC)}", [WHSEC], StripeCheck.MALFORMED),
        ("garbage", "garbage", [WHSEC], StripeCheck.MALFORMED),
        ("v1 not hex", f"t={NOW},v1=zz{_sig(WHSEC)[2:]}", [WHSEC], StripeCheck.NO_MATCH),
        ("v1 non-ascii", f"t={NOW},v1={'é' * 64}", [WHSEC], StripeCheck.NO_MATCH),
        ("missing header", None, [WHSEC], StripeCheck.MISSING),
        ("empty header", "", [WHSEC], StripeCheck.MISSING),
        ("no secret configured", f"t={NOW},v1={_sig(WHSEC)}", [], StripeCheck.NO_SECRET),
        ("empty secret only", f"t={NOW},v1={_sig('')}", [""], StripeCheck.NO_SECRET),
    ],
)
def test_stripe_matrix(case: str, header: str | None, secrets: list[str], check: StripeCheck) -> None:
    assert verify_stripe(STRIPE_BODY, header, secrets, now=NOW) == (check is StripeCheck.OK, check), case


@pytest.mark.parametrize(
    ("offset", "check"),
    [
        (0, StripeCheck.OK),
        (-299, StripeCheck.OK),
        (-300, StripeCheck.OK),  # the boundary is inside the window
        (-301, StripeCheck.STALE),
        (-86_400, StripeCheck.STALE),
        (299, StripeCheck.OK),
        (300, StripeCheck.OK),
        (301, StripeCheck.FUTURE),  # stripe-python would accept it; we do not
        (86_400, StripeCheck.FUTURE),
    ],
)
def test_stripe_timestamp_window_both_ways(offset: int, check: StripeCheck) -> None:
    t = NOW + offset
    header = f"t={t},v1={_sig(WHSEC, t)}"
    assert verify_stripe(STRIPE_BODY, header, [WHSEC], now=NOW) == (check is StripeCheck.OK, check)


def test_stripe_fractional_now_at_the_boundary() -> None:
    t = NOW - 300
    header = f"t={t},v1={_sig(WHSEC, t)}"
    assert verify_stripe(STRIPE_BODY, header, [WHSEC], now=NOW + 0.001)[1] is StripeCheck.STALE
    assert verify_stripe(STRIPE_BODY, header, [WHSEC], now=NOW - 0.001)[1] is StripeCheck.OK


def test_stripe_custom_tolerance() -> None:
    t = NOW - 60
    header = f"t={t},v1={_sig(WHSEC, t)}"
    assert verify_stripe(STRIPE_BODY, header, [WHSEC], now=NOW, tolerance=60)[0]
    assert verify_stripe(STRIPE_BODY, header, [WHSEC], now=NOW, tolerance=59)[1] is StripeCheck.STALE


def test_stripe_signature_is_checked_before_the_window() -> None:
    """A forged header with a stale t is a bad signature (401), not 'stale' (400)."""
    stale = NOW - 10_000
    ok, check = verify_stripe(STRIPE_BODY, f"t={stale},v1={_sig('forged', stale)}", [WHSEC], now=NOW)
    assert (ok, check, check.status) == (False, StripeCheck.NO_MATCH, 401)
    ok, check = verify_stripe(STRIPE_BODY, f"t={stale},v1={_sig(WHSEC, stale)}", [WHSEC], now=NOW)
    assert (ok, check, check.status) == (False, StripeCheck.STALE, 400)
    assert StripeCheck.FUTURE.status == 400 and StripeCheck.MALFORMED.status == 401


def test_stripe_body_change_is_refused() -> None:
    header = f"t={NOW},v1={_sig(WHSEC)}"
    assert verify_stripe(STRIPE_BODY + b" ", header, [WHSEC], now=NOW)[1] is StripeCheck.NO_MATCH


def test_parse_stripe_header() -> None:
    assert parse_stripe_header("t=12,v1=ab,v1=cd,v0=ef") == ("12", ["ab", "cd"])
    assert parse_stripe_header("t=12") is None
    assert parse_stripe_header("t=1.5,v1=ab") is None
    assert sign_stripe(b"{}", "k", 12) == stripe_v1(b"{}", "k", 12)


# --------------------------------------------------------------------------- #
# Suppliers
# --------------------------------------------------------------------------- #


BODY = b'{"event":"order.shipped","orderId":"CJ123","trackingNumber":"LP001"}'


@pytest.mark.parametrize(
    ("case", "header", "encoding", "prefix", "ok"),
    [
        ("hex", hmac.new(b"k1", BODY, hashlib.sha256).hexdigest(), "hex", "", True),
        ("hex upper", hmac.new(b"k1", BODY, hashlib.sha256).hexdigest().upper(), "hex", "", True),
        ("hex with prefix", "sha256=" + hmac.new(b"k1", BODY, hashlib.sha256).hexdigest(), "hex", "sha256=", True),
        ("prefix missing", hmac.new(b"k1", BODY, hashlib.sha256).hexdigest(), "hex", "sha256=", False),
        ("rotated secret", hmac.new(b"k0", BODY, hashlib.sha256).hexdigest(), "hex", "", True),
        ("base64", base64.b64encode(hmac.new(b"k1", BODY, hashlib.sha256).digest()).decode(), "base64", "", True),
        ("base64 sent, hex expected", base64.b64encode(hmac.new(b"k1", BODY, hashlib.sha256).digest()).decode(), "hex", "", False),
        ("wrong secret", hmac.new(b"nope", BODY, hashlib.sha256).hexdigest(), "hex", "", False),
        ("odd hex", hmac.new(b"k1", BODY, hashlib.sha256).hexdigest()[:-1], "hex", "", False),
        ("missing", None, "hex", "", False),
        ("garbage", "zzz", "hex", "", False),
    ],
)
def test_supplier_matrix(case: str, header: str | None, encoding: str, prefix: str, ok: bool) -> None:
    assert verify_hmac(BODY, header, ["k1", "k0"], encoding=encoding, prefix=prefix) is ok, case


def test_verify_hmac_hex_and_sign_hmac() -> None:
    assert verify_hmac_hex(BODY, sign_hmac(BODY, "k1"), ["k1"])
    assert verify_hmac(BODY, sign_hmac(BODY, "k1", "base64"), ["k1"], encoding="base64")
    assert not verify_hmac_hex(BODY, sign_hmac(BODY, "k1"), [])


# --------------------------------------------------------------------------- #
# Ids, keys, headers and the record
# --------------------------------------------------------------------------- #


def test_delivery_ids_and_dedup_keys() -> None:
    headers = {"x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "x-shopify-event-id": "e-1"}
    assert shopify_delivery_id(headers, SHOPIFY_BODY) == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert shopify_delivery_id({"x-shopify-event-id": "e-1"}, SHOPIFY_BODY) == "e-1"
    assert shopify_delivery_id({"x-shopify-webhook-id": "bad id\r\n"}, SHOPIFY_BODY) == body_digest(SHOPIFY_BODY)
    assert body_digest(b"{}") == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    event = orjson.loads(STRIPE_BODY)
    assert stripe_delivery_id(event, STRIPE_BODY) == event["id"]
    assert stripe_delivery_id({"id": 5}, b"{}") == body_digest(b"{}")
    assert supplier_event({"event": "order.shipped"}) == "order.shipped"
    assert supplier_event({"kind": "x", "type": "t"}) == "t"
    assert supplier_event({"kind": "x"}, field="kind") == "x"
    assert supplier_event({"event": {"nested": 1}}) is None
    assert dedup_key(WebhookSource.SHOPIFY, "w1", shop_domain="s.myshopify.com") == "shopify:s.myshopify.com:w1"
    assert dedup_key(WebhookSource.STRIPE, "evt_1") == "stripe:evt_1"
    assert dedup_key(WebhookSource.SUPPLIER, "x", provider="CJ_DROPSHIPPING") == "supplier:CJ_DROPSHIPPING:x"


def test_select_headers_never_keeps_signatures() -> None:
    incoming = {
        "x-shopify-topic": "orders/create",
        "x-shopify-hmac-sha256": "c2lnbmF0dXJl",
        "x-shopify-shop-domain": "s.myshopify.com",
        "x-shopify-triggered-at": "2024-09-12T20:41:20.123Z\r\nInjected: yes",
        "authorization": "Bearer t",
        "user-agent": "Shopify-Captain-Hook",
    }
    kept = select_headers(incoming, [*SHOPIFY_HEADERS, "X-Shopify-Hmac-Sha256", "Authorization"])
    assert set(kept) == {"x-shopify-topic", "x-shopify-shop-domain", "x-shopify-triggered-at"}
    assert "\r" not in kept["x-shopify-triggered-at"] and "\n" not in kept["x-shopify-triggered-at"]
    assert not SECRET_HEADERS & set(kept)
    assert select_headers({"x-a": "1" * 1000}, ["X-A"])["x-a"] == "1" * 256
    # A header's non-UTF-8 bytes (aiohttp: surrogateescape) must not make the record unencodable.
    kept = select_headers({"x-shopify-webhook-id": b"id-\x80\xff".decode("utf-8", "surrogateescape")}, SHOPIFY_HEADERS)
    assert kept == {"x-shopify-webhook-id": "id-\ufffd\ufffd"}
    assert orjson.dumps(kept)


def test_record_round_trip() -> None:
    record = InboundWebhook(
        source=WebhookSource.SHOPIFY,
        topic="orders/create",
        delivery_id="w1",
        dedup_key="shopify:s.myshopify.com:w1",
        shop_domain="s.myshopify.com",
        headers={"x-shopify-topic": "orders/create"},
        body=SHOPIFY_BODY.decode(),
        received_at=datetime(2024, 9, 12, 20, 41, 20, tzinfo=timezone.utc),
    )
    wire = record.model_dump_json().encode()
    back = InboundWebhook.model_validate_json(wire)
    assert back == record and back.key == b"s.myshopify.com"  # the shop: its catalogue is keyed so too
    stripe = record.model_copy(update={"source": WebhookSource.STRIPE, "shop_domain": None, "dedup_key": "stripe:evt_1"})
    assert stripe.key == b"stripe:evt_1"
    assert back.body.encode() == SHOPIFY_BODY  # byte for byte: the signature still verifies
    assert orjson.loads(wire)["received_at"].endswith("Z") or orjson.loads(wire)["received_at"].endswith("+00:00")


# --------------------------------------------------------------------------- #
# Settings
# --------------------------------------------------------------------------- #


def test_settings_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.ingress.settings import IngressSettings

    for name in ("OPS_SHOPIFY_WEBHOOK_SECRETS", "OPS_STRIPE_WEBHOOK_SECRETS", "OPS_SUPPLIER_WEBHOOK_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "webhooks.json"
    path.write_text(json.dumps({
        "shopify_webhook_secrets": {"Shop-One.myshopify.com": ["new", "old", " "]},
        "stripe_webhook_secrets": ["whsec_file"],
        "supplier_webhook_secrets": {"cj-dropshipping": {"header": "X-CJ-Signature", "secret": "s1", "encoding": "base64"}},
    }))
    path.chmod(0o600)
    monkeypatch.setenv("OPS_WEBHOOK_SECRETS_FILE", str(path))
    monkeypatch.setenv("OPS_STRIPE_WEBHOOK_SECRETS", "whsec_a, whsec_b,")
    settings = IngressSettings.load()
    assert settings.shopify_keys() == {"shop-one.myshopify.com": (b"new", b"old")}
    assert settings.stripe_keys() == (b"whsec_a", b"whsec_b")  # the environment wins over the file
    cj = settings.supplier_webhook_secrets["CJ_DROPSHIPPING"]
    assert cj.keys == (b"s1",) and cj.encoding == "base64"
    shown = repr(settings) + str(settings)
    for secret in ("new", "old", "whsec_a", "whsec_b", "s1"):
        assert f"'{secret}'" not in shown
    assert settings.webhook_max_body == 1024 * 1024 and settings.webhook_stripe_tolerance_s == 300
    assert settings.webhook_ack_timeout_s == 5


def test_settings_errors_name_the_variable_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.ingress.settings import IngressSettings
    from streams.settings import SettingsError

    monkeypatch.delenv("OPS_WEBHOOK_SECRETS_FILE", raising=False)
    monkeypatch.setenv("OPS_SUPPLIER_WEBHOOK_SECRETS", '{"cj": {"header": "X", "secret": "hunter2", "encoding": "rot13"}}')
    with pytest.raises(SettingsError) as info:
        IngressSettings.load()
    assert "OPS_SUPPLIER_WEBHOOK_SECRETS" in str(info.value) and "hunter2" not in str(info.value)
    monkeypatch.setenv("OPS_SUPPLIER_WEBHOOK_SECRETS", "{}")
    monkeypatch.setenv("OPS_SHOPIFY_WEBHOOK_SECRETS", '{"shop.myshopify.com": "hunter2"')  # broken JSON
    with pytest.raises(SettingsError) as info:
        IngressSettings.load()
    assert "shopify_webhook_secrets" in str(info.value) and "hunter2" not in str(info.value)


def test_no_secret_means_nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.ingress.settings import IngressSettings

    for name in ("OPS_SHOPIFY_WEBHOOK_SECRETS", "OPS_STRIPE_WEBHOOK_SECRETS", "OPS_SUPPLIER_WEBHOOK_SECRETS",
                 "OPS_WEBHOOK_SECRETS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPS_SHOPIFY_WEBHOOK_SECRETS", '{"shop.myshopify.com": [""]}')
    settings = IngressSettings.load()
    assert settings.shopify_keys() == {} and settings.stripe_keys() == ()
