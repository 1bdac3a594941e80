"""A full or read-only disk under the journal and the atomic files, on real mounts.

A small tmpfs is a disk that fills up; a read-only bind mount is a read-only disk. Both need
root with CAP_SYS_ADMIN: where the machine does not allow mounting, those tests are skipped and
say why. The vacuum tests need no mount. The mount helpers here are shared with
tests/integration/test_disk_trouble.py.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tek_actors.errors import StorageUnavailable
from tek_actors.store import IdemRecord, Journal, NewEvent, write_atomic

_CHUNK = b"x" * 65536


def _run_mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


def _mount_or_skip(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"mounting a test disk needs root (id -u is {os.geteuid()})")
    done = _run_mount(*args)
    if done.returncode != 0:
        pytest.skip(f"this machine does not let tests mount ({done.stderr.strip()})")


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@contextlib.contextmanager
def tmpfs(path: Path, *, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "2m") mounted at `path` (created), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    _mount_or_skip("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def bind_mount(path: Path) -> Iterator[Path]:
    """`path` (created) bound onto itself, so that it can be remounted read-only alone."""
    path.mkdir(parents=True, exist_ok=True)
    _mount_or_skip("--bind", str(path), str(path))
    try:
        yield path
    finally:
        _unmount(path)


def remount(path: Path, *, read_only: bool) -> None:
    """Make the bind mount at `path` read-only or writable again."""
    done = _run_mount("-o", f"remount,{'ro' if read_only else 'rw'},bind", str(path))
    assert done.returncode == 0, done.stderr


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its disk is full; the file, to delete to free it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            os.write(fd, _CHUNK)  # a short write first, then ENOSPC
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def _events(path: Path) -> list[tuple[int, str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [(int(s), str(t)) for s, t in db.execute("SELECT seq, type FROM events")]


def test_a_full_disk_refuses_a_batch_whole_and_the_journal_goes_on(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    with tmpfs(tmp_path / "disk", size="2m") as disk:
        spare = disk / "spare"
        spare.write_bytes(b"s" * 512 * 1024)  # freed later: the "person" makes room
        journal = Journal(disk / "journal.db", boot_id="b", on_failure=failures.append).open()
        try:
            acknowledged: list[int] = []
            refused: StorageUnavailable | None = None
            for _ in range(10_000):  # a guard only: the disk is full long before
                try:
                    records = journal.append("a", [NewEvent("x.big", {"b": os.urandom(32768)})])
                    acknowledged.append(records.result(10)[0].seq)
                except StorageUnavailable as exc:
                    refused = exc
                    break
            assert refused is not None and acknowledged
            assert refused.code == "unavailable"
            assert refused.details == {"reason": "disk_full", "path": str(disk), "retryable": False}
            assert "is full" in refused.message and str(disk) in refused.message
            assert journal.refused is refused and journal.failed is refused and not failures
            # Reads go on; nothing of the refused batch is there, its seq is not used up.
            assert [e.seq for e in journal.read_since(0)] == acknowledged
            assert journal.head_seq == acknowledged[-1]
            idem = IdemRecord("k1", "t.x", b"", b"r", None)
            with pytest.raises(StorageUnavailable):
                journal.append(
                    "a", [NewEvent("x.big", {"b": os.urandom(32768)})], idem=idem
                ).result(10)
            assert journal.idem_lookup("k1") is None
            journal.fence("a", 2)  # needs no disk: it holds and returns
            assert journal.prune(keep_events=10**6, idem_max_age_s=3600).result(10) == 0
            assert journal.refused is not None  # writing nothing says nothing about the disk
            spare.unlink()
            record = journal.append("a", [NewEvent("x.small", {})], incarnation=2).result(10)[0]
            assert record.seq == acknowledged[-1] + 1  # no gap where the refusals were
            assert journal.refused is None and journal.failed is None and not failures
        finally:
            journal.close()
        assert _events(disk / "journal.db") == [(s, "x.big") for s in acknowledged] + [
            (record.seq, "x.small")
        ]


def test_a_read_only_folder_is_a_clear_error_when_the_journal_opens(tmp_path: Path) -> None:
    with bind_mount(tmp_path / "state") as state:
        Journal(state / "journal.db", boot_id="b").open().close()
        remount(state, read_only=True)
        for path in (state / "journal.db", state / "new.db"):  # there already, and not yet
            with pytest.raises(StorageUnavailable) as caught:
                Journal(path, boot_id="b2").open()
            assert caught.value.details["reason"] == "read_only"
            assert caught.value.details["path"] == str(state)
            assert "read-only" in caught.value.message
            assert "start the gateway again" in caught.value.message


def test_write_atomic_on_a_full_disk_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="1m") as disk:
        target = disk / "config.json"
        write_atomic(target, b"old")
        fill(disk)
        with pytest.raises(StorageUnavailable) as caught:
            write_atomic(target, b"n" * 256 * 1024)
        assert caught.value.details["reason"] == "disk_full"
        assert "config.json was not written, so nothing changed" in caught.value.message
        assert target.read_bytes() == b"old"
        assert sorted(p.name for p in disk.iterdir()) == ["config.json", "filler"]  # no temp


def test_write_atomic_on_a_read_only_folder_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    with bind_mount(tmp_path / "home") as home:
        target = home / "config.json"
        write_atomic(target, b"old")
        remount(home, read_only=True)
        with pytest.raises(StorageUnavailable) as caught:
            write_atomic(target, b"new")
        assert caught.value.details == {
            "reason": "read_only",
            "path": str(home),
            "retryable": False,
        }
        assert target.read_bytes() == b"old"


def _filled_and_pruned(path: Path) -> tuple[int, int]:
    """Fill a journal with about 8 MiB of events, snapshot, prune all but the newest 10%;
    (bytes on disk before the prune, after it), each with the journal closed."""
    journal = Journal(path, boot_id="b").open()
    blob = os.urandom(2000)
    for _ in range(40):
        journal.append("a", [NewEvent("x.e", {"b": blob})] * 100).result(30)
    journal.save_snapshot("a", journal.head_seq, b"s").result(30)
    journal.close()
    before = _on_disk(path)
    journal = Journal(path, boot_id="b2").open()
    try:
        assert journal.prune(keep_events=400, idem_max_age_s=3600).result(30) == 3600
    finally:
        journal.close()
    return before, _on_disk(path)


def _on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _pragma(path: Path, name: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"PRAGMA {name}").fetchone()[0])


def test_a_prune_gives_the_pages_it_emptied_back_to_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    before, after = _filled_and_pruned(path)
    assert _pragma(path, "auto_vacuum") == 2 and _pragma(path, "freelist_count") == 0
    assert after < before * 0.2, (before, after)  # 90% of the events went, and their pages
    reopened = Journal(path, boot_id="b3").open()
    try:
        assert reopened.first_seq() == 3601 and reopened.head_seq == 4000
    finally:
        reopened.close()


def test_a_journal_made_before_incremental_vacuum_is_converted_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path, boot_id="b").open()
    blob = os.urandom(2000)
    for _ in range(20):
        journal.append("a", [NewEvent("x.e", {"b": blob})] * 100).result(30)
    journal.close()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA auto_vacuum=NONE")
        db.execute("VACUUM")  # what the journal was before: free pages are kept for ever
        db.execute("DELETE FROM events WHERE seq <= 1800")
    assert _pragma(path, "auto_vacuum") == 0 and _pragma(path, "freelist_count") > 800
    before = _on_disk(path)
    reopened = Journal(path, boot_id="b2").open()
    try:
        assert reopened.incremental and reopened.head_seq == 2000
        assert [e.seq for e in reopened.read_since(0)] == list(range(1801, 2001))
    finally:
        reopened.close()
    assert _pragma(path, "auto_vacuum") == 2 and _pragma(path, "freelist_count") == 0
    assert _on_disk(path) < before * 0.2, (before, _on_disk(path))


def test_a_storage_refusal_is_rebuilt_from_the_wire_as_one() -> None:
    from tek_actors.errors import error_from_wire

    sent = StorageUnavailable.refused("disk_full", "/x", "it was not written", "then retry")
    rebuilt = error_from_wire(sent.to_wire())
    assert type(rebuilt) is StorageUnavailable and rebuilt.code == "unavailable"
    assert rebuilt.details == sent.details and rebuilt.message == sent.message
    assert rebuilt.retry_after_ms == 5_000
    assert sent.message == (
        "the disk holding /x is full: it was not written. Free space there, then retry"
    )
