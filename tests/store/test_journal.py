"""The journal: one sequence, durable before anyone is told, group commit, snapshots, idem."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tek_actors.errors import JournalError
from tek_actors.store import EventRecord, IdemRecord, Journal, NewEvent


@pytest.fixture
def journal(tmp_path: Path):
    journal = Journal(tmp_path / "state" / "journal.db", boot_id="b1").open()
    yield journal
    journal.close()


def test_appends_get_one_increasing_sequence_and_are_readable(journal: Journal) -> None:
    first = journal.append("a", [NewEvent("x.one", {"n": 1}), NewEvent("x.two", {"n": 2})])
    second = journal.append("b", [NewEvent("y.one", {"n": 3})])
    assert [r.seq for r in first.result(5)] == [1, 2]
    assert [r.seq for r in second.result(5)] == [3]
    assert journal.head_seq == 3
    events = journal.read_since(0)
    assert [(e.seq, e.actor, e.type, e.data) for e in events] == [
        (1, "a", "x.one", {"n": 1}),
        (2, "a", "x.two", {"n": 2}),
        (3, "b", "y.one", {"n": 3}),
    ]
    assert [e.seq for e in journal.read_since(1, actor="a")] == [2]
    assert [e.seq for e in journal.read_since(0, limit=2)] == [1, 2]


def test_the_sequence_continues_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, boot_id="b1").open()
    journal.append("a", [NewEvent("x.e", {})] * 3).result(5)
    journal.close()
    reopened = Journal(path, boot_id="b2").open()
    try:
        assert reopened.head_seq == 3
        record = reopened.append("a", [NewEvent("x.e", {})]).result(5)[0]
        assert (record.seq, record.boot) == (4, "b2")
    finally:
        reopened.close()


def test_files_are_private(journal: Journal) -> None:
    journal.append("a", [NewEvent("x.e", {})]).result(5)
    for suffix in ("", "-wal"):
        mode = stat.S_IMODE(os.stat(f"{journal.path}{suffix}").st_mode)
        assert mode == 0o600, (suffix, oct(mode))
    assert stat.S_IMODE(os.stat(journal.path.parent).st_mode) == 0o700


def test_committed_events_are_published_in_seq_order_after_commit(tmp_path: Path) -> None:
    seen: list[int] = []
    journal = Journal(
        tmp_path / "j.db",
        boot_id="b",
        on_committed=lambda records: seen.extend(r.seq for r in records),
    ).open()
    try:
        futures = [journal.append("a", [NewEvent("x.e", {"i": i})]) for i in range(200)]
        for future in futures:
            future.result(5)
    finally:
        journal.close()
    assert seen == list(range(1, 201))


def test_concurrent_writers_share_transactions(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", boot_id="b").open()
    barrier = threading.Barrier(16)
    results: list[list[EventRecord]] = []

    def writer() -> None:
        barrier.wait()
        for i in range(20):
            results.append(journal.append("w", [NewEvent("x.e", {"i": i})]).result(10))

    threads = [threading.Thread(target=writer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    seqs = sorted(r.seq for batch in results for r in batch)
    assert seqs == list(range(1, 321))
    assert journal.batches < 320  # group commit shared transactions among writers


def test_snapshots_keep_the_newest_two(journal: Journal) -> None:
    for seq in (5, 10, 15):
        journal.save_snapshot("a", seq, f"state{seq}".encode()).result(5)
    assert journal.load_snapshots("a") == [(15, b"state15"), (10, b"state10")]
    assert journal.load_snapshots("other") == []


def test_idem_record_is_written_with_the_events(journal: Journal) -> None:
    idem = IdemRecord("key-1", "probe.append", b"d", b"reply", None)
    journal.append("a", [NewEvent("x.e", {})], idem=idem).result(5)
    record = journal.idem_lookup("key-1")
    assert record is not None and (record.type, record.reply, record.seq) == (
        "probe.append",
        b"reply",
        1,
    )
    assert journal.idem_lookup("nope") is None


def test_a_duplicate_idem_key_fails_the_write_and_stops_the_journal(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    journal = Journal(tmp_path / "j.db", boot_id="b", on_failure=failures.append).open()
    idem = IdemRecord("dup", "t.x", b"", b"", None)
    journal.append("a", [NewEvent("x.e", {})], idem=idem).result(5)
    with pytest.raises(JournalError):
        journal.append("a", [NewEvent("x.e", {})], idem=idem).result(5)
    # The writer cannot know what reached the disk: everything after fails too, nothing retried.
    with pytest.raises(JournalError):
        journal.append("a", [NewEvent("x.f", {})]).result(5)
    journal.close()
    assert failures and journal.failed is not None
    reopened = Journal(tmp_path / "j.db", boot_id="b2").open()
    try:
        assert [e.type for e in reopened.read_since(0)] == ["x.e"]
    finally:
        reopened.close()


def test_prune_keeps_what_actors_still_need(journal: Journal) -> None:
    journal.append("a", [NewEvent("x.e", {})] * 10).result(5)
    journal.save_snapshot("a", 4, b"s").result(5)
    journal.append("b", [NewEvent("y.e", {})] * 10).result(5)  # b has no snapshot: nothing of b
    deleted = journal.prune(keep_events=0, idem_max_age_s=3600).result(5)
    assert deleted == 0  # b's events start at 11 but b has no snapshot, so the bound is 0
    journal.save_snapshot("b", 20, b"s").result(5)
    deleted = journal.prune(keep_events=0, idem_max_age_s=3600).result(5)
    assert deleted == 4 and journal.first_seq() == 5
    assert journal.head_seq == 20


def test_closed_journal_refuses_appends(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", boot_id="b").open()
    journal.close()
    with pytest.raises(JournalError):
        journal.append("a", [NewEvent("x.e", {})]).result(1)


def test_a_fenced_off_incarnation_cannot_write(journal: Journal) -> None:
    from tek_actors.store import StaleWriter

    journal.append("a", [NewEvent("x.old", {})], incarnation=1).result(5)
    queued = journal.append("a", [NewEvent("x.queued", {})], incarnation=1)
    journal.fence("a", 2)  # returns once everything queued before it is decided
    assert queued.result(5)[0].type == "x.queued"  # queued before the fence: written
    with pytest.raises(StaleWriter):
        journal.append("a", [NewEvent("x.stale", {})], incarnation=1).result(5)
    journal.append("a", [NewEvent("x.new", {})], incarnation=2).result(5)
    journal.append("b", [NewEvent("y.other", {})], incarnation=1).result(5)  # per actor
    assert [e.type for e in journal.read_since(0)] == ["x.old", "x.queued", "x.new", "y.other"]
    assert journal.failed is None  # a stale writer is not a disk failure: the journal goes on


def test_marks_are_set_and_cleared_with_their_events(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, boot_id="b1").open()
    try:
        journal.append("a", [NewEvent("x.one", {})], marks={"open:1": True, "open:2": True}).result(
            5
        )
        journal.append("a", [NewEvent("x.two", {})], marks={"open:1": False}).result(5)
        journal.append("b", [NewEvent("y", {})], marks={"other:1": True}).result(5)
        assert journal.marks("open:") == ["open:2"]
    finally:
        journal.close()
    reopened = Journal(path, boot_id="b2").open()
    try:
        assert reopened.marks("open:") == ["open:2"] and reopened.marks("other:") == ["other:1"]
    finally:
        reopened.close()


def test_an_append_after_another_actors_failed_append_writes_nothing(journal: Journal) -> None:
    """ProcEnded.durable: a session's tool result names the process end's append as `after`;
    if that one fails, the result is not written either, whichever batch each lands in."""
    from tek_actors.store import StaleWriter

    journal.fence("procs", 2)
    for _ in range(20):  # the two land in one batch or in two, as the writer takes them
        end = journal.append("procs", [NewEvent("proc.exited", {})], incarnation=1)
        mine = journal.append("session-s", [NewEvent("session.tool_result", {})], after=[end])
        with pytest.raises(StaleWriter):
            end.result(5)
        with pytest.raises(StaleWriter):
            mine.result(5)
    ok_end = journal.append("procs", [NewEvent("proc.exited", {})], incarnation=2)
    last = journal.append("session-s", [NewEvent("session.tool_result", {})], after=[None, ok_end])
    assert [r.seq for r in ok_end.result(5)] < [r.seq for r in last.result(5)]
    assert [(e.actor, e.type) for e in journal.read_since(0)] == [
        ("procs", "proc.exited"),
        ("session-s", "session.tool_result"),
    ]
