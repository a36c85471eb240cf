"""Supplier accounts: read from the environment (never from topics), and the
adapters built from them at process start-up.

Variables (prefix ``OPS_``): ``ALIEXPRESS_BASE_URL``, ``ALIEXPRESS_APP_KEY``,
``ALIEXPRESS_APP_SECRET``, ``ALIEXPRESS_ACCESS_TOKEN``, ``CJ_BASE_URL``,
``CJ_ACCESS_TOKEN``, ``SPOCKET_BASE_URL``, ``SPOCKET_API_KEY``, the rates
``ALIEXPRESS_RATE_PER_S`` (10), ``CJ_RATE_PER_S`` (1), ``SPOCKET_RATE_PER_S`` (5),
the timeouts ``SUPPLIER_{CONNECT,READ,WRITE,POOL}_TIMEOUT`` and the breaker's
``SUPPLIER_BREAKER_FAILURES`` / ``SUPPLIER_BREAKER_COOLDOWN_S``, and for the
product fetch ``SUPPLIER_FETCH_CONCURRENCY`` (4 calls of one fetch at once),
``ALIEXPRESS_SHIP_TO_COUNTRY`` (US), ``CJ_PRODUCT_BATCH`` (20 ids per list
query; 1: the per-product query only) and ``SPOCKET_PRODUCT_BATCH`` (50).

``OPS_SUPPLIER_SECRETS_FILE`` names a JSON file holding any of the same
settings, keys lowercased without the prefix (``{"cj_access_token": "..."}``);
a variable set in the environment wins over the file. Secrets are
``SecretStr``: they print as ``**********``.

Nothing here runs at import: call ``SupplierAccounts.load()`` then
``build_clients(accounts)`` when the process starts. Each adapter is both the
account's ``SupplierOrders`` and its ``SupplierCatalog``; ``catalogs_of(clients)``
gives the catalogs of those same objects, so an account keeps ONE token
bucket and ONE circuit breaker whether it places orders or fetches products.
``build_catalogs(accounts)`` builds both at once for a process that only reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from connectors.suppliers import aliexpress, cj, spocket
from collections.abc import Mapping

from connectors.suppliers.base import SupplierCatalog, SupplierOrders
from connectors.suppliers.http import CircuitBreaker
from streams import secrets_file

log = logging.getLogger(__name__)

ENV_PREFIX = "OPS_"
SECRETS_FILE_VAR = "OPS_SUPPLIER_SECRETS_FILE"

#: The settings a provider needs before it gets a client.
CREDENTIALS: dict[str, list[str]] = {
    aliexpress.PROVIDER: ["aliexpress_app_key", "aliexpress_app_secret", "aliexpress_access_token"],
    cj.PROVIDER: ["cj_access_token"],
    spocket.PROVIDER: ["spocket_api_key"],
}


class SupplierSettingsError(SystemExit):
    """Raised with a readable message (never a secret's value) when the
    supplier settings are invalid."""


class SupplierAccounts(secrets_file.SecretsFileSettings):
    secrets_file_var = SECRETS_FILE_VAR
    settings_error = SupplierSettingsError
    what = "supplier settings"

    """The supplier accounts of this deployment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    supplier_secrets_file: Path | None = Field(None, description="JSON file of supplier settings (env wins)")

    aliexpress_base_url: str = Field(aliexpress.DEFAULT_BASE_URL, description="AliExpress Open Platform host")
    aliexpress_app_key: str | None = Field(None, description="AliExpress app key")
    aliexpress_app_secret: SecretStr | None = Field(None, description="AliExpress app secret (signs requests)")
    aliexpress_access_token: SecretStr | None = Field(None, description="AliExpress seller access token")
    aliexpress_rate_per_s: float = Field(10.0, gt=0, description="AliExpress requests per second")

    cj_base_url: str = Field(cj.DEFAULT_BASE_URL, description="CJ Dropshipping API host")
    cj_access_token: SecretStr | None = Field(None, description="CJ-Access-Token")
    cj_rate_per_s: float = Field(1.0, gt=0, description="CJ requests per second")

    spocket_base_url: str = Field(spocket.DEFAULT_BASE_URL, description="Spocket API host")
    spocket_api_key: SecretStr | None = Field(None, description="Spocket API key (Bearer)")
    spocket_rate_per_s: float = Field(5.0, gt=0, description="Spocket requests per second")

    supplier_connect_timeout: float = Field(5.0, gt=0, description="supplier connect timeout, s")
    supplier_read_timeout: float = Field(30.0, gt=0, description="supplier read timeout, s")
    supplier_write_timeout: float = Field(10.0, gt=0, description="supplier write timeout, s")
    supplier_pool_timeout: float = Field(5.0, gt=0, description="wait for a free connection, s")
    supplier_breaker_failures: int = Field(5, ge=1, description="consecutive transport failures that open a circuit")
    supplier_breaker_cooldown_s: float = Field(30.0, gt=0, description="how long an open circuit stays open, s")
    supplier_fetch_concurrency: int = Field(4, ge=1, le=64, description="calls of one product fetch at once")
    aliexpress_ship_to_country: str = Field("US", min_length=2, max_length=2, description="AliExpress ship_to_country")
    cj_product_batch: int = Field(cj.LIST_BATCH, ge=1, le=cj.LIST_BATCH, description="ids per CJ list query")
    spocket_product_batch: int = Field(
        spocket.LIST_BATCH, ge=1, le=spocket.LIST_BATCH, description="ids per Spocket products call"
    )

    @property
    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.supplier_connect_timeout,
            read=self.supplier_read_timeout,
            write=self.supplier_write_timeout,
            pool=self.supplier_pool_timeout,
        )

    def configured(self) -> list[str]:
        """The providers with every credential set."""
        return [provider for provider, missing in self._missing().items() if not missing]

    def _missing(self) -> dict[str, list[str]]:
        """Per provider, the credential variables not set (all of them: not configured)."""
        return {p: [n for n in names if not _value(getattr(self, n))] for p, names in CREDENTIALS.items()}


def _value(value: str | SecretStr | None) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value or ""


def build_clients(accounts: SupplierAccounts) -> dict[str, SupplierOrders]:
    """One adapter per configured provider, keyed by provider name. A provider
    with only some of its credentials is a misconfiguration: it raises
    ``SupplierSettingsError`` naming the missing variables."""
    partial = {
        provider: missing
        for provider, missing in accounts._missing().items()
        if 0 < len(missing) < len(CREDENTIALS[provider])
    }
    if partial:
        names = ", ".join(ENV_PREFIX + n.upper() for missing in partial.values() for n in missing)
        raise SupplierSettingsError(f"supplier credentials incomplete: set {names}")
    configured = accounts.configured()

    def breaker(provider: str) -> CircuitBreaker:
        return CircuitBreaker(
            provider, accounts.supplier_breaker_failures, accounts.supplier_breaker_cooldown_s
        )

    clients: dict[str, SupplierOrders] = {}
    if aliexpress.PROVIDER in configured:
        clients[aliexpress.PROVIDER] = aliexpress.AliExpressOrders(
            accounts.aliexpress_base_url,
            app_key=_value(accounts.aliexpress_app_key),
            app_secret=_value(accounts.aliexpress_app_secret),
            access_token=_value(accounts.aliexpress_access_token),
            timeout=accounts.timeout,
            rate_per_s=accounts.aliexpress_rate_per_s,
            breaker=breaker(aliexpress.PROVIDER),
            ship_to_country=accounts.aliexpress_ship_to_country.upper(),
            fetch_concurrency=accounts.supplier_fetch_concurrency,
        )
    if cj.PROVIDER in configured:
        clients[cj.PROVIDER] = cj.CJOrders(
            accounts.cj_base_url,
            access_token=_value(accounts.cj_access_token),
            timeout=accounts.timeout,
            rate_per_s=accounts.cj_rate_per_s,
            breaker=breaker(cj.PROVIDER),
            batch_size=accounts.cj_product_batch,
            fetch_concurrency=accounts.supplier_fetch_concurrency,
        )
    if spocket.PROVIDER in configured:
        clients[spocket.PROVIDER] = spocket.SpocketOrders(
            accounts.spocket_base_url,
            api_key=_value(accounts.spocket_api_key),
            timeout=accounts.timeout,
            rate_per_s=accounts.spocket_rate_per_s,
            breaker=breaker(spocket.PROVIDER),
            batch_size=accounts.spocket_product_batch,
            fetch_concurrency=accounts.supplier_fetch_concurrency,
        )
    log.info("supplier clients: %s", ", ".join(sorted(clients)) or "none")
    return clients


def catalogs_of(clients: Mapping[str, SupplierOrders]) -> dict[str, SupplierCatalog]:
    """The product catalogs of the adapters ``build_clients`` made: the same
    objects (one HTTP client, token bucket and breaker per account)."""
    catalogs: dict[str, SupplierCatalog] = {}
    for provider, client in clients.items():
        if not callable(getattr(client, "fetch_products", None)):
            raise TypeError(f"the {provider} adapter has no product fetch")
        catalogs[provider] = client  # type: ignore[assignment]
    return catalogs


def build_catalogs(accounts: SupplierAccounts) -> dict[str, SupplierCatalog]:
    """One catalog per configured provider, from the same settings as
    ``build_clients``. A process that also places orders must call
    ``catalogs_of(build_clients(accounts))`` instead: building twice would give
    an account two rate limits."""
    return catalogs_of(build_clients(accounts))
