"""The client's address behind trusted reverse proxies.

``X-Forwarded-For`` is a header anyone can send, so it counts only when the
peer (``REMOTE_ADDR``) is one of ``QUEUEWORKS_TRUSTED_PROXIES`` (addresses or
networks).  Walking the header from the right, every hop a trusted proxy
appended is skipped; the first address no trusted proxy vouches for is the
client.  Entries left of it came from the client and are never believed.

One rule for everything that keys on the address: the login lockout
(``AXES_CLIENT_IP_CALLABLE``) and the audit log.  django-ipware's
``proxy_trusted_ips`` matches proxies inside the header, not the peer that
actually connected, so it cannot tell a forged header from a proxied one.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from queueworks.conf import settings as queueworks_settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(configured: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in configured)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def trusted_networks() -> tuple[Network, ...]:
    """QUEUEWORKS_TRUSTED_PROXIES parsed (a bad entry raises ValueError naming it)."""
    return _networks(tuple(str(entry) for entry in queueworks_settings.TRUSTED_PROXIES))


def _trusted(address, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(request) -> str | None:
    """The address of the client behind ``request`` (None without a request)."""
    if request is None:
        return None
    peer_text = request.META.get("REMOTE_ADDR") or None
    networks = trusted_networks()
    peer = _parse(peer_text or "")
    if not _trusted(peer, networks):
        return peer_text
    client = peer
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _parse(hop)
        if address is None:
            # Not an address: nothing left of it can be believed either.
            break
        client = address
        if not _trusted(address, networks):
            break
    return str(client)
