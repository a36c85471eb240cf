"""Deterministic ids: the same inputs give the same id, however often replayed."""

from __future__ import annotations

import hashlib
import uuid


def name_uuid(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, computed without building UUID objects.

    Same value as the standard library's (a unit test holds them equal), about
    three times faster: it runs for every change record on the hot path.
    """
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
