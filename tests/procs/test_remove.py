"""`procs.remove`: a finished process is forgotten (record, kept lines, log folder), journaled as
`proc.removed` before the answer; a running one is a conflict, an unknown one not_found, bad
input invalid_request, and none of them changes anything. The kill -9 test is against a real
gateway process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tek_actors import Client, Conflict, Gateway, InvalidRequest, NotFound
from tek_actors.procs.messages import ProcEnded, WatchProcess
from tek_actors.testing import GatewayProcess
from tests.procs.helpers import run, wait_exit
from tests.waiting import events_until, until

Start = Callable[..., tuple[Gateway, Client]]


def finished(client: Client, *argv: str) -> dict[str, Any]:
    proc = run(client, *argv)
    wait_exit(client, proc["id"])
    return proc


def ids(client: Client) -> list[str]:
    return [p["id"] for p in client.call("procs.list")["items"]]


def test_a_finished_process_is_forgotten_with_its_lines(start: Start) -> None:
    _, client = start()
    kept = finished(client, "echo", "kept")
    gone = finished(client, "sh", "-c", "echo one; echo two >&2")
    assert len(client.call("procs.logs", {"id": gone["id"]})["lines"]) == 2
    answer = client.call("procs.remove", {"id": gone["id"]})
    assert answer == {"id": gone["id"], "removed": True, "state": "exited"}
    removed = events_until(client, lambda e: e["event"] == "proc.removed")[-1]
    assert removed["data"] == {"id": gone["id"]} and removed["seq"] is not None
    assert ids(client) == [kept["id"]]
    for verb in ("procs.logs", "procs.get", "procs.remove"):
        with pytest.raises(NotFound):
            client.call(verb, {"id": gone["id"]})
    assert client.call("procs.logs", {"id": kept["id"]})["lines"][0]["text"] == "kept"


def test_the_log_folder_is_deleted(start: Start, home: Path) -> None:
    _, client = start()
    proc = finished(client, "echo", "hello")
    folder = home / "state" / "procs" / proc["id"]
    assert (folder / "stdout.log").read_text() == "hello\n"
    client.call("procs.remove", {"id": proc["id"]})
    assert not folder.exists()
    assert (home / "state" / "procs").is_dir()  # only the process's own folder goes


def test_a_running_process_is_a_conflict_and_stays(start: Start, home: Path) -> None:
    _, client = start()
    proc = run(client, "sleep", "60")
    with pytest.raises(Conflict) as refused:
        client.call("procs.remove", {"id": proc["id"]})
    assert refused.value.details == {"id": proc["id"], "state": "running"}
    assert "kill it first" in refused.value.message
    assert ids(client) == [proc["id"]]
    assert (home / "state" / "procs" / proc["id"]).is_dir()
    client.call("procs.kill", {"id": proc["id"], "signal": "KILL"})
    wait_exit(client, proc["id"])
    client.call("procs.remove", {"id": proc["id"]})
    assert ids(client) == []


def test_a_resend_under_the_same_idem_key_gets_the_first_answer(start: Start) -> None:
    _, client = start()
    proc = finished(client, "true")
    first = client.call("procs.remove", {"id": proc["id"]}, idem="rm-once")
    again = client.call("procs.remove", {"id": proc["id"]}, idem="rm-once")
    assert again == first
    with pytest.raises(NotFound):  # a new key is a new request: the process is gone
        client.call("procs.remove", {"id": proc["id"]}, idem="rm-twice")


class _Listener(pykka.ThreadingActor):
    """Stands for the approval actor: collects the ProcEnded it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[ProcEnded] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ProcEnded):
            self.got.append(message)
        return list(self.got)


def test_a_watch_of_a_removed_process_learns_how_it_ended(start: Start) -> None:
    """The approval actor recovers a call from how its process ended (WatchProcess): a removal
    must not turn an exit into `unknown`."""
    gateway, client = start()
    proc = finished(client, "sh", "-c", "exit 3")
    client.call("procs.remove", {"id": proc["id"]})
    monitor = gateway._directory.lookup("procs")
    assert monitor is not None
    listener = _Listener.start()
    try:
        monitor.tell(WatchProcess(proc["id"], listener))
        got = until(lambda: listener.ask("get"), "the end was told")
        assert got == [ProcEnded(proc["id"], "exited", 3, None)]
    finally:
        listener.stop()


BAD: st.SearchStrategy[Any] = st.one_of(
    st.just({}),
    st.just({"id": ""}),
    st.text(min_size=65, max_size=80).map(lambda text: {"id": text}),
    st.fixed_dictionaries({"id": st.one_of(st.integers(), st.none(), st.lists(st.text()))}),
    st.fixed_dictionaries({"id": st.just("p-1"), "extra": st.text()}),
)


def test_bad_payloads_are_refused_and_change_nothing(start: Start) -> None:
    _, client = start()
    finished(client, "true")
    before = client.call("procs.list")

    @settings(max_examples=30, deadline=None)
    @given(payload=BAD)
    def refused(payload: Any) -> None:
        with pytest.raises(InvalidRequest):
            client.call("procs.remove", payload)

    refused()
    assert client.call("procs.list") == before


@pytest.mark.slow
def test_a_removal_survives_kill_9(home: Path) -> None:
    gateway = GatewayProcess(home).start()
    try:
        with gateway.client() as client:
            client.hello(topics=["proc.*"])
            proc = finished(client, "echo", "bye")
            kept = finished(client, "echo", "stay")
            client.call("procs.remove", {"id": proc["id"]})
        gateway.kill9()  # right after the answer: no snapshot, no clean stop
        # As if the kill had come between the journal write and the delete: the folder is back.
        folder = home / "state" / "procs" / proc["id"]
        folder.mkdir()
        (folder / "stdout.log").write_text("bye\n")
        gateway.start()
        with gateway.client() as client:
            assert ids(client) == [kept["id"]]
            with pytest.raises(NotFound):
                client.call("procs.logs", {"id": proc["id"]})
        assert not folder.exists()  # deleted again at the start
        assert (home / "state" / "procs" / kept["id"] / "stdout.log").exists()
    finally:
        gateway.terminate()
