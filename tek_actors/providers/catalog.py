"""Well-known models' context windows, for a model alias whose config gives none.

The catalog is `catalog.json` next to this module (a copy ships as configs/model-catalog.json).
Each entry's `match` is a model id prefix, lower case and without a "provider/" part: a model id
is lowered and cut after its last "/" (so "openai/gpt-4o" and "meta-llama/Llama-3.1-8B" are
looked up as "gpt-4o" and "llama-3.1-8b"), and the longest matching prefix wins, so
"gpt-4o-mini-2024-07-18" is gpt-4o-mini's and "gpt-4-0613" is gpt-4's. A window in the config
always wins; a model the catalog does not know gets DEFAULT_CONTEXT_WINDOW.

The windows are the models' own. A local server may run one with a smaller window (llama.cpp's
`-c`, Ollama's `num_ctx`, vLLM's `--max-model-len`): then the config must say so.
`max_output_tokens` is for reference only (nothing here sends it); for open-weight models,
which have no separate output limit, it is the window.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tek_actors.config.model import ModelConfig

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "CatalogEntry",
    "WindowSource",
    "catalog_entry",
    "context_window",
    "load_catalog",
    "resolve_context_window",
]

CATALOG_VERSION = 1
DEFAULT_CONTEXT_WINDOW = 8192

WindowSource = Literal["config", "catalog", "default"]


@dataclass(frozen=True)
class CatalogEntry:
    match: str  # a model id prefix, lower case, no "/"
    context_window: int
    max_output_tokens: int


@functools.cache
def load_catalog() -> tuple[CatalogEntry, ...]:
    """The shipped catalog's entries, in file order (read once); ValueError if it is malformed."""
    text = resources.files("tek_actors.providers").joinpath("catalog.json").read_text()
    doc = json.loads(text)
    if doc.get("catalog_version") != CATALOG_VERSION:
        raise ValueError(f"catalog.json: catalog_version is not {CATALOG_VERSION}")
    entries = tuple(
        CatalogEntry(m["match"], m["context_window"], m["max_output_tokens"]) for m in doc["models"]
    )
    for e in entries:
        if e.match != e.match.lower() or "/" in e.match or not e.match:
            raise ValueError(f"catalog.json: {e.match!r} is not a lower-case id prefix")
        if not 0 < e.max_output_tokens <= e.context_window:
            raise ValueError(f"catalog.json: {e.match!r} has impossible token counts")
    if len({e.match for e in entries}) != len(entries):
        raise ValueError("catalog.json: a match appears twice")
    return entries


def catalog_entry(model_id: str) -> CatalogEntry | None:
    """The entry with the longest prefix of `model_id` (see the module's docstring), or None."""
    name = model_id.strip().lower().rsplit("/", 1)[-1]
    found = [e for e in load_catalog() if name.startswith(e.match)]
    return max(found, key=lambda e: len(e.match), default=None)


def resolve_context_window(model: ModelConfig) -> tuple[int, WindowSource]:
    """`model`'s window and where it came from: its config, the catalog, or the default."""
    if model.context_window is not None:
        return model.context_window, "config"
    entry = catalog_entry(model.model)
    if entry is not None:
        return entry.context_window, "catalog"
    return DEFAULT_CONTEXT_WINDOW, "default"


def context_window(model: ModelConfig) -> int:
    """`model`'s window: its config's, else the catalog's for its model id, else 8192."""
    return resolve_context_window(model)[0]
