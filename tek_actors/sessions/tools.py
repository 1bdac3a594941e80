"""The tools a session offers its model, and what one call of each would do.

Built in:

    shell       {"argv": [str, ...], "cwd": str|null}: runs through the process monitor and
                returns {"exit_code", "output"} (the output bounded by limits.tool_output_bytes)
    read_file   {"path", "offset"?}: {"path" (resolved), "size", "offset", "content",
                "truncated"}: at most limits.tool_output_bytes from `offset`
    write_file  {"path", "content", "append"?}: {"path" (resolved), "bytes"}; content of at most
                limits.tool_output_bytes, an overwrite replaces the file atomically

Tools from config (`tools.<name>`: command, description, parameters, cwd) run their command
through the process monitor like `shell`, each `{parameter}` replaced by its value.

A call is *planned* before anyone is asked: its arguments are checked and its paths resolved
against the session's folder, and the plan's arguments (the exact argv and cwd, the resolved
path) are what the approval shows and binds, so a person approves exactly what runs. A call that
cannot be planned (an unknown tool, bad arguments) is answered with an error at once and never
reaches the approval actor: nothing would run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, StrictBool, StrictStr, ValidationError

from tek_actors.config import Config
from tek_actors.config.model import ToolConfig
from tek_actors.providers import ToolCall, ToolSpec
from tek_actors.wire import WireModel

__all__ = [
    "PlannedCall",
    "ToolError",
    "bound_output",
    "plan_call",
    "run_file_tool",
    "tool_specs",
]

Kind = Literal["process", "read_file", "write_file"]
M = TypeVar("M", bound=WireModel)


class ToolError(Exception):
    """A call that cannot run or failed, in words for the model (and the person reading)."""


@dataclass(frozen=True, slots=True)
class PlannedCall:
    tool: str
    kind: Kind
    arguments: dict[str, Any]  # resolved: what the approval shows and what runs


class _ShellArgs(WireModel):
    argv: Annotated[list[Annotated[StrictStr, Field(max_length=65_536)]], Field(min_length=1)]
    cwd: StrictStr | None = None


class _ReadArgs(WireModel):
    path: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    offset: Annotated[int, Field(ge=0)] = 0


class _WriteArgs(WireModel):
    path: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    content: StrictStr
    append: StrictBool = False


_BUILTIN_SPECS = (
    ToolSpec(
        name="shell",
        description="Run a program (no shell: give the argv; use ['sh', '-c', '...'] for one). "
        "Returns its exit code and its output (stdout and stderr, bounded).",
        parameters={
            "type": "object",
            "properties": {
                "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "cwd": {"type": ["string", "null"], "description": "working folder"},
            },
            "required": ["argv"],
        },
    ),
    ToolSpec(
        name="read_file",
        description="Read a text file (bounded; read on from `offset` for more).",
        parameters={
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "offset": {"type": "integer", "minimum": 0},
            },
            "required": ["path"],
        },
    ),
    ToolSpec(
        name="write_file",
        description="Write a text file (replaces it, or appends with append=true).",
        parameters={
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"},
                "append": {"type": "boolean"},
            },
            "required": ["path", "content"],
        },
    ),
)
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def tool_specs(config: Config) -> list[ToolSpec]:
    """What the model is told it may call: the built-ins, then the tools from config."""
    specs = list(_BUILTIN_SPECS)
    for name, tool in sorted(config.tools.items()):
        properties = {
            p: {"type": spec.type, "description": spec.description}
            for p, spec in tool.parameters.items()
        }
        required = [p for p, spec in tool.parameters.items() if spec.required]
        schema = {"type": "object", "properties": properties, "required": required}
        specs.append(ToolSpec(name=name, description=tool.description, parameters=schema))
    return specs


def plan_call(call: ToolCall, config: Config, workdir: Path) -> PlannedCall:
    """The checked, resolved form of `call`; ToolError if it cannot run."""
    args = call.arguments
    if call.name == "shell":
        shell = _parse(_ShellArgs, args, call.name)
        cwd = _resolve(workdir, shell.cwd) if shell.cwd else str(workdir)
        return PlannedCall("shell", "process", {"argv": shell.argv, "cwd": cwd})
    if call.name == "read_file":
        read = _parse(_ReadArgs, args, call.name)
        resolved = {"path": _resolve(workdir, read.path), "offset": read.offset}
        return PlannedCall("read_file", "read_file", resolved)
    if call.name == "write_file":
        write = _parse(_WriteArgs, args, call.name)
        size = len(write.content.encode())
        if size > config.limits.tool_output_bytes:
            raise ToolError(
                f"write_file: the content is {size} bytes; at most "
                f"{config.limits.tool_output_bytes} (limits.tool_output_bytes) per call"
            )
        resolved = {"path": _resolve(workdir, write.path), "content": write.content}
        return PlannedCall("write_file", "write_file", resolved | {"append": write.append})
    tool = config.tools.get(call.name)
    if tool is None:
        known = ["shell", "read_file", "write_file", *sorted(config.tools)]
        raise ToolError(f"there is no tool {call.name!r}; the tools are {', '.join(known)}")
    argv = _command(call.name, tool, args)
    return PlannedCall(
        call.name, "process", {"argv": argv, "cwd": tool.cwd or str(workdir), "arguments": args}
    )


def _parse(model: type[M], args: dict[str, Any], tool: str) -> M:
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise ToolError(f"{tool}: bad arguments ({problems})") from exc


def _resolve(workdir: Path, path: str) -> str:
    """An absolute, normalised path (relative ones are in the session's folder)."""
    return str((workdir / Path(path).expanduser()).resolve())


def _command(name: str, tool: ToolConfig, args: dict[str, Any]) -> list[str]:
    unknown = sorted(set(args) - set(tool.parameters))
    if unknown:
        raise ToolError(f"{name}: it has no parameter {', '.join(unknown)}")
    values: dict[str, str] = {}
    for param, spec in tool.parameters.items():
        if param not in args:
            if spec.required:
                raise ToolError(f"{name}: the parameter {param} is required")
            continue
        value = args[param]
        if isinstance(value, bool) != (spec.type == "boolean") or not isinstance(
            value, _JSON_TYPES[spec.type]
        ):
            raise ToolError(f"{name}: {param} must be a {spec.type}")
        values[param] = json.dumps(value) if isinstance(value, bool) else str(value)
    argv = []
    for part in tool.command:
        if part.startswith("{") and part.endswith("}") and part[1:-1] in tool.parameters:
            if part[1:-1] in values:  # a missing optional parameter drops its argument
                argv.append(values[part[1:-1]])
            continue
        for param in tool.parameters:
            part = part.replace("{" + param + "}", values.get(param, ""))
        argv.append(part)
    return argv


def run_file_tool(planned: PlannedCall, limit: int) -> dict[str, Any]:
    """A read, on the calling thread (bounded, so it is quick); ToolError on failure. A read
    changes nothing, so it may run again after a crash; a write goes through an intent
    (writes.py)."""
    args = planned.arguments
    path = Path(args["path"])
    try:
        if planned.kind == "read_file":
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(args["offset"])
                data = f.read(limit + 1)
            content = data[:limit].decode("utf-8", errors="replace")
            return {
                "path": str(path),
                "size": size,
                "offset": args["offset"],
                "content": content,
                "truncated": len(data) > limit,
            }
        raise ToolError(f"{planned.tool} is not a read")
    except OSError as exc:
        raise ToolError(f"{planned.tool} {path}: {exc.strerror or exc}") from exc


def bound_output(text: str, limit: int) -> tuple[str, bool]:
    """`text` within `limit` bytes: its head and its tail (where errors usually are) with a
    marker saying how much was left out between them. (text, truncated)."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    half = limit // 2
    head = data[:half].decode("utf-8", errors="ignore")
    tail = data[-half:].decode("utf-8", errors="ignore")
    return f"{head}\n[… {len(data) - 2 * half} bytes left out …]\n{tail}", True
