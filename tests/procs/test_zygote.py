"""The zygote start path in an embedded gateway: a start is a fork, not an interpreter; an exit
is noticed when it happens, not at a tick; and whatever dies mid-start (the zygote, the runner
before or after its claim, before or after the process started) the process runs once or never,
and the monitor says which.

Kill points in the zygote and the runner (zygote.py, runner.py) are set in this process's
environment, which the first zygote inherits; the gateway itself has no points of those names.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from tek_actors import Conflict
from tek_actors.procs import launcher, monitor
from tests.procs.helpers import run, wait_exit, zygotes
from tests.waiting import until


def _marking(marker: Path, text: str = "ran") -> list[str]:
    return ["sh", "-c", f"echo {text} >> {marker}; echo {text}"]


def test_a_start_is_a_fork_of_the_zygote_in_a_session_of_its_own(start: Any) -> None:
    _, client = start()
    [zygote] = zygotes()
    proc = run(client, "sleep", "300")
    record = client.call("procs.get", {"id": proc["id"]})
    runner = psutil.Process(record["runner_pid"])
    assert runner.ppid() == zygote.pid  # forked: no interpreter was started for it
    assert runner.cmdline() == zygote.cmdline()
    assert os.getsid(runner.pid) == runner.pid  # neither the gateway's nor the zygote's session
    assert os.getpgid(proc["pid"]) == proc["pid"]  # and the process in a group of its own


def test_an_exit_is_noticed_when_it_happens_not_at_a_tick(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitor, "TICK_S", 3600.0)  # no tick comes during this test
    _, client = start()
    proc = run(client, "sh", "-c", "echo one; echo two >&2; printf three; exit 4")
    exited = wait_exit(client, proc["id"])
    assert exited["state"] == "exited" and exited["exit_code"] == 4
    logs = client.call("procs.logs", {"id": proc["id"]})
    texts = {(line["stream"], line["text"]) for line in logs["lines"]}  # all, read at the end
    assert texts == {("stdout", "one"), ("stderr", "two"), ("stdout", "three")}


def test_a_process_whose_runner_was_killed_is_lost_when_it_ends_not_at_a_tick(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitor, "TICK_S", 3600.0)
    _, client = start()
    proc = run(client, "sleep", "300")
    record = client.call("procs.get", {"id": proc["id"]})
    os.kill(record["runner_pid"], signal.SIGKILL)  # nobody will write its end now
    assert client.call("procs.get", {"id": proc["id"]})["state"] == "running"
    os.killpg(record["pgid"], signal.SIGKILL)
    exited = wait_exit(client, proc["id"])  # its own pidfd, watched once its runner was gone
    assert exited["state"] == "lost" and "runner was gone" in exited["reason"]


@pytest.mark.parametrize(
    ("point", "outcome"),
    [
        ("zygote.received", "exited"),  # the zygote died before the fork: started again
        ("zygote.forked", "exited"),  # the runner died before its claim: started again
        ("runner.claimed", "unknown"),  # it died after claiming: nobody can say; never again
        ("runner.started", "lost"),  # it died after the start: started once, its end unknown
    ],
)
def test_a_zygote_or_runner_that_dies_mid_start_runs_the_process_once_or_never(
    start: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, point: str, outcome: str
) -> None:
    monkeypatch.setenv("TEK_TEST_HOOKS", "1")
    monkeypatch.setenv("TEK_TEST_KILL_AT", point)
    _, client = start()
    marker = tmp_path / "marker.txt"
    payload = {"argv": _marking(marker), "tool_call": "call-1"}
    if outcome == "unknown":
        for _ in range(2):  # asked again under its key: the same answer, never a start
            with pytest.raises(Conflict) as caught:
                client.call("procs.start", payload)
            assert caught.value.details["outcome"] == "unknown"
        assert not marker.exists() and client.call("procs.list")["items"] == []
        return
    proc = client.call("procs.start", payload)
    assert client.call("procs.start", payload) == proc
    exited = wait_exit(client, proc["id"])
    assert exited["state"] == outcome, exited
    assert marker.read_text() == "ran\n"
    assert [p["id"] for p in client.call("procs.list")["items"]] == [proc["id"]]
    if outcome == "exited":
        lines = client.call("procs.logs", {"id": proc["id"]})["lines"]
        assert [line["text"] for line in lines] == ["ran"]


def test_a_start_asked_again_before_its_runner_reported_gets_the_same_process(
    start: Any, tmp_path: Path
) -> None:
    _, client = start()
    [zygote] = zygotes()
    marker = tmp_path / "marker.txt"
    payload = {"argv": _marking(marker), "tool_call": "call-2"}
    zygote.suspend()  # the start waits in its pipe: in flight, unreported
    try:
        first = client.submit("procs.start", payload)
        second = client.submit("procs.start", payload)
        client.call("procs.list")  # answered after both starts were taken up, in order
    finally:
        zygote.resume()
    assert first.result(20) == second.result(20)
    wait_exit(client, first.result()["id"])
    assert marker.read_text() == "ran\n"


def test_a_zygote_that_dies_is_replaced_and_its_processes_go_on(start: Any, tmp_path: Path) -> None:
    _, client = start()
    [zygote] = zygotes()
    go = tmp_path / "go"
    before = run(client, "sh", "-c", f"while [ ! -e {go} ]; do sleep 0.01; done; echo done")
    zygote.kill()
    until(lambda: [z for z in zygotes() if z.pid != zygote.pid], "a new zygote")
    wait_exit(client, run(client, "true")["id"])
    go.touch()
    exited = wait_exit(client, before["id"])
    assert exited["state"] == "exited" and exited["exit_code"] == 0
    lines = client.call("procs.logs", {"id": before["id"]})["lines"]
    assert [line["text"] for line in lines] == ["done"]


def test_without_a_working_zygote_starts_go_through_the_old_runner(
    start: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "zygote.py"
    broken.write_text("raise SystemExit(3)\n")  # every zygote dies at once
    monkeypatch.setattr(launcher, "ZYGOTE", broken)
    _, client = start()
    marker = tmp_path / "marker.txt"
    for i in range(5):
        proc = run(client, *_marking(marker, str(i)))
        assert wait_exit(client, proc["id"])["exit_code"] == 0
    assert marker.read_text().split() == ["0", "1", "2", "3", "4"]
    record = client.call("procs.get", {"id": run(client, "sleep", "300")["id"]})
    assert any(arg.endswith("runner.py") for arg in psutil.Process(record["runner_pid"]).cmdline())
