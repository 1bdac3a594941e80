"""The configuration as a document: dotted paths, validation with named paths, diffs, redaction.

The document of record is the raw JSON object of config.json (what the user wrote, plus fields
this version does not know). The typed `Config` is derived from it; defaults are never written
back, so a file stays as small as the user made it and a newer tek can change a default.

    validate(raw)                          -> Config, or InvalidValue naming every bad path
    with_value(raw, "models.fast", {...})  -> a new raw document (the input is not touched)
    check_change(old, new)                 -> Config; also refuses fields `old` did not have
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
import types
from collections.abc import Iterator
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from tek_actors._net import loopback_host
from tek_actors.config.migrations import migrate
from tek_actors.config.model import CURRENT_VERSION, Config, GatewaySettings
from tek_actors.errors import InvalidValue
from tek_actors.home import _MAX_IPC_PATH  # the one bound of a socket path, where it is used

__all__ = [
    "REDACTED",
    "changed_paths",
    "check_change",
    "digest",
    "keep_redacted_secrets",
    "load",
    "propose",
    "redact",
    "redact_path",
    "restart_required",
    "split_path",
    "unknown_fields",
    "unknown_paths",
    "validate",
    "value_at",
    "with_value",
    "without_value",
]

REDACTED = "<redacted>"
_SECRET_NAMES = frozenset({"api_key", "token", "password", "secret"})
_SEGMENT_MAX = 64
# What applies without a restart of the gateway process (all else outside `gateway` is live).
_LIVE_GATEWAY_FIELDS = frozenset({"request_timeout_ms", "client_queue_bound"})


# Maps whose every value is a secret: an MCP server's `env` and `headers` (a token in
# GITHUB_TOKEN or Authorization is as secret as an api_key, whatever its name).
_SECRET_MAPS = frozenset({"env", "headers"})
_MAP_ENDS = tuple(f"{name}." for name in _SECRET_MAPS)


def is_secret(key: str) -> bool:
    return key in _SECRET_NAMES or key.endswith(("_api_key", "_token", "_secret"))


def _secret_values(value: dict[str, Any]) -> dict[str, Any]:
    return {k: REDACTED if v not in (None, "") else v for k, v in value.items()}


def digest(raw: dict[str, Any]) -> str:
    """Content digest of a document (formatting and key order do not count)."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# -- paths -----------------------------------------------------------------------------------


def split_path(path: str) -> list[str]:
    """`"models.fast.context_window"` -> its segments; InvalidValue for a malformed path."""
    parts = path.split(".") if path else []
    if not parts or any(not p or len(p) > _SEGMENT_MAX or p.strip() != p for p in parts):
        raise InvalidValue(
            f"{path!r} is not a config path: use dotted names such as models.fast.context_window",
            details={"path": path, "expected": "a dotted path of non-empty names"},
        )
    return parts


def value_at(doc: Any, path: str) -> Any:
    """The value at `path` of a (typed-as-dict) document; not_found-style InvalidValue."""
    node = doc
    for i, part in enumerate(split_path(path)):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            where = ".".join(split_path(path)[:i]) or "the top level"
            known = sorted(node) if isinstance(node, dict) else []
            raise InvalidValue(
                f"{path}: there is no {part!r} in {where}{_did_you_mean(part, known)}"
                + (f" (there is: {', '.join(known)})" if known else ""),
                details={"path": path, "expected": known or "an existing path"},
            )
    return node


def with_value(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `raw` with `value` at `path`. A missing object on the way is created only
    where the schema has a section there (`limits.x` works on a file without `limits`)."""
    parts = split_path(path)
    doc = copy.deepcopy(raw)
    node = doc
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            prefix = ".".join(parts[: i + 1])
            if _is_value_in_schema(prefix):
                raise InvalidValue(
                    f"{path}: {prefix} is a value, not an object",
                    details={"path": prefix, "expected": "an object"},
                )
            fields = _fields_at(prefix)
            if fields is not None and part not in fields:
                raise _refusal([_unknown_field(prefix, fields)])
            if not _is_object_in_schema(prefix):
                raise InvalidValue(
                    f"{path}: {prefix} does not exist; set the whole object at {prefix} first",
                    details={"path": prefix, "expected": "an existing object"},
                )
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise InvalidValue(
                f"{path}: {prefix} is not an object",
                details={"path": prefix, "expected": "an object"},
            )
        node = child
    node[parts[-1]] = copy.deepcopy(value)
    return doc


def without_value(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of `raw` without `path` (the field falls back to its default)."""
    parts = split_path(path)
    if parts == ["config_version"]:
        raise InvalidValue(
            "config_version cannot be removed", details={"path": path, "expected": "a set path"}
        )
    doc = copy.deepcopy(raw)
    node: Any = doc
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or parts[-1] not in node:
        fields = _fields_at(path)
        if fields is not None and parts[-1] not in fields:
            raise _refusal([_unknown_field(path, fields)])
        raise InvalidValue(
            f"{path} is not set in config.json (it has its default already)",
            details={"path": path, "expected": "a path that config.json sets"},
        )
    del node[parts[-1]]
    return doc


def _is_object_in_schema(prefix: str) -> bool:
    """True where the schema has an object at `prefix` that may be created empty: a section
    (`limits`), a sub-section (`gateway.supervision`) or a built-in entry (`providers.local`)."""
    parts = prefix.split(".")
    model: type[BaseModel] | None = Config
    i = 0
    while i < len(parts):
        if model is None:
            return False
        kind, inner = _field_kind(model, parts[i])
        if kind == "model":
            model, i = inner, i + 1
        elif kind == "dict" and i + 1 == len(parts):
            return True  # the section itself (providers, approvals.tools)
        elif kind == "dict" and parts[i + 1] in _builtin_entries(parts[i]):
            model, i = inner, i + 2
        else:
            return False
    return True


def _is_value_in_schema(prefix: str) -> bool:
    """True where the schema has a plain value (`limits.session_queue`)."""
    *parents, leaf = prefix.split(".")
    model: type[BaseModel] | None = Config
    for part in parents:
        if model is None:
            return False
        kind, model = _field_kind(model, part)
        if kind != "model":
            return False
    return model is not None and _field_kind(model, leaf)[0] == "value"


def _builtin_entries(section: str) -> set[str]:
    from tek_actors.config.model import BUILTIN_MODELS, BUILTIN_PROVIDERS

    return set({"providers": BUILTIN_PROVIDERS, "models": BUILTIN_MODELS}.get(section, {}))


# -- the schema walk -------------------------------------------------------------------------


def _field_kind(model: type[BaseModel], name: str) -> tuple[str, type[BaseModel] | None]:
    """("model"|"dict"|"list"|"value"|"unknown", the model class inside if any)."""
    field = model.model_fields.get(name)
    if field is None:
        return "unknown", None
    return _kind_of(field.annotation)


def _kind_of(annotation: Any) -> tuple[str, type[BaseModel] | None]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kind_of(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            if arg is not type(None):
                kind = _kind_of(arg)
                if kind[0] != "value":
                    return kind
        return "value", None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    if origin is dict:
        inner = _kind_of(get_args(annotation)[1])
        return "dict", inner[1] if inner[0] == "model" else None
    if origin is list:
        inner = _kind_of(get_args(annotation)[0])
        return "list", inner[1] if inner[0] == "model" else None
    return "value", None


def unknown_paths(raw: Any, model: type[BaseModel] = Config, prefix: str = "") -> Iterator[str]:
    """Every path in `raw` that the schema does not define."""
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        path = f"{prefix}{key}"
        kind, inner = _field_kind(model, str(key))
        if kind == "unknown":
            yield path
        elif kind == "model" and inner is not None:
            yield from unknown_paths(value, inner, path + ".")
        elif kind == "dict" and inner is not None and isinstance(value, dict):
            for name, entry in value.items():
                yield from unknown_paths(entry, inner, f"{path}.{name}.")
        elif kind == "list" and inner is not None and isinstance(value, list):
            for i, entry in enumerate(value):
                yield from unknown_paths(entry, inner, f"{path}.{i}.")


def _fields_at(path: str) -> list[str] | None:
    """The field names the schema allows where the last segment of `path` stands; None where
    any name goes (a key of `providers`, `approvals.tools`, ...) or the schema has nothing."""
    parts = path.split(".")
    model: type[BaseModel] = Config
    i = 0
    while i < len(parts) - 1:
        kind, inner = _field_kind(model, parts[i])
        if inner is None or kind == "value" or (kind != "model" and i + 1 == len(parts) - 1):
            return None
        model, i = inner, i + (1 if kind == "model" else 2)  # a map or list: skip its key
    return sorted(model.model_fields)


def _did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_field(path: str, fields: list[str]) -> dict[str, Any]:
    """The refusal of a name the schema does not have at its level: those it has, and the
    closest one (a typo is the likeliest cause)."""
    where, _, leaf = path.rpartition(".")
    expected = f"one of {', '.join(fields)}"
    return {
        "path": path,
        "message": f"is not a configuration field{_did_you_mean(leaf, fields)} "
        f"(in {where or 'the top level'}: {expected})",
        "expected": expected,
    }


# -- validation ------------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
    "missing": "a value (this field is required)",
    "int_from_float": "an integer",
}


def _expected(err: Any) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    for key, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx:
            return f"a value {sign} {ctx[key]}"
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"text matching {ctx.get('pattern')}"
    if kind == "string_too_short":
        return f"at least {ctx.get('min_length')} characters"
    if kind in ("string_too_long", "too_long"):
        return f"at most {ctx.get('max_length')} {'characters' if 'string' in kind else 'items'}"
    return _EXPECTED.get(kind, str(err.get("msg", "a valid value")))


def _refusal(errors: list[dict[str, Any]], *, what: str = "the configuration") -> InvalidValue:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidValue(
        f"{first['path'] or what}: {first['message']}{more}",
        details={"path": first["path"], "expected": first["expected"], "errors": errors},
    )


def validate(raw: Any) -> Config:
    """The typed config of a (current-version) document, or InvalidValue naming each path."""
    if not isinstance(raw, dict):
        raise _refusal(
            [{"path": "", "message": "config.json must hold a JSON object", "expected": "{...}"}]
        )
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False, include_input=False):
            loc = [str(p) for p in err["loc"]]
            path = ".".join(loc)
            message = str(err["msg"])
            if err["type"] == "value_error":
                message = message.removeprefix("Value error, ")
            elif "input" not in err:  # never echo the value: it may be a secret
                got = err.get("ctx", {}).get("input_type")
                message += f" (got {got})" if got else ""
            errors.append({"path": path, "message": message, "expected": _expected(err)})
        raise _refusal(errors) from exc
    errors = list(_dangling_references(config))
    if errors:
        raise _refusal(errors)
    return config


def _dangling_references(config: Config) -> Iterator[dict[str, Any]]:
    providers, models = config.providers, config.models
    for alias, model in models.items():
        if model.provider not in providers:
            yield {
                "path": f"models.{alias}.provider",
                "message": f"there is no provider {model.provider!r}",
                "expected": f"one of {sorted(providers)}",
            }
        for i, fallback in enumerate(model.fallbacks):
            if fallback not in models or fallback == alias:
                yield {
                    "path": f"models.{alias}.fallbacks.{i}",
                    "message": f"{fallback!r} is not another model alias",
                    "expected": f"one of {sorted(set(models) - {alias})}",
                }
    if config.default_model not in models:
        yield {
            "path": "default_model",
            "message": f"there is no model alias {config.default_model!r}",
            "expected": f"one of {sorted(models)}",
        }
    yield from _tool_references(config)
    yield from _endpoint_problems(config.gateway)


BUILTIN_TOOLS = ("read_file", "shell", "write_file")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9][A-Za-z0-9_:-]*)\}")


def _tool_references(config: Config) -> Iterator[dict[str, Any]]:
    """A tool from config may not shadow a built-in, and its command may only name its own
    parameters (a typo would otherwise run with the literal `{name}` in it)."""
    for name, tool in config.tools.items():
        if name in BUILTIN_TOOLS:
            yield {
                "path": f"tools.{name}",
                "message": f"{name!r} is a built-in tool",
                "expected": f"a name other than {', '.join(BUILTIN_TOOLS)}",
            }
        for i, part in enumerate(tool.command):
            for ref in _PLACEHOLDER.findall(part):
                if ref not in tool.parameters:
                    yield {
                        "path": f"tools.{name}.command.{i}",
                        "message": f"{{{ref}}} is not a parameter of {name}",
                        "expected": f"one of {sorted(tool.parameters)}",
                    }
        if tool.cwd is not None and not tool.cwd.startswith("/"):
            yield {
                "path": f"tools.{name}.cwd",
                "message": "cwd must be an absolute path",
                "expected": "a path starting with /",
            }


def _endpoint_problems(gateway: GatewaySettings) -> Iterator[dict[str, Any]]:
    """What would stop the next start from binding `gateway.endpoint`, or stop `tek` reaching
    it: refused here, while the change can still be refused, rather than at that start.
    (The same rules as transport's `server_auth`, which checks an `--endpoint` too.)"""
    endpoint = gateway.endpoint
    if endpoint is None:
        return
    scheme, _, rest = endpoint.partition("://")
    problem, expected = "", ""
    if scheme == "ipc":
        expected = f"ipc:///an/absolute/path.sock of at most {_MAX_IPC_PATH} bytes"
        if not rest.startswith("/"):
            problem = "an ipc socket path must be absolute"
        elif len(rest.encode()) > _MAX_IPC_PATH:
            problem = f"the socket path is longer than a Unix socket allows ({_MAX_IPC_PATH})"
    elif scheme == "tcp":
        expected = "tcp://HOST:PORT, PORT 1..65535 or * (any free port)"
        try:
            parts = urlsplit(endpoint.replace(":*", ":0") if endpoint.endswith(":*") else endpoint)
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host or port is None:
            problem = "a tcp endpoint is tcp://HOST:PORT"
        elif not loopback_host(host) and not gateway.allow_remote:
            problem = (
                f"{endpoint} accepts connections from other machines: set gateway.allow_remote "
                "to true first to mean it (those connections then need CURVE keys)"
            )
            expected = "a loopback address (127.0.0.1), or gateway.allow_remote true"
        elif not loopback_host(host) and gateway.auth == "token":
            problem = 'a token is sent in the clear: gateway.auth "token" is for loopback only'
            expected = 'gateway.auth "curve" (or null) beyond loopback'
    else:  # inproc reaches only the process that binds it: no `tek` could connect
        problem = f"{endpoint} is not an endpoint that tek can reach"
        expected = "ipc://PATH or tcp://HOST:PORT"
    if problem:
        yield {"path": "gateway.endpoint", "message": problem, "expected": expected}


def unknown_fields(raw: Any) -> list[dict[str, Any]]:
    """Each path of `raw` the schema does not define, as a refusal entry would name it (the
    fields at its level, the closest one): what a hand edit may keep and this tek ignores."""
    return [_unknown_field(path, _fields_at(path) or []) for path in unknown_paths(raw)]


def check_change(old: dict[str, Any], new: dict[str, Any]) -> Config:
    """Validate `new` as a change of `old`: as `validate`, and a change may not bring in a
    field the schema does not know (a typo would otherwise be kept and ignored for ever)."""
    known = set(unknown_paths(old))
    added = [p for p in unknown_paths(new) if p not in known]
    unknown = [_unknown_field(path, _fields_at(path) or []) for path in added]
    try:
        config = validate(new)
    except InvalidValue as exc:  # every problem at once, the unknown names first
        raise _refusal(unknown + exc.details["errors"]) from exc
    if unknown:
        raise _refusal(unknown)
    return config


def propose(
    raw: dict[str, Any],
    kind: str,
    *,
    path: str | None = None,
    value: Any = None,
    document: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Config]:
    """The document after a change of `raw`, checked: `set` (path, value), `unset` (path) or
    `replace` (document, migrated if older). REDACTED secrets keep their current values."""
    if kind == "set" and path is not None:
        doc = with_value(raw, path, value)
    elif kind == "unset" and path is not None:
        doc = without_value(raw, path)
    elif kind == "replace" and document is not None:
        doc = migrate(document)[0]
    else:
        raise ValueError(f"not a change: {kind}")
    doc = keep_redacted_secrets(raw, doc)
    doc.setdefault("config_version", raw.get("config_version", CURRENT_VERSION))
    return doc, check_change(raw, doc)


def load(raw: Any) -> tuple[dict[str, Any], Config, list[str]]:
    """A document read from disk -> (the migrated document, its Config, applied migrations)."""
    if not isinstance(raw, dict):
        validate(raw)  # raises the right refusal
    migrated, steps = migrate(raw)
    return migrated, validate(migrated), steps


# -- what a change touches -------------------------------------------------------------------


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Leaf paths whose value differs between two documents."""
    if isinstance(old, dict) or isinstance(new, dict):
        if not isinstance(old, dict) or not isinstance(new, dict):
            if old is not None and new is not None:
                return [prefix.rstrip(".")]  # an object replaced by a value, or the reverse
            old, new = old or {}, new or {}
        paths: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            paths += changed_paths(old.get(key), new.get(key), f"{prefix}{key}.")
        return paths
    return [] if old == new else [prefix.rstrip(".")]


def restart_required(paths: list[str]) -> list[str]:
    """The changed paths that take effect only at the gateway process's next start."""
    out = []
    for path in paths:
        parts = path.split(".")
        if parts[0] == "gateway" and (len(parts) < 2 or parts[1] not in _LIVE_GATEWAY_FIELDS):
            out.append(path)
    return out


def redact(value: Any) -> Any:
    """A copy with every secret (api_key, token, ...) replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: _redact_item(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _redact_item(key: str, value: Any) -> Any:
    if is_secret(key) and value not in (None, ""):
        return REDACTED
    if key in _SECRET_MAPS and isinstance(value, dict):
        return _secret_values(value)
    return redact(value)


def redact_path(path: str, value: Any) -> Any:
    """`value` as found at `path`, redacted (a secret leaf, or secrets inside an object)."""
    parts = path.split(".")
    if len(parts) > 1 and parts[-2] in _SECRET_MAPS and value not in (None, ""):
        return REDACTED  # one value of an `env` or `headers` map
    return _redact_item(parts[-1], value)


def keep_redacted_secrets(old: Any, new: Any, prefix: str = "") -> Any:
    """`new` with every REDACTED secret put back to its value in `old`, so that a client may
    send back what `config.get` gave it without wiping the keys it could not see."""
    if not isinstance(new, dict):
        return new
    out: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key) if isinstance(old, dict) else None
        if value == REDACTED and (is_secret(str(key)) or prefix.endswith(_MAP_ENDS)):
            if before is None:
                raise InvalidValue(
                    f"{prefix}{key}: {REDACTED!r} stands for a secret that is not set",
                    details={"path": f"{prefix}{key}", "expected": "the secret itself"},
                )
            out[key] = before
        else:
            out[key] = keep_redacted_secrets(before, value, f"{prefix}{key}.")
    return out
