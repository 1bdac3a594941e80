"""Public helpers for testing tek_actors and programs built on it.

- `running_gateway(home, **kw)`: an embedded gateway (inproc) that is stopped afterwards.
- `GatewayProcess(home)`: a real gateway process (`python -m tek_actors gateway run`), with
  `kill9()` for crash tests; test hooks (the probe actor, `test.crash`) are on.
- `write_config(home, doc)`: a config.json for the home, as a person would write it.
- `FakeClock` (re-exported from runtime): time that moves only when a test says so.
- The pytest plugin (`-p tek_actors.testing.plugin`) checks that every test leaves no thread,
  actor or child process behind.
"""

from tek_actors.runtime.clock import FakeClock
from tek_actors.testing.process import GatewayProcess, running_gateway, write_config

__all__ = ["FakeClock", "GatewayProcess", "running_gateway", "write_config"]
