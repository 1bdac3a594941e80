"""tek_actors: the gateway of a self-hosted AI agent.

Layers, each importing only those above it in this list:
    wire/       bytes <-> envelopes (msgpack, pydantic); no sockets, no threads
    store/      the SQLite journal (events, snapshots, idempotency) and atomic files
    runtime/    crash-safe pykka actors, persistence, the supervisor, tickers, the clock
    transport/  the only zmq code: the gateway's frontend and the client's connection
    config/     config.json: model, document rules, file store, the ConfigActor
    approvals/, providers/, procs/, actors/   the domain actors
    gateway.py  assembles the tree; run, embedded, restart, shutdown
    client/     Client: reconnect, resync, durable outbox
    cli/        `tek`, a thin shell over Client (and Gateway for `gateway run`)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from loguru import logger

from tek_actors._version import __version__
from tek_actors.errors import (
    BadFrame,
    Conflict,
    ConnectionLost,
    Internal,
    InvalidRequest,
    InvalidValue,
    JournalError,
    NotFound,
    Overloaded,
    RateLimited,
    RequestTimeout,
    TekError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownType,
)
from tek_actors.home import TekHome

if TYPE_CHECKING:
    from tek_actors.client import Client
    from tek_actors.config import Config, GatewaySettings
    from tek_actors.gateway import Gateway

# Imported on first use: `tek ping` should not pay for the whole gateway (actors, httpx, ...).
_LAZY = {
    "Client": "tek_actors.client",
    "Config": "tek_actors.config",
    "GatewaySettings": "tek_actors.config",
    "Gateway": "tek_actors.gateway",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tek_actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


logger.disable("tek_actors")  # a library adds no sinks; the CLI and the daemon configure loguru

__all__ = [
    "BadFrame",
    "Client",
    "Config",
    "Conflict",
    "ConnectionLost",
    "Gateway",
    "GatewaySettings",
    "Internal",
    "InvalidRequest",
    "InvalidValue",
    "JournalError",
    "NotFound",
    "Overloaded",
    "RateLimited",
    "RequestTimeout",
    "TekError",
    "TekHome",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnknownType",
    "__version__",
]
