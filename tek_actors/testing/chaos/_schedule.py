"""The kill schedule: the gateway process through a run (`_Schedule`). Each cycle lets the
load run a random while, then SIGKILLs the gateway and starts it again; a share of the
restarts is killed again at a random moment around its start (before it answers, while its
actors rehydrate, or just after), aimed by the medians of the starts so far.

The moments come from one random stream (`"{seed}:schedule"`), so a seed gives the same
schedule. Runs on the controller thread; every wait is bounded by `start_timeout_s`, and a
gateway that does not come up is a finding and an `_Abort`."""

from __future__ import annotations

import contextlib
import json
import random
import time

import zmq

from tek_actors.testing.chaos._follower import _Follower
from tek_actors.testing.chaos._link import _dealer, _envelope, _unpack
from tek_actors.testing.chaos._report import ChaosReport
from tek_actors.testing.chaos._state import _Abort, _Run
from tek_actors.testing.process import GatewayProcess


class _Schedule:
    """Starts, kills and restarts `gateway`, counting the kills in `report`; `follower` says
    when a process has finished its start."""

    def __init__(
        self, run: _Run, gateway: GatewayProcess, follower: _Follower, report: ChaosReport
    ) -> None:
        self.run = run
        self.settings = run.settings
        self.gateway = gateway
        self.follower = follower
        self.report = report
        self.rng = random.Random(f"{run.settings.seed}:schedule")
        self.answer_s: list[float] = []  # spawn -> it answers a ping
        self.started_s: list[float] = []  # spawn -> its gateway.started arrived

    def first_start(self) -> None:
        """The first gateway process, once its frontend answers."""
        try:
            self.gateway.start(timeout=self.settings.start_timeout_s)
        except Exception as exc:
            self.run.found("no_start", error=str(exc)[:2000])
            raise _Abort("the gateway did not come up") from exc

    def endpoint(self) -> str:
        """From the connection file, once the first process has written it (a file has no
        event to wait on, so this polls it, bounded)."""
        path = self.gateway.home.run_dir / "gateway.json"
        deadline = time.monotonic() + self.settings.start_timeout_s
        while True:
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(path.read_text())
                if info.get("pid") == self.gateway.pid:
                    return str(info["endpoint"])
            if time.monotonic() > deadline:
                self.run.found("no_connection_file", path=str(path))
                raise _Abort("no connection file")
            self.run.pause(0.02)

    def wait_started(self, what: str) -> None:
        """Until the follower has the current process's gateway.started (bounded)."""
        pid = self.gateway.pid
        if not self.follower.wait_started(pid, self.settings.start_timeout_s):
            self.run.found("no_started_event", pid=pid, after=what)
            raise _Abort(f"{what} never finished")

    def cycle(self, cycle: int) -> None:
        """Let the load run a random while, kill the gateway, maybe kill its restart again
        around its start, and start it again: returns once its gateway.started arrived."""
        self.run.pause(self.rng.uniform(*self.settings.load_s))
        self._kill(f"cycle {cycle}")
        if self.rng.random() < self.settings.rehydration_share:
            # Counted from the spawn: the frontend answers before the actors rehydrate, and
            # gateway.started is journaled once they have.
            answer, started = _median(self.answer_s, 0.6), _median(self.started_s, 0.7)
            started = max(started, answer + 0.02)
            aim = self.rng.random()
            if aim < 0.25:  # while it imports and opens the journal
                delay = self.rng.uniform(0.5 * answer, answer)
            elif aim < 0.75:  # while its actors rehydrate
                delay = self.rng.uniform(answer, started)
            else:  # as the first requests after the start are served
                delay = self.rng.uniform(started, started + 0.2)
            began = time.monotonic()
            answered = self._launch(within=delay)
            self.run.pause(max(0.0, began + delay - time.monotonic()))
            if answered is None:
                moment = "before it answered"
            elif not self.follower.has_started(self.gateway.pid):
                moment = "after it answered, before gateway.started"
            else:
                moment = "after gateway.started"
            self.report.restart_kills[moment] = self.report.restart_kills.get(moment, 0) + 1
            self._kill(f"cycle {cycle}, {delay:.2f}s after the spawn ({moment})")
        self._restart(f"the restart of cycle {cycle}")

    def timing(self) -> dict[str, float]:
        """The median seconds from a spawn until it answered, and until gateway.started."""
        return {
            "answer_s": round(_median(self.answer_s, 0.0), 3),
            "started_s": round(_median(self.started_s, 0.0), 3),
        }

    def _restart(self, what: str) -> None:
        """Start the gateway again; return once the follower has its gateway.started."""
        began = time.monotonic()
        answered = self._launch(within=self.settings.start_timeout_s)
        if answered is None:
            self.run.found("no_start", after=what)
            raise _Abort(f"{what}: no answer")
        self.answer_s.append(answered)
        self.wait_started(what)
        self.started_s.append(time.monotonic() - began)

    def _launch(self, *, within: float) -> float | None:
        """Spawn the gateway process: the seconds until it answered a ping, or None if it did
        not within `within` (it is left starting)."""
        began = time.monotonic()
        spawn = getattr(self.gateway, "spawn", None)
        if spawn is None:  # an older GatewayProcess: start() returns once the frontend answers
            self.first_start()
            return time.monotonic() - began
        spawn()
        sock = _dealer(self.run, reconnect_ms=10)
        try:
            # Sent once: it waits in the socket until the new process binds, then is answered.
            sock.send(_envelope("probe", "gateway.ping", {}, None))
            proc = self.gateway.proc
            while time.monotonic() - began < within:
                if sock.poll(20, zmq.POLLIN):
                    reply = _unpack(sock.recv())
                    if isinstance(reply, dict) and reply.get("re") == "probe":
                        return time.monotonic() - began
                if proc is not None and proc.poll() is not None:
                    self.run.found("exited", exit_code=proc.returncode, during="its start")
                    raise _Abort("the gateway exited while starting")
            return None
        finally:
            sock.close(linger=0)

    def _kill(self, why: str) -> None:
        proc = self.gateway.proc
        assert proc is not None
        if proc.poll() is not None:
            self.run.found("exited", exit_code=proc.returncode, before=why)
        self.gateway.kill9()
        self.run.generation += 1  # only now: later attempts go to the next process
        self.report.kills += 1


def _median(values: list[float], default: float) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else default
