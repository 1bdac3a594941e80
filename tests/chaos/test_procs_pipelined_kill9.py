"""kill -9 inside the window that pipelining the start opened: the runner has its folder (and
may be running, waiting for its go) while the start's intent is not yet durable.

The effect must still start only once its intent is durable: whichever instant the gateway
died at, the process runs once or never (once, when the start is resent under its idem key
to a new gateway), no folder is left for a start the journal never recorded, and no runner
is left waiting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq

from tek_actors.testing import GatewayProcess
from tests.conformance.conformance_client import RawClient
from tests.procs.helpers import zygotes
from tests.waiting import until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _answer(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "re"}


def _folders(home: Path) -> list[dict[str, Any]]:
    root = home / "state" / "procs"
    return [json.loads(p.read_text()) for p in sorted(root.glob("p-*/spec.json"))]


@pytest.mark.parametrize(
    "point",
    [
        "procs.handed",  # the gateway dies: the runner has its folder, the intent is not queued
        "procs.intended",  # the gateway dies: the intent is durable, the go not given
        "runner.ready",  # the runner dies waiting for its go
    ],
)
def test_a_start_handed_out_before_its_intent_is_durable_runs_once_or_never(
    home: Path, zctx: zmq.Context[Any], monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    marker = home / "marker.txt"
    argv = ["sh", "-c", f"echo ran >> {marker}; echo done"]
    request = {"argv": argv}
    monkeypatch.setenv("TEK_TEST_KILL_AT", point)
    doomed = GatewayProcess(home).start()
    [zygote] = zygotes(doomed.pid)
    client = RawClient(zctx, doomed.home.default_endpoint())
    while True:  # until the gateway takes it up (it may still say it is starting)
        envelope = client.envelope("procs.start", request, idem="start-1")
        client.send(envelope)
        first = client.recv_reply(envelope["id"], timeout=10)
        if first is None or first["ok"] or first["error"]["code"] != "unavailable":
            break
        client.recv_reply("never", timeout=first["error"]["retry_after_ms"] / 1000)
    if point.startswith("procs."):
        assert first is None  # it died at the point, no reply sent
        assert doomed.wait(timeout=30) == -9
        # The runner that waited for its go saw the gateway's end of the FIFO close: it left,
        # having started nothing (and the zygote left at its stdin's EOF).
        zygote.wait(timeout=30)
        until(lambda: not _runners_in(home), "every runner of the dead gateway left")
        assert not marker.exists()
    else:
        doomed.kill9()
    client.socket.close(linger=0)
    monkeypatch.delenv("TEK_TEST_KILL_AT")

    gateway = GatewayProcess(home).start()
    try:
        client = RawClient(zctx, gateway.home.default_endpoint())
        again = _answer(client.request("procs.start", request, idem="start-1"))
        if first is not None:
            assert again == _answer(first)  # the first answer
        assert again["ok"], again
        assert _answer(client.request("procs.start", request, idem="start-1")) == again
        proc_id = again["result"]["id"]
        client.call("hello", {"client_id": "t", "since_seq": 0, "topics": ["proc.exited"]})
        while client.call("procs.get", {"id": proc_id})["state"] == "running":
            assert client.next_event(20) is not None
        assert marker.read_text() == "ran\n"  # once
        assert [p["id"] for p in client.call("procs.list", {})["items"]] == [proc_id]
        # No folder is left of a start whose intent never reached the disk, or never started.
        assert [spec["intent"] for spec in _folders(home)] == [proc_id]
        client.socket.close(linger=0)
    finally:
        assert gateway.terminate() == 0


def _runners_in(home: Path) -> list[psutil.Process]:
    """Live processes working in this home's process folders: runners, waiting or not (a
    runner works in its start's folder, a spare in the folder of them all)."""
    root = str(home / "state" / "procs")
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.cwd().startswith(root) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found
