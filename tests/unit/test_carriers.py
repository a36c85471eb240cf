"""Carrier detection from tracking numbers (models/carriers.py)."""

from __future__ import annotations

import pytest

from models import carriers


@pytest.mark.parametrize(
    ("number", "carrier"),
    [
        ("1Z999AA10123456784", carriers.UPS),
        ("1z 999 aa1 01234 56784", carriers.UPS),
        ("9400111899223344556677", carriers.USPS),
        ("9205590164917312751089", carriers.USPS),
        ("EA123456789US", carriers.USPS),
        ("123456789012", carriers.FEDEX),
        ("123456789012345", carriers.FEDEX),
        ("1234567890", carriers.DHL),
        ("GM2951173225174494", carriers.DHL),
        ("JJD000390007827391852", carriers.DHL),
        ("LP00123456789012CN", carriers.CAINIAO),
        ("LP00123456789012", carriers.CAINIAO),
        ("RB123456785CN", carriers.CHINA_POST),
        ("LZ123456789CN", carriers.CHINA_POST),
        ("UG123456789YW", carriers.YANWEN),
        ("YT1234567890123456", carriers.YUNEXPRESS),
        ("CJPKL7123456789", carriers.CJ_PACKET),
        ("RR123456785DE", carriers.POST_S10),
    ],
)
def test_detects_the_carrier(number: str, carrier: str) -> None:
    assert carriers.detect(number) == carrier


@pytest.mark.parametrize("number", ["", "hello", "12345", "ZZZ-not-a-number"])
def test_unknown_formats_have_no_carrier(number: str) -> None:
    assert carriers.detect(number) is None
    assert carriers.tracking_url(None, number) is None


def test_tracking_url_quotes_the_number() -> None:
    assert carriers.tracking_url(carriers.UPS, "1z999aa10123456784") == "https://www.ups.com/track?tracknum=1Z999AA10123456784"
