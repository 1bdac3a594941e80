"""What the ConfigActor and its dependents tell each other (in-process, never on the wire)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pykka

from tek_actors.config.model import Config

__all__ = ["ConfigAck", "ConfigChanged", "Subscribe"]


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Asked by a dependent as it starts: answered with (version, Config); from then on the
    dependent is told every change and must acknowledge it."""

    name: str
    ref: pykka.ActorRef[Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    """Told to each dependent; it re-initialises from `config`, then sends ConfigAck."""

    version: int
    config: Config = field(repr=False)  # holds secrets: never in a log line


@dataclass(frozen=True, slots=True)
class ConfigAck:
    name: str
    version: int
