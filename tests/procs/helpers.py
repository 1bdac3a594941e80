"""Helpers for the process monitor's tests (the `start` fixture is in conftest.py)."""

from __future__ import annotations

import os
from typing import Any

import psutil

from tek_actors import Client

__all__ = ["run", "wait_exit", "zygotes"]


def wait_exit(client: Client, proc_id: str) -> dict[str, Any]:
    """The proc.exited event of `proc_id` (events of other processes are skipped)."""
    while True:
        event = client.next_event(20)
        assert event is not None, f"{proc_id} did not exit"
        if event["event"] == "proc.exited" and event["data"]["id"] == proc_id:
            return dict(event["data"])


def run(client: Client, *argv: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.call("procs.start", {"argv": list(argv), **extra})
    return result


def zygotes(parent: int | None = None) -> list[psutil.Process]:
    """The process zygotes that `parent` (default: this process, an embedded gateway's host)
    started: its children running procs/zygote.py."""
    found = []
    for child in psutil.Process(parent or os.getpid()).children():
        try:
            if any(arg.endswith("zygote.py") for arg in child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found
