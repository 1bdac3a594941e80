"""Random frames against a running gateway: every one gets a protocol answer, nothing changes,
and the gateway keeps serving."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tek_actors import Gateway
from tek_actors.errors import ERROR_CODES

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=16)
    | st.binary(max_size=16)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
types = st.sampled_from(
    [
        "gateway.ping",
        "gateway.status",
        "probe.append",
        "probe.get",
        "probe.remove",
        "hello",
        "nosuch.verb",
        "gateway.restart",
        "gateway.shutdown",
        "test.crash",
        "bye",
        *(f"config.{v}" for v in ("get", "set", "unset", "replace", "validate", "schema")),
        *(f"config.{v}" for v in ("backups", "restore")),
        *(f"providers.{v}" for v in ("status", "list", "complete", "test")),
        *(f"procs.{v}" for v in ("logs", "get", "list", "kill")),  # not start: real programs
        *(f"approvals.{v}" for v in ("request", "list", "get", "decide", "begin")),
        *(f"approvals.{v}" for v in ("attach", "finish")),
        *(f"sessions.{v}" for v in ("create", "list", "rename", "delete", "send", "get")),
        *(f"mcp.{v}" for v in ("list", "restart", "call")),
    ]
)
envelopes = st.fixed_dictionaries(
    {"v": st.just(1), "id": st.integers(0, 10**9), "type": types},
    optional={
        "payload": st.dictionaries(
            st.sampled_from(
                [
                    "key",
                    "value",
                    "work_ms",
                    "grace_ms",
                    "client_id",
                    "since_seq",
                    "topics",
                    "actor",
                    "x",
                    "path",
                    "document",
                    "name",
                    "id",
                    "messages",
                    "model",
                    "session",
                    "tool_call",
                    "tool",
                    "arguments",
                    "decision",
                    "policy_version",
                    "outcome",
                    "status",
                    "since",
                    "limit",
                    "signal",
                    "text",
                    "title",
                    "server",
                ]
            ),
            values,
            max_size=4,
        ),
        "timeout_ms": values,
        "idem": values,
    },
)
frames = st.one_of(
    st.binary(max_size=256),
    values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    envelopes.map(lambda e: msgpack.packb(e, use_bin_type=True)),
)


class Peer:
    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def exchange(self, frame: bytes) -> dict[str, Any]:
        self.socket.send(frame)
        while True:
            assert self.socket.poll(10_000), "no answer within 10 s"
            message = msgpack.unpackb(self.socket.recv(), raw=False)
            if "event" not in message:  # hello subscribes us: skip events
                return message  # type: ignore[no-any-return]

    def close(self) -> None:
        self.socket.close()
        self.context.term()


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[Gateway, Peer]]:
    home = Path(tempfile.mkdtemp(prefix="tkfz", dir="/tmp"))  # short: ipc paths are limited
    gateway = Gateway(
        home, endpoint=f"ipc://{home}/run/gateway.sock", test_hooks=True, embedded=True
    )
    gateway.start()
    peer = Peer(gateway.endpoint)
    try:
        yield gateway, peer
    finally:
        peer.close()
        gateway.stop(grace_ms=0)
        shutil.rmtree(home, ignore_errors=True)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames)
def test_every_frame_gets_a_protocol_answer_and_the_gateway_stays_up(
    fuzzed: tuple[Gateway, Peer], frame: bytes
) -> None:
    gateway, peer = fuzzed
    try:
        envelope = msgpack.unpackb(frame, raw=False)
    except Exception:
        envelope = None
    if isinstance(envelope, dict) and envelope.get("type") in (
        "gateway.restart",
        "gateway.shutdown",
        "test.crash",
    ):
        frame = msgpack.packb({**envelope, "type": "gateway.status"})  # not the chaos kind
    answer = peer.exchange(frame)
    assert answer["v"] == 1 and isinstance(answer["ok"], bool)
    if not answer["ok"]:
        assert answer["error"]["code"] in ERROR_CODES and answer["error"]["message"]
        assert answer["error"]["code"] != "internal", answer  # bad input is never a crash
    ping = peer.exchange(msgpack.packb({"v": 1, "id": "ping", "type": "gateway.ping"}))
    assert ping["ok"] and ping["result"]["boot_id"] == gateway.boot_id
    status = gateway.status()
    assert status["state"] == "running"
    assert all(actor["restarts"] == 0 for actor in status["actors"].values()), status["actors"]
