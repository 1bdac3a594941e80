"""The actor runtime: crash-safe and persistent actor bases, the supervisor, tickers, the clock."""

from tek_actors.runtime._backoff import Backoff, Intensity, RestartWindow
from tek_actors.runtime.actor import Actor, ActorContext, command
from tek_actors.runtime.clock import Clock, FakeClock, RealClock, Timer
from tek_actors.runtime.messages import (
    ChildExited,
    Fault,
    RestartDue,
    SnapshotNow,
    StatusQuery,
    SyncStateQuery,
    Ticket,
)
from tek_actors.runtime.persistent import PersistentActor
from tek_actors.runtime.supervisor import (
    ChildSpec,
    Directory,
    RestartType,
    Strategy,
    Supervisor,
    SupervisorHandle,
)
from tek_actors.runtime.ticker import Ticker

__all__ = [
    "Actor",
    "ActorContext",
    "Backoff",
    "ChildExited",
    "ChildSpec",
    "Clock",
    "Directory",
    "FakeClock",
    "Fault",
    "Intensity",
    "PersistentActor",
    "RealClock",
    "RestartDue",
    "RestartType",
    "RestartWindow",
    "SnapshotNow",
    "StatusQuery",
    "Strategy",
    "Supervisor",
    "SupervisorHandle",
    "SyncStateQuery",
    "Ticker",
    "Ticket",
    "Timer",
    "command",
]
