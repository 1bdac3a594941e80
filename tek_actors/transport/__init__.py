"""The only package that imports zmq: the gateway's frontend and the client's connection, the
ZAP authentication of tcp peers, and how a gateway process announces that it serves (connection
file, systemd's notify socket).

Each name loads its module on first use: a client process needs only the connection and its
credentials, not the frontend with the actor runtime, nor the announcer with the store.
"""

from typing import TYPE_CHECKING

from tek_actors import _lazy_exports

if TYPE_CHECKING:
    from tek_actors.transport._announce import Announcer, sd_notify
    from tek_actors.transport._auth import (
        ClientAuth,
        KeyRing,
        ServerAuth,
        client_auth,
        is_loopback,
        read_token,
        server_auth,
    )
    from tek_actors.transport._contract import FrontendSettings, GatewayControl
    from tek_actors.transport.connection import Connection
    from tek_actors.transport.frontend import Frontend

_AUTH = "tek_actors.transport._auth"
_ANNOUNCE = "tek_actors.transport._announce"
_CONTRACT = "tek_actors.transport._contract"

__getattr__ = _lazy_exports(
    __name__,
    {
        "Announcer": _ANNOUNCE,
        "sd_notify": _ANNOUNCE,
        "ClientAuth": _AUTH,
        "KeyRing": _AUTH,
        "ServerAuth": _AUTH,
        "client_auth": _AUTH,
        "is_loopback": _AUTH,
        "read_token": _AUTH,
        "server_auth": _AUTH,
        "FrontendSettings": _CONTRACT,
        "GatewayControl": _CONTRACT,
        "Connection": "tek_actors.transport.connection",
        "Frontend": "tek_actors.transport.frontend",
    },
)

__all__ = [
    "Announcer",
    "ClientAuth",
    "Connection",
    "Frontend",
    "FrontendSettings",
    "GatewayControl",
    "KeyRing",
    "ServerAuth",
    "client_auth",
    "is_loopback",
    "read_token",
    "sd_notify",
    "server_auth",
]
