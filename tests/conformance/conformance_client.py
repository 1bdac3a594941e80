"""The conformance suite's raw client (pyzmq + msgpack only) and gateway process helpers.

Nothing here (or in the tests of this folder) imports `tek_actors`: the point of the suite is
that any ZeroMQ peer that speaks MessagePack can use the protocol of /work/shared/PROTOCOL.md.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq
import zmq.auth
import zmq.utils.monitor

READY_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 45.0
DEFAULT_REPLY_TIMEOUT_S = 5.0
TOKEN = "conformance-token-0123456789abcd"  # 32 characters
assert len(TOKEN) == 32

REPLY_KEYS_OK = {"v", "re", "ok", "result"}
REPLY_KEYS_ERR = {"v", "re", "ok", "error"}
ERROR_KEYS = {"code", "message", "details", "retry_after_ms"}
EVENT_KEYS_DURABLE = {"v", "event", "seq", "boot", "ts", "data"}
EVENT_KEYS_EPHEMERAL = EVENT_KEYS_DURABLE | {"after"}


# -- the raw client ----------------------------------------------------------------------------


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(frame: bytes) -> Any:
    return msgpack.unpackb(frame, raw=False)


def is_event(msg: dict[str, Any]) -> bool:
    return "event" in msg


def is_durable(msg: dict[str, Any]) -> bool:
    return is_event(msg) and msg.get("seq") is not None


class RawClient:
    """One DEALER socket speaking the wire protocol by hand (one MessagePack map per frame).

    Frames that arrive while a reply is awaited are kept in order, so events are never lost
    between `request()` and `next_event()`.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        endpoint: str,
        *,
        name: str = "c",
        token: str | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,
        routing_id: bytes | None = None,
        monitor: bool = False,
    ) -> None:
        """`token`: ZAP PLAIN (any user name, the token as password); `curve`: (server public
        key, client public key, client secret key), z85; `monitor`: watch the socket's
        handshake events (`handshake()`)."""
        self.endpoint = endpoint
        self.socket: zmq.Socket[Any] = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if routing_id is not None:
            self.socket.setsockopt(zmq.ROUTING_ID, routing_id)
        if token is not None:
            self.socket.plain_username = b"conformance"
            self.socket.plain_password = token.encode()
        if curve is not None:
            server, public, secret = curve
            self.socket.curve_serverkey = server
            self.socket.curve_publickey = public
            self.socket.curve_secretkey = secret
        self.monitor = self.socket.get_monitor_socket() if monitor else None
        self.socket.connect(endpoint)
        self._ids = itertools.count(1)
        self._name = name
        self.inbox: deque[dict[str, Any]] = deque()  # frames received but not yet consumed

    # sending

    def next_id(self) -> str:
        return f"{self._name}-{next(self._ids)}"

    def send(self, envelope: dict[str, Any]) -> None:
        self.socket.send(pack(envelope))

    def send_raw(self, frame: bytes) -> None:
        self.socket.send(frame)

    def send_frames(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def envelope(
        self,
        type_: str,
        payload: dict[str, Any] | None = None,
        *,
        id_: str | int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        env: dict[str, Any] = {"v": 1, "id": self.next_id() if id_ is None else id_, "type": type_}
        if payload is not None:
            env["payload"] = payload
        env.update(extra)
        return env

    # receiving

    def _recv(self, deadline: float) -> dict[str, Any] | None:
        """The next frame off the socket, or None once `deadline` (monotonic) has passed."""
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return None
            if self.socket.poll(left_ms, zmq.POLLIN):
                frame = self.socket.recv(zmq.NOBLOCK)
                msg = unpack(frame)
                assert isinstance(msg, dict), f"the gateway sent a non-map frame: {msg!r}"
                return msg

    def next_frame(self, timeout: float = DEFAULT_REPLY_TIMEOUT_S) -> dict[str, Any] | None:
        """The next frame, whatever it is (kept ones first), or None after `timeout`."""
        if self.inbox:
            return self.inbox.popleft()
        return self._recv(time.monotonic() + timeout)

    def recv_reply(
        self,
        re: Any,
        *,
        timeout: float = DEFAULT_REPLY_TIMEOUT_S,
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any] | None:
        """The reply whose `re` equals `re` (same type too), or None after `timeout` seconds.

        Events met on the way are kept in `inbox`. A reply to some other id is a protocol error.
        """

        def wanted(msg: dict[str, Any]) -> bool:
            if match is not None:
                return match(msg)
            return msg.get("re") == re and type(msg.get("re")) is type(re)

        for i, msg in enumerate(self.inbox):
            if not is_event(msg) and wanted(msg):
                del self.inbox[i]
                return msg
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(deadline)
            if msg is None:
                return None
            if is_event(msg):
                self.inbox.append(msg)
                continue
            if wanted(msg):
                return msg
            raise AssertionError(f"unexpected reply while waiting for re={re!r}: {msg!r}")

    def request(
        self,
        type_: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float = DEFAULT_REPLY_TIMEOUT_S,
        id_: str | int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Send one request and return its reply (fails the test if none comes in time)."""
        env = self.envelope(type_, {} if payload is None else payload, id_=id_, **extra)
        self.send(env)
        reply = self.recv_reply(env["id"], timeout=timeout)
        assert reply is not None, f"no reply to {env!r} within {timeout}s"
        return reply

    def call(self, type_: str, payload: dict[str, Any] | None = None, **kw: Any) -> Any:
        """`request` that must succeed; returns the result."""
        reply = self.request(type_, payload, **kw)
        assert_ok(reply)
        return reply["result"]

    def next_event(
        self, timeout: float = DEFAULT_REPLY_TIMEOUT_S, *, durable_only: bool = True
    ) -> dict[str, Any] | None:
        """The next event (durable ones only unless told otherwise), or None after `timeout`.

        Ephemeral events (heartbeats) are skipped when `durable_only`. A reply arriving here is a
        protocol error: every request in these tests waits for its own reply.
        """
        while self.inbox:
            msg = self.inbox.popleft()
            assert is_event(msg), f"unexpected reply: {msg!r}"
            check_event_shape(msg)
            if is_durable(msg) or not durable_only:
                return msg
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(deadline)
            if msg is None:
                return None
            assert is_event(msg), f"unexpected reply while waiting for an event: {msg!r}"
            check_event_shape(msg)
            if is_durable(msg) or not durable_only:
                return msg

    def events_until(
        self, last_seq: int, *, timeout: float = DEFAULT_REPLY_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Durable events up to and including seq `last_seq` (fails if they do not come)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not got or got[-1]["seq"] < last_seq:
            event = self.next_event(max(0.0, deadline - time.monotonic()))
            assert event is not None, (
                f"timed out waiting for seq {last_seq}; got {[e['seq'] for e in got]}"
            )
            got.append(event)
        return got

    def hello(
        self,
        client_id: str,
        *,
        since_seq: int | None = None,
        topics: list[str] | None = None,
        token: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"client_id": client_id, "since_seq": since_seq, "topics": topics}
        if token is not None:
            payload["token"] = token
        return self.call("hello", payload, **kw)  # type: ignore[no-any-return]

    def handshake(self, timeout: float = DEFAULT_REPLY_TIMEOUT_S) -> str:
        """How the first ZMTP handshake ended: "succeeded", "failed" (credentials refused, a
        mechanism mismatch) or "disconnected", by the socket's own monitor events."""
        assert self.monitor is not None, "make the client with monitor=True"
        deadline = time.monotonic() + timeout
        while self.monitor.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            event = zmq.utils.monitor.recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return "succeeded"
            if event in (
                zmq.EVENT_HANDSHAKE_FAILED_AUTH,
                zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            ):
                return "failed"
            if event == zmq.EVENT_DISCONNECTED:
                return "disconnected"
            if time.monotonic() >= deadline:
                break
        raise AssertionError(f"no handshake outcome within {timeout}s")

    def close(self) -> None:
        if self.monitor is not None:
            self.socket.disable_monitor()
            self.monitor.close(linger=0)
        self.socket.close(linger=0)


def assert_ok(reply: dict[str, Any], re: Any = None) -> None:
    assert reply.get("ok") is True, f"expected ok, got {reply!r}"
    assert set(reply) == REPLY_KEYS_OK, reply
    assert reply["v"] == 1
    if re is not None:
        assert reply["re"] == re and type(reply["re"]) is type(re)


def assert_error(reply: dict[str, Any], code: str | set[str], *, re: Any = ...) -> dict[str, Any]:
    """Check an error reply's shape and code; returns its `error` object."""
    assert reply.get("ok") is False, f"expected an error, got {reply!r}"
    assert set(reply) == REPLY_KEYS_ERR, reply
    assert reply["v"] == 1
    if re is not ...:
        assert reply["re"] == re and type(reply["re"]) is type(re), reply
    error = reply["error"]
    assert isinstance(error, dict)
    assert set(error) <= ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"]
    codes = {code} if isinstance(code, str) else code
    assert error["code"] in codes, f"expected code in {codes}, got {error!r}"
    if "details" in error:
        assert isinstance(error["details"], dict)
    if "retry_after_ms" in error:
        assert isinstance(error["retry_after_ms"], int)
    return error


def check_event_shape(event: dict[str, Any]) -> None:
    assert event["v"] == 1
    assert isinstance(event["event"], str)
    assert isinstance(event["boot"], str)
    assert isinstance(event["ts"], float)
    assert isinstance(event["data"], dict)
    if event["seq"] is None:
        assert set(event) == EVENT_KEYS_EPHEMERAL, event
        assert isinstance(event["after"], int)
    else:
        assert set(event) == EVENT_KEYS_DURABLE, event
        assert isinstance(event["seq"], int) and not isinstance(event["seq"], bool)


# -- the gateway process -----------------------------------------------------------------------


@dataclass
class GatewayProcess:
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    token: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def curve(self) -> tuple[bytes, bytes, bytes] | None:
        """(server key, client public, client secret) for a CURVE gateway: the server key from
        the connection file, the home client's pair from <home>/keys, as any program reads
        them (zmq.auth's certificate format)."""
        if self.info.get("auth") != "curve":
            return None
        public, secret = zmq.auth.load_certificate(self.home / "keys" / "client.key_secret")
        assert secret is not None
        return self.info["server_key"].encode(), public, secret

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def connection_file(self) -> Path:
        return self.run_dir / "gateway.json"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "gateway.sock"

    @property
    def endpoint(self) -> str:
        return str(self.info["endpoint"])

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def read_connection(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.connection_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def wait_exit(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"the gateway did not exit within {timeout}s; log:\n{self.log()[-4000:]}"
            ) from None


def _wait_ready(gw: GatewayProcess, context: zmq.Context[Any]) -> None:
    """Until the connection file names our child and a gateway.ping is answered."""
    deadline = time.monotonic() + READY_TIMEOUT_S

    def exited_or_pause() -> None:
        # Waiting on another process: a short bounded wait on the child itself.
        try:
            code = gw.proc.wait(0.05)
        except subprocess.TimeoutExpired:
            return
        raise AssertionError(f"the gateway exited with {code} while starting:\n{gw.log()}")

    while True:
        info = gw.read_connection()
        if info is not None and info.get("pid") == gw.proc.pid:
            gw.info = info
            break
        assert time.monotonic() < deadline, f"no connection file in time; log:\n{gw.log()}"
        exited_or_pause()
    client = RawClient(context, gw.endpoint, name="ready", token=gw.token, curve=gw.curve)
    try:
        while True:
            env = client.envelope("gateway.ping", {})
            client.send(env)
            reply = client.recv_reply(env["id"], timeout=0.2)
            if reply is not None and reply.get("ok"):
                return
            assert time.monotonic() < deadline, f"no ping answer in time; log:\n{gw.log()}"
            exited_or_pause()
    finally:
        client.close()


def start_gateway(*, tcp: bool = False, auth: str = "token") -> GatewayProcess:
    """A gateway on ipc, or on tcp://127.0.0.1 with `auth` "token" (TEK_TOKEN) or "curve"."""
    home = Path(tempfile.mkdtemp(prefix="tc", dir="/tmp"))
    log_path = home / "conformance-gateway.log"
    args = [sys.executable, "-m", "tek_actors", "--home", str(home), "gateway", "run"]
    env = dict(os.environ, TEK_TEST_HOOKS="1")
    env.pop("TEK_TOKEN", None)
    env.pop("TEK_ENDPOINT", None)
    env.pop("TEK_HOME", None)
    token = TOKEN if tcp and auth == "token" else None
    if tcp:
        args += ["--endpoint", "tcp://127.0.0.1:*"]
    if token is not None:
        env["TEK_TOKEN"] = token
    with open(log_path, "wb") as logfile:
        proc = subprocess.Popen(
            args, env=env, stdout=logfile, stderr=logfile, stdin=subprocess.DEVNULL
        )
    gw = GatewayProcess(home, proc, log_path, token=token)
    context: zmq.Context[Any] = zmq.Context()
    try:
        _wait_ready(gw, context)
    except BaseException:
        context.destroy(linger=0)
        _kill(gw)
        raise
    context.term()
    return gw


def _kill(gw: GatewayProcess) -> None:
    if gw.proc.poll() is None:
        gw.proc.kill()
        gw.proc.wait(10)
    shutil.rmtree(gw.home, ignore_errors=True)


def stop_gateway(gw: GatewayProcess) -> None:
    """SIGTERM (unless it already exited), exit code 0, and no connection or socket file left."""
    try:
        if gw.proc.poll() is None:
            gw.proc.send_signal(signal.SIGTERM)
        code = gw.wait_exit()
        assert code == 0, f"the gateway exited with {code}; log:\n{gw.log()[-4000:]}"
        assert not gw.connection_file.exists(), "the connection file was left behind"
        assert not gw.socket_path.exists(), "the socket file was left behind"
    finally:
        _kill(gw)


@contextlib.contextmanager
def running_gateway(*, tcp: bool = False, auth: str = "token") -> Iterator[GatewayProcess]:
    gw = start_gateway(tcp=tcp, auth=auth)
    try:
        yield gw
    except BaseException:
        _kill(gw)
        raise
    stop_gateway(gw)
