"""Is one actor the bottleneck of durable work that many sessions share? The approval actor's
ceiling, alone, against the tool calls the whole gateway can drive.

Every tool call of every session goes through the one ApprovalActor, four durable commands
each (`approvals.request`, `approvals.begin`, `approvals.attach`, `approvals.finish`; a call a
person decides adds `approvals.decide`). These commands pipeline their persists
(`persist_async`, issue 14 goal 5: the actor goes on while the journal commits; answers in
order once durable); `probe.append` does not, and shows one actor's blocking `persist`.
A real gateway (`tek gateway run`, fresh TEK_HOME, `shell` approved by policy, test hooks
on for the probe actor) and the bare pyzmq+msgpack echo (the floor, same run). A raw client
(pyzmq DEALER + msgpack, nothing from tek_actors) keeps WINDOW requests in flight, each
chain of commands for one call in order:

    floor       the echo, pipelined: messages/s
    probe       `probe.append`, one actor's durable commands/s (nothing else in them)
    auto        `approvals.request` decided by the policy (one event each): decisions/s
    ask         `approvals.request` left pending, then `approvals.decide`: decisions/s
    lifecycle   request (auto) -> begin -> attach -> finish: tool calls/s and commands/s
    grown       lifecycle again once the actor holds 10,000 approvals that never ran (approved
                by the policy, never begun: open, so the bound on finished ones keeps them)
    load        the whole gateway: 8 sessions each running turns with one `shell ["true"]`
                call, the next sent when the last is answered: tool calls/s

The verdict: the approval actor's ceiling (grown lifecycle, tool calls/s) against the load; at
10x or more, pipelining its persists is not needed. A measurement, not a test: exit code 0.

    .venv/bin/python tools/bench/bench_actor.py            # full
    .venv/bin/python tools/bench/bench_actor.py --quick    # fewer calls, a smaller grown state
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).parent))
from bench_ping import (  # sibling scripts, not a package
    RawClient,
    emit,
    machine_info,
    start_echo,
    start_gateway,
    wait_ready,
    workspace,
)
from bench_sessions import Talker, process_cpu_s

WINDOW = 64
HEADROOM = 10.0  # the ceiling must be this many times the load
TOOL_TEXT = 'tool: shell {"argv": ["true"]}'
Step = tuple[str, dict[str, Any]]
Chain = Generator[Step, dict[str, Any], None]


def run_chains(client: RawClient, chain: Callable[[int], Chain], n: int, window: int) -> float:
    """n chains of requests, `window` in flight (each chain's next request is sent when its
    last is answered); the elapsed seconds."""
    sock = client.sock
    pending: dict[int, Chain] = {}
    started = done = 0

    def send(step: Step, current: Chain) -> None:
        client.next_id += 1
        frame = {"v": 1, "id": client.next_id, "type": step[0], "payload": step[1]}
        sock.send(msgpack.packb(frame, use_bin_type=True))
        pending[client.next_id] = current

    def begin() -> None:
        nonlocal started
        current = chain(started)
        started += 1
        send(next(current), current)

    t0 = time.perf_counter()
    for _ in range(min(window, n)):
        begin()
    while done < n:
        message = msgpack.unpackb(sock.recv(), raw=False)
        current = pending.pop(message.get("re", -1), None)
        if current is None:
            continue  # an event
        if not message.get("ok"):
            raise RuntimeError(f"a request failed: {message['error']}")
        try:
            send(current.send(message["result"]), current)
        except StopIteration:
            done += 1
            if started < n:
                begin()
    return time.perf_counter() - t0


def request(tool: str, key: str) -> Step:
    arguments = {"argv": ["true"]} if tool == "shell" else {"path": "/tmp/x", "content": "x"}
    payload = {"session": "s-bench", "tool_call": key, "tool": tool, "arguments": arguments}
    return ("approvals.request", payload)


def auto_chain(prefix: str) -> Callable[[int], Chain]:
    def chain(i: int) -> Chain:
        yield request("shell", f"{prefix}-{i}")

    return chain


def ask_chain(prefix: str) -> Callable[[int], Chain]:
    def chain(i: int) -> Chain:
        pending = yield request("write_file", f"{prefix}-{i}")
        yield ("approvals.decide", {"id": pending["id"], "decision": "approve"})

    return chain


def lifecycle_chain(prefix: str) -> Callable[[int], Chain]:
    def chain(i: int) -> Chain:
        approved = yield request("shell", f"{prefix}-{i}")
        version = approved["current_policy_version"]
        yield ("approvals.begin", {"id": approved["id"], "policy_version": version})
        yield ("approvals.attach", {"id": approved["id"], "proc_id": f"p-{i}"})
        result = {"exit_code": 0}
        yield ("approvals.finish", {"id": approved["id"], "outcome": "executed", "result": result})

    return chain


def probe_chain(prefix: str) -> Callable[[int], Chain]:
    def chain(i: int) -> Chain:
        yield ("probe.append", {"key": f"{prefix}-{i}", "value": i})

    return chain


def tool_calls_per_s(talker: Talker, sessions: list[str], turns_each: int) -> float:
    """Every session runs `turns_each` tool turns, one at a time, all sessions at once."""
    sock = talker.sock
    left = dict.fromkeys(sessions, turns_each)
    turn_of: dict[str, str] = {}  # message id -> session
    waiting: dict[int, str] = {}  # request id -> session

    def send(session_id: str) -> None:
        talker.next_id += 1
        payload = {"id": session_id, "text": TOOL_TEXT}
        frame = {"v": 1, "id": talker.next_id, "type": "sessions.send", "payload": payload}
        sock.send(msgpack.packb(frame, use_bin_type=True))
        waiting[talker.next_id] = session_id
        left[session_id] -= 1

    t0 = time.perf_counter()
    for session_id in sessions:
        send(session_id)
    done = 0
    while done < len(sessions) * turns_each:
        message = msgpack.unpackb(sock.recv(), raw=False)
        if "re" in message:
            session_id = waiting.pop(message["re"])
            if not message.get("ok"):
                raise RuntimeError(f"a send was refused: {message['error']}")
            turn_of[message["result"]["message_id"]] = session_id
            continue
        data = message.get("data") or {}
        final = message.get("event") == "session.message" and not data.get("tool_calls")
        if final and data.get("turn") in turn_of:
            done += 1
            session_id = turn_of.pop(data["turn"])
            if left[session_id]:
                send(session_id)
    return len(sessions) * turns_each / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    n, grown, turns_each = (1_000, 2_000, 10) if args.quick else (3_000, 10_000, 30)
    config = {"approvals": {"tools": {"shell": "auto"}}, "gateway": {"test_hooks": True}}
    results: dict[str, Any] = {"machine": machine_info(), "window": WINDOW, "calls": n}
    with workspace() as (tmp, ctx, servers):
        echo = start_echo(tmp)
        servers.append(echo)
        gateway = start_gateway(tmp, config=config, log_level="WARNING")
        servers.append(gateway)
        wait_ready(ctx, echo)
        wait_ready(ctx, gateway, ready_file=tmp / "home" / "run" / "gateway.json")
        floor = RawClient(ctx, echo.endpoint)
        client = RawClient(ctx, gateway.endpoint)
        client.sock.setsockopt(zmq.RCVTIMEO, 60_000)
        talker = Talker(ctx, gateway.endpoint)
        talker.sock.setsockopt(zmq.RCVTIMEO, 60_000)
        try:
            results["floor_msgs_per_s"] = round(
                statistics.median(20_000 / floor.pipelined(20_000, WINDOW) for _ in range(3))
            )
            rates: dict[str, float] = {}
            cpu: dict[str, float] = {}
            plan: list[tuple[str, Callable[[str], Callable[[int], Chain]], int]] = [
                ("probe", probe_chain, 1),
                ("auto", auto_chain, 1),
                ("ask", ask_chain, 2),
                ("lifecycle", lifecycle_chain, 4),
            ]
            for name, make, commands in plan:
                run_chains(client, make(f"warm-{name}"), 200, WINDOW)
                before = process_cpu_s(gateway.proc.pid)
                elapsed = run_chains(client, make(f"{name}-{uuid.uuid4().hex[:6]}"), n, WINDOW)
                cpu[name] = (process_cpu_s(gateway.proc.pid) - before) / (n * commands) * 1e6
                rates[name] = n / elapsed
                print(f"  {name}: {rates[name]:,.0f}/s, {cpu[name]:.0f} µs CPU a command")
            held = 200 * 4 + n * 4  # approvals so far (the warm-ups included)
            run_chains(client, auto_chain("fill"), max(0, grown - held), WINDOW)
            elapsed = run_chains(client, lifecycle_chain("grown"), n // 3, WINDOW)
            rates["grown"] = n // 3 / elapsed
            print(f"  grown ({grown:,} approvals held): {rates['grown']:,.0f} tool calls/s")
            talker.request("hello", {"client_id": "bench-load", "topics": ["session.message"]})
            ids = [talker.request("sessions.create", {"cwd": str(tmp)})["id"] for _ in range(8)]
            tool_calls_per_s(talker, ids, 2)  # warm up
            load = tool_calls_per_s(talker, ids, turns_each)
            print(f"  load: {load:,.1f} tool calls/s with 8 sessions")
        finally:
            floor.close()
            client.close()
            talker.close()
    ceiling = min(rates["lifecycle"], rates["grown"])
    headroom = ceiling / load
    results |= {
        "probe_commands_per_s": round(rates["probe"]),
        "auto_decisions_per_s": round(rates["auto"]),
        "ask_decisions_per_s": round(rates["ask"]),
        "lifecycle_tool_calls_per_s": round(rates["lifecycle"]),
        "lifecycle_commands_per_s": round(rates["lifecycle"] * 4),
        "grown_approvals": grown,
        "grown_tool_calls_per_s": round(rates["grown"]),
        "cpu_us_per_command": {k: round(v) for k, v in cpu.items()},
        "load_tool_calls_per_s": round(load, 1),
        "headroom": round(headroom, 1),
        "pipelining_needed": headroom < HEADROOM,
    }
    summary = (
        f"floor {results['floor_msgs_per_s']:,} msgs/s; one actor's durable commands "
        f"(probe.append): {rates['probe']:,.0f}/s; approvals: {rates['auto']:,.0f} policy "
        f"decisions/s, {rates['ask']:,.0f} person decisions/s (request + decide), "
        f"{rates['lifecycle']:,.0f} tool calls/s ({rates['lifecycle'] * 4:,.0f} commands/s), "
        f"{rates['grown']:,.0f} tool calls/s holding {grown:,} approvals; the gateway drives "
        f"{load:,.1f} tool calls/s: headroom {headroom:.0f}x (needed >= {HEADROOM:.0f}x): "
        + ("pipelining needed" if headroom < HEADROOM else "pipelining not needed")
    )
    emit(results, summary, args.json)


if __name__ == "__main__":
    main()
