"""Image fetching for renders, safe against SSRF (webhooks-and-side-effects.md §7).

- only ``http``/``https`` (and ``file`` under ``OPS_RENDER_LOCAL_DIR`` when set);
- the host is resolved once; a private, loopback, link-local, multicast,
  reserved or unspecified address (IPv4-mapped IPv6 included) is refused
  unless ``OPS_RENDER_ALLOW_PRIVATE`` (or the address is in one of
  ``OPS_RENDER_ALLOWED_NETWORKS``); the request goes to that very address
  (the Host header and TLS SNI keep the name), so a DNS answer cannot change
  between the check and the connection;
- no redirect is followed blindly: each hop (at most 3) is checked again;
- the body is capped while it streams, its content type must be an image
  type and its first bytes a JPEG, PNG or WebP signature;
- a PNG or WebP whose header gives more than ``OPS_RENDER_MAX_IMAGE_PIXELS``
  is refused before anything decodes it (a small file can decode to
  gigabytes: a 790 KB PNG of 16000x16000 took 800 MB to probe and four of them
  3.3 GB in one render); ffmpeg.check_image checks every image's size again.

``FetchError.retryable`` says whether another attempt could succeed (a
timeout, a 5xx) or not (a refused address, a 404, not an image).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from pathlib import Path
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

import httpx

from connectors.render.settings import RenderSettings

IMAGE_TYPES = {"image/jpeg": "jpg", "image/jpg": "jpg", "image/png": "png", "image/webp": "webp"}
#: A hosted provider's clip (connectors/render/providers.py): MP4 only.
VIDEO_TYPES = {"video/mp4": "mp4"}
MAX_CLIP_BYTES = 100 * 1024 * 1024
MAX_REDIRECTS = 3


class FetchError(Exception):
    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def check_pixels(width: int, height: int, limit: int) -> None:
    """FetchError (for good) when an image of this size is more than ``limit`` pixels."""
    if width * height > limit:
        raise FetchError(f"{width}x{height} pixels, more than the {limit} allowed (OPS_RENDER_MAX_IMAGE_PIXELS)")


def _invalid(url: str, why: object) -> FetchError:
    """A URL that can never be fetched: refused for good (not retried)."""
    return FetchError(f"refused: not a valid URL ({why}): {url[:200]!r}")


def split_url(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # unbalanced IPv6 brackets
        raise _invalid(url, exc) from None


def sniff(head: bytes) -> str | None:
    """The image format of these first bytes (jpg, png, webp), or None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "mp4"
    return None


def pixel_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's or WebP's header, at their fixed places; None for
    anything else (a JPEG's size is deep in its segments: ffprobe reads it cheaply)."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:  # extended: the canvas, minus one, 24 bits each
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30:  # lossy: after the frame tag and start code, 14 bits each
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:  # lossless: after the signature byte, 14 bits each, minus one
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def refused_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address may not be fetched from by default (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "reserved"
    if ip.is_private or not ip.is_global:
        return "private"
    return None


class ImageFetcher:
    def __init__(self, settings: RenderSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        timeout = settings.render_fetch_timeout
        # trust_env off: no proxy from the environment may take the request elsewhere.
        self.client = client or httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout)
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch(self, url: str, dest: Path, video: bool = False) -> Path:
        """Fetch ``url`` into ``dest`` + its format's suffix; the path written.
        ``video``: an MP4 clip (a provider's output) instead of an image."""
        try:
            return await asyncio.wait_for(self._fetch(url, dest, video), timeout=self.settings.render_fetch_timeout)
        except asyncio.TimeoutError:
            raise FetchError(f"timed out after {self.settings.render_fetch_timeout:g} s", retryable=True) from None

    async def _fetch(self, url: str, dest: Path, video: bool = False) -> Path:
        parts = split_url(url)
        if parts.scheme == "file":
            if video:
                raise FetchError("refused: a clip must come over http(s)")
            return self._local(parts.path, dest)
        for _ in range(MAX_REDIRECTS + 1):
            location = await self._get(url, dest, video)
            if isinstance(location, Path):
                return location
            url = urljoin(url, location)
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    async def _resolve(self, host: str, port: int) -> str:
        try:
            literal = ipaddress.ip_address(host)
            addresses = [literal]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except UnicodeError as exc:  # IDNA: an empty or over-long label
                raise _invalid(host, exc) from None
            except socket.gaierror as exc:
                raise FetchError(f"host {host!r} does not resolve ({exc.strerror})", retryable=True) from None
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise FetchError(f"host {host!r} has no address", retryable=True)
        if not self.settings.render_allow_private:
            allowed = self.settings.allowed_networks
            for ip in addresses:
                why = refused_address(ip)
                if why is not None and not any(ip in net for net in allowed if net.version == ip.version):
                    raise FetchError(f"refused: {host} resolves to a {why} address ({ip})")
        return str(addresses[0])

    async def _get(self, url: str, dest: Path, video: bool = False) -> Path | str:
        """One hop: the file written, or the redirect's Location."""
        parts = split_url(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"refused: only http(s) URLs, not {parts.scheme or 'a relative URL'!r}")
        host = parts.hostname
        if not host:
            raise FetchError("refused: the URL has no host")
        if parts.username or parts.password:
            raise FetchError("refused: credentials in the URL")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError("refused: bad port") from None
        ip = await self._resolve(host, port)
        netloc = f"[{ip}]" if ":" in ip else ip
        target = parts._replace(netloc=f"{netloc}:{port}").geturl()
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        limit = MAX_CLIP_BYTES if video else self.settings.render_max_image_bytes
        types = VIDEO_TYPES if video else IMAGE_TYPES
        accept = "video/mp4" if video else "image/jpeg, image/png, image/webp"
        try:
            async with self.client.stream(
                "GET", target, headers={"Host": host_header, "Accept": accept},
                extensions=extensions,
            ) as response:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(f"HTTP {response.status_code} without a Location")
                    return location
                if response.status_code >= 500 or response.status_code == 429:
                    raise FetchError(f"HTTP {response.status_code}", retryable=True)
                if response.status_code != 200:
                    raise FetchError(f"HTTP {response.status_code}")
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype not in types:
                    what = "an MP4 clip" if video else "an image"
                    raise FetchError(f"not {what} (content-type {ctype or 'missing'!r})")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise FetchError(f"larger than {limit} bytes ({declared})")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise FetchError(f"larger than {limit} bytes")
        except httpx.InvalidURL as exc:  # a control character, say
            raise _invalid(url, exc) from None
        except httpx.TimeoutException:
            raise FetchError("timed out", retryable=True) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}"[:300], retryable=True) from None
        return self._write(bytes(body), dest, video)

    def _local(self, raw_path: str, dest: Path) -> Path:
        base = self.settings.render_local_dir
        if base is None:
            raise FetchError("refused: file URLs are off (OPS_RENDER_LOCAL_DIR is not set)")
        root = base.resolve()
        path = Path(unquote(raw_path)).resolve()
        if not path.is_relative_to(root):
            raise FetchError("refused: the file is outside the allowed folder")
        if not path.is_file():
            raise FetchError("no such file")
        if path.stat().st_size > self.settings.render_max_image_bytes:
            raise FetchError(f"larger than {self.settings.render_max_image_bytes} bytes")
        return self._write(path.read_bytes(), dest)

    def _write(self, body: bytes, dest: Path, video: bool = False) -> Path:
        kind = sniff(body[:16])
        if video and kind != "mp4":
            raise FetchError("not an MP4 clip (content does not match)")
        if kind is None or (kind == "mp4" and not video):
            raise FetchError("not a JPEG, PNG or WebP image (content does not match)")
        size = None if video else pixel_size(body[:32])
        if size is not None:
            check_pixels(*size, self.settings.render_max_image_pixels)
        path = dest.with_suffix("." + kind)
        path.write_bytes(body)
        return path
