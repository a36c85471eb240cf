"""Supplier adapters pointed at a fake supplier, in this process or in another (by environment)."""

from __future__ import annotations

from typing import Any

import httpx

from connectors.suppliers.aliexpress import AliExpressOrders
from connectors.suppliers.base import SupplierOrders
from connectors.suppliers.cj import CJOrders
from connectors.suppliers.http import CircuitBreaker
from connectors.suppliers.spocket import SpocketOrders
from tests.fakes.supplier_server import FakeCredentials

PROVIDERS = ["ALIEXPRESS", "CJ_DROPSHIPPING", "SPOCKET"]
CREDS = FakeCredentials()
TIMEOUT = httpx.Timeout(connect=0.5, read=0.5, write=0.5, pool=0.5)


def make_adapter(
    provider: str,
    fake: Any,
    creds: FakeCredentials = CREDS,
    breaker: CircuitBreaker | None = None,
    timeout: httpx.Timeout = TIMEOUT,
    rate_per_s: float = 1000,
    burst: float | None = None,
    read_attempts: int = 2,
    **extra: Any,
) -> SupplierOrders:
    """An adapter of ``provider`` talking to ``fake`` (anything with ``base_url(provider)``);
    ``extra``: the adapter's own keyword arguments (e.g. ``batch_size``)."""
    common: dict[str, Any] = {
        "timeout": timeout, "rate_per_s": rate_per_s, "burst": burst, "breaker": breaker,
        "read_attempts": read_attempts, **extra,
    }
    base_url = fake.base_url(provider)
    if provider == "ALIEXPRESS":
        return AliExpressOrders(
            base_url,
            app_key=creds.aliexpress_app_key,
            app_secret=creds.aliexpress_app_secret,
            access_token=creds.aliexpress_access_token,
            **common,
        )
    if provider == "CJ_DROPSHIPPING":
        return CJOrders(base_url, access_token=creds.cj_access_token, **common)
    return SpocketOrders(base_url, api_key=creds.spocket_api_key, **common)


def supplier_env(fake: Any, creds: FakeCredentials = CREDS, read_timeout: float = 1.0) -> dict[str, str]:
    """The OPS_* variables that point an executor process's adapters at ``fake``."""
    return {
        "OPS_ALIEXPRESS_BASE_URL": fake.base_url("ALIEXPRESS"),
        "OPS_ALIEXPRESS_APP_KEY": creds.aliexpress_app_key,
        "OPS_ALIEXPRESS_APP_SECRET": creds.aliexpress_app_secret,
        "OPS_ALIEXPRESS_ACCESS_TOKEN": creds.aliexpress_access_token,
        "OPS_CJ_BASE_URL": fake.base_url("CJ_DROPSHIPPING"),
        "OPS_CJ_ACCESS_TOKEN": creds.cj_access_token,
        "OPS_SPOCKET_BASE_URL": fake.base_url("SPOCKET"),
        "OPS_SPOCKET_API_KEY": creds.spocket_api_key,
        "OPS_ALIEXPRESS_RATE_PER_S": "1000",
        "OPS_CJ_RATE_PER_S": "1000",
        "OPS_SPOCKET_RATE_PER_S": "1000",
        "OPS_SUPPLIER_READ_TIMEOUT": str(read_timeout),
        "OPS_SUPPLIER_CONNECT_TIMEOUT": "1",
        "OPS_SUPPLIER_BREAKER_FAILURES": "1000",
    }
