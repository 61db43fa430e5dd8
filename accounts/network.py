"""The client address of a request: the one place Haven decides who is on the other end.

Behind a reverse proxy every request comes from the proxy, so rate limits per address would
throttle everyone at once. The forwarded header is believed only when the direct peer is one of
HAVEN_TRUSTED_PROXIES (anyone else can write any header), and it is read right to left: each
trusted proxy appends the address it saw, so the first address from the right that is not a
trusted proxy is the client; whatever lies to its left was written by the client itself.
"""
import ipaddress
import socket
from functools import lru_cache

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _parse(value: str) -> IPAddress | None:
    value = value.strip()
    # Some proxies write the client's port too: "203.0.113.5:41234", "[2001:db8::5]:443".
    if value.startswith("[") and "]" in value:
        value = value[1:value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress) -> bool:
    return any(address in network for network in _networks(tuple(settings.HAVEN_TRUSTED_PROXIES)))


def _meta_name(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def client_address(request) -> str:
    """The address rate limits and audit records use for this request ("" if there is none)."""
    if request is None:
        return ""
    peer = _parse(request.META.get("REMOTE_ADDR", ""))
    if peer is None:
        return ""
    if not _trusted(peer):
        return str(peer)
    client = peer
    hops = request.META.get(_meta_name(settings.HAVEN_TRUSTED_PROXY_HEADER), "").split(",")
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # not an address a proxy would write: trust nothing from here leftwards
        client = address
        if not _trusted(address):
            break
    return str(client)


class HostUnresolvable(ValueError):
    """The name does not resolve (or is not a valid host name)."""


def host_is_public(host: str) -> bool:
    """Every address the name resolves to is a global one: the test before Haven connects to an
    address an administrator typed (IdP metadata, a private keystore), so the console cannot be
    used to probe Haven's internal network."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        raise HostUnresolvable(f"cannot resolve {host}") from None
    return all(ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses)
