"""One store's WooCommerce account (a secret), as the storefront process reads it.

An entry of the storefront accounts (``OPS_STOREFRONT_ACCOUNTS`` or the
storefront secrets file, connectors/storefront/settings.py), told apart by
``platform``::

    {"store-2": {"platform": "WOOCOMMERCE", "site_url": "https://shop.example.com",
                 "consumer_key": "ck_...", "consumer_secret": "cs_...",
                 "auth": "basic", "customer_note": true, "complete_on_tracking": false}}

``auth``: ``basic`` (HTTP Basic with the consumer key and secret, the
default) or ``query`` (``consumer_key`` / ``consumer_secret`` in the query
string, for servers that drop the Authorization header). Both only over
https: a plain-http URL is refused unless it is a loopback address (a fake
in tests). WooCommerce's OAuth 1.0a for plain http is not supported.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from models.webhooks import woocommerce_site


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WooCommerceAccount(BaseModel):
    """One store's WooCommerce site and REST API key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: Literal["WOOCOMMERCE"] = "WOOCOMMERCE"
    site_url: str = Field(description="the site's URL, e.g. https://shop.example.com (https only)")
    site_host: str | None = Field(
        None,
        description=(
            "the site's host as X-WC-Webhook-Source and the catalogue name it (default: the host of "
            "site_url; set it when the API is reached at another address)"
        ),
    )
    consumer_key: SecretStr = Field(description="REST API consumer key (ck_...), read/write")
    consumer_secret: SecretStr = Field(description="REST API consumer secret (cs_...)")
    auth: Literal["basic", "query"] = Field("basic", description="HTTP Basic, or the key and secret in the query")
    api_path: str = Field("/wp-json/wc/v3", pattern=r"^/[A-Za-z0-9/_.-]*$", description="the REST API's path")
    customer_note: bool = Field(True, description="tracking notes are customer notes (WooCommerce e-mails them)")
    complete_on_tracking: bool = Field(
        False, description="mark the order completed when a shipment covers all its lines"
    )
    rate_per_s: float = Field(5.0, gt=0, le=1000, description="requests per second to the site")
    timeout_s: float = Field(30.0, gt=0, le=300, description="read timeout of a request, s")

    @field_validator("site_url")
    @classmethod
    def _https(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.query:
            raise ValueError("site_url must be a plain https URL such as https://shop.example.com")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("site_url must be https (the API key travels with every request)")
        return value

    @field_validator("site_host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = woocommerce_site(value)
        if host is None:
            raise ValueError("site_host must be a host such as shop.example.com")
        return host

    @property
    def site(self) -> str:
        """The site's host: how its webhooks, its catalogue and its order ids name it."""
        site = self.site_host or woocommerce_site(self.site_url)
        assert site is not None  # checked by the validators
        return site

    @property
    def api_url(self) -> str:
        return self.site_url + self.api_path.rstrip("/")

    def __repr_args__(self) -> Any:  # never the key, even masked, in a repr of the account
        return [(k, v) for k, v in super().__repr_args__() if k not in ("consumer_key", "consumer_secret")]
