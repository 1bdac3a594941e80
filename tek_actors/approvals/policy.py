"""What the approval policy says about one tool call: auto, ask or deny.

Rules (`approvals.rules`) and tool policies (`approvals.tools.<tool>`) that match the call are
collected; the strictest wins (deny > ask > auto). When nothing matches, `approvals.default`
applies. A rule with an `argv_prefix` matches a call whose `argv` argument starts with it (the
`shell` tool); an empty prefix matches every call of the tool.

A file tool's call whose planned path is outside the session's folder (`outside_workdir` in its
arguments, sessions/tools.py) is denied while `approvals.outside_workdir` is "refuse", and is
never approved by the policy otherwise: `auto` becomes `ask`, so a person decides every one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tek_actors.config.model import ApprovalsConfig

__all__ = ["arguments_digest", "evaluate", "policy_digest", "remembered"]

_RANK = {"auto": 0, "ask": 1, "deny": 2}


def evaluate(policy: ApprovalsConfig, tool: str, arguments: dict[str, Any]) -> tuple[str, str]:
    """(action, why) for a call of `tool` with `arguments`."""
    action, why = _by_rules(policy, tool, arguments)
    if arguments.get("outside_workdir") is True:
        if policy.outside_workdir == "refuse":
            return (
                "deny",
                'its path is outside the session\'s folder (approvals.outside_workdir is "refuse")',
            )
        if action == "auto":
            return (
                "ask",
                f"its path is outside the session's folder: a person decides ({why} says auto)",
            )
    return action, why


def _by_rules(policy: ApprovalsConfig, tool: str, arguments: dict[str, Any]) -> tuple[str, str]:
    found: list[tuple[str, str]] = []
    argv = arguments.get("argv")
    for i, rule in enumerate(policy.rules):
        if rule.tool != tool:
            continue
        prefix = rule.argv_prefix
        if prefix and not (isinstance(argv, list) and argv[: len(prefix)] == prefix):
            continue
        found.append((rule.action, f"rule {i} ({rule.tool} {' '.join(prefix)})".strip()))
    if tool in policy.tools:
        found.append((policy.tools[tool], f"approvals.tools.{tool}"))
    if not found:
        return policy.default, "approvals.default"
    return max(found, key=lambda f: _RANK[f[0]])


def remembered(
    policy: ApprovalsConfig, tool: str, arguments: dict[str, Any], action: str
) -> tuple[str, Any]:
    """The config change that makes `action` the policy for calls like this one: a rule for
    this argv (shell-like tools), else the tool's own policy. (path, value) for config.set."""
    argv = arguments.get("argv")
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        rule = {"tool": tool, "argv_prefix": argv, "action": action}
        rules = [r.model_dump(mode="json") for r in policy.rules]
        return "approvals.rules", [*rules, rule] if rule not in rules else rules
    return f"approvals.tools.{tool}", action


def arguments_digest(arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def policy_digest(policy: ApprovalsConfig) -> str:
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]
