"""Where a gateway keeps its files, and the lock that makes one home one gateway.

With `TEK_HOME` (or an explicit home) everything lives under one folder:

    <home>/config.json
    <home>/state/journal.db   (events, snapshots, idempotency records; 0600)
    <home>/run/gateway.sock   (the default ipc endpoint; folder 0700)
    <home>/run/gateway.json   (the connection file; 0600)
    <home>/run/gateway.lock   (flock held while a gateway runs)

Without it, the platform's user config, state and runtime folders are used (platformdirs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tek_actors.errors import Conflict, InvalidValue

__all__ = ["HomeLock", "TekHome"]

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the trailing NUL.
_MAX_IPC_PATH = 103


@dataclass(frozen=True)
class TekHome:
    config_dir: Path
    state_dir: Path
    run_dir: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> TekHome:
        """`home`, else $TEK_HOME, else the platform's user folders."""
        chosen = home if home is not None else os.environ.get("TEK_HOME") or None
        if chosen is not None:
            root = Path(chosen).expanduser().absolute()
            return cls(root, root / "state", root / "run")
        import platformdirs  # only without a home: `--home` and TEK_HOME need none of it

        state = Path(platformdirs.user_state_dir("tek"))
        # Without a login session there is no private runtime folder (platformdirs would fall
        # back to a shared /tmp path, with a warning): keep run files under state/ instead.
        runtime = state / "run"
        if os.environ.get("XDG_RUNTIME_DIR"):
            runtime = Path(platformdirs.user_runtime_dir("tek"))
        return cls(Path(platformdirs.user_config_dir("tek")), state, runtime)

    @property
    def config_path(self) -> Path:
        return self.config_dir / "config.json"

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal.db"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "gateway.sock"

    @property
    def connection_file(self) -> Path:
        return self.run_dir / "gateway.json"

    @property
    def lock_path(self) -> Path:
        return self.run_dir / "gateway.lock"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "gateway.log"

    def default_endpoint(self) -> str:
        path = str(self.socket_path)
        if len(path.encode()) > _MAX_IPC_PATH:
            raise InvalidValue(
                f"the socket path {path} is longer than a Unix socket allows "
                f"({_MAX_IPC_PATH} bytes); use a shorter TEK_HOME or --endpoint tcp://127.0.0.1:*",
                details={"path": "endpoint"},
            )
        return f"ipc://{path}"

    def ensure(self) -> None:
        """Create the folders: state and run are private (0700)."""
        self.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for private in (self.state_dir, self.run_dir):
            private.mkdir(parents=True, exist_ok=True, mode=0o700)
            if private.stat().st_mode & 0o777 != 0o700:  # a read-only folder that is right
                os.chmod(private, 0o700)  # already must not fail the start

    def read_connection(self) -> dict[str, Any] | None:
        """The connection file of a running gateway, or None."""
        try:
            data = json.loads(self.connection_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


class HomeLock:
    """An exclusive flock on run/gateway.lock: two gateways never share one home."""

    def __init__(self, home: TekHome) -> None:
        self.path = home.lock_path
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise Conflict(
                    f"another gateway (pid {holder}) is running on this home ({self.path.parent})",
                    details={"lock": str(self.path), "pid": holder},
                ) from None
            # The holder unlinks the file when it stops: if we locked a file that is no longer
            # at the path, a third gateway could lock the new one. Lock what the path names.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
