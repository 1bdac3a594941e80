"""Crashes through the test-only fault hook, seen from a client: restart, rehydration, status,
events, and escalation to `degraded` and then a non-zero exit."""

from __future__ import annotations

from typing import Any

from tek_actors import Gateway
from tek_actors.runtime import FakeClock
from tek_actors.testing import write_config
from tests.integration.conftest import Rig
from tests.waiting import until


def test_a_crashed_actor_restarts_rehydrated_and_is_reported(make_rig: Any) -> None:
    rig: Rig = make_rig("ipc")
    client, watcher = rig.client(), rig.client()
    watcher.hello(topics=["gateway.actor_restarted"])
    for i in range(5):
        client.call("probe.append", {"key": f"k{i}", "value": i})
    before = client.call("probe.get")
    assert client.call("test.crash", {"actor": "probe"}) == {"crashed": "probe"}
    event = watcher.next_event(10)
    assert event is not None and event["event"] == "gateway.actor_restarted"
    assert event["data"]["actor"] == "probe" and event["data"]["restarts"] == 1
    assert client.call("probe.get") == before  # the client retried through the restart window
    probe = client.status()["actors"]["probe"]
    assert probe["state"] == "running" and probe["restarts"] == 1
    assert "injected fault" in probe["last_error"]


def _restarting(status: dict[str, Any], restarts: int) -> bool:
    """The probe crashed `restarts` times and its restart is scheduled (the supervisor arms
    the timer before it says "restarting")."""
    probe = status["actors"]["probe"]
    return bool(probe["restarts"] == restarts and probe["state"] == "restarting")


def test_past_the_intensity_the_gateway_degrades_then_exits_non_zero(home: Any) -> None:
    clock = FakeClock()
    supervision = {"child_max_restarts": 1, "tree_max_restarts": 1, "backoff_jitter": 0.0}
    write_config(home, {"gateway": {"supervision": supervision}})
    with Gateway.embedded(home, clock=clock, test_hooks=True) as gw:
        client, watcher = gw.client(), gw.client()
        try:
            watcher.hello(topics=["gateway.actor_restarted"])
            client.call("test.crash", {"actor": "probe"})
            _wait_for(client, lambda s: _restarting(s, 1))  # its restart timer is armed
            clock.advance(0.5)  # restart 1 after its 0.5 s backoff
            assert watcher.next_event(10)["data"]["restarts"] == 1
            client.call("test.crash", {"actor": "probe"})  # restart 2 > 1: the tree restarts
            status = _wait_for(client, lambda s: s["state"] == "degraded")
            assert status["actors"]["probe"]["restarts"] == 2
            assert status["actors"]["retention"]["state"] == "restarting"
            clock.advance(1.0)  # the tree's own backoff
            assert watcher.next_event(10)["data"]["actor"] == "probe"
            assert client.call("probe.get")["order"] == []  # serving again, still degraded
            assert client.status()["state"] == "degraded"
            client.call("test.crash", {"actor": "probe"})
            _wait_for(client, lambda s: _restarting(s, 3))
            clock.advance(0.5)
            assert watcher.next_event(10)["data"]["restarts"] == 3
            client.call("test.crash", {"actor": "probe"})  # a second tree restart in 60 s: exit
            assert gw.wait(20) == 1
        finally:
            client.close()
            watcher.close()
    assert gw.exit_code == 1


def _wait_for(client: Any, predicate: Any) -> dict[str, Any]:
    """The supervisor records a crash on its own thread: look until it shows (time-bounded)."""
    seen: list[dict[str, Any]] = []

    def shown() -> bool:
        seen.append(client.status())
        return bool(predicate(seen[-1]))

    until(shown, "the status the test waits for", timeout=20.0)
    return seen[-1]


def test_a_journal_write_failure_is_never_acknowledged_and_stops_the_gateway(home: Any) -> None:
    from tek_actors import Internal, Unavailable

    with Gateway.embedded(home, test_hooks=True) as gw:
        client = gw.client(timeout=10)
        try:
            client.call("probe.append", {"key": "kept"})
            assert gw._journal is not None and gw._journal._writer is not None
            gw._journal._writer.close()  # the disk goes away under the writer
            try:
                client.call("probe.append", {"key": "lost"})
                raise AssertionError("a change that did not reach the disk was acknowledged")
            except (Internal, Unavailable):
                pass  # refused, as it must be: nothing reached the disk
            assert gw.wait(20) == 1  # it cannot know what reached the disk: it exits
        finally:
            client.close()
    with Gateway.embedded(home, test_hooks=True) as again:  # what systemd would do next
        client = again.client()
        try:
            assert client.call("probe.get")["order"] == ["kept"]
        finally:
            client.close()
