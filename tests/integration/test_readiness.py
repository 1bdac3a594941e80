"""Ready means ready: the connection file, `tek gateway start` and systemd's READY=1 appear only
once domain requests are served; before that (a first start) and during an in-process restart,
`unavailable` says truthfully which of the two it is, with `retry_after_ms`.

Clients here are raw pyzmq DEALER sockets speaking MessagePack (the conformance suite's), so
nothing in the client library (which retries `unavailable` by itself) hides an answer."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tek_actors import Gateway
from tek_actors.home import TekHome
from tek_actors.runtime import Actor, ChildSpec
from tek_actors.testing import GatewayProcess
from tests.conformance.conformance_client import RawClient

DOMAIN_REQUESTS = ["config.get", "sessions.list", "approvals.list", "procs.list"]


def _served_at_once(raw: RawClient) -> None:
    """Every domain request, sent back to back with no pause, is answered ok."""
    sent = {}
    for type_ in DOMAIN_REQUESTS:
        envelope = raw.envelope(type_, {})
        raw.send(envelope)
        sent[envelope["id"]] = type_
    replies = {}
    while len(replies) < len(sent):  # each domain's actor answers in its own time
        reply = raw.recv_reply(None, timeout=10, match=lambda msg: msg.get("re") in sent)
        assert reply is not None, f"no reply to {set(sent.values()) - set(replies)}"
        replies[sent[reply["re"]]] = reply
    for type_, reply in replies.items():
        assert reply["ok"], f"{type_} right after ready: {reply['error']}"


def _refused(raw: RawClient, type_: str, state: str) -> dict[str, Any]:
    reply = raw.request(type_, {}, timeout=10)
    assert not reply["ok"], f"{type_} was served while the gateway was {state}"
    error: dict[str, Any] = reply["error"]
    assert error["code"] == "unavailable"
    assert state in error["message"] and error["details"]["state"] == state
    assert error["retry_after_ms"] > 0
    return error


def _the_moment_it_names(gateway: GatewayProcess, *, timeout: float) -> dict[str, Any]:
    """The connection file, polled without pause (to read it the instant it appears) until it
    names `gateway`'s process; another process's file offers nothing to block on."""
    deadline = time.monotonic() + timeout
    while True:
        info = gateway.home.read_connection()
        if info is not None and info.get("pid") == gateway.pid:
            return info
        assert gateway.proc is not None and gateway.proc.poll() is None, gateway.log_tail()
        assert time.monotonic() < deadline, f"no connection file in time\n{gateway.log_tail()}"


@pytest.mark.slow
def test_the_moment_the_connection_file_appears_every_domain_is_served(
    home: Path, zctx: zmq.Context[Any]
) -> None:
    for attempt in range(5):
        first_start = TekHome.resolve(home / f"h{attempt}")  # fresh: nothing to rehydrate
        # Connected before the gateway exists (ZeroMQ connects as soon as the socket is bound),
        # so the first request leaves the instant the file appears.
        raw = RawClient(zctx, first_start.default_endpoint(), name=f"a{attempt}")
        gateway = GatewayProcess(first_start.config_dir).spawn()
        try:
            info = _the_moment_it_names(gateway, timeout=30)
            _served_at_once(raw)
            assert info["endpoint"] == raw.endpoint
        finally:
            raw.close()
            assert gateway.terminate(timeout=30) == 0


@pytest.mark.slow
def test_ready_1_reaches_systemd_only_once_domain_requests_are_served(
    home: Path, zctx: zmq.Context[Any]
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(home / "notify.sock"))
        notify.settimeout(30)  # a blocking receive: the datagram is the event waited for
        gateway = GatewayProcess(home / "h", env={"NOTIFY_SOCKET": str(home / "notify.sock")})
        gateway.spawn()
        try:
            ready = notify.recv(4096).decode()
            assert ready.startswith("READY=1\n") and "STATUS=serving" in ready
            info = TekHome.resolve(home / "h").read_connection()
            assert info is not None and info["pid"] == gateway.pid  # written before READY=1
            raw = RawClient(zctx, info["endpoint"], name="n")
            try:
                _served_at_once(raw)
                assert raw.call("gateway.restart", {"grace_ms": 0})["accepted"]
                reloading = notify.recv(4096).decode()
                assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
                assert notify.recv(4096).decode().startswith("READY=1\n")
                _served_at_once(raw)
            finally:
                raw.close()
            assert gateway.terminate(timeout=30) == 0
            assert notify.recv(4096).decode().startswith("STOPPING=1")
        finally:
            gateway.kill9()


class Gate:
    """Held by a test: the `gate` actor's start waits until the test opens it."""

    def __init__(self, *, open_: bool) -> None:
        self.entered = threading.Event()  # set by each incarnation as its start begins
        self.opened = threading.Event()
        if open_:
            self.opened.set()

    def close(self) -> None:
        self.entered.clear()
        self.opened.clear()


class GateActor(Actor):
    """The last child of the tree; its start (where rehydration runs) lasts until the gate opens,
    so a test sees the gateway bound and answering while its tree is still starting."""

    def on_begin(self) -> None:
        gate: Gate = self.ctx.options["gate"]
        gate.entered.set()
        if not gate.opened.wait(30):
            raise RuntimeError("the test never opened the gate")


@contextlib.contextmanager
def _gated_gateway(home: Path, gate: Gate) -> Iterator[threading.Thread]:
    """A gateway of its own in this process (not embedded: it binds the home's ipc socket and
    writes its connection file), started on the thread yielded; stopped afterwards."""
    spec = ChildSpec("gate", GateActor, options={"gate": gate})
    gateway = Gateway(home, test_hooks=True, extra_children=[spec])
    failures: list[BaseException] = []

    def start() -> None:
        try:
            gateway.start()
        except BaseException as exc:  # reported by the test, not lost on the thread
            failures.append(exc)

    starter = threading.Thread(target=start, name="test-gateway-start")
    starter.start()
    try:
        yield starter
    finally:
        gate.opened.set()
        starter.join(30)
        gateway.stop(grace_ms=0)
    assert not failures, failures


def test_before_the_tree_has_started_domain_requests_are_told_it_is_starting(
    home: Path, zctx: zmq.Context[Any]
) -> None:
    gate = Gate(open_=False)
    tek_home = TekHome.resolve(home)
    with _gated_gateway(home, gate) as starter:
        assert gate.entered.wait(10)  # the frontend is bound; the last child is starting
        raw = RawClient(zctx, tek_home.default_endpoint(), name="s")
        try:
            for type_ in DOMAIN_REQUESTS:
                _refused(raw, type_, "starting")
            assert raw.call("gateway.ping")["state"] == "starting"  # alive, not yet serving
            assert raw.call("gateway.status")["state"] == "starting"
            assert _refused(raw, "gateway.restart", "starting")
            assert not tek_home.connection_file.exists()  # nobody is told to come yet
            gate.opened.set()
            starter.join(30)
            assert not starter.is_alive()
            assert tek_home.read_connection() is not None
            _served_at_once(raw)
            assert raw.call("gateway.ping")["state"] == "running"
        finally:
            raw.close()


def test_during_an_in_process_restart_domain_requests_are_told_it_is_restarting(
    home: Path, zctx: zmq.Context[Any]
) -> None:
    gate = Gate(open_=True)
    tek_home = TekHome.resolve(home)
    with _gated_gateway(home, gate) as starter:
        starter.join(30)
        raw = RawClient(zctx, tek_home.default_endpoint(), name="r")
        watcher = RawClient(zctx, tek_home.default_endpoint(), name="w")
        try:
            watcher.call("hello", {"client_id": "watcher", "topics": ["gateway.started"]})
            boot = raw.call("gateway.ping")["boot_id"]
            gate.close()
            assert raw.call("gateway.restart", {"grace_ms": 0})["accepted"]
            assert gate.entered.wait(10)  # the old tree stopped; the new one is starting
            for type_ in DOMAIN_REQUESTS:
                _refused(raw, type_, "restarting")
            connection = tek_home.read_connection()  # the process, socket and lock stay
            assert connection is not None and connection["boot_id"] == boot
            gate.opened.set()
            started = watcher.next_event(30)
            assert started is not None and started["event"] == "gateway.started"
            assert started["data"]["boot_id"] != boot
            _served_at_once(raw)  # whoever sees gateway.started finds every domain served
        finally:
            raw.close()
            watcher.close()
