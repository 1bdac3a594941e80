"""Tool calls, their approvals and their results, each in one line a person reads.

Shared by `tek chat` (as a turn happens) and `tek sessions show` (afterwards: `who> line`, each
user message followed by its turn), so both read the same. A call is shown as the model asked
for it (`→ shell: ls -la`); an approval as what will really run (the resolved argv and folder,
the absolute path); a result by its status, the exit code or error, and the first line of its
output (`← shell executed, exit 0: total 8 (+3 lines)`). The model's arguments may be anything:
what does not have the expected shape is shown as JSON.

Every line returned is ready for the screen: argv through `shlex.join`, control characters made
visible, no markup (`_render`); a message's own line breaks stay.
"""

from __future__ import annotations

import json
from typing import Any

from tek_actors.cli._render import argv_line, visible

__all__ = [
    "call_line",
    "describe",
    "remembered_line",
    "remembered_prefix",
    "result_line",
    "transcript",
    "what_runs",
]

LINE_MAX = 160  # a whole line (a call, a folder)
FIRST_LINE_MAX = 100  # the first line of a result's output or error


def _cut(text: str, limit: int) -> str:
    text = visible(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(text: str) -> str:
    """The first non-empty line of `text`, cut short, and how many lines were left out."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
    return _cut(lines[0].strip(), FIRST_LINE_MAX) + more


def describe(tool: str, arguments: Any) -> str:
    """`tool` with `arguments`, readable when they have the shape the tool expects, whole (not
    cut), control characters visible: `shell: rm -rf 'a b'`."""
    return visible(_describe(tool, arguments))


def _describe(tool: str, arguments: Any) -> str:
    args = arguments if isinstance(arguments, dict) else {}
    argv = args.get("argv")
    path = args.get("path")
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        return f"{tool}: {argv_line(argv)}"
    if tool == "read_file" and isinstance(path, str):
        offset = args.get("offset")
        return f"read_file {path}" + (f" from byte {offset}" if offset else "")
    bound = args.get("arguments")
    if tool.startswith("mcp__") and isinstance(args.get("server"), str) and isinstance(bound, dict):
        # an MCP call's approval: the server, its own name for the tool, the exact arguments
        shown = json.dumps(bound, ensure_ascii=False)
        return f"{tool}: MCP server {args['server']}, tool {args.get('tool')}, arguments {shown}"
    if tool == "write_file" and isinstance(path, str) and isinstance(args.get("content"), str):
        size = len(args["content"].encode())
        return f"write_file {path}: {size} bytes" + (", appended" if args.get("append") else "")
    return f"{tool} {json.dumps(arguments, ensure_ascii=False)}"


def call_line(call: dict[str, Any]) -> str:
    """One call of an assistant message, as the model asked for it: `→ shell: ls -la`."""
    arguments = call.get("arguments")
    line = "→ " + _describe(str(call.get("name")), arguments)
    cwd = arguments.get("cwd") if isinstance(arguments, dict) else None
    if isinstance(cwd, str) and cwd:
        line += f" (in {cwd})"
    return _cut(line, LINE_MAX)


def what_runs(tool: str, arguments: dict[str, Any]) -> list[str]:
    """An approval's resolved call, as the lines shown before asking: the command (or file),
    then the folder it runs in, if any."""
    # Whole, never cut: a person approves exactly what runs.
    lines = [describe(tool, arguments)]
    if isinstance(arguments.get("cwd"), str):
        lines.append(f"in {visible(arguments['cwd'])}")
    return lines


def remembered_prefix(arguments: Any) -> list[str] | None:
    """The argv prefix a remembered decision on a call with `arguments` becomes a rule for, or
    None when it becomes the tool's own policy: the same choice as the gateway's
    `approvals.policy.remembered` (tests/cli/test_transcript.py holds the two together)."""
    argv = arguments.get("argv") if isinstance(arguments, dict) else None
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        return argv
    return None


def remembered_line(tool: str, arguments: Any, decision: str) -> str:
    """What a remembered decision ("always") does from now on, exactly: a rule matches a call
    whose argv *starts with* these words, each word whole (so `echo alw` covers `echo alw x`,
    never `echo alw2`); without an argv, every call of the tool."""
    prefix = remembered_prefix(arguments)
    tool = visible(tool)
    if prefix is None:
        verb = "runs without asking" if decision == "approve" else "is refused"
        return f"every {tool} call {verb} from now on"
    command = argv_line(prefix)
    verb = "runs" if decision == "approve" else "refuses"
    how = "without asking " if decision == "approve" else ""
    return (
        f"{tool} {verb} `{command}` and `{command} …` (these words first, then any) "
        f"{how}from now on"
    )


def result_line(name: str, status: str, text: str) -> str:
    """A tool result (`text` is the JSON the model sees): `← shell executed, exit 0: hi`."""
    try:
        result = json.loads(text)
    except ValueError:
        result = {"output": text}
    if not isinstance(result, dict):
        result = {"output": text}
    line = f"← {name} {status}"
    if result.get("exit_code") is not None:
        line += f", exit {result['exit_code']}"
    if result.get("signal"):
        line += f", signal {result['signal']}"
    if isinstance(result.get("error"), str):
        detail = _first_line(result["error"])
    elif isinstance(result.get("output"), str):
        detail = _first_line(result["output"])
    elif isinstance(result.get("bytes"), int):  # write_file
        verb = "appended" if result.get("append") else "wrote"
        detail = f"{verb} {result['bytes']} bytes to {result.get('path')}"
    elif isinstance(result.get("content"), str):  # read_file
        size = len(result["content"].encode())
        more = ", more after it" if result.get("truncated") else ""
        detail = f"{result.get('path')} ({size} of {result.get('size')} bytes{more})"
    else:
        detail = ""
    return _cut(line + (f": {detail}" if detail else ""), LINE_MAX + FIRST_LINE_MAX)


def transcript(entries: list[dict[str, Any]]) -> list[str]:
    """A session's entries (sessions.get) as `who> line` lines: each user message followed by
    its turn (answers, tool calls, results, errors), as the model sees the conversation, even
    where a message sent during a turn was journaled in the middle of it."""
    users = {e["id"] for e in entries if e["role"] == "user"}
    turns: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry["role"] != "user" and entry.get("turn") in users:
            turns.setdefault(entry["turn"], []).append(entry)
    lines: list[str] = []
    for entry in entries:
        if entry["role"] == "user":
            lines.append(f"user> {visible(entry['text'], lines=True)}")
            for answer in turns.get(entry["id"], []):
                lines += _entry_lines(answer)
        elif entry.get("turn") not in users:
            lines += _entry_lines(entry)
    return lines


def _entry_lines(entry: dict[str, Any]) -> list[str]:
    if entry["role"] == "tool":
        line = result_line(str(entry.get("name")), str(entry.get("status")), entry["text"])
        return [f"tool> {line}"]
    who = (entry.get("model") or "model") if entry["role"] == "assistant" else entry["role"]
    who = visible(who)
    calls = entry.get("tool_calls") or []
    lines = [f"{who}> {visible(entry['text'], lines=True)}"] if entry["text"] or not calls else []
    return lines + [f"{who}> {call_line(call)}" for call in calls]
