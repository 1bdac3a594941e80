"""The real process: SIGTERM is graceful (exit 0, nothing left), and a gateway past its restart
intensity exits non-zero so that its process supervisor restarts it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tek_actors import TekError
from tek_actors.testing import GatewayProcess

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_a_graceful_shutdown(home: Path, sig: signal.Signals) -> None:
    gateway = GatewayProcess(home).start()
    client = gateway.client()
    try:
        client.call("probe.append", {"key": "kept"})
        assert gateway.proc is not None
        gateway.proc.send_signal(sig)
        assert gateway.wait(timeout=30) == 0
    finally:
        client.close()
    assert sorted(p.name for p in (home / "run").iterdir()) == []
    again = GatewayProcess(home).start()
    client = again.client()
    try:
        assert client.call("probe.get")["order"] == ["kept"]
    finally:
        client.close()
        assert again.terminate() == 0


def test_past_the_tree_intensity_the_process_exits_non_zero(home: Path) -> None:
    settings = {
        "supervision": {
            "child_max_restarts": 1,
            "tree_max_restarts": 0,
            "backoff_initial_s": 0.05,
            "backoff_jitter": 0.0,
        }
    }
    gateway = GatewayProcess(home, settings=settings).start()
    client = gateway.client(timeout=5)
    try:
        client.call("probe.append", {"key": "before"})
        client.call("test.crash", {"actor": "probe"})
        client.call("probe.get")  # restarted once after 50 ms; the client retried meanwhile
        client.call("test.crash", {"actor": "probe"})  # over the intensity: exit 1
        assert gateway.wait(timeout=30) == 1
    except TekError:
        gateway.kill9()
        raise
    finally:
        client.close()
    log = gateway.log_tail(20_000)
    assert "exceeded its restart intensity" in log and "exits with code 1" in log
    again = GatewayProcess(home).start()  # what systemd would do: it comes back whole
    client = again.client()
    try:
        assert client.call("probe.get")["order"] == ["before"]
        assert client.status()["state"] == "running"
    finally:
        client.close()
        assert again.terminate() == 0


def test_sigterm_during_an_in_process_restart_still_stops_the_process(home: Path) -> None:
    gateway = GatewayProcess(home).start()
    client = gateway.client()
    try:
        busy = client.submit("probe.append", {"key": "slow", "work_ms": 1500})
        client.call("gateway.restart", {"grace_ms": 5000})  # waits for the slow append
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGTERM)  # arrives while the restart is under way
        assert gateway.wait(timeout=30) == 0
        assert busy.result(10)["key"] == "slow"
    finally:
        client.close()
    assert sorted(p.name for p in (home / "run").iterdir()) == []
