"""The client's durable outbox: state-changing requests kept on disk until acknowledged.

A request goes in (with its idempotency key) before it is first sent, and comes out only when
the gateway answered it for good (a result, or an error that a resend cannot change). A client
that restarts with the same outbox file resends what is left; the gateway's idempotency records
make each resend harmless, so every request is applied exactly once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from tek_actors.errors import JournalError

__all__ = ["Outbox", "OutboxEntry"]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    idem: str
    type: str
    payload: dict[str, Any]
    created: float


class Outbox:
    """A SQLite file (WAL, synchronous=FULL, mode 0600). Thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, "
                "idem TEXT UNIQUE NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL, "
                "created REAL NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the outbox {self.path}: {exc}") from exc

    def put(self, idem: str, type: str, payload: dict[str, Any]) -> None:
        """Durably keep a request (a no-op if that idem key is already kept)."""
        blob = msgpack.packb(payload, use_bin_type=True)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO outbox (idem, type, payload, created) VALUES (?,?,?,?)",
                    (idem, type, blob, time.time()),
                )
            except sqlite3.Error as exc:
                raise JournalError(f"cannot write the outbox {self.path}: {exc}") from exc

    def done(self, idem: str) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM outbox WHERE idem = ?", (idem,))
            except sqlite3.Error as exc:
                raise JournalError(f"cannot write the outbox {self.path}: {exc}") from exc

    def pending(self) -> list[OutboxEntry]:
        """What is still unacknowledged, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idem, type, payload, created FROM outbox ORDER BY n"
            ).fetchall()
        return [OutboxEntry(i, t, msgpack.unpackb(p, raw=False), c) for i, t, p, c in rows]

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()
