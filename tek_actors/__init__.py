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

Importing the package costs the version and the exception tree only; everything else loads on
first use, so that `tek --version` or `tek ping` pays for nothing it does not run.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    from tek_actors.client import Client
    from tek_actors.config import Config, GatewaySettings
    from tek_actors.gateway import Gateway
    from tek_actors.home import TekHome


def _lazy_exports(package: str, modules: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each name of `modules` (name -> the module that
    defines it) is imported the first time someone asks for it, then kept in the package.
    The packages whose modules are heavy (actors, pykka, pydantic models, httpx) use it, so that
    importing one light module of theirs does not import them all."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


__getattr__ = _lazy_exports(
    __name__,
    {
        "Client": "tek_actors.client",
        "Config": "tek_actors.config",
        "GatewaySettings": "tek_actors.config",
        "Gateway": "tek_actors.gateway",
        "TekHome": "tek_actors.home",
    },
)


# A library adds no sinks and keeps its records off (`logger.disable("tek_actors")`); the CLI and
# the daemon turn them on. loguru costs more to import than the rest of `tek ping` (it pulls in
# asyncio and multiprocessing), so it is not imported here: the records are disabled the moment
# loguru loads, for whichever module imports it first, ours or the host's. So a host's own
# `logger.enable("tek_actors")` means what it meant when this module imported loguru itself.
class _DisableOnLoguruImport:
    """A finder at the head of `sys.meta_path` that lets the other finders find loguru and wraps
    its loader, which disables our records right after loguru loads (under loguru's import lock,
    so before any thread can log through it) and then removes this finder."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "loguru":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = None if finder is self or find is None else find(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _DisablingLoader(spec.loader, self)
                return spec  # type: ignore[no-any-return]
        return None


class _DisablingLoader:
    def __init__(self, loader: Any, finder: _DisableOnLoguruImport) -> None:
        self.loader = loader
        self.finder = finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Whoever asks loguru for its loader later (resources, a reload) gets the real one.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        module.logger.disable(__name__)
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)


class _LoguruLogger:
    """loguru's `logger` for a module on the path of a small command (the client): loguru is
    imported at the first record, not at import. Each attribute is loguru's own (`debug` is its
    bound method), so a record names its caller's module and line as usual."""

    def __getattr__(self, name: str) -> Any:
        from loguru import logger

        return getattr(logger, name)


_logger = _LoguruLogger()

if "loguru" in sys.modules:
    sys.modules["loguru"].logger.disable(__name__)
else:
    sys.meta_path.insert(0, _DisableOnLoguruImport())

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
