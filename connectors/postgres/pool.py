"""The engine's asyncpg connection pool.

Made by the worker when it starts (never at import time: importing a module
must not open connections), closed when it stops. Small on purpose: the
engine's writes are short keyed upserts, and every worker process holds its
own pool against the server's ``max_connections`` (100 by default).
"""

from __future__ import annotations

from typing import Any

import asyncpg

__all__ = ["create_pool"]


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 5,
    command_timeout: float | None = 30.0,
    **kw: Any,
) -> asyncpg.Pool:
    """An open pool on ``dsn``; ``kw`` goes to :func:`asyncpg.create_pool` as it is.

    ``command_timeout`` bounds each statement, so a stuck query fails the
    handler (and its message is retried) instead of stalling the agent.
    """
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, command_timeout=command_timeout, **kw
    )
