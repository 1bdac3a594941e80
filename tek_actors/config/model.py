"""The shape of config.json: every field, its default and its range.

The models are strict (a string is not an int) and keep fields they do not know (`extra="allow"`)
so that a file written by a newer tek survives a round trip through an older one. Whether a
change may *add* an unknown field is decided in `document.py`, not here: loading tolerates them,
`config.set` refuses them.

A fresh home needs no file: every field has a default, and the `local` provider and `local`
model alias are built in (a file may tune them, never remove them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BUILTIN_MODELS",
    "BUILTIN_PROVIDERS",
    "CURRENT_VERSION",
    "ApprovalRule",
    "ApprovalsConfig",
    "Config",
    "ConfigModel",
    "GatewaySettings",
    "LimitsConfig",
    "McpConfig",
    "McpServerConfig",
    "ModelConfig",
    "ProviderConfig",
    "RetentionConfig",
    "SupervisionSettings",
    "ToolConfig",
    "ToolParameter",
]

CURRENT_VERSION = 2

# Names are path segments of `config.set`, hence no dots.
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_:-]*$")]
EnvName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Url = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s/?#]+(/[^\s]*)?$")]
Seconds = Annotated[float, Field(gt=0, le=86_400)]
Policy = Literal["auto", "ask", "deny"]


class ConfigModel(BaseModel):
    """Base of every section: frozen, strict types, unknown fields kept."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)


class ProviderConfig(ConfigModel):
    kind: Literal["openai", "anthropic", "local"]
    base_url: Url | None = None
    api_key: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    api_key_env: EnvName | None = None
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    # calls that may wait for its capacity (one caller at most a quarter of them)
    max_waiting: Annotated[int, Field(ge=0, le=100_000)] = 256

    @model_validator(mode="after")
    def _one_key_source(self) -> ProviderConfig:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        return self


class ModelConfig(ConfigModel):
    provider: Name
    model: Annotated[str, Field(min_length=1, max_length=256)]
    # None: the model catalog's window for `model`, else 8192 (tek_actors/providers/catalog.py)
    context_window: Annotated[int, Field(ge=256, le=100_000_000)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    fallbacks: Annotated[list[Name], Field(max_length=8)] = []
    # a call that finds this alias's provider busy may go to a later alias with a free worker
    overflow_to_fallback: bool = False

    @field_validator("fallbacks")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("fallbacks must not repeat an alias")
        return value


class ApprovalRule(ConfigModel):
    tool: Name
    argv_prefix: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = []
    action: Policy


class ApprovalsConfig(ConfigModel):
    default: Policy = "ask"
    tools: dict[Name, Policy] = {}
    rules: Annotated[list[ApprovalRule], Field(max_length=1000)] = []
    expire_after_s: Annotated[int, Field(ge=60, le=365 * 86_400)] = 7 * 86_400
    # a file tool's real path outside the session's folder: refused at planning, or always
    # asked of a person (never approved by a rule); docs/approvals.md
    outside_workdir: Literal["refuse", "ask"] = "refuse"


class LimitsConfig(ConfigModel):
    apply_timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 3_000
    session_queue: Annotated[int, Field(ge=1, le=1_000)] = 16
    tool_rounds: Annotated[int, Field(ge=1, le=100)] = 8
    tool_output_bytes: Annotated[int, Field(ge=1024, le=16 << 20)] = 64 << 10
    max_processes: Annotated[int, Field(ge=1, le=1_000)] = 16
    proc_output_lines: Annotated[int, Field(ge=100, le=10_000_000)] = 10_000
    sessions_live: Annotated[int, Field(ge=1, le=100_000)] = 64
    session_idle_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    auto_trim: bool = False  # drop the oldest messages when a turn's context does not fit


class ToolParameter(ConfigModel):
    type: Literal["string", "integer", "number", "boolean"] = "string"
    description: Annotated[str, Field(max_length=2000)] = ""
    required: bool = True


class ToolConfig(ConfigModel):
    """A tool the model may call that runs a command (never through a shell): each `{name}` in
    `command` is replaced by that argument's value, so `["grep", "-rn", "{pattern}", "."]`
    with `{"pattern": "main("}` runs `grep -rn main( .`."""

    command: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=4096)]],
        Field(min_length=1, max_length=256),
    ]
    description: Annotated[str, Field(max_length=8192)] = ""
    parameters: Annotated[dict[Name, ToolParameter], Field(max_length=64)] = {}
    cwd: Annotated[str, Field(min_length=1, max_length=4096)] | None = None


# A letter or digit run, joined by single `-` or `_`: `mcp__<server>__<tool>` splits at the
# first `__` after the prefix, and a tool name leaves room in the model's 64 characters.
ServerName = Annotated[
    str, Field(min_length=1, max_length=24, pattern=r"^[A-Za-z0-9]+([-_][A-Za-z0-9]+)*$")
]
Arg = Annotated[str, Field(max_length=4096)]
HeaderName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9-]+$")]


class McpServerConfig(ConfigModel):
    """One server: exactly one of `command` (stdio) and `url` (Streamable HTTP)."""

    command: Annotated[list[Arg], Field(min_length=1, max_length=256)] | None = None
    url: Url | None = None
    env: Annotated[
        dict[EnvName, Annotated[str, Field(max_length=8192)]], Field(max_length=128)
    ] = {}
    headers: Annotated[
        dict[HeaderName, Annotated[str, Field(max_length=8192)]], Field(max_length=64)
    ] = {}
    cwd: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^/")] | None = None
    enabled: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("a server has exactly one of `command` (stdio) and `url` (http)")
        if self.command is not None and not self.command[0]:
            raise ValueError("`command` starts with the program to run")
        if self.url is not None and self.env:
            raise ValueError("`env` is for a command; an http server takes `headers`")
        if self.command is not None and self.headers:
            raise ValueError("`headers` are for an http server; a command takes `env`")
        return self


class McpConfig(ConfigModel):
    servers: Annotated[dict[ServerName, McpServerConfig], Field(max_length=64)] = {}


class RetentionConfig(ConfigModel):
    keep_events: Annotated[int, Field(ge=0)] = 1_000_000
    idem_retention_s: Seconds = 7 * 86_400.0
    prune_interval_s: Seconds = 300.0


class SupervisionSettings(ConfigModel):
    child_max_restarts: Annotated[int, Field(ge=0, le=1000)] = 5
    child_window_s: Seconds = 30.0
    backoff_initial_s: Annotated[float, Field(ge=0, le=600)] = 0.5
    backoff_max_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    backoff_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    stable_after_s: Seconds = 10.0
    tree_max_restarts: Annotated[int, Field(ge=0, le=1000)] = 3
    tree_window_s: Seconds = 60.0
    shutdown_timeout_s: Seconds = 5.0


class GatewaySettings(ConfigModel):
    """The process's own settings. Two apply live (`request_timeout_ms`, `client_queue_bound`);
    the rest take effect at the next start of the gateway process."""

    endpoint: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    token: Annotated[str, Field(min_length=16, max_length=1024)] | None = None
    # tcp only: "curve" (keys in <home>/keys) or "token" (ZAP PLAIN, loopback only); None picks
    # token when one is set and the bind is loopback, else curve.
    auth: Literal["curve", "token"] | None = None
    allow_remote: bool = False  # a tcp bind beyond loopback (then CURVE only)
    max_frame_bytes: Annotated[int, Field(ge=1024, le=64 << 20)] = 1 << 20
    request_timeout_ms: Annotated[int, Field(gt=0, le=86_400_000)] = 60_000
    client_queue_bound: Annotated[int, Field(ge=10, le=10_000_000)] = 10_000
    replay_chunk: Annotated[int, Field(ge=1, le=100_000)] = 500
    socket_hwm: Annotated[int, Field(ge=1, le=1_000_000)] = 1_000
    heartbeat_s: Annotated[float, Field(ge=0.05, le=60)] = 1.0
    restart_grace_ms: Annotated[int, Field(ge=0, le=600_000)] = 30_000
    snapshot_every: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    supervision: SupervisionSettings = SupervisionSettings()
    test_hooks: bool = False


BUILTIN_PROVIDERS: dict[str, dict[str, Any]] = {"local": {"kind": "local"}}
BUILTIN_MODELS: dict[str, dict[str, Any]] = {
    "local": {"provider": "local", "model": "local", "context_window": 32_768}
}


def _with_builtins(value: Any, builtins: dict[str, dict[str, Any]]) -> Any:
    """The built-in entries, each overlaid with what the file says about it."""
    if not isinstance(value, dict):
        return value  # the model's own validation names the type error
    merged: dict[str, Any] = {}
    for name, base in builtins.items():
        extra = value.get(name)
        merged[name] = {**base, **extra} if isinstance(extra, dict) else extra or dict(base)
    merged.update({k: v for k, v in value.items() if k not in builtins})
    return merged


class Config(ConfigModel):
    config_version: Annotated[int, Field(ge=1)] = CURRENT_VERSION
    providers: dict[Name, ProviderConfig] = Field(default={}, validate_default=True)
    models: dict[Name, ModelConfig] = Field(default={}, validate_default=True)
    default_model: Name = "local"
    approvals: ApprovalsConfig = ApprovalsConfig()
    tools: Annotated[dict[Name, ToolConfig], Field(max_length=256)] = {}
    limits: LimitsConfig = LimitsConfig()
    retention: RetentionConfig = RetentionConfig()
    gateway: GatewaySettings = GatewaySettings()
    mcp: McpConfig = McpConfig()

    @field_validator("providers", mode="before")
    @classmethod
    def _builtin_providers(cls, value: Any) -> Any:
        return _with_builtins(value, BUILTIN_PROVIDERS)

    @field_validator("models", mode="before")
    @classmethod
    def _builtin_models(cls, value: Any) -> Any:
        return _with_builtins(value, BUILTIN_MODELS)
