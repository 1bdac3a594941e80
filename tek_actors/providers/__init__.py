"""Model providers: adapters (OpenAI-compatible, Anthropic, local), one internal model of a call,
and the ProviderActor with its breakers (per provider and per model), its fair wait for a busy
provider's capacity, retries and failover."""

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
