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
* ``GET /orders`` (the collection): ``modified_after`` / ``modified_before``
  (ISO 8601; compared with ``date_modified_gmt`` when ``dates_are_gmt`` is
  true, else with the site's local ``date_modified``: the fake site's clock is
  :data:`LOCAL_OFFSET` ahead of GMT, as a site's timezone makes it),
  ``orderby`` (``modified``, ``date``, ``id``), ``order``, ``per_page``
  (1..100, else 400 ``rest_invalid_param``) and ``page``, with the
  ``X-WP-Total`` / ``X-WP-TotalPages`` headers. Every order has
  ``date_modified``/``date_modified_gmt`` (``touch_order`` moves them to now,
  as an edit does); ``on_orders_page`` is called after each page is served
  (a test changes the orders mid-pull there).
* ``GET /webhooks`` (``per_page``, ``page``, ``status``; the ``secret`` only
  with ``context=edit``, as WooCommerce's schema says), ``POST /webhooks``
  (``name``, ``topic``: ``{coupon|customer|order|product}.{created|updated|
  deleted|restored}`` or ``action.*``; ``delivery_url``: http(s); ``secret``;
  ``status``: 201 with the webhook), ``PUT /webhooks/{id}`` (unknown: 400
  ``woocommerce_rest_shop_webhook_invalid_id``; a bad status or topic: 400).

Authentication, on every route: HTTP Basic with the consumer key and secret, or
``consumer_key`` / ``consumer_secret`` in the query; anything else is a 401
``woocommerce_rest_cannot_view``. Each request is recorded (method, path,
query without the secret, body, which auth) and every write too;
``fail_next`` makes the next requests answer 500 or 429 (before applying
anything), or ``500_after`` (apply, then answer 500).

In a test::

    with FakeWooCommerce(products={93: {...}}, variations={22: {23: {...}}}, orders={727: {...}}) as fake:
        fake.api_url      # http://127.0.0.1:PORT/wp-json/wc/v3
        fake.writes       # [{"method", "path", "body"}]
        fake.add_order(728, modified=..., **order)   # another order (modified at that time)
        fake.touch_order(727, status="completed")    # edited in the shop: modified now
        fake.webhooks_list()                         # the site's webhooks, with their secrets
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import math
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/wp-json/wc/v3"
BATCH_LIMIT = 100
STOCK_STATUSES = ("instock", "outofstock", "onbackorder")
#: The fake site's timezone: its local dates (``date_modified``) are this far ahead of GMT.
LOCAL_OFFSET = timedelta(hours=2)
WEBHOOK_RESOURCES = ("coupon", "customer", "order", "product")
WEBHOOK_EVENTS = ("created", "updated", "deleted", "restored")
WEBHOOK_STATUSES = ("active", "paused", "disabled")
_WC_DATE = "%Y-%m-%dT%H:%M:%S"


def wc_date(at: datetime) -> str:
    """A GMT time as WooCommerce writes ``*_gmt`` dates."""
    return at.astimezone(timezone.utc).strftime(_WC_DATE)


def _parse_date(value: str, name: str) -> datetime:
    """An ISO 8601 query date (rest_parse_date): naive, ``Z`` or an offset."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _error(400, "rest_invalid_param", f"Invalid parameter(s): {name}") from None
    return parsed.replace(tzinfo=None) if parsed.tzinfo is None else parsed.astimezone(timezone.utc).replace(tzinfo=None)


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int | None = None) -> int:
    raw = (query.get(name) or [str(default)])[-1]
    try:
        value = int(raw)
    except ValueError:
        raise _error(400, "rest_invalid_param", f"Invalid parameter(s): {name}") from None
    if value < low or (high is not None and value > high):
        raise _error(400, "rest_invalid_param", f"Invalid parameter(s): {name}")
    return value


def _one_of(query: dict[str, list[str]], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (query.get(name) or [default])[-1]
    if value not in allowed:
        raise _error(400, "rest_invalid_param", f"Invalid parameter(s): {name}")
    return value


def _paged(items: list[dict[str, Any]], query: dict[str, list[str]]) -> _Reply:
    """One page of a collection, with WordPress's X-WP-Total and X-WP-TotalPages."""
    per_page = _int_param(query, "per_page", 10, 1, 100)
    page = _int_param(query, "page", 1, 1)
    start = (page - 1) * per_page
    headers = {"X-WP-Total": str(len(items)), "X-WP-TotalPages": str(math.ceil(len(items) / per_page))}
    return _Reply(200, copy.deepcopy(items[start:start + per_page]), headers)


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


def _valid_topic(topic: str) -> bool:
    """wc_is_webhook_valid_topic: ``action.*``, or a known resource and event."""
    resource, _, event = topic.partition(".")
    return (resource == "action" and bool(event)) or (resource in WEBHOOK_RESOURCES and event in WEBHOOK_EVENTS)


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
        self.orders: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.writes: list[dict[str, Any]] = []
        self.fail_next: list[str] = []
        self.on_orders_page: Callable[[int], None] | None = None
        self.total_headers = True  # False: no X-WP-Total(Pages) on the orders list (as behind some proxies)
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        for k, v in (orders or {}).items():
            self.add_order(int(k), **v)
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, each reply waits ~40 ms for the delayed ACK.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    answer = fake.handle(self.command, self.path, dict(self.headers), raw)
                except _Reply as reply:
                    answer = reply
                if isinstance(answer, _Reply):
                    status, body, headers = answer.status, answer.body, answer.headers
                else:
                    status, body, headers = 200, answer, {}
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

    def add_order(self, order_id: int, modified: datetime | None = None, **fields: Any) -> None:
        """An order of the site, last modified at ``modified`` (default: now, or the fields' ``date_modified_gmt``)."""
        with self._lock:
            order = {"id": int(order_id), "status": "processing", "line_items": [], **copy.deepcopy(fields)}
            if modified is not None or not order.get("date_modified_gmt"):
                self._stamp(order, modified or datetime.now(timezone.utc))
            elif not order.get("date_modified"):
                gmt = datetime.strptime(order["date_modified_gmt"], _WC_DATE).replace(tzinfo=timezone.utc)
                self._stamp(order, gmt)
            self.orders[int(order_id)] = order
            self.notes.setdefault(int(order_id), [])

    def touch_order(self, order_id: int, **changes: Any) -> None:
        """An edit of the order in the shop: its fields change and it is modified now."""
        with self._lock:
            self.orders[order_id].update(copy.deepcopy(changes))
            self._stamp(self.orders[order_id], datetime.now(timezone.utc))

    @staticmethod
    def _stamp(order: dict[str, Any], at: datetime) -> None:
        order["date_modified_gmt"] = wc_date(at)
        order["date_modified"] = wc_date(at + LOCAL_OFFSET)

    def add_webhook(self, topic: str, delivery_url: str, secret: str, status: str = "active",
                    name: str | None = None) -> int:
        """A webhook already on the site (made by hand, or by an earlier run)."""
        with self._lock:
            hook_id = next(self._ids)
            now = wc_date(datetime.now(timezone.utc))
            resource, _, event = topic.partition(".")
            self.webhooks[hook_id] = {
                "id": hook_id, "name": name or f"Webhook {hook_id}", "status": status, "topic": topic,
                "resource": resource, "event": event, "hooks": [f"woocommerce_{resource}_{event}"],
                "delivery_url": delivery_url, "secret": secret, "date_created": now, "date_modified": now,
            }
            return hook_id

    def webhooks_list(self) -> list[dict[str, Any]]:
        """Every webhook of the site, secrets included."""
        with self._lock:
            return copy.deepcopy(sorted(self.webhooks.values(), key=lambda h: h["id"]))

    def order_pulls(self) -> list[dict[str, Any]]:
        """The ``GET /orders`` list requests served so far (their query, without the secret)."""
        with self._lock:
            return [copy.deepcopy(r) for r in self.requests if r["method"] == "GET" and r["path"] == API + "/orders"]

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
        if segments == ["orders"] and method == "GET":
            return self._orders_page(query)
        if segments[:1] == ["webhooks"]:
            return self._webhooks(method, segments[1:], body, query)
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

    def _orders_page(self, query: dict[str, list[str]]) -> _Reply:
        gmt = (query.get("dates_are_gmt") or ["false"])[-1].lower() in ("1", "true")
        field = "date_modified_gmt" if gmt else "date_modified"
        after = _parse_date(query["modified_after"][-1], "modified_after") if "modified_after" in query else None
        before = _parse_date(query["modified_before"][-1], "modified_before") if "modified_before" in query else None
        orderby = _one_of(query, "orderby", "date", ("date", "id", "include", "title", "slug", "modified"))
        order = _one_of(query, "order", "desc", ("asc", "desc"))
        found = []
        for item in self.orders.values():
            modified = datetime.strptime(item[field], _WC_DATE)
            if (after is None or modified > after) and (before is None or modified < before):
                found.append(item)
        sort_field = {"modified": "date_modified_gmt", "date": "date_created_gmt"}.get(orderby)
        found.sort(key=lambda o: (str(o.get(sort_field) or "") if sort_field else "", o["id"]),
                   reverse=order == "desc")
        reply = _paged(found, query)
        if not self.total_headers:
            reply.headers = {}
        if self.on_orders_page is not None:
            self.on_orders_page(_int_param(query, "page", 1, 1))
        return reply

    def _webhooks(self, method: str, rest: list[str], body: Any, query: dict[str, list[str]]) -> Any:
        def shown(hook: dict[str, Any], context: str) -> dict[str, Any]:
            out = copy.deepcopy(hook)
            if context != "edit":
                out.pop("secret", None)
            return out

        if not rest and method == "GET":
            status = _one_of(query, "status", "all", ("all", *WEBHOOK_STATUSES))
            context = _one_of(query, "context", "view", ("view", "edit"))
            hooks = [shown(h, context) for _, h in sorted(self.webhooks.items())
                     if status == "all" or h["status"] == status]
            return _paged(hooks, query)
        if not rest and method == "POST":
            if not isinstance(body, dict):
                raise _error(400, "rest_invalid_json", "Invalid JSON body passed.")
            topic = str(body.get("topic") or "").lower()
            url = body.get("delivery_url")
            if not _valid_topic(topic):
                raise _error(400, "woocommerce_rest_shop_webhook_invalid_topic", "Webhook topic is required and must be valid.")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise _error(400, "woocommerce_rest_shop_webhook_invalid_delivery_url",
                             "Webhook delivery URL must be a valid URL starting with http:// or https://.")
            status = body.get("status") or "active"
            if status not in WEBHOOK_STATUSES:
                raise _error(400, "rest_invalid_param", "Invalid parameter(s): status")
            hook_id = self.add_webhook(topic, url, str(body.get("secret") or secrets.token_urlsafe(37)), status,
                                       body.get("name"))
            self.writes.append({"method": method, "path": API + "/webhooks", "body": copy.deepcopy(body)})
            return _Reply(201, shown(self.webhooks[hook_id], "edit"),
                          {"Location": f"{API}/webhooks/{hook_id}"})
        if len(rest) == 1 and method in ("PUT", "POST", "PATCH", "GET"):
            hook = self.webhooks.get(int(rest[0])) if rest[0].isdigit() else None
            if hook is None:
                raise _error(400 if method != "GET" else 404, "woocommerce_rest_shop_webhook_invalid_id", "ID is invalid.")
            if method == "GET":
                return shown(hook, _one_of(query, "context", "view", ("view", "edit")))
            if not isinstance(body, dict):
                raise _error(400, "rest_invalid_json", "Invalid JSON body passed.")
            if body.get("topic"):
                if not _valid_topic(str(body["topic"]).lower()):
                    raise _error(400, "woocommerce_rest_shop_webhook_invalid_topic", "Webhook topic must be valid.")
                hook["topic"] = str(body["topic"]).lower()
                hook["resource"], _, hook["event"] = hook["topic"].partition(".")
            if body.get("delivery_url"):
                hook["delivery_url"] = str(body["delivery_url"])
            if body.get("secret"):
                hook["secret"] = str(body["secret"])
            if body.get("status"):
                if body["status"] not in WEBHOOK_STATUSES:
                    raise _error(400, "woocommerce_rest_shop_webhook_invalid_status", "Webhook status must be valid.")
                hook["status"] = body["status"]
            if body.get("name"):
                hook["name"] = str(body["name"])
            hook["date_modified"] = wc_date(datetime.now(timezone.utc))
            self.writes.append({"method": method, "path": f"{API}/webhooks/{hook['id']}", "body": copy.deepcopy(body)})
            return shown(hook, "edit")
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
