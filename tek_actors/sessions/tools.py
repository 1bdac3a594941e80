"""The tools a session offers its model, and what one call of each would do.

Built in:

    shell       {"argv": [str, ...], "cwd": str|null}: runs through the process monitor and
                returns {"exit_code", "output"} (the output bounded by limits.tool_output_bytes)
    read_file   {"path", "offset"?}: {"path" (resolved), "size", "offset", "content",
                "truncated"}: at most limits.tool_output_bytes from `offset`
    write_file  {"path", "content", "append"?}: {"path" (resolved), "bytes"}; content of at most
                limits.tool_output_bytes, an overwrite replaces the file atomically (writes.py)

Tools from config (`tools.<name>`: command, description, parameters, cwd) run their command
through the process monitor like `shell`, each `{parameter}` replaced by its value.

MCP tools (`mcp__<server>__<tool>`, from the catalog the MCP actor keeps, docs/mcp.md) are
planned as {"server", "tool", "arguments"}: the approval binds the server, the tool and the
exact arguments, and the call is sent to the MCP actor (`mcp.call`) under the approval's id.

A call is *planned* before anyone is asked: its arguments are checked and its paths resolved
against the session's folder, and the plan's arguments (the exact argv and cwd, the resolved
path) are what the approval shows and binds, so a person approves exactly what runs. A call that
cannot be planned (an unknown tool, bad arguments) is answered with an error at once and never
reaches the approval actor: nothing would run.

A file tool's path is resolved once, at planning, to its real path (no symlink left in it); the
plan binds that path, the identity (st_dev, st_ino) of its folder and, if the file exists, of
the file (`inode`; None: the call creates it), and whether it lies outside the session's folder
(refused unless `approvals.outside_workdir` is "ask"). When the call runs, the folder is opened
one component at a time from `/` with O_NOFOLLOW|O_DIRECTORY (`Folder`) and checked against the
bound identity, and the file is opened in it with O_NOFOLLOW and checked too: a path that now
resolves elsewhere (a symlink at any component, another file or folder in its place) fails with
an error that says what it is now, and nothing is read or written.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, StrictBool, StrictStr, ValidationError

from tek_actors.config import Config
from tek_actors.config.model import ToolConfig
from tek_actors.mcp.catalog import Catalog, split_name
from tek_actors.providers import ToolCall, ToolSpec
from tek_actors.wire import WireModel

__all__ = [
    "ANY",
    "FILE_TOOLS",
    "Bound",
    "Folder",
    "Kind",
    "PathChanged",
    "PlannedCall",
    "ToolError",
    "bound_output",
    "confine",
    "identity",
    "plan_call",
    "refused",
    "run_file_tool",
    "tool_specs",
]

Kind = Literal["process", "read_file", "write_file", "mcp"]
M = TypeVar("M", bound=WireModel)
FILE_TOOLS = frozenset({"read_file", "write_file"})

# What a file is, whatever it is called: [st_dev, st_ino]. A plan's binding is one of these,
# None (no file: the call creates it) or ANY: an approval made before plans bound identities
# (it still never follows a symlink).
Identity = list[int]
Bound = Identity | None | Literal["any"]
ANY: Literal["any"] = "any"

_WALK = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO put there never hangs


class ToolError(Exception):
    """A call that cannot run or failed, in words for the model (and the person reading)."""


class PathChanged(ToolError):
    """A file tool's path no longer resolves to what its plan bound: `path` (the file or one of
    its folders) `now` is something else. The caller's message adds what was not done."""

    def __init__(self, path: Path, now: str, *, gone: bool = False) -> None:
        super().__init__(f"{path} changed since it was approved: it {now}")
        self.path = path
        self.now = now
        self.gone = gone  # it does not exist (at planning: a folder that is not there)


def confine(planned: PlannedCall, config: Config) -> None:
    """ToolError if an approved file call reaches outside the session's folder and the config
    refuses that now: a call asked under "ask" may be approved by a person after the setting
    went back to "refuse", and the approval actor does not ask the policy again then."""
    if planned.kind == "process" or planned.arguments.get("outside_workdir") is not True:
        return
    if config.approvals.outside_workdir == "refuse":
        done = "read" if planned.tool == "read_file" else "written"
        raise ToolError(
            f"{planned.tool}: {planned.arguments['path']} is outside the session's folder and "
            f'approvals.outside_workdir is now "refuse"; nothing was {done}'
        )


def refused(tool: str, changed: PathChanged) -> ToolError:
    """The error a file tool answers when its path changed: what it is now, and that nothing
    was done."""
    done = "read" if tool == "read_file" else "written"
    return ToolError(f"{tool}: {changed}; nothing was {done}")


def identity(st: os.stat_result) -> Identity:
    return [st.st_dev, st.st_ino]


class Folder:
    """A folder opened one component at a time from `/`, never through a symlink: a directory
    fd that names in it are opened relative to, so a file tool works in exactly this folder
    whatever is renamed or swapped meanwhile. Close it (or use `with`). Not thread-safe; the
    calls block only on the disk."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: Path, bound: Bound = ANY) -> Folder:
        """`path` (absolute, as resolved at planning), checked to be the folder `bound` names.
        PathChanged if a component is now a symlink, not a folder or gone, or if another
        folder stands at `path`; OSError for anything else (permissions)."""
        fd = os.open("/", _WALK)
        try:
            here = Path("/")
            for part in path.parts[1:]:
                try:
                    step = os.open(part, _WALK, dir_fd=fd)
                except OSError as exc:
                    raise _explain(fd, here / part, part, exc, folder=True) from exc
                os.close(fd)
                fd, here = step, here / part
            if not _is(bound, os.fstat(fd)):
                raise PathChanged(path, "is now another folder (the approved one was replaced)")
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def lookup(self, name: str) -> os.stat_result | None:
        """What `name` is in this folder, itself if it is a symlink (None: nothing)."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def check(self, name: str, bound: Bound) -> os.stat_result | None:
        """`name` if it is what the plan bound (the regular file `bound`, or nothing at all for
        None); PathChanged if it is not."""
        st = self.lookup(name)
        path = self.path / name
        if st is None:
            if bound is None or bound == ANY:
                return None
            raise PathChanged(path, "no longer exists", gone=True)
        if bound is None:
            what = _what(self.fd, name, st)
            raise PathChanged(path, f"now exists ({what}); it did not when the call was approved")
        if stat.S_ISLNK(st.st_mode):
            raise PathChanged(path, f"is now {_what(self.fd, name, st)}")
        if not stat.S_ISREG(st.st_mode):
            raise PathChanged(path, "is no longer a regular file")
        if not _is(bound, st):
            raise PathChanged(path, "is now another file (the approved one was replaced)")
        return st

    def open_file(self, name: str, flags: int, bound: Bound) -> int:
        """`name` opened in this folder without following a symlink, and checked to be the
        regular file `bound` names (never None here): its fd. PathChanged if it is not."""
        path = self.path / name
        try:
            fd = os.open(name, flags | _FILE, dir_fd=self.fd)
        except OSError as exc:
            raise _explain(self.fd, path, name, exc, folder=False) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PathChanged(path, "is no longer a regular file")
            if not _is(bound, st):
                raise PathChanged(path, "is now another file (the approved one was replaced)")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def sync(self) -> None:
        """fsync the folder itself (a rename in it is durable after this)."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is(bound: Bound, st: os.stat_result) -> bool:
    """Whether `st` is the file (or folder) `bound` names; an unbound plan takes any."""
    return bound is None or bound == ANY or identity(st) == list(bound)


def _what(dir_fd: int, name: str, st: os.stat_result) -> str:
    """`name` in words: "a symlink to /etc/passwd", "a folder", "a file"."""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return "a symlink"
        return f"a symlink to {target}"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    return "a file" if stat.S_ISREG(st.st_mode) else "a special file"


def _explain(dir_fd: int, path: Path, name: str, exc: OSError, *, folder: bool) -> Exception:
    """Why opening `name` in `dir_fd` without following symlinks failed: PathChanged where the
    path now resolves elsewhere (a symlink, gone, not a folder), else `exc` itself."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return PathChanged(path, "no longer exists", gone=True)
    except OSError:
        return exc
    if stat.S_ISLNK(st.st_mode):
        return PathChanged(path, f"is now {_what(dir_fd, name, st)}")
    if folder and not stat.S_ISDIR(st.st_mode):
        return PathChanged(path, f"is no longer a folder (it is {_what(dir_fd, name, st)})")
    return exc


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


def tool_specs(config: Config, catalog: Catalog | None = None) -> list[ToolSpec]:
    """What the model is told it may call: the built-ins, the tools from config, then the
    tools of the MCP servers running now."""
    specs = list(_BUILTIN_SPECS)
    for name, tool in sorted(config.tools.items()):
        properties = {
            p: {"type": spec.type, "description": spec.description}
            for p, spec in tool.parameters.items()
        }
        required = [p for p, spec in tool.parameters.items() if spec.required]
        schema = {"type": "object", "properties": properties, "required": required}
        specs.append(ToolSpec(name=name, description=tool.description, parameters=schema))
    for mcp in (catalog.tools() if catalog is not None else {}).values():
        about = f"{mcp.description} (tool {mcp.name!r} of the MCP server {mcp.server!r})"
        specs.append(
            ToolSpec(name=mcp.exposed, description=about.strip(), parameters=mcp.input_schema)
        )
    return specs


def plan_call(
    call: ToolCall, config: Config, workdir: Path, catalog: Catalog | None = None
) -> PlannedCall:
    """The checked, resolved form of `call`; ToolError if it cannot run."""
    args = call.arguments
    if split_name(call.name) is not None:
        return _plan_mcp(call, config, catalog)
    if call.name == "shell":
        shell = _parse(_ShellArgs, args, call.name)
        cwd = _resolve(workdir, shell.cwd) if shell.cwd else str(workdir)
        return PlannedCall("shell", "process", {"argv": shell.argv, "cwd": cwd})
    if call.name == "read_file":
        read = _parse(_ReadArgs, args, call.name)
        bound = _plan_file(call.name, read.path, workdir, config)
        return PlannedCall("read_file", "read_file", {**bound, "offset": read.offset})
    if call.name == "write_file":
        write = _parse(_WriteArgs, args, call.name)
        size = len(write.content.encode())
        if size > config.limits.tool_output_bytes:
            raise ToolError(
                f"write_file: the content is {size} bytes; at most "
                f"{config.limits.tool_output_bytes} (limits.tool_output_bytes) per call"
            )
        bound = _plan_file(call.name, write.path, workdir, config)
        resolved = {**bound, "content": write.content, "append": write.append}
        return PlannedCall("write_file", "write_file", resolved)
    tool = config.tools.get(call.name)
    if tool is None:
        mcp = sorted(catalog.tools()) if catalog is not None else []
        known = ["shell", "read_file", "write_file", *sorted(config.tools), *mcp]
        raise ToolError(f"there is no tool {call.name!r}; the tools are {', '.join(known)}")
    argv = _command(call.name, tool, args)
    return PlannedCall(
        call.name, "process", {"argv": argv, "cwd": tool.cwd or str(workdir), "arguments": args}
    )


def _plan_mcp(call: ToolCall, config: Config, catalog: Catalog | None) -> PlannedCall:
    """An MCP call of a tool the server lists; or, while its server is still starting (a
    gateway restart starts them again), of the tool by the name the model gave: the call
    waits for the server (mcp.call says `unavailable` until it runs), then runs or is refused
    if the server has no such tool."""
    server, name = split_name(call.name) or ("", "")
    tool = catalog.tools().get(call.name) if catalog is not None else None
    if tool is not None:
        server, name = tool.server, tool.name
    else:
        configured = config.mcp.servers.get(server)
        if (
            configured is None
            or not configured.enabled
            or catalog is None
            or catalog.running(server)
        ):
            why = "does not offer it" if configured is not None else "is not configured"
            raise ToolError(
                f"there is no tool {call.name!r}: the MCP server {server!r} {why} "
                "(tek mcp list); nothing was run"
            )
    if not isinstance(call.arguments, dict):
        raise ToolError(f"{call.name}: its arguments must be an object")
    bound = {"server": server, "tool": name, "arguments": call.arguments}
    return PlannedCall(call.name, "mcp", bound)


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


def _plan_file(tool: str, path: str, workdir: Path, config: Config) -> dict[str, Any]:
    """What a file tool's `path` binds: its real path, its folder's identity, the file's
    (None: it does not exist yet; a read needs one) and whether it is outside the session's
    folder. ToolError if it cannot be used: outside and refused, no such folder, not a file."""
    folder = Path(os.path.realpath(workdir))
    real = Path(os.path.realpath(folder / Path(path).expanduser()))
    outside = not real.is_relative_to(folder)
    if outside and config.approvals.outside_workdir == "refuse":
        raise ToolError(
            f"{tool}: {real} is outside the session's folder {folder}: file tools stay inside "
            'it (approvals.outside_workdir is "refuse"); nothing was done'
        )
    try:
        with Folder.open(real.parent) as parent:
            st = parent.lookup(real.name) if real.name else os.fstat(parent.fd)
            what = _what(parent.fd, real.name, st) if st is not None else None
            folder_id = identity(os.fstat(parent.fd))
    except PathChanged as changed:  # realpath saw folders that the walk does not see
        why = "does not exist" if changed.gone else "changed while it was resolved; try again"
        raise ToolError(f"{tool}: the folder {changed.path} {why}") from changed
    except OSError as exc:
        raise ToolError(f"{tool} {real}: {exc.strerror or exc}") from exc
    if st is None and tool == "read_file":
        raise ToolError(f"read_file: {real} does not exist")
    if st is not None and not stat.S_ISREG(st.st_mode):
        # realpath leaves a symlink only where it cannot resolve it (a loop)
        raise ToolError(f"{tool}: {real} is {what}, not a regular file")
    return {
        "path": str(real),
        "inode": identity(st) if st is not None else None,
        "folder_inode": folder_id,
        "outside_workdir": outside,
    }


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
    """A read of exactly the file its plan bound, on the calling thread (bounded, so it is
    quick); ToolError on failure, or if the path now resolves elsewhere (then nothing was
    read). A read changes nothing, so it may run again after a crash; a write goes through an
    intent (writes.py)."""
    if planned.kind != "read_file":
        raise ToolError(f"{planned.tool} is not a read")
    args = planned.arguments
    path = Path(args["path"])
    try:
        with Folder.open(path.parent, args.get("folder_inode", ANY)) as folder:
            fd = folder.open_file(path.name, os.O_RDONLY, args.get("inode", ANY))
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(args["offset"])
            data = f.read(limit + 1)
    except PathChanged as changed:
        raise refused(planned.tool, changed) from changed
    except OSError as exc:
        raise ToolError(f"{planned.tool} {path}: {exc.strerror or exc}") from exc
    return {
        "path": str(path),
        "size": size,
        "offset": args["offset"],
        "content": data[:limit].decode("utf-8", errors="replace"),
        "truncated": len(data) > limit,
    }


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
