"""kill -9 of the real gateway inside the window between an effect and its record.

A `procs.start` whose reply was lost is resent under its idem key: whatever instant the gateway
died at, the process runs once, and every resend gets the first start's answer. The instant is
a named kill point (tek_actors/runtime/killpoints.py), so each window is hit every time; the
randomized suite (test_random_chaos.py) covers the instants nobody named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import zmq

from tek_actors.testing import GatewayProcess
from tests.conformance.conformance_client import RawClient

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _raw(zctx: zmq.Context[Any], gateway: GatewayProcess) -> RawClient:
    return RawClient(zctx, gateway.home.default_endpoint())


def _spawned(home: Path) -> list[dict[str, Any]]:
    """Every process start the monitor ever prepared, from the folders on disk (a start the
    journal never recorded is there too)."""
    root = home / "state" / "procs"
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/spec.json"))]


@pytest.mark.parametrize("point", ["procs.intended", "procs.spawned"])
def test_procs_start_resent_after_a_kill_in_the_window_runs_once(
    home: Path, zctx: zmq.Context[Any], monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    marker = home / "marker.txt"
    argv = ["sh", "-c", f"echo ran >> {marker}; echo done"]
    request = {"argv": argv}
    monkeypatch.setenv("TEK_TEST_KILL_AT", point)
    doomed = GatewayProcess(home).start()
    client = _raw(zctx, doomed)
    while True:  # until the gateway takes it up (it may still say it is starting)
        envelope = client.envelope("procs.start", request, idem="start-1")
        client.send(envelope)
        reply = client.recv_reply(envelope["id"], timeout=5)
        if reply is None:
            break
        assert reply["error"]["code"] == "unavailable", reply
        client.recv_reply("never", timeout=reply["error"]["retry_after_ms"] / 1000)
    assert doomed.wait(timeout=30) == -9  # it died at the kill point, no reply sent
    client.socket.close(linger=0)
    monkeypatch.delenv("TEK_TEST_KILL_AT")

    gateway = GatewayProcess(home).start()
    try:
        client = _raw(zctx, gateway)
        client.call("procs.list", {})  # (retried by nothing: the gateway is ready)
        first = client.call("procs.start", request, idem="start-1")
        assert client.call("procs.start", request, idem="start-1") == first
        listed = client.call("procs.list", {})["items"]
        assert [p["id"] for p in listed] == [first["id"]]
        client.call("hello", {"client_id": "t", "since_seq": 0, "topics": ["proc.exited"]})
        while client.call("procs.get", {"id": first["id"]})["state"] != "exited":
            assert client.next_event(20) is not None
        assert marker.read_text() == "ran\n"  # once, whatever instant the gateway died at
        started = [s for s in _spawned(home) if s["argv"] == argv]
        assert len(started) == 1, started
        reply = client.request("procs.start", {"argv": ["sh", "-c", "true"]}, idem="start-1")
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_request"  # not the same
        client.socket.close(linger=0)
    finally:
        assert gateway.terminate() == 0
