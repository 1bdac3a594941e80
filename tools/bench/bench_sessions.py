"""What a conversation turn costs in the gateway, what a tool call adds, and what sessions past
the live bound cost: round robin over many sessions, activating one, and a cold start.

Real gateways (`tek gateway run`, fresh TEK_HOME, the built-in `local` model, `shell` approved
by policy) and the bare pyzmq+msgpack echo (the floor, measured in the same run). A raw client
(pyzmq DEALER + msgpack, nothing from tek_actors) does the talking. The cases:

    turns        one after another: a plain turn (sessions.send -> the final session.message)
                 and a tool turn (`tool: shell {"argv": ["true"]}`: the approval by policy, the
                 process, its exit and its logs); medians, in ms and in floor round trips
    round robin  N sessions (64, 400; 1,000 in a full run) take turns in order, 64 turns in
                 flight at once (each answer sends the next turn), so past `limits.sessions_live`
                 (64) nearly every turn activates a passivated session and passivates another.
                 Each round gives every case one lap to warm up and then LAPS timed laps, the
                 cases alternating, so their conversations stay the same length; turns/s is
                 the median over rounds, and the ratio N / 64 is the target (400: >= 0.5)
    activation   a gateway with `limits.sessions_live` 1 and two sessions, one with 100 entries:
                 reading the other passivates it (it snapshots as it stops); then
                 `sessions.get` of it, cold (activated from its snapshot and journal) and again
                 live. Activation = cold - live, paired: p50 and p90 (target p50 <= 2 ms). The
                 same in-process, without the wire: a session actor started on a journal on disk
                 with its snapshot and a tail of 0, 20 or 100 events, until it answers
    cold start   start -> ready (`gateway.json` written and `gateway.ping` answered) after a
                 kill -9, on a home with 10,000 sessions and 100,000 events against an empty
                 one, alternating; the difference of the medians (target <= 1 s). The home is
                 written with the journal's own API, then booted and stopped once, as a used
                 home would be

A measurement, not a test: the exit code is 0 whenever it ran.

    .venv/bin/python tools/bench/bench_sessions.py            # every case, full
    .venv/bin/python tools/bench/bench_sessions.py --quick    # fewer turns and rounds
    .venv/bin/python tools/bench/bench_sessions.py --case round_robin --case activation
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

sys.path.insert(0, str(Path(__file__).parent))
from bench_ping import (  # a sibling script, not a package
    RawClient,
    Server,
    emit,
    machine_info,
    start_echo,
    start_gateway,
    stop_server,
    wait_ready,
    workspace,
)

CASES = ("turns", "round_robin", "activation", "cold_start")
WINDOW = 64  # round robin: turns in flight at once
ROUND_ROBIN_TARGET = 0.5  # 400 sessions against 64
ACTIVATION_TARGET_MS = 2.0
COLD_START_TARGET_S = 1.0
DONE_TIMEOUT_S = 600.0


def process_cpu_s(pid: int) -> float:
    """CPU seconds of the whole process so far, its ended threads included (sessions end theirs
    as they passivate, and summing the live threads would drop what those spent)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Talker(RawClient):
    """A raw client that remembers which sessions it saw passivate, whatever it was waiting
    for at the time."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str) -> None:
        super().__init__(ctx, endpoint)
        self.passivated: list[str] = []

    def next_message(self) -> dict[str, Any]:
        message: dict[str, Any] = msgpack.unpackb(self.sock.recv(), raw=False)
        if message.get("event") == "session.passivated":
            self.passivated.append(message["data"]["session"])
        return message

    def request(self, type_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        frame = {"v": 1, "id": self.next_id, "type": type_name, "payload": payload}
        self.sock.send(msgpack.packb(frame, use_bin_type=True))
        while True:
            message = self.next_message()
            if message.get("re") != self.next_id:
                continue
            if not message.get("ok") and message["error"]["code"] == "unavailable":
                time.sleep(message["error"].get("retry_after_ms", 100) / 1000)  # still starting
                return self.request(type_name, payload)
            if not message.get("ok"):
                raise RuntimeError(f"{type_name} failed: {message}")
            return dict(message["result"])

    def wait_passivated(self, session_id: str) -> None:
        while session_id not in self.passivated:
            self.next_message()
        self.passivated.remove(session_id)

    def turn(self, session_id: str, text: str) -> float:
        """Seconds from the send to the turn's final answer."""
        t0 = time.perf_counter()
        sent = self.request("sessions.send", {"id": session_id, "text": text})
        while True:
            message = self.next_message()
            data = message.get("data") or {}
            final = message.get("event") == "session.message" and not data.get("tool_calls")
            if final and data.get("turn") == sent["message_id"]:
                if data["text"].startswith("(local model)"):
                    return time.perf_counter() - t0
                raise RuntimeError(f"unexpected answer {data['text']!r}")

    def timed(self, type_name: str, payload: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        self.request(type_name, payload)
        return time.perf_counter() - t0

    def round_robin(self, ids: list[str], turns: int, window: int = WINDOW) -> float:
        """`turns` turns over `ids` in order, `window` in flight; turns per second."""
        sent = done = 0

        def send() -> None:
            nonlocal sent
            frame = {
                "v": 1,
                "id": f"rr-{sent}",
                "type": "sessions.send",
                "payload": {"id": ids[sent % len(ids)], "text": f"turn {sent}"},
            }
            self.sock.send(msgpack.packb(frame, use_bin_type=True))
            sent += 1

        start = time.perf_counter()
        for _ in range(min(window, turns)):
            send()
        deadline = time.monotonic() + DONE_TIMEOUT_S
        while done < turns:
            if time.monotonic() > deadline:
                raise RuntimeError(f"round robin: {turns - done} turns unanswered")
            message = self.next_message()
            if "re" in message:
                if not message.get("ok"):
                    raise RuntimeError(f"a send was refused: {message['error']}")
                continue
            data = message.get("data") or {}
            if message.get("event") == "session.error":
                raise RuntimeError(f"a turn failed: {data.get('text')}")
            if message.get("event") == "session.message" and not data.get("tool_calls"):
                done += 1
                if sent < turns:
                    send()
        return turns / (time.perf_counter() - start)


# -- the cases ---------------------------------------------------------------------------------


def folder(tmp: Path, name: str) -> Path:
    """A folder of its own for one gateway (its home and its log)."""
    path = tmp / name
    path.mkdir(exist_ok=True)
    return path


def turns_case(ctx: zmq.Context[Any], tmp: Path, floor_ms: float, quick: bool) -> dict[str, Any]:
    plain_n, tool_n = (50, 10) if quick else (200, 50)
    config = {"approvals": {"tools": {"shell": "auto"}}}
    gateway = start_gateway(folder(tmp, "turns"), config=config, log_level="WARNING")
    try:
        wait_ready(ctx, gateway)
        talker = Talker(ctx, gateway.endpoint)
        try:
            talker.request("hello", {"client_id": "bench", "topics": ["session.message"]})
            session = talker.request("sessions.create", {"cwd": str(tmp)})["id"]
            plain = [talker.turn(session, f"hello {i}") for i in range(plain_n)]
            tool = [talker.turn(session, 'tool: shell {"argv": ["true"]}') for _ in range(tool_n)]
        finally:
            talker.close()
    finally:
        stop_server(gateway)
    plain_ms, tool_ms = statistics.median(plain) * 1000, statistics.median(tool) * 1000
    return {
        "plain_turns": plain_n,
        "plain_turn_ms": round(plain_ms, 2),
        "plain_turn_floor_trips": round(plain_ms / floor_ms, 1),
        "plain_turn_p90_ms": round(percentile(plain, 0.9) * 1000, 2),
        "tool_turns": tool_n,
        "tool_turn_ms": round(tool_ms, 2),
        "tool_turn_floor_trips": round(tool_ms / floor_ms, 1),
        "tool_adds_ms": round(tool_ms - plain_ms, 2),
    }


def round_robin_case(
    ctx: zmq.Context[Any], tmp: Path, floor_ms: float, quick: bool
) -> dict[str, Any]:
    sizes = (64, 400) if quick else (64, 400, 1000)
    rounds, laps = (2, 2) if quick else (3, 3)
    gateway = start_gateway(folder(tmp, "rr"), log_level="WARNING")
    rates: dict[int, list[float]] = {n: [] for n in sizes}
    cpu_ms: dict[int, list[float]] = {n: [] for n in sizes}  # the gateway's, per turn
    try:
        wait_ready(ctx, gateway)
        talker = Talker(ctx, gateway.endpoint)
        try:
            topics = ["session.message", "session.error"]
            talker.request("hello", {"client_id": "bench-rr", "topics": topics})
            ids = {
                n: [talker.request("sessions.create", {})["id"] for _ in range(n)] for n in sizes
            }
            for r in range(rounds):
                for n in sizes:
                    talker.round_robin(ids[n], n)  # a lap to warm up: the 64 become live again
                    cpu = process_cpu_s(gateway.proc.pid)
                    rates[n].append(talker.round_robin(ids[n], n * laps))
                    cpu_ms[n].append((process_cpu_s(gateway.proc.pid) - cpu) / (n * laps) * 1000)
                    print(
                        f"  round {r + 1}/{rounds}: {n} sessions {rates[n][-1]:.0f} turns/s, "
                        f"{cpu_ms[n][-1]:.2f} ms of gateway CPU a turn"
                    )
        finally:
            talker.close()
    finally:
        stop_server(gateway)
    base = statistics.median(rates[sizes[0]])
    cases = []
    for n in sizes:
        rate = statistics.median(rates[n])
        cases.append(
            {
                "sessions": n,
                "turns_per_s": round(rate, 1),
                "rounds": [round(x, 1) for x in rates[n]],
                "vs_64": round(rate / base, 2),
                "paired_vs_64": [round(x / b, 2) for x, b in zip(rates[n], rates[64], strict=True)],
                "cpu_ms_per_turn": round(statistics.median(cpu_ms[n]), 3),
                "floor_trips_per_turn": round(1000 / rate / floor_ms, 1),
            }
        )
    ratio = round(statistics.median(rates[400]) / base, 2)
    verdict = "PASS" if ratio >= ROUND_ROBIN_TARGET else "BELOW"
    return {"window": WINDOW, "laps": laps, "cases": cases, "ratio_400": ratio, "verdict": verdict}


def build_long_session(talker: Talker, entries: int) -> str:
    session = str(talker.request("sessions.create", {})["id"])
    for i in range(entries // 2):
        talker.turn(session, f"message {i}: " + "words " * 20)
    return session


def activation_case(
    ctx: zmq.Context[Any], tmp: Path, floor_ms: float, quick: bool
) -> dict[str, Any]:
    samples = 40 if quick else 200
    config = {"limits": {"sessions_live": 1}}
    gateway = start_gateway(folder(tmp, "act"), config=config, log_level="WARNING")
    cold: list[float] = []
    live: list[float] = []
    try:
        wait_ready(ctx, gateway)
        talker = Talker(ctx, gateway.endpoint)
        try:
            topics = ["session.message", "session.passivated"]
            talker.request("hello", {"client_id": "bench-act", "topics": topics})
            long_one = build_long_session(talker, 100)
            other = build_long_session(talker, 2)  # the long one passivates
            for _ in range(samples + 5):
                talker.wait_passivated(long_one)
                cold.append(talker.timed("sessions.get", {"id": long_one}))  # the other goes
                live.append(talker.timed("sessions.get", {"id": long_one}))
                talker.wait_passivated(other)
                talker.request("sessions.get", {"id": other, "since": 2})  # the long one goes
            count = talker.request("sessions.get", {"id": long_one, "since": 100})["count"]
        finally:
            talker.close()
    finally:
        stop_server(gateway)
    cold, live = cold[5:], live[5:]  # the first few warm the caches of both
    extra = [(c - w) * 1000 for c, w in zip(cold, live, strict=True)]
    p50 = statistics.median(extra)
    return {
        "entries": count,
        "samples": samples,
        "cold_get_ms": round(statistics.median(cold) * 1000, 3),
        "live_get_ms": round(statistics.median(live) * 1000, 3),
        "activation_p50_ms": round(p50, 3),
        "activation_p90_ms": round(percentile(extra, 0.9), 3),
        "activation_floor_trips": round(p50 / floor_ms, 1),
        "in_process": activation_in_process(samples),
        "verdict": "PASS" if p50 <= ACTIVATION_TARGET_MS else "BELOW",
    }


def activation_in_process(samples: int) -> dict[str, Any]:
    """A 100-entry session actor started on a journal on disk, until it answers: from its
    snapshot and a tail of 0, 20 or 100 events (100: no snapshot at all)."""
    from tek_actors.runtime import RealClock

    clock = RealClock()
    try:
        return {f"tail_{tail}": time_activations(clock, tail, samples) for tail in (0, 20, 100)}
    finally:
        clock.close()


def time_activations(clock: Any, tail: int, samples: int) -> dict[str, float]:
    """Each sample on a fresh copy of the journal: a session that stops snapshots what it
    replayed, and the next one would start with no tail."""
    from tek_actors.config import Config
    from tek_actors.runtime import ActorContext, StatusQuery
    from tek_actors.sessions.session import ModelSessionActor
    from tek_actors.store import Journal, NewEvent

    where = Path(tempfile.mkdtemp(prefix="tba", dir="/tmp"))
    template = where / "template.db"
    journal = Journal(template, boot_id="bench").open()
    session_id, name = "s-bench", "session-s-bench"

    def context(incarnation: int) -> ActorContext:
        options = {"session_id": session_id, "config": Config(), "workdir": str(where)}
        return ActorContext(
            name=name,
            incarnation=incarnation,
            journal=journal,
            clock=clock,
            publish=lambda n, d: None,
            report_exit=lambda *a: None,
            options=options,
        )

    events = []
    for i in range(50):
        user = {"session": session_id, "message_id": f"m-u{i}", "at": time.time()}
        events.append(NewEvent("session.user_message", user | {"text": "words " * 20}))
        answer = {
            "session": session_id,
            "id": f"m-a{i}",
            "turn": f"m-u{i}",
            "at": time.time(),
            "role": "assistant",
            "text": "(local model) You said: " + "words " * 20,
            "model": "local",
            "provider": "local",
            "usage": {"input_tokens": 40 * i, "output_tokens": 30},
            "estimate": 40 * i,
            "local": True,
        }
        events.append(NewEvent("session.message", answer))
    head, rest = events[: len(events) - tail], events[len(events) - tail :]
    try:
        if head:
            records = journal.append(name, head).result(timeout=30)
            replayer = ModelSessionActor(context(0))  # never started: its apply only
            state = replayer.state
            for event in head:
                state = replayer.apply(state, event)
            blob = {"seq": records[-1].seq, "state": state.model_dump(mode="json")}
            snapshot = msgpack.packb(blob, use_bin_type=True)
            journal.save_snapshot(name, records[-1].seq, snapshot).result(timeout=30)
        if rest:
            journal.append(name, rest).result(timeout=30)
        journal.close()  # the file alone now holds everything
        times = []
        for sample in range(samples + 5):
            copy = where / f"journal-{sample}.db"
            shutil.copyfile(template, copy)
            journal = Journal(copy, boot_id="bench").open()
            journal.read_since(0, limit=1)  # its reader is open, as in a running gateway
            t0 = time.perf_counter()
            ref = ModelSessionActor.start(context(1))
            ref.ask(StatusQuery(), timeout=30)
            times.append((time.perf_counter() - t0) * 1000)
            ref.stop(block=True, timeout=30)
            journal.close()
    finally:
        journal.close()
        shutil.rmtree(where, ignore_errors=True)
    times = times[5:]
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p90_ms": round(percentile(times, 0.9), 3),
    }


def write_home(home: Path, sessions: int, events: int) -> None:
    """A home whose journal holds `sessions` sessions and `events` events in all: each session's
    `session.created` and then its turns (a user message and its answer each), as the gateway
    journals them, written in batches with the journal's own API."""
    from tek_actors.store import Journal, NewEvent

    (home / "state").mkdir(parents=True, exist_ok=True)
    journal = Journal(home / "state" / "journal.db", boot_id="bench-home").open()
    try:
        per_session = (events - sessions) // sessions  # a whole turn is two of them
        ids = [f"s-{i:012x}" for i in range(sessions)]
        for start in range(0, sessions, 500):
            created = [
                NewEvent(
                    "session.created",
                    {"id": s, "title": "", "model": None, "cwd": None, "created_at": time.time()},
                )
                for s in ids[start : start + 500]
            ]
            journal.append("sessions", created).result(timeout=60)
        futures = []
        for n, session_id in enumerate(ids):
            batch = []
            count = per_session + (1 if n % 2 else -1) * (per_session % 2)  # 2 x turns on average
            for i in range(count // 2):
                message = {"session": session_id, "message_id": f"m-{n}-{i}", "at": time.time()}
                batch.append(NewEvent("session.user_message", message | {"text": f"hi {i}"}))
                answer = {
                    "session": session_id,
                    "id": f"m-{n}-{i}-a",
                    "turn": f"m-{n}-{i}",
                    "at": time.time(),
                    "role": "assistant",
                    "text": f"(local model) You said: hi {i}",
                    "model": "local",
                    "provider": "local",
                    "usage": {"input_tokens": 10, "output_tokens": 8},
                    "local": True,
                }
                batch.append(NewEvent("session.message", answer))
            futures.append(journal.append(f"session-{session_id}", batch))
            if len(futures) >= 200:
                for future in futures:
                    future.result(timeout=60)
                futures.clear()
        for future in futures:
            future.result(timeout=60)
    finally:
        journal.close()


def time_start(ctx: zmq.Context[Any], tmp: Path, name: str, kill: bool) -> float:
    """Seconds from launching a gateway on <tmp>/<name>/home to ready; then kill -9 it (or stop
    it cleanly, `kill` False)."""
    t0 = time.perf_counter()
    gateway = start_gateway(folder(tmp, name), log_level="WARNING")
    try:
        wait_ready(ctx, gateway, ready_file=tmp / name / "home" / "run" / "gateway.json")
        elapsed = time.perf_counter() - t0
    finally:
        if kill:
            gateway.proc.send_signal(signal.SIGKILL)
            gateway.proc.wait()
        else:
            stop_server(gateway)
    return elapsed


def cold_start_case(
    ctx: zmq.Context[Any], tmp: Path, floor_ms: float, quick: bool
) -> dict[str, Any]:
    sessions, events = 10_000, 100_000
    rounds = 3 if quick else 7
    t0 = time.perf_counter()
    write_home(tmp / "full" / "home", sessions, events)
    written = time.perf_counter() - t0
    first_boot = {name: time_start(ctx, tmp, name, kill=False) for name in ("empty", "full")}
    times: dict[str, list[float]] = {"empty": [], "full": []}
    for r in range(rounds):
        for name in ("empty", "full") if r % 2 == 0 else ("full", "empty"):
            times[name].append(time_start(ctx, tmp, name, kill=True))
        last = {name: f"{values[-1]:.2f} s" for name, values in times.items()}
        print(f"  round {r + 1}/{rounds}: empty {last['empty']}, full {last['full']}")
    empty, full = statistics.median(times["empty"]), statistics.median(times["full"])
    return {
        "sessions": sessions,
        "events": events,
        "home_written_s": round(written, 1),
        "first_boot_s": {k: round(v, 2) for k, v in first_boot.items()},
        "empty_home_s": round(empty, 3),
        "full_home_s": round(full, 3),
        "rounds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "difference_s": round(full - empty, 3),
        "verdict": "PASS" if full - empty <= COLD_START_TARGET_S else "BELOW",
    }


def summarize(results: dict[str, Any], floor_ms: float) -> str:
    lines = [f"floor round trip {floor_ms * 1000:.0f} µs"]
    if "turns" in results:
        t = results["turns"]
        lines.append(
            f"a plain turn: {t['plain_turn_ms']:.1f} ms ({t['plain_turn_floor_trips']:.0f} floor "
            f"round trips); a turn with one shell call: {t['tool_turn_ms']:.1f} ms"
        )
    if "round_robin" in results:
        r = results["round_robin"]
        rates = ", ".join(
            f"{c['sessions']}: {c['turns_per_s']:.0f}/s ({c['cpu_ms_per_turn']:.2f} ms CPU a turn)"
            for c in r["cases"]
        )
        lines.append(
            f"round robin ({r['window']} in flight) {rates}; 400 vs 64 = {r['ratio_400']:.2f} "
            f"(target >= {ROUND_ROBIN_TARGET}): {r['verdict']}"
        )
    if "activation" in results:
        a = results["activation"]
        lines.append(
            f"activating a {a['entries']}-entry session: p50 {a['activation_p50_ms']:.2f} ms, "
            f"p90 {a['activation_p90_ms']:.2f} ms (target p50 <= {ACTIVATION_TARGET_MS} ms): "
            f"{a['verdict']}; in-process "
            + ", ".join(f"{k} p50 {v['p50_ms']:.2f} ms" for k, v in a["in_process"].items())
        )
    if "cold_start" in results:
        c = results["cold_start"]
        lines.append(
            f"cold start after kill -9: {c['full_home_s']:.2f} s with {c['sessions']:,} sessions "
            f"and {c['events']:,} events, {c['empty_home_s']:.2f} s empty: "
            f"+{c['difference_s']:.2f} s (target <= {COLD_START_TARGET_S} s): {c['verdict']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case", action="append", choices=CASES, help="only these (repeatable)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    chosen = args.case or list(CASES)
    runners: dict[str, Callable[[zmq.Context[Any], Path, float, bool], dict[str, Any]]] = {
        "turns": turns_case,
        "round_robin": round_robin_case,
        "activation": activation_case,
        "cold_start": cold_start_case,
    }
    results: dict[str, Any] = {"machine": machine_info()}
    with workspace() as (tmp, ctx, servers):
        echo: Server = start_echo(tmp)
        servers.append(echo)
        wait_ready(ctx, echo)
        floor = RawClient(ctx, echo.endpoint)
        try:
            floor_rtt = statistics.median(floor.sequential(2000) / 2000 for _ in range(3))
        finally:
            floor.close()
        floor_ms = floor_rtt * 1000
        results["floor_round_trip_ms"] = round(floor_ms, 3)
        for name in CASES:
            if name in chosen:
                print(f"{name}:", flush=True)
                results[name] = runners[name](ctx, tmp, floor_ms, args.quick)
    emit(results, summarize(results, floor_ms), args.json)


if __name__ == "__main__":
    os.environ.setdefault("TEK_LOG_LEVEL", "WARNING")
    main()
