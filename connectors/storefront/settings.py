"""Settings of the storefront process (``ops-engine storefront``, ``ops-engine shopify ...``,
``ops-engine woocommerce ...``).

Apart from streams/settings.py, like the notifier's: a worker must not fail to
start over a storefront setting.

Store accounts (secrets) come from ``OPS_STOREFRONT_ACCOUNTS`` (JSON) or from
the JSON file named by ``OPS_STOREFRONT_SECRETS_FILE`` (streams/secrets_file.py;
the environment wins), a JSON object::

    {"storefront_accounts": {
        "store-1": {"platform": "SHOPIFY", "shop_domain": "s1.myshopify.com",
                    "access_token": "shpat_...", "location_id": "gid://shopify/Location/1",
                    "api_version": "2025-07", "notify_customer": true}}}

``platform`` picks the account model (a discriminated union): ``SHOPIFY`` here,
``WOOCOMMERCE`` connectors/woocommerce/settings.py (``site_url``,
``consumer_key``, ``consumer_secret``, ``auth``, ``customer_note``,
``complete_on_tracking``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from connectors.woocommerce.settings import WooCommerceAccount
from streams import secrets_file
from streams.settings import ENV_PREFIX, SettingsError

SECRETS_FILE_VAR = "OPS_STOREFRONT_SECRETS_FILE"


class ShopifyAccount(BaseModel):
    """One store's Shopify shop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: Literal["SHOPIFY"] = "SHOPIFY"
    shop_domain: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$", description="shop.myshopify.com")
    access_token: SecretStr = Field(description="Admin API access token (X-Shopify-Access-Token)")
    location_id: str = Field(description="the location whose available quantity the engine sets")
    api_version: str = Field("2025-07", pattern=r"^\d{4}-\d{2}$|^unstable$")
    notify_customer: bool = Field(True, description="Shopify e-mails the customer the tracking of a fulfillment")
    admin_url: str | None = Field(
        None, description="base URL of the Admin API (default https://{shop_domain}; a fake in tests)"
    )

    @field_validator("shop_domain", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


#: One store's storefront account; the ``platform`` field picks the model.
StorefrontAccount = Annotated[ShopifyAccount | WooCommerceAccount, Field(discriminator="platform")]


class StorefrontSettings(secrets_file.SecretsFileSettings):
    secrets_file_var = SECRETS_FILE_VAR
    settings_error = SettingsError
    what = "storefront settings"

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    storefront_secrets_file: Path | None = Field(None, description="JSON file of the storefront accounts (env wins)")
    storefront_accounts: dict[str, StorefrontAccount] = Field(
        default_factory=dict, description="JSON {store_id: account}; see connectors/storefront/settings.py"
    )
    storefront_metrics_port: int = Field(6073, ge=0, le=65535, description="port of the storefront's /metrics; 0: none")
    storefront_concurrency: int = Field(4, ge=1, le=64, description="stores pushed at once")
    storefront_unavailable_s: float = Field(
        300.0, ge=1, description="s of failed tries after which a store's shop is set aside (its records to deadletter)"
    )
    storefront_probe_interval_s: float = Field(
        60.0, ge=1, description="s between tries (probes) of a set-aside store's shop"
    )
    storefront_recheck_lookback_s: float = Field(
        7 * 86400.0, ge=0,
        description=("at start, stores with STOREFRONT_UNAVAILABLE dead letters this recent (s) are probed and, "
                     "once their shop answers, replayed (a restart forgets which stores were set aside); 0: off"),
    )
    shopify_reconcile_interval_s: float = Field(
        900.0, ge=1, description="s between pulls of each Shopify shop's updated orders (needs OPS_DATABASE_URL)"
    )
    shopify_reconcile_lookback_s: float = Field(
        86400.0, ge=1, description="how far back the first pull of a shop reaches, s"
    )
    woocommerce_reconcile_interval_s: float = Field(
        900.0, ge=1, description="s between pulls of each WooCommerce site's modified orders (needs OPS_DATABASE_URL)"
    )
    woocommerce_reconcile_lookback_s: float = Field(
        86400.0, ge=1, description="how far back the first pull of a WooCommerce site reaches, s"
    )
    public_url: str | None = Field(
        None,
        description=(
            "the engine's public base URL; webhooks are registered at PUBLIC_URL/webhooks/shopify "
            "and PUBLIC_URL/webhooks/woocommerce"
        ),
    )
