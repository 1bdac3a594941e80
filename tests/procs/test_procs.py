"""The process monitor in an embedded gateway: start, output, exits, kill, limits, bad input."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tek_actors import Conflict, InvalidRequest, InvalidValue, NotFound, Overloaded
from tek_actors.home import TekHome
from tek_actors.procs.runner import write_status
from tek_actors.procs.spawn import read_status
from tek_actors.store import Journal, NewEvent
from tests.procs.helpers import run, wait_exit

PY = sys.executable


def test_output_is_numbered_lines_and_the_exit_is_recorded(start: Any) -> None:
    _, client = start()
    script = "import sys\nfor i in range(1, 6): print(f'out {i}', flush=True)\n"
    script += "print('oops', file=sys.stderr, flush=True)\nsys.exit(3)\n"
    proc = run(client, PY, "-c", script)
    assert proc["pid"] > 0 and proc["id"].startswith("p-")
    exited = wait_exit(client, proc["id"])
    assert exited["exit_code"] == 3 and exited["signal"] is None and exited["state"] == "exited"
    logs = client.call("procs.logs", {"id": proc["id"]})
    assert [line["n"] for line in logs["lines"]] == [1, 2, 3, 4, 5, 6]
    assert [line["text"] for line in logs["lines"] if line["stream"] == "stdout"] == [
        f"out {i}" for i in range(1, 6)
    ]
    assert {"n": 6, "stream": "stderr", "text": "oops"} in logs["lines"]
    assert logs["state"] == "exited" and logs["exit_code"] == 3
    page = client.call("procs.logs", {"id": proc["id"], "since": 2, "limit": 2})
    assert [line["n"] for line in page["lines"]] == [3, 4] and page["next"] == 4
    record = client.call("procs.get", {"id": proc["id"]})
    assert record["lines"] == 6 and record["duration_s"] >= 0


def test_a_last_line_without_a_newline_is_kept(start: Any) -> None:
    _, client = start()
    proc = run(client, "printf", "a\\nb\\nno newline")
    wait_exit(client, proc["id"])
    texts = [line["text"] for line in client.call("procs.logs", {"id": proc["id"]})["lines"]]
    assert texts == ["a", "b", "no newline"]


@pytest.mark.parametrize(
    ("payload", "error", "path"),
    [
        ({"argv": []}, InvalidRequest, "payload.argv"),
        ({"argv": ["ls", 3]}, InvalidRequest, "payload.argv.1"),
        ({"argv": "ls"}, InvalidRequest, "payload.argv"),
        ({"argv": [""]}, InvalidValue, "argv.0"),
        ({"argv": ["no-such-program-tek"]}, InvalidValue, "argv.0"),
        ({"argv": ["/etc/hostname"]}, InvalidValue, "argv.0"),
        ({"argv": ["ls"], "cwd": "/no/such/folder"}, InvalidValue, "cwd"),
        ({"argv": ["ls"], "env": {"A=B": "x"}}, InvalidRequest, "payload.env.A=B.[key]"),
    ],
)
def test_bad_starts_are_refused_and_nothing_runs(
    start: Any, payload: dict[str, Any], error: type[Exception], path: str
) -> None:
    _, client = start()
    with pytest.raises(error) as caught:
        client.call("procs.start", payload)
    details = caught.value.details  # type: ignore[attr-defined]
    assert details.get("path", details.get("field")) == path or path in str(details)
    assert client.call("procs.list")["items"] == []


def test_the_process_limit_is_overloaded_past_it(start: Any) -> None:
    _, client = start({"limits": {"max_processes": 1}})
    first = run(client, "sleep", "300")
    with pytest.raises(Overloaded) as caught:
        run(client, "sleep", "300")
    assert caught.value.details["limit"] == 1
    client.call("procs.kill", {"id": first["id"]})
    wait_exit(client, first["id"])
    wait_exit(client, run(client, "true")["id"])  # room again


def test_kill_ends_the_whole_process_group(start: Any) -> None:
    _, client = start()
    proc = run(client, "sh", "-c", "sleep 300 & echo $!; sleep 301 & echo $!; wait")
    children: list[int] = []
    while len(children) < 2:
        event = client.next_event(10)
        assert event is not None
        if event["event"] == "proc.output":
            children += [int(line["text"]) for line in event["data"]["lines"]]
    record = client.call("procs.kill", {"id": proc["id"]})
    assert record["signal_sent"] == "TERM"
    exited = wait_exit(client, proc["id"])
    assert exited["signal"] == signal.SIGTERM and exited["exit_code"] is None
    # The TERM reached the whole group at once, but each child acts on it when it next runs:
    # on a loaded machine that can be after the shell's exit was recorded. Wait for each
    # (bounded: a child the signal missed would sleep on for minutes).
    for pid in children:
        assert _ends(pid, timeout=20), f"child {pid} of the group outlived the kill"
    with pytest.raises(Conflict):
        client.call("procs.kill", {"id": proc["id"]})
    with pytest.raises(NotFound):
        client.call("procs.kill", {"id": "p-nope"})


def _ends(pid: int, *, timeout: float) -> bool:
    """True once `pid` is gone or a zombie (dead, not yet reaped by whoever adopted it); False
    if it still runs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
            process.wait(0.01)  # not our child: nothing to block on but a short wait on it
            return True
        except psutil.NoSuchProcess:
            return True
        except psutil.TimeoutExpired:
            if time.monotonic() > deadline:
                return False


def test_a_process_that_ignores_term_is_killed_after_the_grace(start: Any) -> None:
    _, client = start()
    proc = run(client, "sh", "-c", "trap '' TERM; echo ready; sleep 300")
    while True:
        event = client.next_event(10)
        assert event is not None
        if event["event"] == "proc.output":
            break
    client.call("procs.kill", {"id": proc["id"], "grace_ms": 200})
    assert wait_exit(client, proc["id"])["signal"] == signal.SIGKILL


def test_the_environment_is_scrubbed_of_secrets(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEK_TOKEN", "tek-token-secret-1234")
    monkeypatch.setenv("SOME_API_KEY", "sk-env-secret-5678")
    monkeypatch.setenv("LAB_KEY_VAR", "sk-provider-secret-9")
    monkeypatch.setenv("HARMLESS", "visible")
    config = {
        "providers": {
            "lab": {
                "kind": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key_env": "LAB_KEY_VAR",
            }
        },
    }
    _, client = start(config)
    proc = run(client, "env", env={"GIVEN": "by-the-caller"})
    wait_exit(client, proc["id"])
    text = "\n".join(
        line["text"] for line in client.call("procs.logs", {"id": proc["id"]})["lines"]
    )
    assert "HARMLESS=visible" in text and "GIVEN=by-the-caller" in text
    for secret in ("tek-token-secret-1234", "sk-env-secret-5678", "sk-provider-secret-9"):
        assert secret not in text


def test_retained_output_is_bounded_with_a_marker(start: Any) -> None:
    _, client = start({"limits": {"proc_output_lines": 100}})
    proc = run(client, PY, "-c", "for i in range(1, 251): print(i)")
    wait_exit(client, proc["id"])
    logs = client.call("procs.logs", {"id": proc["id"], "since": 0})
    marker = logs["lines"][0]
    assert (
        marker["stream"] == "dropped"
        and marker["n"] == 150
        and "150 lines dropped" in marker["text"]
    )
    assert [line["text"] for line in logs["lines"][1:]] == [str(i) for i in range(151, 251)]
    assert logs["lines"][1]["n"] == 151


def test_a_recorded_pid_that_now_belongs_to_another_process_is_not_adopted(
    home: Path, start: Any
) -> None:
    gateway, client = start()
    client.close()
    gateway.stop(grace_ms=0)
    folder = home / "state" / "procs" / "p-reused"
    folder.mkdir(parents=True)
    journal = Journal(home / "state" / "journal.db", boot_id="test").open()
    try:
        me = psutil.Process(os.getpid())
        record = {
            "id": "p-reused",
            "argv": ["sleep", "300"],
            "dir": str(folder),
            "pid": me.pid,  # alive, but not the process that was started
            "pgid": os.getpgid(0),
            "create_time": me.create_time() - 1000.0,
            "runner_pid": None,
            "started_at": 1.0,
        }
        journal.append("procs", [NewEvent("proc.started", record)]).result(10)
    finally:
        journal.close()
    _, again = start()
    got = again.call("procs.get", {"id": "p-reused"})
    assert got["state"] == "lost" and "another process" in got["reason"]
    assert psutil.pid_exists(os.getpid())  # and it was not signalled: we are still here


def test_long_lines_are_cut_and_big_output_comes_in_events_that_fit_a_frame(start: Any) -> None:
    _, client = start()
    script = "import sys\nfor i in range(40): sys.stdout.write(str(i) * 20000 + '\\n')\n"
    proc = run(client, PY, "-c", script)
    sizes = []
    while True:
        event = client.next_event(20)
        assert event is not None
        if event["event"] == "proc.output" and event["data"]["id"] == proc["id"]:
            sizes.append(sum(len(line["text"]) for line in event["data"]["lines"]))
        if event["event"] == "proc.exited" and event["data"]["id"] == proc["id"]:
            break
    assert max(sizes) <= 300_000  # every event fits a 1 MiB frame with room to spare
    lines = client.call("procs.logs", {"id": proc["id"]})["lines"]
    assert len(lines) == 40 and all(line["text"].endswith("…[line cut]") for line in lines)


def test_an_exit_written_just_as_the_runner_goes_is_recorded_not_lost(
    start: Any, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tick read status.json a moment before the runner wrote the end, then found the
    process and the runner both gone: the end it wrote meanwhile counts (it once made the
    process `lost` although status.json said exit 0)."""
    from tek_actors.procs import monitor

    _, client = start()
    proc = run(client, "sleep", "60")
    record = client.call("procs.get", {"id": proc["id"]})
    folder = TekHome.resolve(home).state_dir / "procs" / proc["id"]
    assert (folder / "status.json").exists()
    real_alive = monitor.is_alive

    def racing(pid: int, create_time: float | None) -> bool:
        if pid == proc["pid"]:
            return False  # the process has just ended ...
        status = read_status(folder)
        if "ended_at" not in status:  # ... and its runner writes the end as it goes
            write_status(folder, {**status, "exit_code": 0, "signal": None, "ended_at": 1.0})
        return False

    monkeypatch.setattr(monitor, "is_alive", racing)
    exited = wait_exit(client, proc["id"])
    monkeypatch.setattr(monitor, "is_alive", real_alive)
    os.killpg(record["pgid"], signal.SIGKILL)  # the real sleep, which the fake said had ended
    assert exited["state"] == "exited" and exited["exit_code"] == 0, exited
