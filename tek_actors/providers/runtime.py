"""A provider's runtime: its HTTP client, its worker threads, and the fingerprint of the
configuration they were made for (a new fingerprint means a new runtime). `run` sends one
attempt to a worker and reports how it went through a callback, from that worker's thread."""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import httpcore
import httpx
from loguru import logger

from tek_actors.config.model import ProviderConfig
from tek_actors.providers.adapters import Adapter, Target
from tek_actors.providers.adapters.base import OnDelta
from tek_actors.providers.types import Completion, ModelRequest, ProviderFailure

__all__ = ["Outcome", "ProviderRuntime", "Workers", "fingerprint"]

# How an attempt went: (completion, None), (None, failure), or (None, None) for "stale" (it was
# queued on a runtime retired by a configuration change, and never sent, so it is sent again).
Outcome = Callable[[Completion | None, ProviderFailure | None], None]


class Workers:
    """A fixed number of daemon threads taking calls from a queue. Not ThreadPoolExecutor: its
    threads are joined at interpreter exit, so one call stuck on a slow provider would hold up
    the gateway process's exit for up to the provider's timeout."""

    def __init__(self, count: int, name: str) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], None]) -> None:
        if self._closed:
            raise RuntimeError("the workers are closed")
        self._calls.put(call)

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            call()

    def close(self, wait_s: float) -> None:
        """Stop taking calls; idle threads end at once, one in a call ends when it returns."""
        self._closed = True
        for _ in self._threads:
            self._calls.put(None)
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class ProviderRuntime:
    """One provider's HTTP client and worker pool for one configuration of it."""

    def __init__(self, name: str, cfg: ProviderConfig, key: str | None, fingerprint: str) -> None:
        self.name = name
        self.cfg = cfg
        self.key = key
        self.fingerprint = fingerprint
        self.retired = False
        self.in_flight = 0  # dispatched and not yet reported back (touched on the actor thread)
        limits = httpx.Limits(max_connections=cfg.concurrency)
        self._sockets = _Sockets()
        self.http = httpx.Client(
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
            transport=self._sockets.transport(limits),
            follow_redirects=False,
        )
        self.pool = Workers(cfg.concurrency, f"tek-provider-{name}")

    @property
    def capacity(self) -> int:
        """Calls it runs at once (one per worker); more wait in the actor's admission queue."""
        return self.cfg.concurrency

    def run(
        self,
        adapter: Adapter,
        target: Target,
        request: ModelRequest,
        on_delta: OnDelta,
        report: Outcome,
    ) -> None:
        """Send one attempt on a worker; `report` is called once, on the worker's thread (or on
        the caller's, as stale, if the workers are closed). Never blocks."""

        def work() -> None:
            if self.retired:  # queued before a configuration change: not sent
                report(None, None)
                return
            try:
                completion = adapter.call(self.http, target, request, on_delta)
            except ProviderFailure as failure:
                if self.retired and not failure.started:
                    report(None, None)
                else:
                    report(None, failure)
                return
            except Exception as exc:  # an adapter bug: visible, never a retry storm
                logger.opt(exception=exc).error("the {} adapter failed", self.cfg.kind)
                message = f"{self.name}: tek's {self.cfg.kind} adapter failed: {exc!r}"
                report(None, ProviderFailure("bad_request", message))
                return
            report(completion, None)

        try:
            self.pool.submit(work)
        except RuntimeError:  # the pool was shut down under us: the same as stale
            report(None, None)

    def close(self) -> None:
        self.retired = True
        # In-flight calls fail now and report back (as stale, if retired). Closing the client
        # alone leaves a call that waits for a response blocked in recv until its timeout: its
        # socket is shut down first, which ends that recv at once.
        self._sockets.shut_down()
        self.http.close()
        self.pool.close(wait_s=1.0)


class _Sockets(httpcore.SyncBackend):
    """httpcore's network backend, remembering the sockets it opened so that closing the
    runtime can shut them down under the calls that wait on them."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def transport(self, limits: httpx.Limits) -> httpx.HTTPTransport:
        transport = httpx.HTTPTransport(limits=limits)
        transport._pool._network_backend = self  # httpx does not take a backend of its own
        return transport

    def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
        stream = super().connect_tcp(*args, **kwargs)
        with self._lock:
            self._streams.add(stream)
        return stream

    def shut_down(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            sock: Any = getattr(stream, "_sock", None)
            with contextlib.suppress(OSError, AttributeError):
                sock.shutdown(socket.SHUT_RDWR)


def fingerprint(cfg: ProviderConfig, key: str | None) -> str:
    """Identifies a provider's configuration (key included, as a hash) without revealing it."""
    data = cfg.model_dump(mode="json", exclude={"api_key"})
    data["key"] = hashlib.sha256((key or "").encode()).hexdigest()
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
