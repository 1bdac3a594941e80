"""The frontend's reads of the journal, off the socket thread: idempotency look-ups, catch-up
chunks, the oldest kept seq. One worker thread runs them in the order asked; each result is
handed back to the socket thread with `post` and applied there by the callback given."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from loguru import logger

__all__ = ["JournalReader"]


class JournalReader:
    def __init__(self, post: Callable[[tuple[Any, ...]], None]) -> None:
        self._post = post
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[Any], None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="tek-frontend-reader", daemon=True)
        self._thread.start()

    def read(self, job: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Run `job()` on the reader thread; `then(result)` runs on the socket thread (with the
        exception as `result` if the read failed)."""
        self._jobs.put((job, then))

    def close(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, then = item
            try:
                result = job()
            except Exception as exc:  # the journal's error reaches the request that needed it
                logger.warning("a frontend read of the journal failed: {}", exc)
                result = exc
            self._post(("read", then, result))
