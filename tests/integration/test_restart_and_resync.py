"""In-process restarts under load, clients that fall behind, and snapshot resyncs."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import zmq

from tek_actors import Client
from tek_actors.runtime import SnapshotNow
from tests.integration.conftest import Rig
from tests.waiting import events_until, until


def durable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if isinstance(e.get("seq"), int) and e["event"] != "sync.snapshot"]


def test_restart_under_load_loses_nothing_and_clients_resume(make_rig: Any) -> None:
    rig: Rig = make_rig("ipc")
    watcher = rig.client()
    watcher.hello(since_seq=0)
    acknowledged: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    restart_now = threading.Event()

    def work(worker: int) -> None:
        client = rig.client()
        for i in range(40):
            key = f"w{worker}-{i}"
            result = client.call("probe.append", {"key": key, "work_ms": 5}, timeout=60)
            with lock:
                acknowledged[key] = result
                if len(acknowledged) == 30:
                    restart_now.set()

    workers = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in workers:
        thread.start()
    assert restart_now.wait(30)
    boot_before = rig.gateway.boot_id
    control = rig.client()
    assert control.call("gateway.restart", {"grace_ms": 2000})["accepted"] is True
    for thread in workers:
        thread.join(90)
    assert len(acknowledged) == 160
    state = control.call("probe.get")
    assert sorted(state["order"]) == sorted(acknowledged)  # every ack is there, once
    assert rig.gateway.boot_id != boot_before
    head = control.ping()["head_seq"]
    events = events_until(watcher, lambda e: isinstance(e["seq"], int) and e["seq"] >= head)
    assert any(e["event"] == "gateway.shutdown_imminent" for e in events)
    seqs = [e["seq"] for e in durable(events)]
    assert seqs == list(range(1, len(seqs) + 1))  # in order, no gap, no duplicate
    appended = [e["data"]["key"] for e in durable(events) if e["event"] == "probe.appended"]
    assert sorted(appended) == sorted(acknowledged)
    assert [e["data"]["boot_id"] for e in durable(events) if e["event"] == "gateway.started"][
        -1
    ] == rig.gateway.boot_id


def test_in_flight_requests_complete_or_get_unavailable_during_restart(make_rig: Any) -> None:
    rig: Rig = make_rig("ipc")
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(rig.gateway.endpoint)
    try:
        for i in range(20):  # 20 x 100 ms of work queue up behind each other in the probe
            dealer.send(
                msgpack.packb(
                    {
                        "v": 1,
                        "id": i,
                        "type": "probe.append",
                        "payload": {"key": f"k{i}", "work_ms": 100},
                    }
                )
            )
        assert dealer.poll(5000)
        replies = [msgpack.unpackb(dealer.recv())]  # the first one done: restart mid-queue
        rig.gateway.restart(grace_ms=300)
        while len(replies) < 20 and dealer.poll(10_000):
            reply = msgpack.unpackb(dealer.recv())
            if "re" in reply:
                replies.append(reply)
    finally:
        dealer.close()
        context.term()
    outcomes = {r["re"]: (r["ok"] or r["error"]["code"]) for r in replies}
    assert len(outcomes) == 20
    assert set(outcomes.values()) <= {True, "unavailable"}
    assert "unavailable" in outcomes.values() and True in outcomes.values()
    done = {f"k{i}" for i, ok in outcomes.items() if ok is True}
    assert set(rig.client().call("probe.get")["order"]) == done  # unavailable means not done


def test_a_client_that_falls_behind_is_caught_up_from_the_journal(make_rig: Any) -> None:
    rig: Rig = make_rig("ipc", client_queue_bound=10, socket_hwm=5, replay_chunk=8)
    context = zmq.Context()
    slow = context.socket(zmq.DEALER)
    slow.setsockopt(zmq.LINGER, 0)
    slow.setsockopt(zmq.RCVHWM, 5)
    slow.connect(rig.gateway.endpoint)
    try:
        slow.send(
            msgpack.packb(
                {"v": 1, "id": 1, "type": "hello", "payload": {"client_id": "slow", "since_seq": 0}}
            )
        )
        writer = rig.client()
        for i in range(300):  # the slow client reads nothing meanwhile
            writer.call("probe.append", {"key": f"k{i}", "value": "x" * 200})
        head = writer.ping()["head_seq"]
        seqs: list[int] = []
        while (not seqs or seqs[-1] < head) and slow.poll(10_000):
            message = msgpack.unpackb(slow.recv())
            if isinstance(message.get("seq"), int):
                seqs.append(message["seq"])
    finally:
        slow.close()
        context.term()
    assert seqs == list(range(1, head + 1))  # every event once, in order, nothing skipped
    assert rig.gateway._frontend.feed.counters["lagged"] >= 1  # it really fell behind


def test_a_client_resuming_from_pruned_history_gets_snapshots(make_rig: Any) -> None:
    rig: Rig = make_rig("ipc", snapshot_every=2)
    writer = rig.client()
    for i in range(6):
        writer.call("probe.append", {"key": f"k{i}", "value": i})
    last_seq = writer.call("probe.get")["seq"]
    rig.gateway._directory.lookup("probe").ask(SnapshotNow(), timeout=5)
    assert rig.gateway._journal.prune(keep_events=0, idem_max_age_s=3600).result(5) > 0
    reader = rig.client()
    assert reader.hello(since_seq=0)["resync"] == "snapshot"
    snapshots = {}
    domains = {"gateway"} | {s.actor_class.domain for s in rig.gateway._specs} - {""}
    assert {"config", "approvals", "providers", "procs", "probe"} <= domains
    for _ in domains:  # one per domain this client follows
        event = reader.next_event(5)
        assert event is not None and event["event"] == "sync.snapshot"
        snapshots[event["data"]["domain"]] = event
    assert set(snapshots) == domains
    assert snapshots["probe"]["data"]["state"]["order"] == [f"k{i}" for i in range(6)]
    assert snapshots["config"]["data"]["state"]["value"]["gateway"]["snapshot_every"] == 2
    assert snapshots["probe"]["seq"] == last_seq
    assert snapshots["gateway"]["data"]["state"]["state"] == "running"
    writer.call("probe.append", {"key": "after"})
    event = reader.next_event(5)
    assert event is not None and event["event"] == "probe.appended", event
    assert event["data"]["key"] == "after" and event["seq"] == last_seq + 1


def test_the_outbox_keeps_requests_while_the_gateway_is_down(home: Any) -> None:
    from tek_actors.testing import GatewayProcess

    endpoint = f"ipc://{home}/run/gateway.sock"
    outbox = home / "client-outbox.db"
    client = Client(endpoint, outbox=outbox)
    futures = [client.submit("probe.append", {"key": f"k{i}"}) for i in range(5)]
    assert client.outbox_pending == 5
    client.close()  # the program exits before the gateway ever came up
    assert all(f.done() for f in futures)
    with GatewayProcess(home) as gateway:
        again = Client(endpoint, outbox=outbox)  # the program runs again: it resends
        try:
            assert again.wait_outbox_empty(timeout=30)
            assert again.call("probe.get")["order"] == [f"k{i}" for i in range(5)]
            later = again.submit("probe.append", {"key": "live"})
            assert later.result(10)["count"] == 6
        finally:
            again.close()
        assert gateway.terminate() == 0


def test_the_client_holds_changes_between_shutdown_imminent_and_the_new_boot(make_rig: Any) -> None:
    rig: Rig = make_rig("ipc")
    busy, client, watcher = rig.client(), rig.client(), rig.client()
    watcher.hello(topics=["gateway.started", "probe.appended"])
    slow = busy.submit("probe.append", {"key": "slow", "work_ms": 1500})  # in flight at restart
    control = rig.client()
    boot_before = control.ping()["boot_id"]
    control.call("gateway.restart", {"grace_ms": 5000})

    def held() -> bool:
        if client._held_boot is not None:
            return True
        client.ping()  # a read still goes through while changes are held
        return False

    until(held, "the client saw gateway.shutdown_imminent")
    late = client.submit("probe.append", {"key": "late"})
    assert slow.result(10)["key"] == "slow"  # in-flight work finished within the grace
    assert late.result(30)["key"] == "late"
    assert client.boot_id != boot_before and client._held_boot is None
    events = events_until(watcher, lambda e: e["data"].get("key") == "late")
    order = [(e["event"], e["data"].get("key")) for e in events]
    assert (
        order.index(("probe.appended", "slow"))
        < order.index(("gateway.started", None))
        < order.index(("probe.appended", "late"))
    )  # sent only after the new boot


def test_a_live_client_delivers_its_outbox_once_the_gateway_comes_up(home: Any) -> None:
    from tek_actors.testing import GatewayProcess

    endpoint = f"ipc://{home}/run/gateway.sock"
    client = Client(endpoint, outbox=home / "outbox.db")
    try:
        futures = [client.submit("probe.append", {"key": f"k{i}"}) for i in range(5)]
        assert not any(f.done() for f in futures)  # no gateway yet: kept, not failed
        with GatewayProcess(home) as gateway:
            assert [f.result(30)["count"] for f in futures] == [1, 2, 3, 4, 5]
            assert client.wait_outbox_empty(timeout=10)
            assert client.call("probe.get")["order"] == [f"k{i}" for i in range(5)]
            assert gateway.terminate() == 0
    finally:
        client.close()
