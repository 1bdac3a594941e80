"""One adapter per provider kind; `ADAPTERS[kind]` is the one to use."""

from tek_actors.providers.adapters.anthropic import AnthropicAdapter
from tek_actors.providers.adapters.base import Adapter, Target
from tek_actors.providers.adapters.local import LocalAdapter
from tek_actors.providers.adapters.openai import OpenAIAdapter

ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
    "local": LocalAdapter(),
}

__all__ = ["ADAPTERS", "Adapter", "AnthropicAdapter", "LocalAdapter", "OpenAIAdapter", "Target"]
