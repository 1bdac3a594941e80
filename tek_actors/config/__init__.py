"""The configuration: its model, its document rules, its file store and its owning actor."""

from tek_actors.config.actor import ConfigActor
from tek_actors.config.dependent import ConfigDependent
from tek_actors.config.document import REDACTED, redact, validate
from tek_actors.config.messages import ConfigAck, ConfigChanged, Subscribe
from tek_actors.config.migrations import NewerVersion
from tek_actors.config.model import CURRENT_VERSION, Config, GatewaySettings, SupervisionSettings
from tek_actors.config.store import ConfigStore, Loaded

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
