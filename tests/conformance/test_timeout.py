"""A request's `timeout_ms` is honoured: the caller gets `timeout`, not a late answer.

It has its own gateway: the timed-out work still finishes (and journals) later, which must not
shift the sequence numbers other tests count on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.conformance.conformance_client import GatewayProcess, RawClient, assert_error, assert_ok


def test_timeout_ms_is_honoured(
    own_gateway: GatewayProcess, connect: Callable[..., RawClient]
) -> None:
    client = connect(own_gateway)
    env = client.envelope(
        "probe.append", {"key": "slow", "value": 1, "work_ms": 1500}, id_="slow-1", timeout_ms=200
    )
    started = time.monotonic()
    client.send(env)
    reply = client.recv_reply("slow-1", timeout=5.0)
    elapsed = time.monotonic() - started
    assert reply is not None, "no reply to a request past its deadline"
    assert_error(reply, "timeout", re="slow-1")  # not the work's answer, which came 1.5 s later
    assert elapsed >= 0.15, f"the timeout came after only {elapsed:.3f}s"  # never early
    assert_ok(client.request("gateway.ping", {}))  # nothing else is held up meanwhile
