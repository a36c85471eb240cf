"""The webhook ingress on a real worker against the embedded broker.

Signed webhooks are stored raw on ``webhooks.inbound`` (key = dedup key, no
signature header) before the 2xx; every refusal answers with its code and a
JSON reason and writes nothing; a broker that is gone makes a 503 the sender
retries, within the ack timeout.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from models.webhooks import InboundWebhook
from tests.harness import Worker, read_topic

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SHOPIFY_BODY = (FIXTURES / "shopify_orders_create.json").read_bytes()
STRIPE_BODY = (FIXTURES / "stripe_payment_intent_succeeded.json").read_bytes()

SHOP = "shop-one.myshopify.com"
SECRET = "shpss_current_0123456789abcdef"
PREVIOUS = "shpss_previous_fedcba9876543210"
WHSEC = "whsec_test_0123456789abcdef"
CJ_SECRET = "cj-shared-secret-0123456789"
TOPIC = "webhooks.inbound"
MIB = 1024 * 1024

ENV = {
    "OPS_SHOPIFY_WEBHOOK_SECRETS": json.dumps({SHOP: [SECRET, PREVIOUS]}),
    "OPS_STRIPE_WEBHOOK_SECRETS": WHSEC,
    "OPS_SUPPLIER_WEBHOOK_SECRETS": json.dumps(
        {"CJ_DROPSHIPPING": {"header": "X-CJ-Signature", "secret": CJ_SECRET, "encoding": "hex",
                             "id_header": "X-CJ-Event-Id"}}
    ),
}


def shopify_sig(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def stripe_sig(body: bytes, t: int | None = None, secret: str = WHSEC) -> str:
    t = int(time.time()) if t is None else t
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


def shopify_headers(body: bytes, webhook_id: str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "x-shopify-topic": "orders/create",  # header names in any case
        "X-SHOPIFY-SHOP-DOMAIN": SHOP,
        "X-Shopify-Hmac-Sha256": shopify_sig(body),
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "X-Shopify-Triggered-At": "2024-09-12T20:41:20.123Z",
        "X-Shopify-API-Version": "2024-07",
        **extra,
    }


def post(worker: Worker, path: str, body: Any, headers: dict[str, str], timeout: float = 15.0) -> httpx.Response:
    return httpx.post(f"{worker.url}{path}", content=body, headers=headers, timeout=timeout)


def records(broker: Any) -> list[Any]:
    return asyncio.run(read_topic(broker, TOPIC))


def start(spawn: Any, **env: str) -> Worker:
    worker: Worker = spawn(**{**ENV, **env})
    worker.wait_ready()
    return worker


def test_signed_webhooks_are_stored_before_the_answer(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = start(spawn, OPS_LOG_LEVEL="debug")
    # Shopify, signed with the current secret.
    shopify = post(worker, "/webhooks/shopify", SHOPIFY_BODY, shopify_headers(SHOPIFY_BODY))
    assert shopify.status_code == 202, shopify.text
    key = f"shopify:{SHOP}:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert shopify.json() == {"accepted": True, "dedup_key": key}
    # The 202 came after the acks: the record is there now, no waiting.
    stored = records(broker)
    assert [r.key for r in stored] == [SHOP.encode()]  # models/webhooks.py: message_key
    record = orjson.loads(stored[0].value)
    assert record["source"] == "SHOPIFY" and record["topic"] == "orders/create" and record["shop_domain"] == SHOP
    assert record["delivery_id"] == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043" and record["dedup_key"] == key
    assert record["body"].encode() == SHOPIFY_BODY  # raw, byte for byte
    assert record["headers"] == {
        "x-shopify-topic": "orders/create",
        "x-shopify-shop-domain": SHOP,
        "x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "x-shopify-event-id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "x-shopify-triggered-at": "2024-09-12T20:41:20.123Z",
        "x-shopify-api-version": "2024-07",
    }
    assert b"hmac" not in stored[0].value.lower() and shopify_sig(SHOPIFY_BODY).encode() not in stored[0].value
    received = datetime.fromisoformat(record["received_at"].replace("Z", "+00:00"))
    assert received.utcoffset() == timedelta(0) and abs(time.time() - received.timestamp()) < 60

    # The previous secret, while the rotation is under way; the topic from the path;
    # the same delivery again: same key, same partition.
    rotated = shopify_headers(SHOPIFY_BODY, webhook_id="w-2", **{"X-Shopify-Hmac-Sha256": shopify_sig(SHOPIFY_BODY, PREVIOUS)})
    del rotated["x-shopify-topic"]
    assert post(worker, "/webhooks/shopify/orders/create", SHOPIFY_BODY, rotated).status_code == 202
    assert post(worker, "/webhooks/shopify", SHOPIFY_BODY, shopify_headers(SHOPIFY_BODY)).status_code == 202

    # Stripe: dedup on the event id.
    stripe = post(worker, "/webhooks/stripe", STRIPE_BODY,
                  {"Content-Type": "application/json; charset=utf-8", "stripe-signature": stripe_sig(STRIPE_BODY)})
    assert stripe.status_code == 202, stripe.text
    assert stripe.json()["dedup_key"] == "stripe:evt_3PqZ2bLkdIwHu7ix0Yk1a2b3"

    # A supplier, with its id header, and one without (the body's digest is the id).
    cj_body = b'{"type":"ORDER_SHIPPED","orderId":"CJ-1","trackNumber":"LP00123456789012CN"}'
    cj_sig = hmac.new(CJ_SECRET.encode(), cj_body, hashlib.sha256).hexdigest()
    cj = post(worker, "/webhooks/suppliers/cj_dropshipping", cj_body,
              {"X-CJ-Signature": cj_sig, "X-CJ-Event-Id": "cj-evt-1"})
    assert cj.status_code == 202, cj.text
    assert cj.json()["dedup_key"] == "supplier:CJ_DROPSHIPPING:cj-evt-1"
    cj2 = post(worker, "/webhooks/suppliers/CJ_DROPSHIPPING", cj_body, {"x-cj-signature": cj_sig.upper()})
    assert cj2.json()["dedup_key"] == "supplier:CJ_DROPSHIPPING:sha256:" + hashlib.sha256(cj_body).hexdigest()

    stored = records(broker)
    by_key: dict[str, list[Any]] = {}
    for r in stored:
        by_key.setdefault(orjson.loads(r.value)["dedup_key"], []).append(r)
        # The message key: the shop for Shopify (co-partitioned with its catalogue), else the dedup key.
        hook = InboundWebhook.model_validate_json(r.value)
        assert r.key == hook.key == (SHOP.encode() if hook.source.value == "SHOPIFY" else hook.dedup_key.encode())
    assert len(stored) == 6
    assert len({r.partition for r in by_key[key]}) == 1 and len(by_key[key]) == 2
    path_topic = orjson.loads(by_key[f"shopify:{SHOP}:w-2"][0].value)
    assert path_topic["topic"] == "orders/create"
    stripe_record = orjson.loads(by_key["stripe:evt_3PqZ2bLkdIwHu7ix0Yk1a2b3"][0].value)
    assert stripe_record["source"] == "STRIPE" and stripe_record["topic"] == "payment_intent.succeeded"
    assert stripe_record["headers"] == {"stripe-event-type": "payment_intent.succeeded"}
    assert stripe_record["body"].encode() == STRIPE_BODY
    cj_record = orjson.loads(by_key["supplier:CJ_DROPSHIPPING:cj-evt-1"][0].value)
    assert (cj_record["source"], cj_record["provider"], cj_record["topic"]) == ("SUPPLIER", "CJ_DROPSHIPPING", "ORDER_SHIPPED")
    assert cj_record["headers"] == {"x-cj-event-id": "cj-evt-1"}
    for r in stored:
        value = r.value.lower()
        assert b"stripe-signature" not in value and b"x-cj-signature" not in value and b"hmac" not in value

    # Metrics, and no personal data, body or secret in the log (debug level).
    exposition = worker.get("/metrics").text
    assert 'ops_webhook_requests_total{code="202",source="shopify"} 3.0' in exposition
    assert 'ops_webhook_request_seconds_count{source="stripe"} 1.0' in exposition
    log = worker.log_tail(10_000)
    for secret in ("jon@example.com", "john@example.com", "Shipping Street", "jenny.rosen", SECRET, WHSEC,
                   CJ_SECRET, shopify_sig(SHOPIFY_BODY), cj_sig):
        assert secret not in log


def raw_request(worker: Worker, head: bytes, body_parts: list[bytes], read_timeout: float = 10.0) -> tuple[int, bytes]:
    """Send a request head and some of a body over a socket, then read the answer
    without sending the rest: proof that the refusal came before the whole body."""
    with socket.create_connection(("127.0.0.1", worker.port), timeout=read_timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        sock.settimeout(read_timeout)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        head_end = answer.find(b"\r\n\r\n")
        status = int(answer.split(b" ", 2)[1])
        rest = answer[head_end + 4 :]
        while b"}" not in rest:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest


def test_refusals_write_nothing(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = start(spawn)
    now = int(time.time())
    broken = b'{"id": 1, "oops": '
    array = b"[1, 2, 3]"
    big = b'{"pad": "' + b"x" * (2 * MIB) + b'"}'
    cases: list[tuple[str, str, Any, dict[str, str], int]] = [
        ("shopify bad signature", "/webhooks/shopify", SHOPIFY_BODY,
         shopify_headers(SHOPIFY_BODY, **{"X-Shopify-Hmac-Sha256": shopify_sig(SHOPIFY_BODY + b" ")}), 401),
        ("shopify wrong secret", "/webhooks/shopify", SHOPIFY_BODY,
         shopify_headers(SHOPIFY_BODY, **{"X-Shopify-Hmac-Sha256": shopify_sig(SHOPIFY_BODY, "nope")}), 401),
        ("shopify signature not base64", "/webhooks/shopify", SHOPIFY_BODY,
         shopify_headers(SHOPIFY_BODY, **{"X-Shopify-Hmac-Sha256": "%%%not-base64%%%"}), 401),
        ("shopify unknown shop", "/webhooks/shopify", SHOPIFY_BODY,
         shopify_headers(SHOPIFY_BODY, **{"X-SHOPIFY-SHOP-DOMAIN": "other.myshopify.com"}), 401),
        ("shopify no shop", "/webhooks/shopify", SHOPIFY_BODY,
         {k: v for k, v in shopify_headers(SHOPIFY_BODY).items() if "DOMAIN" not in k}, 401),
        ("shopify no signature", "/webhooks/shopify/orders/create", SHOPIFY_BODY,
         {k: v for k, v in shopify_headers(SHOPIFY_BODY).items() if "Hmac" not in k}, 401),
        ("shopify broken JSON, signed", "/webhooks/shopify", broken, shopify_headers(broken), 400),
        ("shopify JSON array, signed", "/webhooks/shopify", array, shopify_headers(array), 400),
        ("shopify text/plain", "/webhooks/shopify", SHOPIFY_BODY,
         shopify_headers(SHOPIFY_BODY, **{"Content-Type": "text/plain"}), 415),
        ("shopify 2 MiB with Content-Length", "/webhooks/shopify", big, shopify_headers(big), 413),
        ("shopify 2 MiB chunked", "/webhooks/shopify", iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
         shopify_headers(big), 413),
        ("stripe stale timestamp", "/webhooks/stripe", STRIPE_BODY,
         {"Stripe-Signature": stripe_sig(STRIPE_BODY, now - 301)}, 400),
        ("stripe future timestamp", "/webhooks/stripe", STRIPE_BODY,
         {"Stripe-Signature": stripe_sig(STRIPE_BODY, now + 400)}, 400),
        ("stripe forged, stale", "/webhooks/stripe", STRIPE_BODY,
         {"Stripe-Signature": stripe_sig(STRIPE_BODY, now - 3600, secret="whsec_forged")}, 401),
        ("stripe bad signature", "/webhooks/stripe", STRIPE_BODY,
         {"Stripe-Signature": stripe_sig(STRIPE_BODY, secret="whsec_other")}, 401),
        ("stripe malformed header", "/webhooks/stripe", STRIPE_BODY, {"Stripe-Signature": "v1=abc"}, 401),
        ("stripe no header", "/webhooks/stripe", STRIPE_BODY, {}, 401),
        ("stripe broken JSON, signed", "/webhooks/stripe", broken, {"Stripe-Signature": stripe_sig(broken)}, 400),
        ("supplier not configured", "/webhooks/suppliers/SPOCKET", b"{}", {"X-Sig": "00"}, 401),
        ("supplier bad signature", "/webhooks/suppliers/cj_dropshipping", b"{}", {"X-CJ-Signature": "00" * 32}, 401),
        ("supplier no signature", "/webhooks/suppliers/cj_dropshipping", b"{}", {}, 401),
    ]
    for name, path, body, headers, status in cases:
        response = post(worker, path, body, headers)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text[:200]}"
        assert response.headers["content-type"].startswith("application/json"), name
        assert isinstance(response.json()["error"], str) and response.json()["error"], name
    assert httpx.get(f"{worker.url}/webhooks/stripe", timeout=5).status_code == 405

    # 413 before the body is read whole: the answer comes while the client still holds most of it.
    sig = shopify_sig(b"{}")
    base = (f"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-Shopify-Shop-Domain: {SHOP}\r\nX-Shopify-Hmac-Sha256: {sig}\r\n")
    status, answer = raw_request(worker, (base + f"Content-Length: {2 * MIB}\r\n\r\n").encode(), [])
    assert status == 413 and b"larger than" in answer
    chunk = b"x" * 65536
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 20  # 1.25 MiB of a body that would go on
    status, answer = raw_request(worker, (base + "Transfer-Encoding: chunked\r\n\r\n").encode(), parts)
    assert status == 413 and b"larger than" in answer

    # Nothing was written by any of them; then one good webhook is.
    assert records(broker) == []
    assert worker.health()["ready"]  # type: ignore[index]
    good = post(worker, "/webhooks/shopify", SHOPIFY_BODY, shopify_headers(SHOPIFY_BODY))
    assert good.status_code == 202
    assert len(records(broker)) == 1
    exposition = worker.get("/metrics").text
    assert 'ops_webhook_requests_total{code="413",source="shopify"} 4.0' in exposition
    assert 'ops_webhook_requests_total{code="400",source="stripe"} 3.0' in exposition


def test_no_secret_configured_refuses_everything(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn()  # no OPS_*_WEBHOOK_SECRETS at all
    worker.wait_ready()
    for path, headers in (
        ("/webhooks/shopify", shopify_headers(SHOPIFY_BODY)),
        ("/webhooks/stripe", {"Stripe-Signature": stripe_sig(STRIPE_BODY)}),
        ("/webhooks/suppliers/CJ_DROPSHIPPING", {"X-CJ-Signature": "00"}),
    ):
        response = post(worker, path, SHOPIFY_BODY, headers)
        assert (response.status_code, response.json()) == (401, {"error": "no secret configured"}), path
    assert records(broker) == []


def test_broker_down_is_503_within_the_ack_timeout(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = start(spawn, OPS_WEBHOOK_ACK_TIMEOUT_S="2")
    assert post(worker, "/webhooks/shopify", SHOPIFY_BODY, shopify_headers(SHOPIFY_BODY)).status_code == 202
    broker.stop()
    started = time.monotonic()
    response = post(worker, "/webhooks/shopify", SHOPIFY_BODY, shopify_headers(SHOPIFY_BODY, webhook_id="w-down"))
    took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json() == {"error": "webhook could not be stored; retry later", "retry": True}
    assert response.headers["Retry-After"] == "5"
    assert 1.5 <= took < 4.0, took
    # Still refusing bad input for what it is while the broker is away.
    bad = post(worker, "/webhooks/shopify", SHOPIFY_BODY,
               shopify_headers(SHOPIFY_BODY, **{"X-Shopify-Hmac-Sha256": shopify_sig(b"x")}))
    assert bad.status_code == 401
    # Stripe too, on the same producer.
    stripe = post(worker, "/webhooks/stripe", STRIPE_BODY, {"Stripe-Signature": stripe_sig(STRIPE_BODY)})
    assert stripe.status_code == 503 and stripe.headers["Retry-After"] == "5"
    assert 'ops_webhook_requests_total{code="503",source="shopify"} 1.0' in worker.get("/metrics").text


def test_json_content_types_are_accepted(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = start(spawn)
    for n, value in enumerate(["application/json", "application/vnd.api+json", "text/json; charset=utf-8", None]):
        headers = shopify_headers(SHOPIFY_BODY, webhook_id=f"ct-{n}")
        if value is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = value
        response = post(worker, "/webhooks/shopify", SHOPIFY_BODY, headers)
        assert response.status_code == 202, (value, response.text)
    assert len(records(broker)) == 4
