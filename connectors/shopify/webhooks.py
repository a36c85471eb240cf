"""The webhook topics the ingress handles, subscribed at a shop (``ops-engine shopify register-webhooks``).

:data:`TOPICS` are the Shopify topics ``models.webhook_routing.route_shopify``
acts on (a unit test keeps the two in step). The mandatory compliance topics
(``customers/data_request``, ``customers/redact``, ``shop/redact``) are handled
too, but Shopify does not let an app subscribe to them through the API: they
are declared in the app's configuration (``compliance_topics`` in
``shopify.app.toml``), so they are listed as ``APP_CONFIG``.

Idempotent: the shop's subscriptions are read first (paginated) and a topic
already subscribed at the callback URL is left alone (``EXISTS``).
"""

from __future__ import annotations

from typing import Any

from connectors.shopify.client import ShopifyClient, user_errors_of
from connectors.storefront.settings import ShopifyAccount

TOPICS = (
    "orders/create",
    "orders/paid",
    "orders/updated",
    "orders/cancelled",
    "refunds/create",
    "fulfillments/create",
    "fulfillments/update",
    "inventory_levels/update",
    "app/uninstalled",
)
COMPLIANCE_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")

LIST_QUERY = """query WebhookSubscriptions($first: Int!, $after: String) {
  webhookSubscriptions(first: $first, after: $after) {
    nodes { id topic endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } } }
    pageInfo { hasNextPage endCursor }
  }
}"""

CREATE_MUTATION = """mutation CreateWebhook($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic }
    userErrors { field message }
  }
}"""

PAGE = 25


def enum_of(topic: str) -> str:
    """``orders/create`` -> ``ORDERS_CREATE`` (the GraphQL WebhookSubscriptionTopic)."""
    return topic.replace("/", "_").upper()


async def subscriptions(client: ShopifyClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = None
    while True:
        data = await client.execute("WebhookSubscriptions", LIST_QUERY, {"first": PAGE, "after": after}, cost=1 + PAGE)
        page = data.get("webhookSubscriptions") or {}
        found.extend(page.get("nodes") or [])
        info = page.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return found
        after = info.get("endCursor")


async def register_webhooks(account: ShopifyAccount, callback_url: str) -> list[tuple[str, str]]:
    """(topic, CREATED | EXISTS | APP_CONFIG | FAILED: reason) for every topic."""
    client = ShopifyClient(account.shop_domain, account.access_token.get_secret_value(),
                           api_version=account.api_version, admin_url=account.admin_url)
    try:
        existing = {
            (s.get("topic"), (s.get("endpoint") or {}).get("callbackUrl")) for s in await subscriptions(client)
        }
        results = []
        for topic in TOPICS:
            if (enum_of(topic), callback_url) in existing:
                results.append((topic, "EXISTS"))
                continue
            data = await client.execute("CreateWebhook", CREATE_MUTATION, {
                "topic": enum_of(topic), "webhookSubscription": {"callbackUrl": callback_url, "format": "JSON"},
            })
            errors = user_errors_of(data.get("webhookSubscriptionCreate"))
            results.append((topic, "FAILED: " + "; ".join(e.message for e in errors) if errors else "CREATED"))
        results.extend((topic, "APP_CONFIG") for topic in COMPLIANCE_TOPICS)
        return results
    finally:
        await client.aclose()
