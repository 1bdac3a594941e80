"""The only package that imports zmq: the gateway's frontend and the client's connection."""

from tek_actors.transport._contract import FrontendSettings, GatewayControl
from tek_actors.transport.connection import Connection
from tek_actors.transport.frontend import Frontend

__all__ = ["Connection", "Frontend", "FrontendSettings", "GatewayControl"]
