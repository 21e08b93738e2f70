from __future__ import annotations

import ipaddress

import pytest

from hookcast.domain.netpolicy import refusal

ALLOW_LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.mark.parametrize(
    ("ip", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "embeds 127.0.0.1"),
        ("::ffff:10.0.0.1", "embeds 10.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254"),
        ("2002:c0a8:0101::1", "embeds 192.168.1.1"),
    ],
)
def test_internal_addresses_are_refused(ip: str, why: str) -> None:
    reason = refusal(ip, [])
    assert reason is not None and why in reason


@pytest.mark.parametrize("ip", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_public_addresses_pass(ip: str) -> None:
    assert refusal(ip, []) is None


def test_allowed_networks_override_including_mapped_forms() -> None:
    assert refusal("127.0.0.1", ALLOW_LOOPBACK) is None
    assert refusal("::ffff:127.0.0.1", ALLOW_LOOPBACK) is None
    assert refusal("10.0.0.1", ALLOW_LOOPBACK) is not None
    assert refusal("not-an-ip", ALLOW_LOOPBACK) is not None
