"""Property: whatever comes to the webhook endpoints of a running worker, the
answer is never a 5xx, the worker stays healthy, and every 2xx's dedup key is
on ``webhooks.inbound``.

Requests mix well-signed webhooks (so the accepting path is exercised too)
with random bodies (JSON, not JSON, random bytes), signatures (right, wrong,
garbage, missing), header names in random case, random header values,
content types and paths.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.webhooks import InboundWebhook
from tests.harness import read_topic

SHOP = "fuzz-shop.myshopify.com"
SECRET = "shpss_fuzz_secret"
WHSEC = "whsec_fuzz_secret"
CJ_SECRET = "cj_fuzz_secret"
ENV = {
    "OPS_SHOPIFY_WEBHOOK_SECRETS": json.dumps({SHOP: [SECRET]}),
    "OPS_STRIPE_WEBHOOK_SECRETS": WHSEC,
    "OPS_SUPPLIER_WEBHOOK_SECRETS": json.dumps(
        {"CJ_DROPSHIPPING": {"header": "X-CJ-Signature", "secret": CJ_SECRET, "id_header": "X-CJ-Event-Id"}}
    ),
    "OPS_WEBHOOK_MAX_BODY": "4096",  # small, so the 413 path is reached often
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
ids = st.one_of(st.text(min_size=1, max_size=40), st.from_regex(r"\A[a-z0-9_.:-]{1,40}\Z"))
objects = st.fixed_dictionaries(
    {"id": st.one_of(ids, st.integers(), st.none()), "type": st.one_of(ids, st.none())},
    optional={"event": ids, "data": json_values, "pad": st.text(max_size=6000)},
)
bodies = st.one_of(
    objects.map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.just(b"x" * 5000),
)
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(lambda t: t.strip() or "v"),
    # Any byte a client may put in a header value (no controls; obs-text allowed).
    st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip() or b"v"),
)
content_types = st.sampled_from(
    [None, "application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
     "APPLICATION/JSON", "application/problem+json", "", ";;", "multipart/form-data; boundary=x"]
)
signature_modes = st.sampled_from(["right", "right", "wrong", "garbage", "missing"])


def random_case(name: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(name, flips + [False] * len(name)))


@st.composite
def requests(draw: Any) -> tuple[str, str, bytes, dict[str, Any]]:
    source = draw(st.sampled_from(["shopify", "shopify-path", "stripe", "supplier", "random-path"]))
    body = draw(bodies)
    mode = draw(signature_modes)
    flips = draw(st.lists(st.booleans(), max_size=30))
    headers: dict[str, Any] = {}
    method = draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT", "HEAD"]))
    if source in ("shopify", "shopify-path"):
        path = "/webhooks/shopify"
        if source == "shopify-path":
            path += "/" + "/".join(quote(s, safe="") or "x" for s in draw(st.lists(st.text(max_size=12), min_size=1, max_size=3)))
        sig = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
        headers[random_case("x-shopify-shop-domain", flips)] = draw(st.sampled_from([SHOP, SHOP.upper(), "other.myshopify.com", "*"]))
        if draw(st.booleans()):
            headers[random_case("x-shopify-topic", flips)] = draw(st.one_of(st.just("orders/create"), header_values))
        if draw(st.booleans()):
            headers["X-Shopify-Webhook-Id"] = draw(header_values)
        sig_name = random_case("x-shopify-hmac-sha256", flips)
    elif source == "stripe":
        path = "/webhooks/stripe"
        t = int(time.time()) + draw(st.sampled_from([0, 0, -299, 299, -301, 301, -100_000]))
        sig = f"t={t},v1=" + hmac.new(WHSEC.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        sig_name = random_case("stripe-signature", flips)
    elif source == "supplier":
        path = "/webhooks/suppliers/" + draw(st.sampled_from(["CJ_DROPSHIPPING", "cj_dropshipping", "cj-dropshipping", "SPOCKET", "%00", "x" * 80]))
        sig = hmac.new(CJ_SECRET.encode(), body, hashlib.sha256).hexdigest()
        sig_name = random_case("x-cj-signature", flips)
        if draw(st.booleans()):
            headers["X-CJ-Event-Id"] = draw(header_values)
    else:
        path = "/webhooks/" + "/".join(quote(s, safe="") or "x" for s in draw(st.lists(st.text(max_size=10), min_size=1, max_size=3)))
        sig, sig_name = "x", "X-Signature"
    if mode == "right":
        headers[sig_name] = sig
    elif mode == "wrong":
        headers[sig_name] = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    elif mode == "garbage":
        headers[sig_name] = draw(header_values)
    ctype = draw(content_types)
    if ctype is not None:
        headers["Content-Type"] = ctype
    return method, path, body, headers


def test_random_requests_never_5xx_and_every_2xx_is_stored(broker, spawn) -> None:  # type: ignore[no-untyped-def]
    worker = spawn(**ENV)
    worker.wait_ready()
    accepted: list[str] = []
    codes: dict[int, int] = {}
    client = httpx.Client(base_url=worker.url, timeout=15.0)

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests(), st.booleans())
    def one(request: tuple[str, str, bytes, dict[str, Any]], chunked: bool) -> None:
        method, path, body, headers = request
        content: Any = body
        if chunked and method in ("POST", "PUT"):
            content = iter([body[i : i + 997] for i in range(0, len(body), 997)] or [b""])
        response = client.request(method, path, content=content if method != "GET" else None, headers=headers)
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
        assert response.status_code < 500, (method, path, headers, response.status_code, response.text[:300])
        if 200 <= response.status_code < 300:
            answer = response.json()
            assert answer["accepted"] is True
            accepted.append(answer["dedup_key"])

    started = time.monotonic()
    try:
        one()
    finally:
        client.close()
    assert time.monotonic() - started < 60, "keep the property test short"
    health = worker.health()
    assert health is not None and health["ready"], health
    records = asyncio.run(read_topic(broker, "webhooks.inbound"))
    hooks = [InboundWebhook.model_validate_json(r.value) for r in records]
    assert all(r.key == hook.key for r, hook in zip(records, hooks))
    stored = {hook.dedup_key for hook in hooks}
    assert set(accepted) <= stored, set(accepted) - stored
    # Both sides were exercised: some accepted, some refused.
    assert accepted and any(400 <= c < 500 for c in codes), codes
