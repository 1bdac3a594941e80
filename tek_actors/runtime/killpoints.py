"""Named points where a test may SIGKILL the gateway process, to prove what survives there.

`kill_point("procs.spawned")` does nothing unless the process runs with test hooks on
(`TEK_TEST_HOOKS=1`) and `TEK_TEST_KILL_AT` names that point; then the process dies there at
once, as a `kill -9` from outside would, but at exactly the instant a test wants (between an
effect and its record, say), which no outside timing can hit every time. Read on each call
(points are on rare paths: a process start, not a message), so nothing is cached per process.

The points, by where they are:

- the gateway: `procs.handed` (a start is handed to the zygote, whose runner waits for its
  go; the intent is not even queued for the journal), `procs.intended` (the intent is durable,
  the go not given; on the old runner's path: nothing handed out yet), `procs.spawned` (its
  runner reported, nothing journaled yet), `tools.begun`,
  `tools.write_intended`, `tools.written`;
- the process zygote (procs/zygote.py, which cannot import this module and reads the same
  variables): `zygote.received` (the zygote read a start and has not handed it out);
- a runner the zygote forked (procs/runner.py): `zygote.forked` (given its folder, before
  its claim), `runner.ready` (it read its spec and waits for its go), `runner.claimed`
  (claimed, the process not started), `runner.started` (started
  and recorded in status.json, not reported). The zygote's points fire on the first zygote's
  first start only, so a start made again after one is not killed again.
"""

from __future__ import annotations

import os
import signal

__all__ = ["kill_point"]


def kill_point(name: str) -> None:
    """Die here, by SIGKILL, if a test asked for it (see the module docstring)."""
    if os.environ.get("TEK_TEST_KILL_AT") == name and os.environ.get("TEK_TEST_HOOKS") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
