"""kill -9 of the real gateway process while config.set writes: config.json is always whole (the
old document or the new one), and every acknowledged change is there after the restart."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tek_actors import TekError
from tek_actors.testing import GatewayProcess

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PATH = "limits.proc_output_lines"


@pytest.mark.parametrize("kill_after", [3, 11, 24])
def test_kill9_during_config_writes(home: Path, kill_after: int) -> None:
    gateway = GatewayProcess(home).start()
    client = gateway.client(timeout=30)
    sent: list[int] = []
    acked: list[int] = []
    enough = threading.Event()

    def write() -> None:
        value = 1000
        while True:
            value += 1
            sent.append(value)
            try:
                client.call("config.set", {"path": PATH, "value": value})
            except TekError:
                return  # the gateway is gone and the client closed
            acked.append(value)
            if len(acked) >= kill_after:
                enough.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert enough.wait(60)
        gateway.kill9()  # mid-write: the writer has a set in flight
    finally:
        client.close()
        writer.join(30)
    on_disk = json.loads((home / "config.json").read_text())["limits"]["proc_output_lines"]
    assert acked[-1] <= on_disk <= sent[-1]  # whole, and nothing acknowledged is missing
    again = GatewayProcess(home).start()
    try:
        with again.client(timeout=30) as reader:
            reply = reader.call("config.get", {"path": PATH})
            assert reply["value"] == on_disk
            assert reply["version"] >= len(acked)
            after = reader.call("config.set", {"path": PATH, "value": 99_999})
            assert after["version"] == reply["version"] + 1
    finally:
        assert again.terminate() == 0
    leftovers = [p.name for p in home.rglob("*.tmp")]
    assert not leftovers, leftovers  # the restart swept what the kill left mid-write
