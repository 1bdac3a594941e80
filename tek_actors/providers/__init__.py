"""Model providers: adapters (OpenAI-compatible, Anthropic, local), one internal model of a call,
and the ProviderActor with its breakers (per provider and per model), its fair wait for a busy
provider's capacity, retries and failover.

Each name loads its module on first use (the actor brings pykka and httpx): the model catalog
(`tek_actors.providers.catalog`) is read by `tek setup` without any of them.
"""

from typing import TYPE_CHECKING

from tek_actors import _lazy_exports

if TYPE_CHECKING:
    from tek_actors.providers.actor import ProviderActor
    from tek_actors.providers.messages import (
        CallKnown,
        CallQuery,
        Complete,
        CompletionDelta,
        CompletionDone,
    )
    from tek_actors.providers.types import (
        Completion,
        Message,
        ModelRequest,
        ProviderFailure,
        ToolCall,
        ToolSpec,
        Usage,
    )

__getattr__ = _lazy_exports(
    __name__,
    {
        "CallKnown": "tek_actors.providers.messages",
        "CallQuery": "tek_actors.providers.messages",
        "Complete": "tek_actors.providers.messages",
        "Completion": "tek_actors.providers.types",
        "CompletionDelta": "tek_actors.providers.messages",
        "CompletionDone": "tek_actors.providers.messages",
        "Message": "tek_actors.providers.types",
        "ModelRequest": "tek_actors.providers.types",
        "ProviderActor": "tek_actors.providers.actor",
        "ProviderFailure": "tek_actors.providers.types",
        "ToolCall": "tek_actors.providers.types",
        "ToolSpec": "tek_actors.providers.types",
        "Usage": "tek_actors.providers.types",
    },
)

__all__ = [
    "CallKnown",
    "CallQuery",
    "Complete",
    "Completion",
    "CompletionDelta",
    "CompletionDone",
    "Message",
    "ModelRequest",
    "ProviderActor",
    "ProviderFailure",
    "ToolCall",
    "ToolSpec",
    "Usage",
]
