"""The SSRF guard's policy: which resolved addresses a delivery may connect to.

Pure: the caller resolves the name and asks about each address it would connect to, so a
name that resolves to a private address (or changes between check and connect) is refused
at the address actually used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def _kind(ip: IPAddress) -> str | None:
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "a carrier-grade NAT address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved address"
    return None


def refusal(ip_text: str, allowed: Sequence[IPNetwork]) -> str | None:
    """Why a delivery must not connect to *ip_text*, or None when it may."""
    try:
        ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
    except ValueError:
        return f"{ip_text!r} is not an IP address"
    if any(ip in net for net in allowed if net.version == ip.version):
        return None
    inner = _embedded_v4(ip)
    if inner is not None:
        if any(inner in net for net in allowed if net.version == 4):
            return None
        why = _kind(inner)
        if why:
            return f"{ip} embeds {inner}, {why}"
    why = _kind(ip)
    return f"{ip} is {why}" if why else None
