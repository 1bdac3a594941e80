"""Journal appends per second with concurrent writers: group commit against one commit per event.

`tek_actors.store.Journal` (SQLite, WAL, synchronous=FULL: every commit is fsynced) is driven by
--threads writer threads, each appending one event at a time and waiting for its future (durable)
before the next, the way actors use it. Two configurations:

  group   Journal(path, boot_id="bench", max_batch=1024)   the default: the writer takes whatever
                                                         queued during the previous fsync
  single  Journal(path, boot_id="bench", max_batch=1)      one transaction (one fsync) per event

Each turn runs one configuration for --duration seconds on a fresh database file; turns
alternate (group, single) for --rounds rounds and the report gives the median appends/s of each,
the ratio group/single against the target (>= 10x), events per transaction (appends /
`Journal.batches`) and the mean wall time per commit. It first times a bare write + fsync in the
same folder, the floor of any durable commit there. The database lives on a real disk: the
default folder is the system temp dir unless that is a tmpfs, then the repository's parent
folder; --dir overrides. Missing the target is reported, not an error.

    /work/venv/bin/python tools/bench/bench_journal.py            # full run (~25 s)
    /work/venv/bin/python tools/bench/bench_journal.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tek_actors.store import Journal, NewEvent

CONFIGS = {"group": 1024, "single": 1}  # name -> max_batch
TARGET_RATIO = 10.0
REPO_PARENT = Path(__file__).resolve().parents[3]
FUTURE_TIMEOUT_S = 60.0


def filesystem_of(path: Path) -> tuple[str, str]:
    """(mount point, filesystem type) that holds `path`, from /proc/mounts."""
    path = path.resolve()
    best = ("/", "unknown")
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, mount_point, fstype, *_ = line.split()
            mount_point = mount_point.replace("\\040", " ")
            if path.is_relative_to(mount_point) and len(mount_point) >= len(best[0]):
                best = (mount_point, fstype)
    return best


def pick_base_dir(requested: Path | None) -> Path:
    if requested is not None:
        return requested
    tmp = Path(tempfile.gettempdir())
    return REPO_PARENT if filesystem_of(tmp)[1] == "tmpfs" else tmp


def fsync_latency_ms(folder: Path, samples: int = 200) -> float:
    """Median time of a small write + fsync in `folder`: what one durable commit costs at least."""
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    times = []
    try:
        for _ in range(samples):
            start = time.perf_counter()
            os.write(fd, b"x" * 128)
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1e3


def writer(
    journal: Journal,
    stop: threading.Event,
    start: threading.Barrier,
    counts: list[int],
    errors: list[BaseException],
    slot: int,
) -> None:
    """Append one event, wait until it is durable, repeat until `stop`."""
    start.wait()
    done = 0
    try:
        while not stop.is_set():
            journal.append("bench", [NewEvent("bench.e", {"i": done})]).result(FUTURE_TIMEOUT_S)
            done += 1
    except Exception as exc:  # a failed append ends the turn: report it, do not hang
        errors.append(exc)
        stop.set()
    counts[slot] = done


def run_turn(db_path: Path, max_batch: int, threads: int, duration: float) -> dict[str, Any]:
    """One configuration on a fresh file for `duration` seconds: appends/s and events/commit."""
    journal = Journal(db_path, boot_id="bench", max_batch=max_batch).open()
    try:
        batches_before = journal.batches
        stop = threading.Event()
        start = threading.Barrier(threads + 1)
        counts = [0] * threads
        errors: list[BaseException] = []
        workers = [
            threading.Thread(
                target=writer,
                args=(journal, stop, start, counts, errors, i),
                name=f"bench-writer-{i}",
                daemon=True,
            )
            for i in range(threads)
        ]
        for w in workers:
            w.start()
        start.wait()
        began = time.perf_counter()
        time.sleep(duration)
        stop.set()
        for w in workers:
            w.join(FUTURE_TIMEOUT_S)
        elapsed = time.perf_counter() - began
        if errors:
            raise RuntimeError(f"an append failed: {errors[0]!r}") from errors[0]
        appends = sum(counts)
        batches = journal.batches - batches_before
    finally:
        journal.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return {
        "appends": appends,
        "seconds": elapsed,
        "rate": appends / elapsed,
        "batches": batches,
        "per_batch": appends / max(batches, 1),
        "commit_ms": elapsed / max(batches, 1) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s turns")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per turn")
    parser.add_argument("--threads", type=int, default=32, help="concurrent writer threads")
    parser.add_argument("--dir", type=Path, help="where to put the database files (a real disk)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 1.0

    base = pick_base_dir(args.dir)
    workdir = Path(tempfile.mkdtemp(prefix="tb-journal-", dir=base))
    mount_point, fstype = filesystem_of(workdir)
    print(
        f"machine: nproc {os.cpu_count()}, python {platform.python_version()}, "
        f"sqlite {sqlite3.sqlite_version}"
    )
    print(
        f"database folder {workdir} ({fstype} on {mount_point}); {args.threads} writers, "
        f"{args.rounds} rounds of {args.duration:g} s per configuration"
    )
    turns: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    try:
        fsync_ms = fsync_latency_ms(workdir)
        print(f"write+fsync of a small block there: {fsync_ms:.2f} ms (median of 200)")
        for r in range(args.rounds):
            for name, max_batch in CONFIGS.items():
                turn = run_turn(workdir / f"{name}-{r}.db", max_batch, args.threads, args.duration)
                turns[name].append(turn)
                print(
                    f"  round {r + 1}/{args.rounds}  {name:<6} (max_batch={max_batch:>4})  "
                    f"{turn['rate']:>9,.0f} appends/s  {turn['per_batch']:6.1f} events/commit  "
                    f"{turn['commit_ms']:5.2f} ms/commit",
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    summary = {
        name: {
            "rate": statistics.median(t["rate"] for t in ts),
            "per_batch": statistics.median(t["per_batch"] for t in ts),
            "commit_ms": statistics.median(t["commit_ms"] for t in ts),
            "turns": ts,
        }
        for name, ts in turns.items()
    }
    ratio = summary["group"]["rate"] / summary["single"]["rate"]
    verdict = "PASS" if ratio >= TARGET_RATIO else "BELOW"
    print()
    print(
        f"{'config':<7} {'max_batch':>9} {'appends/s':>10} {'events/commit':>14} {'ms/commit':>10}"
    )
    for name, s in summary.items():
        print(
            f"{name:<7} {CONFIGS[name]:>9} {s['rate']:>10,.0f} {s['per_batch']:>14.1f} "
            f"{s['commit_ms']:>10.2f}"
        )
    print()
    print(f"group commit / one commit per event: {ratio:.1f}x")
    print(f"target (>= {TARGET_RATIO:g}x): {verdict}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "rounds": args.rounds,
                    "duration": args.duration,
                    "filesystem": fstype,
                    "fsync_ms": fsync_ms,
                    "sqlite": sqlite3.sqlite_version,
                    "results": summary,
                    "ratio": ratio,
                    "target": TARGET_RATIO,
                    "verdict": verdict,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
