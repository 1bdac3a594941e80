"""Random config.set requests: each is applied or refused with invalid_value, and the file on
disk always validates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tek_actors import Client, InvalidRequest, InvalidValue
from tek_actors.config import validate

SEGMENTS = st.sampled_from(
    [
        "limits",
        "session_queue",
        "tool_rounds",
        "providers",
        "local",
        "lab",
        "models",
        "fast",
        "approvals",
        "default",
        "tools",
        "shell",
        "gateway",
        "heartbeat_s",
        "retention",
        "keep_events",
        "default_model",
        "context_window",
        "fallbacks",
        "kind",
        "",
        "x y",
    ]
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["ask", "auto", "deny", "local", "openai"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SEGMENTS, inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(SEGMENTS, min_size=1, max_size=4), value=VALUES)
def test_random_changes_are_applied_or_refused_and_the_file_stays_valid(
    home: Path, client: Client, parts: list[str], value: Any
) -> None:
    version = client.call("config.get")["version"]
    try:
        reply = client.call("config.set", {"path": ".".join(parts), "value": value})
    except (InvalidValue, InvalidRequest) as err:
        assert err.message
        assert client.call("config.get")["version"] == version
    else:
        assert reply["version"] in (version, version + 1)
    if (home / "config.json").exists():
        validate(json.loads((home / "config.json").read_text()))
