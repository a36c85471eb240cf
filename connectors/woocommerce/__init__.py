"""WooCommerce, the second storefront: its REST client (client.py), the
storefront adapter (storefront.py: stock and prices, tracking notes), the
account of a store (settings.py), the reconciliation of its orders
(reconcile.py, on connectors/storefront/reconcile.py) and the registration of
its order webhooks (webhooks.py). Its order webhooks go through the common
ingress (connectors/ingress, ``POST /webhooks/woocommerce``) and router
(models/webhook_routing.py)."""
