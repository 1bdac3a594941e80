"""What a tool call adds to a turn beyond its process's own cost, and whether the tool calls
of many sessions run side by side.

A real gateway (`tek gateway run`, fresh TEK_HOME, the built-in `local` model, `shell` approved
by policy), driven by a raw client (pyzmq DEALER + msgpack, nothing from tek_actors; the turn is
bench_sessions.Talker's: from `sessions.send` to the turn's final `session.message`):

  latency   plain turns and turns with one `shell ["true"]` call, alternated so that drift hits
            both alike; p50 and p90 of each and of their difference (what the tool call adds),
            against a bare `subprocess.run(["true"])` timed in this process in the same run (the
            process's own cost). Goal (issue 14): adds minus bare <= 10 ms at p50.
  parallel  tool turns per second with 1 session, then with 8 at once (each session sends its
            next turn when its last one is answered, all on one client socket), and the ratio.
            Goal: >= 6x. Beside each rate, the CPU time the gateway process spent per turn (every
            thread, /proc schedstat) and the machine's busy cores: with one GIL, a gateway that
            needs C seconds of CPU per turn cannot pass 1/C turns/s however many sessions run.

  steps     where a tool turn's time goes: for every tool turn of the latency phase, each
            journaled event's commit time (the journal's `ts`, one per transaction) from the
            turn's send, p50 per step (`approvals approval.running #1`, ...): the commits one
            after another that a tool turn waits for. Read from the journal file after the run.

A measurement, not a test: the exit code is 0 whenever it ran.

    .venv/bin/python tools/bench/bench_tools.py            # 100 + 100 turns, 60 and 8 x 30
    .venv/bin/python tools/bench/bench_tools.py --quick    # 30 + 30 turns, 20 and 8 x 10
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

sys.path.insert(0, str(Path(__file__).parent))
from bench_ping import (  # sibling scripts, not a package
    cpu_seconds,
    emit,
    machine_info,
    start_gateway,
    wait_ready,
    workspace,
)
from bench_sessions import Talker

TOOL_TEXT = 'tool: shell {"argv": ["true"]}'
GOAL_ADDS_MS = 10.0
GOAL_PARALLEL = 6.0
TURNS_PER_SESSION = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bare_runs(n: int) -> list[float]:
    """Seconds of each `subprocess.run(["true"])`, from this process."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["true"], check=True)
        out.append(time.perf_counter() - t0)
    return out


def steps(journal: Path, windows: list[tuple[float, float]]) -> dict[str, float]:
    """p50 ms from a tool turn's send to each event's commit, per step ("<actor> <type>
    #<n-th of its kind in the turn>"), over the turns' (send, answered) wall-clock windows."""
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT ts, actor, type FROM events WHERE ts >= ? AND ts < ? ORDER BY seq",
            (windows[0][0], windows[-1][1]),
        ).fetchall()
    finally:
        con.close()
    found: dict[str, list[float]] = {}
    turn, seen = 0, {}  # seen: step -> how many of it in this turn so far
    for ts, actor, kind in rows:
        while turn < len(windows) and ts >= windows[turn][1]:
            turn, seen = turn + 1, {}
        if turn == len(windows) or ts < windows[turn][0]:
            continue  # a plain turn's, between two tool turns
        step = f"{actor.split('-')[0]} {kind}"
        seen[step] = seen.get(step, 0) + 1
        found.setdefault(f"{step} #{seen[step]}", []).append((ts - windows[turn][0]) * 1000)
    # The steps of (nearly) every tool turn; a session created now and then is not one.
    common = [
        (k, round(statistics.median(v), 2))
        for k, v in found.items()
        if len(v) >= 0.9 * len(windows)
    ]
    return dict(sorted(common, key=lambda step: step[1]))


def parallel(
    talker: Talker, slots: list[list[str]], turns_each: int, gateway_pid: int
) -> dict[str, Any]:
    """Tool turns of len(slots) sessions at once, `turns_each` each, closed loop per session
    on one socket (a slot moves to its next fresh session every TURNS_PER_SESSION turns):
    the rate, the gateway's CPU per turn, the machine's busy cores."""
    sock = talker.sock
    left = {i: turns_each for i in range(len(slots))}
    waiting: dict[Any, int] = {}  # request id -> slot, until sessions.send answers
    turns: dict[str, int] = {}  # message id -> slot, until its final answer
    latencies: list[float] = []
    sent_at: dict[int, float] = {}

    def send(slot: int) -> None:
        talker.next_id += 1
        session = slots[slot][(turns_each - left[slot]) // TURNS_PER_SESSION]
        payload = {"id": session, "text": TOOL_TEXT}
        frame = {"v": 1, "id": talker.next_id, "type": "sessions.send", "payload": payload}
        waiting[talker.next_id] = slot
        sent_at[slot] = time.perf_counter()
        sock.send(msgpack.packb(frame, use_bin_type=True))

    cpu0, machine0, t0 = cpu_seconds(gateway_pid), psutil.cpu_times(), time.perf_counter()
    for slot in left:
        send(slot)
    done = 0
    while done < len(slots) * turns_each:
        message = msgpack.unpackb(sock.recv(), raw=False)
        if "re" in message:
            slot = waiting.pop(message["re"])
            if not message.get("ok"):
                raise RuntimeError(f"sessions.send failed: {message}")
            turns[message["result"]["message_id"]] = slot
            continue
        data = message.get("data") or {}
        if message.get("event") != "session.message" or data.get("tool_calls"):
            continue
        answered = turns.pop(data.get("turn"), None)
        if answered is None:
            continue
        if not data["text"].startswith("(local model)"):
            raise RuntimeError(f"unexpected answer {data['text']!r}")
        latencies.append(time.perf_counter() - sent_at[answered])
        done += 1
        left[answered] -= 1
        if left[answered]:
            send(answered)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(gateway_pid) - cpu0
    machine1 = psutil.cpu_times()
    busy = sum(getattr(machine1, f) - getattr(machine0, f) for f in ("user", "system", "nice"))
    return {
        "sessions": len(slots),
        "turns": done,
        "turns_per_s": round(done / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "gateway_cpu_ms_per_turn": round(cpu / done * 1000, 2),
        "wall_ms_per_turn": round(wall / done * 1000, 2),
        "gateway_cpu_cores": round(cpu / wall, 2),
        "machine_busy_cores": round(busy / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    pairs, one_turns, many_turns = (30, 20, 10) if args.quick else (100, 60, 30)
    with workspace() as (tmp, ctx, servers):
        # Room for every session the bench makes (none passivated mid-phase) and for the
        # processes of 8 sessions at once.
        limits = {"max_processes": 64, "sessions_live": 1000}
        config = {"approvals": {"tools": {"shell": "auto"}}, "limits": limits}
        gateway = start_gateway(tmp, config=config, log_level="WARNING")
        servers.append(gateway)
        wait_ready(ctx, gateway)
        talker = Talker(ctx, gateway.endpoint)
        talker.sock.setsockopt(zmq.RCVTIMEO, 30_000)
        try:
            talker.request("hello", {"client_id": "bench", "topics": ["session.message"]})

            def fresh(n: int) -> list[str]:
                return [
                    talker.request("sessions.create", {"cwd": str(tmp)})["id"] for _ in range(n)
                ]

            # A session's turn costs it more CPU as its conversation grows (it rebuilds the
            # context from every entry), which is not what a tool call costs: every
            # TURNS_PER_SESSION turns the bench moves on to a fresh session, in every phase.
            blocks = -(-max(pairs, one_turns, many_turns) // TURNS_PER_SESSION)
            for _ in range(5):  # warm-up: the zygote, the model, the first snapshots
                warm = fresh(1)[0]
                talker.turn(warm, "warm up")
                talker.turn(warm, TOOL_TEXT)
            bare = bare_runs(20)  # warm
            plain, tool = [], []
            tool_windows: list[tuple[float, float]] = []
            pair_sessions = fresh(blocks)
            for i in range(pairs):
                session = pair_sessions[i // TURNS_PER_SESSION]
                plain.append(talker.turn(session, f"hello {i}"))
                sent = time.time()
                tool.append(talker.turn(session, TOOL_TEXT))
                tool_windows.append((sent, time.time()))
            bare = bare_runs(max(50, pairs))
            one = parallel(talker, [fresh(blocks)], one_turns, gateway.proc.pid)
            many = parallel(talker, [fresh(blocks) for _ in range(8)], many_turns, gateway.proc.pid)
        finally:
            talker.close()
        tool_steps = steps(tmp / "home" / "state" / "journal.db", tool_windows)
    ms = 1000.0
    p50 = {
        k: statistics.median(v) * ms for k, v in (("plain", plain), ("tool", tool), ("bare", bare))
    }
    p90 = {
        k: percentile(v, 0.9) * ms for k, v in (("plain", plain), ("tool", tool), ("bare", bare))
    }
    adds = p50["tool"] - p50["plain"]
    beyond = adds - p50["bare"]
    ratio = many["turns_per_s"] / one["turns_per_s"]
    result = {
        "machine": machine_info(),
        "turn_pairs": pairs,
        "plain_turn_ms": {"p50": round(p50["plain"], 2), "p90": round(p90["plain"], 2)},
        "tool_turn_ms": {"p50": round(p50["tool"], 2), "p90": round(p90["tool"], 2)},
        "bare_true_ms": {"p50": round(p50["bare"], 2), "p90": round(p90["bare"], 2)},
        "tool_adds_ms": {"p50": round(adds, 2), "p90": round(p90["tool"] - p90["plain"], 2)},
        "tool_adds_beyond_bare_ms": round(beyond, 2),
        "goal_beyond_bare_ms": GOAL_ADDS_MS,
        "tool_turn_steps_ms": tool_steps,
        "one_session": one,
        "eight_sessions": many,
        "parallel_ratio": round(ratio, 2),
        "goal_parallel_ratio": GOAL_PARALLEL,
    }
    summary = (
        f"a tool call adds {adds:.1f} ms p50 to a turn ({p50['plain']:.1f} -> {p50['tool']:.1f}); "
        f"a bare run of `true` takes {p50['bare']:.1f} ms: {beyond:.1f} ms beyond it "
        f"(goal <= {GOAL_ADDS_MS:.0f}). Tool turns: {one['turns_per_s']}/s with 1 session, "
        f"{many['turns_per_s']}/s with 8: {ratio:.1f}x (goal >= {GOAL_PARALLEL:.0f}x); the "
        f"gateway spends {many['gateway_cpu_ms_per_turn']} ms of CPU per turn at 8 sessions "
        f"({many['gateway_cpu_cores']} cores of it; the machine: {many['machine_busy_cores']} of "
        f"{psutil.cpu_count()} busy)"
    )
    emit(result, summary, args.json)


if __name__ == "__main__":
    main()
