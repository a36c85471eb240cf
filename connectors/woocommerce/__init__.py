"""WooCommerce, the second storefront: its REST client (client.py), the
storefront adapter (storefront.py: stock and prices, tracking notes) and the
account of a store (settings.py). Its order webhooks go through the common
ingress (connectors/ingress, ``POST /webhooks/woocommerce``) and router
(models/webhook_routing.py)."""
