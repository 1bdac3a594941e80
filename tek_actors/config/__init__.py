"""The configuration: its model, its document rules, its file store and its owning actor.

Each name loads its module on first use (the actor brings pykka, the model pydantic): a caller
that needs one light piece, such as `tek_actors.config.setup`, does not pay for the rest.
"""

from typing import TYPE_CHECKING

from tek_actors import _lazy_exports

if TYPE_CHECKING:
    from tek_actors.config.actor import ConfigActor
    from tek_actors.config.dependent import ConfigDependent
    from tek_actors.config.document import REDACTED, redact, validate
    from tek_actors.config.messages import ConfigAck, ConfigChanged, Subscribe
    from tek_actors.config.migrations import NewerVersion
    from tek_actors.config.model import (
        CURRENT_VERSION,
        Config,
        GatewaySettings,
        SupervisionSettings,
    )
    from tek_actors.config.store import ConfigStore, Loaded

__getattr__ = _lazy_exports(
    __name__,
    {
        "CURRENT_VERSION": "tek_actors.config.model",
        "REDACTED": "tek_actors.config.document",
        "Config": "tek_actors.config.model",
        "ConfigAck": "tek_actors.config.messages",
        "ConfigActor": "tek_actors.config.actor",
        "ConfigChanged": "tek_actors.config.messages",
        "ConfigDependent": "tek_actors.config.dependent",
        "ConfigStore": "tek_actors.config.store",
        "GatewaySettings": "tek_actors.config.model",
        "Loaded": "tek_actors.config.store",
        "NewerVersion": "tek_actors.config.migrations",
        "Subscribe": "tek_actors.config.messages",
        "SupervisionSettings": "tek_actors.config.model",
        "redact": "tek_actors.config.document",
        "validate": "tek_actors.config.document",
    },
)

__all__ = [
    "CURRENT_VERSION",
    "REDACTED",
    "Config",
    "ConfigAck",
    "ConfigActor",
    "ConfigChanged",
    "ConfigDependent",
    "ConfigStore",
    "GatewaySettings",
    "Loaded",
    "NewerVersion",
    "Subscribe",
    "SupervisionSettings",
    "redact",
    "validate",
]
