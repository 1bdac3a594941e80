"""The harness (`run_chaos`): it writes the gateway's config, starts the gateway, the follower,
the decider and the load, runs the kill schedule, brings the system to rest, runs the checks,
and tears everything down: every thread, socket and process it started is gone when it
returns, whatever happened."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path

from tek_actors.testing.chaos._checks import _Checks
from tek_actors.testing.chaos._follower import _Follower
from tek_actors.testing.chaos._link import _Link
from tek_actors.testing.chaos._replays import _check_replay, _check_resends
from tek_actors.testing.chaos._report import (
    CONFIG_BASE,
    CONFIG_PATH,
    MCP_AUTO,
    ChaosReport,
    ChaosSettings,
)
from tek_actors.testing.chaos._rest import _Rest
from tek_actors.testing.chaos._schedule import _Schedule
from tek_actors.testing.chaos._state import _Abort, _Run
from tek_actors.testing.chaos._workload import (
    _ConfigWriter,
    _Decider,
    _ProcStarter,
    _SessionSender,
    _ToolSender,
    _Worker,
)
from tek_actors.testing.process import GatewayProcess, write_config


def run_chaos(settings: ChaosSettings, *, home: str | os.PathLike[str]) -> ChaosReport:
    """Run the whole schedule on `home` (a short, empty folder: the ipc socket lives there) and
    return the report. Every thread, socket and process it started is gone when it returns."""
    return _Chaos(settings, Path(home)).run()


class _Chaos:
    """One run, on the calling thread: its parts, composed, and the order they go in."""

    def __init__(self, settings: ChaosSettings, home: Path) -> None:
        self.settings = settings
        self.home = home
        self.state = _Run(settings, home)
        self.report = ChaosReport(seed=settings.seed, cycles=settings.cycles, home=str(home))
        self.gateway = GatewayProcess(home)
        self.follower = _Follower(self.state, self.state.stop_follower)
        self.decider = _Decider(self.state, "decider", self.state.stop_decider)
        self.load: list[_Worker] = []
        self.schedule = _Schedule(self.state, self.gateway, self.follower, self.report)
        self.rest = _Rest(self.state, self.follower, self.gateway.home.state_dir / "procs")

    def run(self) -> ChaosReport:
        began = time.monotonic()
        s = self.state
        s.work.mkdir(parents=True, exist_ok=True)
        rule = {"tool": "shell", "argv_prefix": ["sh", "-c"], "action": "auto"}
        limits = {CONFIG_PATH.split(".")[1]: CONFIG_BASE}
        mcp = {  # its tools append their token to the same marker as the shell calls
            "command": [sys.executable, "-m", "tek_actors.testing.mcp_server"],
            "env": {"TEK_CHAOS_MARKER": str(s.tool_marker)},
        }
        approvals = {"default": "ask", "rules": [rule], "tools": {MCP_AUTO: "auto"}}
        config = {"approvals": approvals, "limits": limits, "mcp": {"servers": {"chaos": mcp}}}
        write_config(self.home, config)
        try:
            self.schedule.first_start()
            s.endpoint = self.schedule.endpoint()
            self.follower.start()
            stop = s.stop_load
            self.load = [
                _ConfigWriter(s, "config", stop),
                _SessionSender(s, "senderA", stop, (self.settings.sessions + 1) // 2),
                _SessionSender(s, "senderB", stop, self.settings.sessions // 2),
                _ToolSender(s, "tools", stop),
                _ProcStarter(s, "procs", stop),
            ]
            for worker in [*self.load, self.decider]:
                worker.start()
            self.schedule.wait_started("the first start")
            for cycle in range(self.settings.cycles):
                self.schedule.cycle(cycle)
            s.stop_load.set()
            self._join(self.load, 30.0)
            rested = self.rest.quiesce("after the last cycle")
            s.stop_decider.set()
            self._join([self.decider], 30.0)
            if rested:
                self._check_everything()
        except _Abort as exc:
            self.report.notes.append(f"aborted: {exc}")
        except BaseException as exc:
            s.harness_error(f"the controller crashed: {exc!r}\n{traceback.format_exc()}")
        finally:
            self._teardown()
        report = self.report
        report.duration_s = round(time.monotonic() - began, 2)
        report.timing = self.schedule.timing()
        report.violations, report.harness_errors = list(s.violations), list(s.harness_errors)
        report.counts.update(s.tally)
        if not report.ok:
            report.log_tail = self.gateway.log_tail(3000)
        return report

    def _check_everything(self) -> None:
        link = _Link(self.state, "checker")
        try:
            final = self.rest.gather(link, logs=True)
            self.follower.wait_seq(final.head, self.settings.quiesce_timeout_s)
            _Checks(self.state, final, self.follower, self.report).run_all()
            _check_resends(self.rest, link, final, self.report)
            _check_replay(self.state, self.follower, final.head)
        finally:
            link.close()

    def _join(self, workers: Iterable[threading.Thread], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                self.state.found("worker_stuck", worker=worker.name, after_s=timeout)
                raise _Abort(f"{worker.name} did not finish")

    def _teardown(self) -> None:
        s = self.state
        for stop in (s.stop_load, s.stop_decider, s.stop_follower, s.abort):
            stop.set()  # every wait ends now
        for worker in [*self.load, self.decider, self.follower]:
            if worker.ident is not None:
                worker.join(15.0)
                if worker.is_alive():
                    s.harness_error(f"{worker.name} did not stop")
        if self.gateway.proc is not None and self.gateway.proc.poll() is None:
            try:
                self.gateway.terminate(timeout=30.0)
            except Exception:
                self.gateway.kill9()
        left = _kill_leftovers([str(s.tool_marker), str(s.proc_marker), str(self.rest.procs_dir)])
        if left:
            self.report.notes.append(f"killed {len(left)} processes left from the run: {left}")
        s.context.destroy(linger=0)


def _kill_leftovers(marks: list[str]) -> list[int]:
    """SIGKILL every process still running whose argv names one of `marks` (the process
    runners name their folder, the commands name the marker files): checked pid by pid; a
    group leader other than ours gets its whole group (a command's `sleep`)."""
    ours = os.getpid()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == ours:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if not any(mark.encode() in cmdline for mark in marks):
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) == pid and pid != os.getpgrp():
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return killed
