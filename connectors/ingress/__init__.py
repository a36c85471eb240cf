"""The HTTP ingress of webhooks (Shopify, Stripe, suppliers): verify, refuse,
and store the raw webhook durably on ``webhooks.inbound`` before answering 2xx.

``register(engine)`` adds the routes to the worker's web server
(``connectors/ingress/views.py``); the settings are
``connectors/ingress/settings.py``, the record and the signature checks
``models/webhooks.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.app import Engine


def register(engine: Engine, **kwargs: Any) -> Any:
    """Add the webhook routes to ``engine.app`` (see ``views.register``)."""
    from connectors.ingress import views

    return views.register(engine, **kwargs)


__all__ = ["register"]
