"""Settings of the webhook ingress, read from ``OPS_*`` variables (and a file).

Apart from streams/settings.py, like the notifier's and the suppliers': only
the ingress needs them.

- ``OPS_SHOPIFY_WEBHOOK_SECRETS``: JSON object, shop domain -> secret or list
  of secrets (current first, then the previous one while a rotation is under
  way): ``{"shop.myshopify.com": ["current", "previous"]}``. The key ``"*"``
  is the app-wide client secret, used for a shop not listed (a public app
  has one secret for every shop; with ``"*"`` no shop is "unknown").
- ``OPS_WOOCOMMERCE_WEBHOOK_SECRETS``: JSON object, WooCommerce site -> secret
  or list of secrets (current first, then the previous one while a rotation is
  under way): ``{"shop.example.com": ["current", "previous"]}``. A key is the
  site's host as in ``X-WC-Webhook-Source`` (a URL such as
  ``https://shop.example.com/`` is accepted and reduced to its host). Each
  WooCommerce webhook has its own secret; every webhook of one site must be
  given one of the secrets listed for it. No ``"*"``: an unlisted site is refused.
- ``OPS_STRIPE_WEBHOOK_SECRETS``: comma list of endpoint secrets (``whsec_...``).
- ``OPS_SUPPLIER_WEBHOOK_SECRETS``: JSON object, provider ->
  ``{"header": "X-CJ-Signature", "secret": "..." | "secrets": [...],
  "encoding": "hex" | "base64", "prefix": "sha256=", "id_header": "X-CJ-Event-Id",
  "event_field": "type"}`` (only ``header`` and a secret are required).
- ``OPS_WEBHOOK_SECRETS_FILE``: a JSON file with any of the four keys above
  (``shopify_webhook_secrets``, ``woocommerce_webhook_secrets``,
  ``stripe_webhook_secrets`` (a list or a comma string),
  ``supplier_webhook_secrets``); a variable set in the environment wins.
- ``OPS_WEBHOOK_MAX_BODY`` (1048576), ``OPS_WEBHOOK_STRIPE_TOLERANCE_S`` (300),
  ``OPS_WEBHOOK_ACK_TIMEOUT_S`` (5).

Secrets are ``SecretStr`` (they print as ``**********``) and an invalid value
stops the worker with the variable's name, never the value. Fail closed: a
source without a secret refuses every request with 401 "no secret configured";
empty secrets are dropped, never used as an HMAC key.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict

from models.webhooks import woocommerce_site
from streams import secrets_file
from streams.settings import ENV_PREFIX, SettingsError

log = logging.getLogger(__name__)

SECRETS_FILE_VAR = "OPS_WEBHOOK_SECRETS_FILE"
#: A body may be at most this large; the stored record (the body as a JSON
#: string, at most twice its size escaped) must stay under the topic's
#: max.message.bytes (streams/topics.py).
MAX_BODY_LIMIT = 2 * 1024 * 1024
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"
_PROVIDER = re.compile(r"^[A-Z0-9_]{1,64}$")
_SHOP = re.compile(r"^(\*|[a-z0-9][a-z0-9.-]{0,253})$")


def provider_name(value: str) -> str:
    """A provider as configured and as matched from the path: CJ_DROPSHIPPING."""
    return value.strip().upper().replace("-", "_")


def _secrets(value: Any) -> Any:
    """A secret or a list of secrets, as a list; blanks dropped."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            raw = item.get_secret_value() if isinstance(item, SecretStr) else item
            if isinstance(raw, str) and not raw.strip():
                continue
            out.append(raw)
        return out
    return value


class SupplierWebhook(BaseModel):
    """How one supplier signs its webhooks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    header: str = Field(pattern=_HEADER_NAME, description="header of the signature, e.g. X-CJ-Signature")
    secrets: tuple[SecretStr, ...] = Field(description="shared secrets (several during a rotation)")
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field("", max_length=32, description="text before the digest in the header, e.g. sha256=")
    id_header: str | None = Field(None, pattern=_HEADER_NAME, description="header holding the delivery id, if any")
    event_field: str | None = Field(None, max_length=100, description="body field holding the event name, if any")

    @model_validator(mode="before")
    @classmethod
    def _secret_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "secret" in data:
            data = dict(data)
            one = data.pop("secret")
            data["secrets"] = [*_secrets(one), *(_secrets(data.get("secrets")) or [])]
        elif isinstance(data, dict) and "secrets" in data:
            data = {**data, "secrets": _secrets(data["secrets"])}
        return data

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(s.get_secret_value().encode() for s in self.secrets if s.get_secret_value())


class IngressSettings(secrets_file.SecretsFileSettings):
    secrets_file_var = SECRETS_FILE_VAR
    settings_error = SettingsError
    what = "webhook settings"

    """The webhook secrets and limits of this deployment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    webhook_secrets_file: Path | None = Field(None, description="JSON file of the webhook secrets (env wins)")
    shopify_webhook_secrets: dict[str, tuple[SecretStr, ...]] = Field(
        default_factory=dict,
        description='JSON {"shop.myshopify.com": ["current", "previous"], "*": app-wide}',
    )
    woocommerce_webhook_secrets: dict[str, tuple[SecretStr, ...]] = Field(
        default_factory=dict,
        description='JSON {"shop.example.com": ["current", "previous"]} (the site host of X-WC-Webhook-Source)',
    )
    stripe_webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="comma list of Stripe endpoint secrets"
    )
    supplier_webhook_secrets: dict[str, SupplierWebhook] = Field(
        default_factory=dict,
        description='JSON {"CJ_DROPSHIPPING": {"header": "X-CJ-Signature", "secret": "...", "encoding": "hex"}}',
    )
    webhook_max_body: int = Field(
        1024 * 1024, ge=1, le=MAX_BODY_LIMIT, description="largest webhook body accepted, bytes (larger: 413)"
    )
    webhook_stripe_tolerance_s: int = Field(
        300, ge=1, le=3600, description="Stripe-Signature t must be this close to now, s (either direction)"
    )
    webhook_ack_timeout_s: float = Field(
        5.0, gt=0, le=60, description="wait for acks=all on webhooks.inbound before answering 503, s"
    )

    @field_validator("shopify_webhook_secrets", mode="before")
    @classmethod
    def _shops(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        shops: dict[str, Any] = {}
        for shop, secrets in value.items():
            name = str(shop).strip().lower()
            if not _SHOP.match(name):
                raise ValueError("a key must be a shop domain such as shop.myshopify.com, or *")
            kept = _secrets(secrets)
            if not kept:
                log.warning("OPS_SHOPIFY_WEBHOOK_SECRETS: no secret for %s; its webhooks are refused", name)
                continue
            shops[name] = kept
        return shops

    @field_validator("woocommerce_webhook_secrets", mode="before")
    @classmethod
    def _sites(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        sites: dict[str, Any] = {}
        for site, secrets in value.items():
            name = woocommerce_site(str(site))
            if name is None:
                raise ValueError("a key must be a WooCommerce site host such as shop.example.com (or its URL)")
            kept = _secrets(secrets)
            if not kept:
                log.warning("OPS_WOOCOMMERCE_WEBHOOK_SECRETS: no secret for %s; its webhooks are refused", name)
                continue
            sites[name] = [*sites.get(name, []), *kept]
        return sites

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _stripe(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        return tuple(s.strip() if isinstance(s, str) else s for s in (_secrets(value) or []))

    @field_validator("supplier_webhook_secrets", mode="before")
    @classmethod
    def _suppliers(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for provider, config in value.items():
            name = provider_name(str(provider))
            if not _PROVIDER.match(name):
                raise ValueError("a provider must be letters, digits and _ (e.g. CJ_DROPSHIPPING)")
            out[name] = config
        return out

    # -- the keys, as the views use them ------------------------------------------------
    def shopify_keys(self) -> dict[str, tuple[bytes, ...]]:
        return {
            shop: tuple(s.get_secret_value().encode() for s in secrets if s.get_secret_value())
            for shop, secrets in self.shopify_webhook_secrets.items()
        }

    def woocommerce_keys(self) -> dict[str, tuple[bytes, ...]]:
        return {
            site: tuple(s.get_secret_value().encode() for s in secrets if s.get_secret_value())
            for site, secrets in self.woocommerce_webhook_secrets.items()
        }

    def stripe_keys(self) -> tuple[bytes, ...]:
        return tuple(s.get_secret_value().encode() for s in self.stripe_webhook_secrets if s.get_secret_value())
