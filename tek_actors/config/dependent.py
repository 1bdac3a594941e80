"""ConfigDependent: an actor that re-initialises from the configuration and acknowledges it.

    class MyActor(ConfigDependent, Actor):
        def configure(self, config: Config) -> None:
            self.timeout = config.limits.apply_timeout_ms

`configure` runs once before the actor serves anything (with the configuration in force when it
starts) and again for every change, on the actor's own thread, before the acknowledgement goes
back. So once the ConfigActor has published `config.applied`, no dependent uses an old value.
A `configure` that raises is a crash: the actor restarts and reads the configuration again.
"""

from __future__ import annotations

import abc
from typing import Any, cast

import pykka

from tek_actors.config.messages import ConfigAck, ConfigChanged, Subscribe
from tek_actors.config.model import Config
from tek_actors.errors import Unavailable
from tek_actors.runtime import Actor

__all__ = ["ConfigDependent"]

CONFIG_ACTOR = "config"


class ConfigDependent(Actor):
    config_version = 0

    @abc.abstractmethod
    def configure(self, config: Config) -> None:
        """Take the new configuration (runs on the actor's thread)."""

    def on_begin(self) -> None:
        super().on_begin()  # rehydration first: configure() may compare with the state
        ref = self.ctx.lookup(CONFIG_ACTOR)
        if ref is None:
            raise Unavailable(f"{self.name} needs the config actor, which is not running")
        try:
            reply = ref.ask(Subscribe(self.name, self.actor_ref), timeout=30)
        except pykka.ActorDeadError as exc:
            raise Unavailable(f"the config actor stopped while {self.name} started") from exc
        version, config = cast(tuple[int, Config], reply)
        self.config_version = version
        self.configure(config)

    def on_message(self, message: Any) -> Any:
        if isinstance(message, ConfigChanged):
            self.configure(message.config)
            self.config_version = message.version
            self.send(CONFIG_ACTOR, ConfigAck(self.name, message.version))
            return None
        return super().on_message(message)
