"""The model catalog: well-known models' context windows, for aliases whose config gives none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tek_actors.config.model import ModelConfig
from tek_actors.providers.catalog import (
    DEFAULT_CONTEXT_WINDOW,
    catalog_entry,
    context_window,
    load_catalog,
    resolve_context_window,
)
from tests.conftest import Start

ROOT = Path(__file__).resolve().parents[2]


def _window(model_id: str) -> int | None:
    entry = catalog_entry(model_id)
    return entry.context_window if entry else None


def test_every_entry_is_sane() -> None:
    doc = json.loads((ROOT / "tek_actors" / "providers" / "catalog.json").read_text())
    assert doc["catalog_version"] == 1
    matches = [m["match"] for m in doc["models"]]
    assert len(matches) == len(set(matches)) and len(matches) == len(load_catalog())
    for m in doc["models"]:
        assert set(m) == {"match", "context_window", "max_output_tokens"}
        assert m["match"] == m["match"].strip().lower() and "/" not in m["match"]
        assert type(m["context_window"]) is int and type(m["max_output_tokens"]) is int
        assert 256 <= m["context_window"] <= 100_000_000  # what a config may say
        assert 0 < m["max_output_tokens"] <= m["context_window"]


def test_the_configs_copy_is_the_shipped_catalog() -> None:
    shipped = (ROOT / "tek_actors" / "providers" / "catalog.json").read_text()
    assert json.loads((ROOT / "configs" / "model-catalog.json").read_text()) == json.loads(shipped)


@pytest.mark.parametrize(
    ("model_id", "window"),
    [
        ("gpt-4o", 128_000),
        ("gpt-4o-mini-2024-07-18", 128_000),
        ("gpt-4-0613", 8192),  # gpt-4's, not gpt-4-turbo's or gpt-4o's
        ("gpt-4-turbo-2024-04-09", 128_000),
        ("gpt-4.1-nano", 1_047_576),
        ("o1-mini", 128_000),
        ("o3-mini-2025-01-31", 200_000),
        ("claude-3-5-sonnet-20241022", 200_000),
        ("claude-sonnet-4-5", 200_000),
        ("Qwen/Qwen2.5-7B-Instruct", 32_768),
        ("qwen2.5:7b", 32_768),
        ("meta-llama/Llama-3.1-8B-Instruct", 131_072),
        ("llama3:8b", 8192),
        ("deepseek-coder-v2:16b", 131_072),
    ],
)
def test_the_longest_prefix_wins(model_id: str, window: int) -> None:
    assert _window(model_id) == window


def test_the_longest_prefix_decides_the_output_limit_too() -> None:
    mini, plain = catalog_entry("gpt-4o-mini-2024-07-18"), catalog_entry("gpt-4o-2024-05-13")
    assert mini is not None and mini.match == "gpt-4o-mini"
    assert plain is not None and plain.max_output_tokens == 4096
    old = catalog_entry("gpt-4-0613")
    assert old is not None and (old.match, old.max_output_tokens) == ("gpt-4", 8192)


def test_case_and_a_provider_prefix_do_not_matter() -> None:
    assert _window("GPT-4o") == _window("openai/gpt-4o") == _window("OpenAI/GPT-4O") == 128_000
    assert _window("openrouter/anthropic/claude-3-haiku") == 200_000


def test_an_unknown_model_gets_the_default() -> None:
    assert catalog_entry("qwen") is None and catalog_entry("my-finetune") is None
    model = ModelConfig(provider="lab", model="my-finetune")
    assert model.context_window is None
    assert resolve_context_window(model) == (DEFAULT_CONTEXT_WINDOW, "default") == (8192, "default")


def test_a_config_value_wins_over_the_catalog() -> None:
    assert resolve_context_window(ModelConfig(provider="lab", model="gpt-4o")) == (
        128_000,
        "catalog",
    )
    pinned = ModelConfig(provider="lab", model="gpt-4o", context_window=4096)
    assert context_window(pinned) == 4096
    assert resolve_context_window(pinned) == (4096, "config")


def test_plan_switch_and_providers_list_use_the_catalog(gateway_with: Start) -> None:
    models = {
        "four": {"provider": "local", "model": "gpt-4o"},
        "pinned": {"provider": "local", "model": "gpt-4o", "context_window": 4096},
        "odd": {"provider": "local", "model": "my-finetune"},
    }
    _, client = gateway_with({"models": models})
    session = client.call("sessions.create", {"model": "local"})["id"]
    windows = {
        alias: client.call("sessions.plan_switch", {"id": session, "model": alias})["target_window"]
        for alias in ["four", "pinned", "odd", "local"]
    }
    assert windows == {"four": 128_000, "pinned": 4096, "odd": 8192, "local": 32_768}
    listed = client.call("providers.list")["models"]
    assert {a: (m["context_window"], m["context_window_source"]) for a, m in listed.items()} == {
        "four": (128_000, "catalog"),
        "pinned": (4096, "config"),
        "odd": (8192, "default"),
        "local": (32_768, "config"),
    }
