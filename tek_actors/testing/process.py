"""Gateways for tests: embedded in this process, or a real process that can be killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tek_actors.client import Client
from tek_actors.config import CURRENT_VERSION
from tek_actors.errors import TekError, Unavailable
from tek_actors.gateway import Gateway
from tek_actors.home import TekHome

__all__ = ["GatewayProcess", "running_gateway"]


@contextmanager
def running_gateway(home: str | os.PathLike[str], **kwargs: Any) -> Iterator[Gateway]:
    """An embedded gateway with test hooks on; stopped (and checked stopped) afterwards."""
    kwargs.setdefault("test_hooks", True)
    with Gateway.embedded(home, **kwargs) as gateway:
        yield gateway


def write_config(home: str | os.PathLike[str] | TekHome, doc: dict[str, Any]) -> Path:
    """Write `doc` as the home's config.json (current config_version unless it says one), as
    a person would before starting the gateway. Returns the file's path."""
    home = home if isinstance(home, TekHome) else TekHome.resolve(home)
    home.ensure()
    doc = {"config_version": CURRENT_VERSION, **doc}
    home.config_path.write_text(json.dumps(doc, indent=2))
    home.config_path.chmod(0o600)
    return home.config_path


class GatewayProcess:
    """A real gateway process on `home`, started with test hooks on.

    `gateway` settings can be given as a dict; they are written to the home's config.json.
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        endpoint: str | None = None,
        token: str | None = None,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`env`: more environment for the process (e.g. a NOTIFY_SOCKET)."""
        self.home = TekHome.resolve(home)
        self.endpoint = endpoint
        self.token = token
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(home) / "gateway-test.out"
        if settings is not None:
            write_config(self.home, {"gateway": settings})

    def start(self, *, timeout: float = 30.0) -> GatewayProcess:
        """Start it and return once it serves: its connection file names it and it answers
        from this very process (`spawn` then `wait_ready`)."""
        return self.spawn().wait_ready(timeout=timeout)

    def spawn(self) -> GatewayProcess:
        """Start the process and return at once (it is still starting)."""
        self.home.ensure()
        args = [
            sys.executable,
            "-m",
            "tek_actors",
            "--home",
            str(self.home.config_dir),
            "gateway",
            "run",
            "--log-level",
            "DEBUG",
        ]
        if self.endpoint:
            args += ["--endpoint", self.endpoint]
        env = dict(os.environ, TEK_TEST_HOOKS="1", **self.env)
        if self.token:
            env["TEK_TOKEN"] = self.token
        with open(self.log_path, "ab") as sink:
            self.proc = subprocess.Popen(args, stdout=sink, stderr=sink, env=env)
        return self

    def wait_connection_file(self, *, timeout: float = 30.0) -> dict[str, Any]:
        """The connection file, as soon as it names this process (it is written once the
        gateway serves). Raises Unavailable if the process exits or `timeout` passes first."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            info = self.home.read_connection()
            if info and info.get("pid") == self.proc.pid:
                return info
            if time.monotonic() > deadline:
                self.kill9()
                raise Unavailable(f"no connection file within {timeout}s\n{self.log_tail()}")
            try:  # another process's file: nothing to block on but a short wait on the process
                code = self.proc.wait(0.002)
            except subprocess.TimeoutExpired:
                continue
            raise Unavailable(f"the gateway exited with {code} while starting\n{self.log_tail()}")

    def wait_ready(self, *, timeout: float = 30.0) -> GatewayProcess:
        """Block until it serves (see `start`)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        self.wait_connection_file(timeout=timeout)
        left = max(1.0, deadline - time.monotonic())
        with self.client(timeout=left) as client:
            try:
                status = client.call("gateway.status", timeout=left)
            except TekError as exc:
                self.kill9()
                raise Unavailable(
                    f"the gateway process did not answer: {exc}\n{self.log_tail()}"
                ) from exc
        if status["pid"] != self.proc.pid:
            raise Unavailable(f"another gateway answered (pid {status['pid']})")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self, **kwargs: Any) -> Client:
        endpoint = self.endpoint if self.endpoint and "*" not in self.endpoint else None
        if endpoint is None and self.endpoint is None:
            endpoint = self.home.default_endpoint()
        kwargs.setdefault("token", self.token)
        if endpoint is None:
            return Client(home=self.home, **kwargs)
        return Client(endpoint, **kwargs)

    def kill9(self) -> None:
        """SIGKILL: no grace, no cleanup, exactly like a crash of the machine's process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, *, timeout: float = 60.0) -> int:
        """SIGTERM (graceful) and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, *, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
