"""WooCommerce webhooks through the ingress on a real worker: signed ones are
stored raw on ``webhooks.inbound`` (keyed by the site) before the answer;
the ping of a webhook being created gets its 200 and is not stored; every
refusal answers its code with a JSON reason and writes nothing; a broker that
is gone makes a 503."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.harness import Worker, read_topic
from tests.integration.test_ingress import raw_request

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
BODY = (FIXTURES / "woocommerce_order_processing.json").read_bytes()
SITE = "woo.example.com"
SECRET = "wc-secret-current-0123456789"
PREVIOUS = "wc-secret-previous-9876543210"
MIB = 1024 * 1024
ENV = {"OPS_WOOCOMMERCE_WEBHOOK_SECRETS": json.dumps({f"https://{SITE}/": [SECRET, PREVIOUS]})}


def sig(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def headers(body: bytes, delivery: str | None = "9c1e5b7a2f", secret: str = SECRET, **extra: str) -> dict[str, str]:
    out = {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7)",
        "X-WC-Webhook-Source": f"https://{SITE}/",
        "X-WC-Webhook-Topic": "order.created",
        "X-WC-Webhook-Resource": "order",
        "X-WC-Webhook-Event": "created",
        "X-WC-Webhook-Signature": sig(body, secret),
        "X-WC-Webhook-ID": "12",
    }
    if delivery is not None:
        out["X-WC-Webhook-Delivery-ID"] = delivery
    return {**out, **extra}


def post(worker: Worker, body: Any, hdrs: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{worker.url}/webhooks/woocommerce", content=body, headers=hdrs, timeout=15)


def stored(broker: Any) -> list[Any]:
    return asyncio.run(read_topic(broker, "webhooks.inbound"))


def test_signed_woocommerce_webhooks_are_stored_and_the_rest_refused(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker: Worker = spawn(**ENV)
    worker.wait_ready()

    # The ping when the webhook is created: unsigned, form-encoded, must get a 200; nothing stored.
    ping = post(worker, b"webhook_id=12", {"Content-Type": "application/x-www-form-urlencoded",
                                            "User-Agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7)"})
    assert (ping.status_code, ping.json()) == (200, {"ping": True})
    assert stored(broker) == []

    big = b'{"pad": "' + b"x" * (2 * MIB) + b'"}'
    broken, array = b'{"id": 727, "status": ', b"[727]"
    cases: list[tuple[str, Any, dict[str, str], int]] = [
        ("bad signature", BODY, headers(BODY, **{"X-WC-Webhook-Signature": sig(BODY + b" ")}), 401),
        ("other secret", BODY, headers(BODY, secret="wc-not-ours"), 401),
        ("signature not base64", BODY, headers(BODY, **{"X-WC-Webhook-Signature": "%%%"}), 401),
        ("no signature", BODY, {k: v for k, v in headers(BODY).items() if k != "X-WC-Webhook-Signature"}, 401),
        ("unknown site", BODY, headers(BODY, **{"X-WC-Webhook-Source": "https://other.example.com/"}), 401),
        ("no site", BODY, {k: v for k, v in headers(BODY).items() if k != "X-WC-Webhook-Source"}, 401),
        ("ping-like but not a ping", b"webhook_id=12&more=1", {"Content-Type": "application/x-www-form-urlencoded"}, 401),
        ("unsigned JSON", b"{}", {"Content-Type": "application/json"}, 401),
        ("not JSON (Content-Type)", BODY, headers(BODY, **{"Content-Type": "application/x-www-form-urlencoded"}), 415),
        ("broken JSON, signed", broken, headers(broken), 400),
        ("JSON array, signed", array, headers(array), 400),
        ("bad topic", BODY, headers(BODY, **{"X-WC-Webhook-Topic": "order created"}), 400),
        ("2 MiB with Content-Length", big, headers(big), 413),
        ("2 MiB chunked", iter([big[i : i + 65536] for i in range(0, len(big), 65536)]), headers(big), 413),
    ]
    for name, body, hdrs, status in cases:
        response = post(worker, body, hdrs)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text[:200]}"
        assert response.headers["content-type"].startswith("application/json"), name
        assert isinstance(response.json()["error"], str) and response.json()["error"], name
    # 413 before the body is read whole: the answer comes while the client still holds most of it.
    head = (f"POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-WC-Webhook-Source: https://{SITE}/\r\nX-WC-Webhook-Topic: order.created\r\n"
            f"X-WC-Webhook-Signature: {sig(b'{}')}\r\nContent-Length: {2 * MIB}\r\n\r\n").encode()
    status, answer = raw_request(worker, head, [])
    assert status == 413 and b"larger than" in answer
    assert stored(broker) == []

    # Signed with the current secret; the same delivery again; the previous secret (rotation);
    # no delivery id (the fallback id).
    first = post(worker, BODY, headers(BODY))
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": True, "dedup_key": f"woocommerce:{SITE}:9c1e5b7a2f"}
    assert post(worker, BODY, headers(BODY)).status_code == 202
    rotated = post(worker, BODY, headers(BODY, delivery="d-rotated", secret=PREVIOUS,
                                         **{"X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Event": "updated"}))
    assert rotated.status_code == 202, rotated.text
    fallback = post(worker, BODY, {k: v for k, v in headers(BODY, delivery=None).items() if k != "X-WC-Webhook-Topic"})
    assert fallback.json()["dedup_key"] == f"woocommerce:{SITE}:wc:12:727:2026-11-24T10:12:41"

    records = stored(broker)
    assert len(records) == 4 and {r.key for r in records} == {SITE.encode()}  # the site: its catalogue's key
    assert len({r.partition for r in records}) == 1
    record = orjson.loads(records[0].value)
    assert (record["source"], record["topic"], record["shop_domain"], record["delivery_id"]) == (
        "WOOCOMMERCE", "order.created", SITE, "9c1e5b7a2f")
    assert record["body"].encode() == BODY  # raw, byte for byte
    assert record["headers"] == {
        "x-wc-webhook-source": f"https://{SITE}/", "x-wc-webhook-topic": "order.created",
        "x-wc-webhook-resource": "order", "x-wc-webhook-event": "created", "x-wc-webhook-id": "12",
        "x-wc-webhook-delivery-id": "9c1e5b7a2f",
    }
    assert [orjson.loads(r.value)["dedup_key"] for r in records].count(f"woocommerce:{SITE}:9c1e5b7a2f") == 2
    assert orjson.loads(records[2].value)["topic"] == "order.updated"
    assert orjson.loads(records[3].value)["topic"] == "order.created"  # from Resource and Event
    for r in records:
        assert sig(BODY).encode() not in r.value and sig(BODY, PREVIOUS).encode() not in r.value
        assert b"x-wc-webhook-signature" not in r.value.lower()

    exposition = worker.get("/metrics").text
    assert 'ops_webhook_requests_total{code="202",source="woocommerce"} 4.0' in exposition
    assert 'ops_webhook_requests_total{code="200",source="woocommerce"} 1.0' in exposition
    assert 'ops_webhook_requests_total{code="413",source="woocommerce"} 3.0' in exposition
    log = worker.log_tail(10_000)
    for secret in (SECRET, PREVIOUS, sig(BODY), "john.doe@example.com", "969 Market"):
        assert secret not in log


def test_woocommerce_without_secrets_and_with_the_broker_down(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    bare: Worker = spawn("w0")
    bare.wait_ready()
    for body, hdrs in ((BODY, headers(BODY)), (b"webhook_id=12", {})):
        response = post(bare, body, hdrs)
        assert (response.status_code, response.json()) == (401, {"error": "no secret configured"})
    bare.stop()

    worker: Worker = spawn("w1", OPS_WEBHOOK_ACK_TIMEOUT_S="2", **ENV)
    worker.wait_ready()
    assert post(worker, BODY, headers(BODY)).status_code == 202
    broker.stop()
    started = time.monotonic()
    down = post(worker, BODY, headers(BODY, delivery="d-down"))
    assert down.status_code == 503 and down.headers["Retry-After"] == "5", down.text
    assert down.json() == {"error": "webhook could not be stored; retry later", "retry": True}
    assert time.monotonic() - started < 4.0
    # The ping needs no broker; a bad signature is still a 401.
    assert post(worker, b"webhook_id=12", {}).status_code == 200
    assert post(worker, BODY, headers(BODY, secret="nope")).status_code == 401
