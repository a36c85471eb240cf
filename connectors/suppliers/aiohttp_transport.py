"""An httpx transport that sends requests with aiohttp.

The adapters speak httpx (requests, responses, timeouts, the error classes
``http.classify_exception`` maps to the port's errors); this transport only
replaces what carries the bytes. httpx's own transport (httpcore on anyio) was
the larger part of the executor's CPU: in a profile at ~300 supplier orders/s,
55 % of the executor's samples were inside ``AsyncClient.request`` and most of
those in httpcore's connection pool and anyio's socket stream. aiohttp (a
dependency of faust-streaming already, well kept) does the same work with a
fraction of it.

Errors come back as the httpx exceptions the rest of the code classifies:
a connection that could not be made -> ``ConnectError`` / ``ConnectTimeout``
(nothing was sent); a timeout or a lost connection after the request went out
-> ``ReadTimeout`` / ``RemoteProtocolError`` / ``ReadError`` (the supplier may
have acted). Redirects are not followed (httpx decides, and it does not).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int = 10) -> None:
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=60),
                auto_decompress=False,  # httpx decodes the body by its Content-Encoding
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=timeouts.get("connect"),
            connect=_sum(timeouts.get("connect"), timeouts.get("pool")),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        session = self._session_now()
        sent = False
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            ) as response:
                sent = True
                content = await response.read()
                return httpx.Response(
                    status_code=response.status,
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
                    content=content,
                    request=request,
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc) or "cannot connect", request=request) from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientOSError as exc:
            if not sent and exc.errno in (111, 113):  # refused, no route: never reached the supplier
                raise httpx.ConnectError(str(exc), request=request) from exc
            raise httpx.ReadError(str(exc) or "connection lost", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc), request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _sum(*parts: float | None) -> float | None:
    present = [p for p in parts if p is not None]
    return sum(present) if present else None
