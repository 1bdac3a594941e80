"""A WatchProcess is told how the process ended with its output when that is short (so a tool
call needs no procs.logs round trip), bounded by limits.tool_output_bytes, with `next`/`last`
as procs.logs gives them; the lines are exactly those procs.logs serves, none lost or twice."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka

from tek_actors import Client, Gateway
from tek_actors.procs.messages import ProcEnded, WatchProcess
from tests.procs.helpers import run, wait_exit
from tests.waiting import until

Start = Callable[..., tuple[Gateway, Client]]


class _Listener(pykka.ThreadingActor):
    """Stands for a session: collects the ProcEnded it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[ProcEnded] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ProcEnded):
            self.got.append(message)
        return list(self.got)


def _watch(gateway: Gateway, proc_id: str) -> ProcEnded:
    monitor = gateway._directory.lookup("procs")
    assert monitor is not None
    listener = _Listener.start()
    try:
        monitor.tell(WatchProcess(proc_id, listener))
        [ended] = until(lambda: listener.ask("get"), "the end was told")
        return ended
    finally:
        listener.stop()


def _logs(client: Client, proc_id: str) -> list[dict[str, Any]]:
    return list(client.call("procs.logs", {"id": proc_id, "limit": 10_000})["lines"])


def test_a_short_process_ends_with_its_whole_output(start: Start) -> None:
    gateway, client = start()
    proc = run(client, "sh", "-c", "echo one; echo two >&2; echo three; exit 4")
    wait_exit(client, proc["id"])
    ended = _watch(gateway, proc["id"])
    assert (ended.state, ended.exit_code, ended.signal) == ("exited", 4, None)
    assert ended.lines is not None
    assert list(ended.lines) == _logs(client, proc["id"])
    assert sorted(line["text"] for line in ended.lines) == ["one", "three", "two"]
    assert ended.next == ended.last == 3


def test_a_watch_sent_while_it_runs_gets_the_output_with_the_end(
    start: Start, tmp_path: Path
) -> None:
    gateway, client = start()
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    script = f"echo before; read _ < {gate}; echo after"  # waits until the test opens the gate
    proc = run(client, "sh", "-c", script)
    monitor = gateway._directory.lookup("procs")
    assert monitor is not None
    listener = _Listener.start()
    try:
        monitor.tell(WatchProcess(proc["id"], listener))
        assert listener.ask("get") == []  # not ended: the watch waits
        with open(gate, "w"):  # (waits until the process opened it to read, if it has not yet)
            pass
        [ended] = until(lambda: listener.ask("get"), "the end was told")
    finally:
        listener.stop()
    assert ended.lines is not None
    assert [line["text"] for line in ended.lines] == ["before", "after"]
    assert list(ended.lines) == _logs(client, proc["id"])


def test_a_long_output_comes_in_part_and_the_rest_is_read_from_next(start: Start) -> None:
    gateway, client = start({"limits": {"tool_output_bytes": 1024}})
    proc = run(client, "sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done")
    wait_exit(client, proc["id"])
    ended = _watch(gateway, proc["id"])
    assert ended.lines is not None and ended.last == 300
    assert 0 < ended.next < ended.last
    assert sum(len(line["text"]) + 1 for line in ended.lines) <= 1024  # bounded
    rest = client.call("procs.logs", {"id": proc["id"], "since": ended.next})["lines"]
    assert [line["n"] for line in [*ended.lines, *rest]] == list(range(1, 301))  # each once
    assert [*ended.lines, *rest] == _logs(client, proc["id"])
