"""Tool processes: the detaching runner and the ProcessMonitorActor that watches them."""

from tek_actors.procs.monitor import ProcessMonitorActor

__all__ = ["ProcessMonitorActor"]
