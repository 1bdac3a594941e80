"""`tek gateway logs [-n N] [-f]` (issue 15, item 5): the last lines of the gateway's log file,
control characters made visible; -f follows it across a rotation and ends cleanly on SIGINT.
Through the real `tek` against a real gateway (`tek gateway start` logs to the file)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from tests.cli.test_cli import tek

pytestmark = pytest.mark.slow


def test_the_last_lines_of_a_real_gateway_s_log(home: Path) -> None:
    missing = tek(home, "gateway", "logs")
    assert missing.returncode == 1 and missing.stderr.startswith("error: not_found: ")
    assert str(home / "state" / "gateway.log") in missing.stderr
    started = subprocess.run(  # at INFO (the `tek` helper runs at WARNING): it logs its start
        [sys.executable, "-m", "tek_actors", "--home", str(home), "gateway", "start"],
        capture_output=True,
        timeout=120,
        env=dict(os.environ, TEK_LOG_LEVEL="INFO"),
    )
    assert started.returncode == 0, started.stderr
    try:
        last = tek(home, "gateway", "logs", "-n", "1")
        assert last.returncode == 0, last.stderr
        assert len(last.stdout.splitlines()) == 1 and " serving " in last.stdout
        as_json = tek(home, "--json", "gateway", "logs", "-n", "1")
        assert " serving " in json.loads(as_json.stdout)["line"]
    finally:
        assert tek(home, "gateway", "stop").returncode == 0
    log = home / "state" / "gateway.log"
    with open(log, "ab") as f:  # what a client sent is quoted in the log: data, not control
        f.write(b"evil \x1b[2J\x1b]0;title\x07 \xe2\x80\xae txt.exe\n")
    everything = tek(home, "gateway", "logs", "-n", "100000")
    assert everything.stdout.splitlines() == [
        *log.read_text().splitlines()[:-1],
        "evil \\x1b[2J\\x1b]0;title\\x07 \\u202e txt.exe",
    ]
    assert tek(home, "gateway", "logs", "-n", "0").stdout == ""


def test_bad_counts_are_usage_errors(home: Path) -> None:
    for count in ("-1", "many"):
        done = tek(home, "gateway", "logs", "-n", count)
        assert done.returncode == 2 and "-n" in done.stderr


class Follower:
    """`tek gateway logs -f` running, its stdout lines read by a thread as they come."""

    def __init__(self, home: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tek_actors", "--home", str(home), "gateway", "logs", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, TEK_LOG_LEVEL="WARNING"),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        self.readers = [
            threading.Thread(target=self._read, args=(pipe, got), name="tek-test-follow")
            for pipe, got in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(pipe: IO[str], got: queue.Queue[str]) -> None:
        for line in pipe:
            got.put(line.rstrip("\n"))

    def next(self) -> str:
        return self.lines.get(timeout=30)

    def next_error(self) -> str:
        return self.errors.get(timeout=30)

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        for reader in self.readers:  # the process is gone: both reach their end of file
            reader.join(30)
        return code, "\n".join(self.errors.queue)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for reader in self.readers:
            reader.join(30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def test_follow_goes_on_across_a_rotation_and_ends_cleanly_on_sigint(home: Path) -> None:
    state = home / "state"
    state.mkdir(parents=True)
    log = state / "gateway.log"
    log.write_text("old 1\nold 2\n")
    follower = Follower(home, "-n", "1", "-f")
    try:
        assert follower.next() == "old 2"
        with open(log, "a") as f:
            f.write("new 3\npart")
            f.flush()
            assert follower.next() == "new 3"
            f.write("ial 4\n")
        assert follower.next() == "partial 4"  # a line is shown once it is whole
        # loguru's rotation: the file is renamed away, a new one is made at the path.
        with open(log, "a") as f:
            f.write("last of the old file\n")
        log.rename(state / "gateway.2026-01-31_14-05-09_000000.log")
        log.write_text("first of the new file\n")
        assert follower.next() == "last of the old file"
        assert follower.next() == "first of the new file"
        with open(log, "a") as f:
            f.write("and on\n")
        assert follower.next() == "and on"
        code, stderr = follower.interrupt()
        assert code == 0 and "Traceback" not in stderr and "Aborted" not in stderr, stderr
    finally:
        follower.close()


def test_follow_waits_for_a_log_that_does_not_exist_yet(home: Path) -> None:
    follower = Follower(home, "-f")
    try:
        assert follower.next_error().startswith("waiting for ")  # it looked: no file yet
        (home / "state").mkdir(parents=True)
        (home / "state" / "gateway.log").write_text("born\n")
        assert follower.next() == "born"
        code, stderr = follower.interrupt()
        assert code == 0 and "Traceback" not in stderr
    finally:
        follower.close()
