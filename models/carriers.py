"""Carrier detection from a tracking number (pure).

Used when a supplier or a webhook gives a tracking number without its carrier.
The patterns are the carriers' published number formats; the order of the
checks matters where formats overlap (a UPU S10 number such as
``LP123456789CN`` is checked for its China Post/Cainiao prefixes before the
generic S10 rule). Unknown formats give ``None``: the number is kept and the
tracking link is left to the storefront.
"""

from __future__ import annotations

import re
from urllib.parse import quote

UPS = "UPS"
USPS = "USPS"
FEDEX = "FedEx"
DHL = "DHL"
CHINA_POST = "China Post"
CAINIAO = "Cainiao"
YANWEN = "Yanwen"
YUNEXPRESS = "YunExpress"
FOUR_PX = "4PX"
CJ_PACKET = "CJPacket"
POST_S10 = "Postal (UPU S10)"

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # UPS: 1Z + 6-char shipper + 2-digit service + 8 digits (18 chars).
    (UPS, re.compile(r"^1Z[0-9A-Z]{16}$")),
    # Cainiao's own numbers: LP + 14 digits (+ optional CN), CAINIAO..., or CNxxxxxxxx...
    (CAINIAO, re.compile(r"^(LP\d{14}(CN)?|CAINIAO\d{6,}|CNG?\d{12,})$")),
    # Yanwen: Y + letter + 9 digits or UG/UH/UI... S10 from Yanwen; VR/YT are common.
    (YANWEN, re.compile(r"^(Y[A-Z]\d{9}[A-Z]{2}|UG\d{9}YW|YW\d{9,}|VR\d{9}YP)$")),
    (YUNEXPRESS, re.compile(r"^YT\d{16}$")),
    (FOUR_PX, re.compile(r"^4PX\d{10,}(CN)?$")),
    (CJ_PACKET, re.compile(r"^CJ(PKL|P|D)[0-9A-Z]{8,}$")),
    # China Post: UPU S10 (2 letters, 9 digits, CN) for ePacket (L*/U*/E*/R*/C*).
    (CHINA_POST, re.compile(r"^[LUERCV][A-Z]\d{9}CN$")),
    # USPS: 20-22 digits starting 91-95 (IMpb), or 420+ZIP prefix, or S10 ending US.
    (USPS, re.compile(r"^(9[1-5]\d{18,20}|420\d{5}(\d{4})?9[1-5]\d{18,20}|[A-Z]{2}\d{9}US)$")),
    # FedEx: 12, 15 or 20 digits (Express, Ground, SmartPost 96/92 prefixes excluded above by USPS).
    (FEDEX, re.compile(r"^(\d{12}|\d{15}|96\d{20}|\d{20})$")),
    # DHL Express: 10 digits; DHL eCommerce: GM/LX/RX + digits, or JJD/JVGL.
    (DHL, re.compile(r"^(\d{10}|GM\d{16,18}|(LX|RX)\d{9}DE|JJD\d{18,}|JVGL\d{16,})$")),
    # Any other UPU S10 number (2 letters, 8 digits + check digit, 2-letter country).
    (POST_S10, re.compile(r"^[A-Z]{2}\d{9}[A-Z]{2}$")),
)

_URLS: dict[str, str] = {
    UPS: "https://www.ups.com/track?tracknum={n}",
    USPS: "https://tools.usps.com/go/TrackConfirmAction?tLabels={n}",
    FEDEX: "https://www.fedex.com/fedextrack/?trknbr={n}",
    DHL: "https://www.dhl.com/global-en/home/tracking.html?tracking-id={n}",
    CHINA_POST: "https://global.cainiao.com/detail.htm?mailNoList={n}",
    CAINIAO: "https://global.cainiao.com/detail.htm?mailNoList={n}",
    YANWEN: "https://track.yw56.com.cn/en/querydel?nums={n}",
    YUNEXPRESS: "https://www.yuntrack.com/Track/Detail/{n}",
    FOUR_PX: "https://track.4px.com/#/result/0/{n}",
}


def normalise(number: str) -> str:
    """Upper case, no spaces or dashes (how people and labels write them)."""
    return re.sub(r"[\s-]+", "", number).upper()


def detect(number: str) -> str | None:
    """The carrier whose number format ``number`` has, or None."""
    candidate = normalise(number)
    for carrier, pattern in _RULES:
        if pattern.match(candidate):
            return carrier
    return None


def tracking_url(carrier: str | None, number: str) -> str | None:
    """The carrier's public tracking page for the number, when we know it."""
    template = _URLS.get(carrier or "")
    return template.format(n=quote(normalise(number))) if template else None
