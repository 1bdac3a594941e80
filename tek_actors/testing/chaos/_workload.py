"""The load: one thread per client (`_Worker`), each with its own link and its own random
stream, seeded by the run's seed and its name, so one worker's choices never shift another's:
a config writer, two session senders, a tool sender, the decider and a process starter (the
package docstring says what each sends). A worker stops when its stop event is set, and at
once when the run aborts."""

from __future__ import annotations

import abc
import itertools
import json
import random
import threading
import traceback
from typing import Any

from tek_actors.testing.chaos._link import _Link, _ReadError
from tek_actors.testing.chaos._report import (
    CONFIG_BASE,
    CONFIG_PATH,
    LINES,
    MCP_ASKED,
    MCP_AUTO,
)
from tek_actors.testing.chaos._state import Op, _Abort, _Run


class _Worker(threading.Thread, abc.ABC):
    """A daemon thread that runs `work` until its `stop` is set: an _Abort ends it quietly, a
    refused read (about something acknowledged) is a finding, any other exception a harness
    error. Its link is closed when it ends, on its own thread."""

    def __init__(self, run: _Run, name: str, stop: threading.Event) -> None:
        super().__init__(name=f"chaos-{name}", daemon=True)
        self.chaos = run
        self.link = _Link(run, name)
        self.rng = random.Random(f"{run.settings.seed}:{name}")
        self.stop = stop

    def run(self) -> None:
        try:
            self.work()
        except _Abort:
            pass
        except _ReadError as exc:  # about something acknowledged before (a session, say)
            self.chaos.found("read_refused", worker=self.name, error=str(exc))
        except BaseException as exc:
            self.chaos.harness_error(f"{self.name} crashed: {exc!r}\n{traceback.format_exc()}")
        finally:
            self.link.close()

    @abc.abstractmethod
    def work(self) -> None:
        """The worker's load: requests until the run says stop (_Abort)."""

    def op(self, kind: str, payload: dict[str, Any], idem: str, **meta: Any) -> Op:
        return self.link.perform(self.chaos.add_op(Op(kind, payload, idem, meta)))

    def create_sessions(self, prefix: str, count: int) -> list[str]:
        made = []
        for i in range(count):
            idem = f"chaos-{prefix}-s{i}"
            op = self.op("sessions.create", {"title": idem, "cwd": str(self.chaos.work)}, idem)
            if op.acked:
                made.append(str(op.result["id"]))
        return made


class _ConfigWriter(_Worker):
    def work(self) -> None:
        value = CONFIG_BASE
        for n in itertools.count(1):
            if self.stop.is_set():
                return
            value += 1 + self.rng.randrange(3)
            payload = {"path": CONFIG_PATH, "value": value}
            self.op("config.set", payload, f"chaos-config-{n:05d}", value=value)
            self.chaos.pause(self.rng.uniform(0.05, 0.3))


class _SessionSender(_Worker):
    def __init__(self, run: _Run, name: str, stop: threading.Event, sessions: int) -> None:
        super().__init__(run, name, stop)
        self.count = sessions

    def work(self) -> None:
        sessions = self.create_sessions(self.link.name, self.count)
        self.chaos.plain_sessions.extend(sessions)
        for n in itertools.count(1):
            if self.stop.is_set() or not sessions:
                return
            session = self.rng.choice(sessions)
            idem = f"chaos-{self.link.name}-m{n:05d}"
            payload = {"id": session, "text": f"chaos message {idem}"}
            self.op("sessions.send", payload, idem, session=session)
            self.chaos.pause(self.rng.uniform(0.02, 0.25))


class _ToolSender(_Worker):
    def work(self) -> None:
        sessions = self.create_sessions("tools", self.chaos.settings.tool_sessions)
        self.chaos.tool_sessions.extend(sessions)
        n = 0
        while not self.stop.is_set() and sessions:
            session = self.rng.choice(sessions)
            auto = self.rng.random() < 0.5
            view = self.link.read("sessions.get", {"id": session, "since": 1 << 30})
            if len(view["queue"]) < self.chaos.settings.tool_queue_bound:
                n += 1
                token = self.chaos.next_token()
                argv = [
                    "sh" if auto else "/bin/sh",
                    "-c",
                    f"echo {token} >> {self.chaos.tool_marker}",
                ]
                text = "tool: shell " + json.dumps({"argv": argv})
                if self.rng.random() < 0.3:  # a call of the MCP server's tool instead
                    tool = MCP_AUTO if auto else MCP_ASKED
                    text = f"tool: {tool} " + json.dumps({"token": token})
                meta = {"session": session, "token": token, "auto": auto}
                self.op(
                    "sessions.send", {"id": session, "text": text}, f"chaos-tool-{n:05d}", **meta
                )
            self.chaos.pause(self.rng.uniform(0.25, 0.8))


class _Decider(_Worker):
    def work(self) -> None:
        asked: set[str] = set()
        while not self.stop.is_set():
            for item in self.link.read("approvals.list", {"status": "pending"})["items"]:
                if item["id"] in asked:
                    continue
                asked.add(item["id"])
                deny = self.rng.random() < self.chaos.settings.deny_share
                decision = "deny" if deny else "approve"
                payload = {"id": item["id"], "decision": decision, "remember": False}
                idem = f"chaos-decide-{item['id']}"
                if self.op("approvals.decide", payload, idem, approval=item["id"]).acked:
                    self.chaos.decisions[item["id"]] = decision
            self.chaos.pause(self.rng.uniform(0.05, 0.2))


class _ProcStarter(_Worker):
    def work(self) -> None:
        while not self.stop.is_set():
            idem = self.chaos.next_proc()
            slow = "sleep 0.02; " if self.rng.random() < 0.4 else ""
            script = (
                f"echo {idem} >> {self.chaos.proc_marker}; i=1; "
                f"while [ $i -le {LINES} ]; do echo $i; {slow}i=$((i+1)); done"
            )
            argv = ["sh", "-c", script]
            self.op("procs.start", {"argv": argv, "cwd": str(self.chaos.work)}, idem, argv=argv)
            self.chaos.pause(self.rng.uniform(0.2, 0.8))
