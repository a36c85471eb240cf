"""The order webhooks the ingress handles, created at a WooCommerce site
(``ops-engine woocommerce register-webhooks``).

:data:`TOPICS` are the WooCommerce topics ``models.webhook_routing.route_woocommerce``
acts on (a unit test keeps the two in step); ``order.deleted`` (an order moved
to the bin) is left out: the router takes no action on it.

Each webhook is ``{"name": "ops-engine {topic}", "topic", "delivery_url",
"secret", "status": "active"}`` through ``/wp-json/wc/v3/webhooks`` (so its
payloads are the REST v3 order the router reads). The secret is the site's
current webhook secret, the first of its ``OPS_WOOCOMMERCE_WEBHOOK_SECRETS``:
the one the ingress verifies its deliveries with.

Idempotent: the site's webhooks are listed first (every status, with their
secrets: ``context=edit``). A topic that already has a webhook at the delivery
URL is

- ``EXISTS``: active, with the secret (or none shown): left alone;
- ``ACTIVATED``: paused, or disabled (WooCommerce disables a webhook after
  5 failed deliveries in a row): ``PUT`` status active, and the secret;
- ``SECRET_UPDATED``: active with another secret (the ingress would refuse
  it): ``PUT`` the secret.

Any other topic is ``CREATED`` by one ``POST`` (one attempt: a blind repeat
could make two; the next run lists first). WooCommerce then pings the
delivery URL (an unsigned ``webhook_id=N``), which the ingress answers once a
secret for the site is configured.
"""

from __future__ import annotations

import hmac
from typing import Any

from connectors.suppliers.base import Rejected
from connectors.woocommerce.client import WooCommerceClient
from connectors.woocommerce.settings import WooCommerceAccount

TOPICS = ("order.created", "order.updated", "order.restored")


def _rank(hook: dict[str, Any], secret: str) -> tuple[bool, bool]:
    """Which of several webhooks of one topic and URL to keep: active ones, then those with the secret."""
    return (hook.get("status") == "active", _has_secret(hook, secret))


def _has_secret(hook: dict[str, Any], secret: str) -> bool:
    shown = hook.get("secret")
    return shown is None or hmac.compare_digest(str(shown).encode(), secret.encode())


async def register_webhooks(
    account: WooCommerceAccount, delivery_url: str, secret: str, client: WooCommerceClient | None = None,
) -> list[tuple[str, str]]:
    """(topic, CREATED | EXISTS | ACTIVATED | SECRET_UPDATED | FAILED: reason) for every topic."""
    if not secret:
        raise ValueError("a webhook needs a secret (the ingress refuses unsigned deliveries)")
    own = client is None
    client = client or WooCommerceClient(account)
    try:
        existing = [h for h in await client.webhooks() if h.get("delivery_url") == delivery_url]
        results = []
        for topic in TOPICS:
            same = sorted((h for h in existing if h.get("topic") == topic), key=lambda h: _rank(h, secret), reverse=True)
            try:
                if not same:
                    await client.create_webhook({"name": f"ops-engine {topic}", "topic": topic,
                                                 "delivery_url": delivery_url, "secret": secret, "status": "active"})
                    results.append((topic, "CREATED"))
                    continue
                hook = same[0]
                if hook.get("status") == "active" and _has_secret(hook, secret):
                    results.append((topic, "EXISTS"))
                    continue
                done = "ACTIVATED" if hook.get("status") != "active" else "SECRET_UPDATED"
                await client.update_webhook(int(hook["id"]), {"status": "active", "secret": secret})
                results.append((topic, done))
            except Rejected as exc:
                results.append((topic, f"FAILED: {exc.reason}"))
        return results
    finally:
        if own:
            await client.aclose()
