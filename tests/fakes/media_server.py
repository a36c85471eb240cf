"""A real HTTP server on loopback for render tests: product images, broken ones,
redirects, and a fake ElevenLabs text-to-speech API.

Routes are registered per test (``route``); every request is recorded.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[BaseHTTPRequestHandler, bytes], tuple[int, dict[str, str], bytes]]


def tone_pcm(seconds: float, rate: int = 22050) -> bytes:
    """16-bit mono PCM of a 440 Hz tone (what the fake voice API answers)."""
    n = int(seconds * rate)
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(n))


class MediaServer:
    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[dict[str, Any]] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
                handler = server.routes.get(path)
                if handler is None:
                    status, headers, payload = 404, {"content-type": "text/plain"}, b"not found"
                else:
                    status, headers, payload = handler(self, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "content-length" not in {k.lower() for k in headers}:
                    self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def file(self, path: str, body: bytes, content_type: str = "image/jpeg") -> str:
        self.routes[path] = lambda h, b: (200, {"content-type": content_type}, body)
        return self.base + path

    def slow(self, path: str, body: bytes, delay_s: float, content_type: str = "image/jpeg") -> str:
        """A file answered after ``delay_s`` (a slow CDN: a render that takes at least that long)."""

        def answer(h: BaseHTTPRequestHandler, b: bytes) -> tuple[int, dict[str, str], bytes]:
            time.sleep(delay_s)
            return 200, {"content-type": content_type}, body

        self.routes[path] = answer
        return self.base + path

    def redirect(self, path: str, location: str) -> str:
        self.routes[path] = lambda h, b: (302, {"location": location}, b"")
        return self.base + path

    def status(self, path: str, code: int) -> str:
        self.routes[path] = lambda h, b: (code, {"content-type": "text/plain"}, b"no")
        return self.base + path

    def __enter__(self) -> MediaServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
