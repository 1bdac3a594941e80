"""The only package that imports zmq: the gateway's frontend and the client's connection; and
how a gateway process announces that it serves (connection file, systemd's notify socket)."""

from typing import TYPE_CHECKING, Any

from tek_actors.transport._announce import Announcer, sd_notify
from tek_actors.transport._contract import FrontendSettings, GatewayControl
from tek_actors.transport.connection import Connection

if TYPE_CHECKING:
    from tek_actors.transport.frontend import Frontend


def __getattr__(name: str) -> Any:
    """The frontend (with the actor runtime it needs) loads on first use: a client process
    needs only the connection."""
    if name == "Frontend":
        from tek_actors.transport.frontend import Frontend

        return Frontend
    raise AttributeError(f"module 'tek_actors.transport' has no attribute {name!r}")


__all__ = ["Announcer", "Connection", "Frontend", "FrontendSettings", "GatewayControl", "sd_notify"]
