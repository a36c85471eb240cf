"""A fake WooCommerce site: a real HTTP server on loopback speaking the parts of
the REST API v3 (``/wp-json/wc/v3``) the storefront push uses.

* ``POST /products/batch`` and ``POST /products/{id}/variations/batch``
  ``{"update": [...]}`` (at most 100 items, else 413): each item is checked as
  WooCommerce's schema does (``regular_price`` / ``sale_price`` must be
  strings, ``stock_quantity`` an integer, ``manage_stock`` a boolean,
  ``stock_status`` one of instock / outofstock / onbackorder); a bad field is a
  400 ``rest_invalid_param`` for the whole request; an unknown id (or a
  variation of another product) is an error in that item's answer, the others
  are applied.
* ``GET /orders/{id}``, ``PUT /orders/{id}`` (``status``),
  ``GET /orders/{id}/notes``, ``POST /orders/{id}/notes`` (``note``,
  ``customer_note``); unknown order: 404 ``woocommerce_rest_shop_order_invalid_id``.

Authentication: HTTP Basic with the consumer key and secret, or
``consumer_key`` / ``consumer_secret`` in the query; anything else is a 401
``woocommerce_rest_cannot_view``. Each request is recorded (method, path,
query without the secret, body, which auth) and every write too;
``fail_next`` makes the next requests answer 500 or 429 (before applying
anything), or ``500_after`` (apply, then answer 500).

In a test::

    with FakeWooCommerce(products={93: {...}}, variations={22: {23: {...}}}, orders={727: {...}}) as fake:
        fake.api_url      # http://127.0.0.1:PORT/wp-json/wc/v3
        fake.writes       # [{"method", "path", "body"}]
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/wp-json/wc/v3"
BATCH_LIMIT = 100
STOCK_STATUSES = ("instock", "outofstock", "onbackorder")


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, code: str, message: str) -> _Reply:
    return _Reply(status, {"code": code, "message": message, "data": {"status": status}})


def _check_item(item: dict[str, Any]) -> None:
    """WooCommerce's REST schema of the fields the push writes (rest_validate_value_from_schema)."""
    for name in ("regular_price", "sale_price"):
        if name in item and not isinstance(item[name], str):
            raise _error(400, "rest_invalid_param", f"Invalid parameter(s): update[{name}] is not of type string.")
    if "stock_quantity" in item and (
        isinstance(item["stock_quantity"], bool) or not isinstance(item["stock_quantity"], (int, type(None)))
    ):
        raise _error(400, "rest_invalid_param", "Invalid parameter(s): update[stock_quantity] is not of type integer.")
    if "manage_stock" in item and not isinstance(item["manage_stock"], bool):
        raise _error(400, "rest_invalid_param", "Invalid parameter(s): update[manage_stock] is not of type boolean.")
    if "stock_status" in item and item["stock_status"] not in STOCK_STATUSES:
        raise _error(400, "rest_invalid_param", "Invalid parameter(s): update[stock_status] is not one of instock, outofstock, onbackorder.")


class FakeWooCommerce:
    def __init__(
        self,
        consumer_key: str = "ck_fake_0123456789",
        consumer_secret: str = "cs_fake_0123456789",
        products: dict[int, dict[str, Any]] | None = None,
        variations: dict[int, dict[int, dict[str, Any]]] | None = None,
        orders: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.products = {int(k): {"id": int(k), **v} for k, v in (products or {}).items()}
        self.variations = {
            int(p): {int(k): {"id": int(k), "parent_id": int(p), **v} for k, v in items.items()}
            for p, items in (variations or {}).items()
        }
        self.orders = {int(k): {"id": int(k), "status": "processing", "line_items": [], **v} for k, v in (orders or {}).items()}
        self.notes: dict[int, list[dict[str, Any]]] = {k: [] for k in self.orders}
        self.requests: list[dict[str, Any]] = []
        self.writes: list[dict[str, Any]] = []
        self.fail_next: list[str] = []
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, each reply waits ~40 ms for the delayed ACK.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    status, body, headers = 200, fake.handle(self.command, self.path, dict(self.headers), raw), {}
                except _Reply as reply:
                    status, body, headers = reply.status, reply.body, reply.headers
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- the test's side -------------------------------------------------------------
    @property
    def site_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.site_url + API

    def product(self, product_id: int) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.products[product_id])

    def variation(self, product_id: int, variation_id: int) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.variations[product_id][variation_id])

    def order_notes(self, order_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.notes[order_id])

    def __enter__(self) -> FakeWooCommerce:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the API ---------------------------------------------------------------------
    def _auth(self, headers: dict[str, str], query: dict[str, list[str]]) -> str:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if value.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(value[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if (user, password) == (self.consumer_key, self.consumer_secret):
                return "basic"
        elif query.get("consumer_key") == [self.consumer_key] and query.get("consumer_secret") == [self.consumer_secret]:
            return "query"
        raise _error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Any:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        path = parts.path
        shown = {k: v for k, v in query.items() if k != "consumer_secret"}
        body = json.loads(raw) if raw else None
        with self._lock:
            entry = {"method": method, "path": path, "query": shown, "body": body, "auth": None}
            self.requests.append(entry)
            entry["auth"] = self._auth(headers, query)
            if not path.startswith(API + "/"):
                raise _error(404, "rest_no_route", "No route was found matching the URL and request method.")
            failure = self.fail_next.pop(0) if self.fail_next else None
            if failure == "500":
                raise _error(500, "internal_server_error", "There has been a critical error on this website.")
            if failure == "429":
                raise _Reply(429, {"code": "too_many_requests", "message": "Slow down"}, {"Retry-After": "0"})
            answer = self._route(method, path[len(API):], body, query)
            if failure == "500_after":
                raise _error(500, "internal_server_error", "There has been a critical error on this website.")
            return answer

    def _route(self, method: str, path: str, body: Any, query: dict[str, list[str]]) -> Any:
        segments = [s for s in path.split("/") if s]
        if method == "POST" and segments == ["products", "batch"]:
            return self._batch(path, body, self.products, "woocommerce_rest_product_invalid_id")
        if method == "POST" and len(segments) == 4 and segments[0] == "products" and segments[2:] == ["variations", "batch"]:
            parent = int(segments[1])
            if parent not in self.products and parent not in self.variations:
                raise _error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
            return self._batch(path, body, self.variations.setdefault(parent, {}),
                               "woocommerce_rest_product_variation_invalid_id")
        if segments[:1] == ["orders"] and len(segments) >= 2:
            if not segments[1].isdigit() or int(segments[1]) not in self.orders:
                raise _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            order_id = int(segments[1])
            if segments[2:] == [] and method == "GET":
                return copy.deepcopy(self.orders[order_id])
            if segments[2:] == [] and method in ("PUT", "POST"):
                status = (body or {}).get("status")
                if status is not None:
                    self.orders[order_id]["status"] = status
                self.writes.append({"method": method, "path": path, "body": body})
                return copy.deepcopy(self.orders[order_id])
            if segments[2:] == ["notes"] and method == "GET":
                return copy.deepcopy(self.notes[order_id])
            if segments[2:] == ["notes"] and method == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("note"), str) or not body["note"]:
                    raise _error(400, "rest_missing_callback_param", "Missing parameter(s): note")
                if "customer_note" in body and not isinstance(body["customer_note"], bool):
                    raise _error(400, "rest_invalid_param", "Invalid parameter(s): customer_note")
                note = {"id": next(self._ids), "author": "WooCommerce",
                        "date_created_gmt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                        "note": body["note"], "customer_note": bool(body.get("customer_note", False))}
                self.notes[order_id].append(note)
                self.writes.append({"method": method, "path": path, "body": body})
                return copy.deepcopy(note)
        raise _error(404, "rest_no_route", "No route was found matching the URL and request method.")

    def _batch(self, path: str, body: Any, items: dict[int, dict[str, Any]], invalid: str) -> Any:
        updates = (body or {}).get("update") if isinstance(body, dict) else None
        if not isinstance(updates, list):
            raise _error(400, "rest_invalid_param", "Invalid parameter(s): update")
        if len(updates) > BATCH_LIMIT:
            raise _error(413, "woocommerce_rest_request_entity_too_large",
                         f"Unable to accept more than {BATCH_LIMIT} items for this request.")
        for item in updates:
            if not isinstance(item, dict):
                raise _error(400, "rest_invalid_param", "Invalid parameter(s): update")
            _check_item(item)
        self.writes.append({"method": "POST", "path": path, "body": copy.deepcopy(body)})
        answers = []
        for item in updates:
            woo_id = item.get("id")
            if not isinstance(woo_id, int) or woo_id not in items:
                answers.append({"id": woo_id if isinstance(woo_id, int) else 0,
                                "error": {"code": invalid, "message": "Invalid ID.", "data": {"status": 400}}})
                continue
            current = items[woo_id]
            current.update({k: v for k, v in item.items() if k != "id"})
            if "stock_quantity" in item and current.get("manage_stock") and "stock_status" not in item:
                current["stock_status"] = "instock" if (current.get("stock_quantity") or 0) > 0 else "outofstock"
            current["price"] = current.get("sale_price") or current.get("regular_price") or ""
            answers.append(copy.deepcopy(current))
        return {"update": answers}
