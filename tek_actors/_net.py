"""What an endpoint's host is, for the checks that must agree: the config's (is this endpoint
allowed) and the transport's (which credentials it takes)."""

from __future__ import annotations

import ipaddress

__all__ = ["loopback_host"]


def loopback_host(host: str) -> bool:
    """Whether `host` is provably this machine: `localhost` or a loopback address (a name or
    an interface is not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
