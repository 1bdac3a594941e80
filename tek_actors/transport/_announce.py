"""How a gateway process tells the world outside its socket that it serves: the connection file
(`run/gateway.json`, what clients and `tek gateway start` look for) and, under systemd, the
notify socket (`sd_notify`: `READY=1` for a unit with `Type=notify`).

Both say "ready" only once domain requests are served (the gateway calls `ready` after its actor
tree has started and its frontend accepts work), so whoever finds either can use every domain at
once. An embedded gateway announces nothing: the host is the process, and the host decides.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from loguru import logger

from tek_actors.store import remove_quietly, write_atomic

__all__ = ["Announcer", "sd_notify"]


def sd_notify(message: str, *, address: str | None) -> bool:
    """Send `message` ("READY=1", "STOPPING=1", ... one `KEY=value` a line) to systemd's notify
    socket at `address` (the `NOTIFY_SOCKET` it gave us: a path, or `@name` for an abstract
    socket). One datagram; never blocks, never raises. False if there is no socket to tell or
    the datagram could not be sent (then systemd, if it waits, times the start out and says so).
    """
    if not address or address[0] not in "/@":
        return False  # no service manager, or one we do not speak to (vsock:)
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), target)
    except OSError as exc:
        logger.warning("could not notify the service manager at {}: {}", address, exc)
        return False
    return True


class Announcer:
    """The connection file and systemd's notify socket of one gateway process.

    `connection_file` None (an embedded gateway) announces nothing at all. `notify_socket` is
    `$NOTIFY_SOCKET` as the process started with it. Called from the gateway's start and
    lifecycle threads, one at a time.
    """

    def __init__(self, connection_file: Path | None, *, notify_socket: str | None) -> None:
        self._file = connection_file
        self._notify_socket = notify_socket if connection_file is not None else None

    def ready(
        self, endpoint: str, boot_id: str, *, started_at: float, auth: dict[str, Any]
    ) -> None:
        """Domain requests are served: (re)write the connection file (mode 0600, PROTOCOL.md's
        fields, `auth`: "none", "curve" or "token", and for curve the gateway's public
        `server_key`), then tell systemd `READY=1` (which also ends a restart's `RELOADING=1`).

        `create_time` (psutil's start time of this process) lets a client tell this gateway
        from a later process that got the same pid after a kill -9 (tek_actors/cli/_liveness)."""
        if self._file is None:
            return
        import psutil  # here, not at the top: clients import this package too

        info = {
            "endpoint": endpoint,
            "pid": os.getpid(),
            "create_time": psutil.Process().create_time(),
            "boot_id": boot_id,
            "protocol": 1,
            "started_at": started_at,
            **auth,
        }
        write_atomic(self._file, json.dumps(info).encode(), mode=0o600)
        self._notify(f"READY=1\nSTATUS=serving {endpoint} (boot {boot_id})")

    def restarting(self) -> None:
        """An in-process restart began: systemd shows the unit as reloading until `ready`.
        The connection file stays (the process, its socket and its lock stay)."""
        # MONOTONIC_USEC (CLOCK_MONOTONIC, which time.monotonic reads on Linux) dates the reload.
        usec = time.monotonic_ns() // 1000
        self._notify(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=restarting in-process")

    def stopping(self) -> None:
        self._notify("STOPPING=1\nSTATUS=stopping")

    def withdraw(self) -> None:
        """The process stops serving: the connection file goes (a clean exit leaves none)."""
        if self._file is not None:
            remove_quietly(self._file)

    def _notify(self, message: str) -> None:
        if self._notify_socket is not None:
            sd_notify(message, address=self._notify_socket)
