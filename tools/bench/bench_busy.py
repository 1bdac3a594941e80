"""Many sessions on one busy provider: every turn answered, none failed, and at what rate.

A real gateway (`tek gateway run`, fresh TEK_HOME, the built-in `local` model at its default
`concurrency` of 4) and the bare pyzmq+msgpack echo (the floor). A raw client (pyzmq DEALER +
msgpack, nothing from tek_actors) creates N sessions and sends each K messages at once, all
N*K sends pipelined on one socket (so the turns arrive in a burst), then waits for every
turn's final `session.message` or `session.error`. With N past `limits.sessions_live` (64)
the sessions also passivate and come back meanwhile.

The report: failed turns (a refused send, an error entry, or an answer that is not the local
model's), turns per second from the first send to the last answer, and that rate in floor
round trips.
A measurement, not a test: the exit code is 0 whenever it ran.

    .venv/bin/python tools/bench/bench_busy.py                 # 64 and 400 sessions, 5 turns each
    .venv/bin/python tools/bench/bench_busy.py --quick         # 64 sessions, 3 turns
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

sys.path.insert(0, str(Path(__file__).parent))
from bench_ping import (  # a sibling script, not a package
    RawClient,
    emit,
    machine_info,
    start_echo,
    start_gateway,
    wait_ready,
    workspace,
)

DONE_TIMEOUT_S = 600.0


def run(ctx: zmq.Context[Any], endpoint: str, sessions: int, turns: int) -> dict[str, Any]:
    """N sessions x K turns sent at once (pipelined); every turn's outcome, and the time."""
    client = RawClient(ctx, endpoint)
    try:
        topics = ["session.message", "session.error"]
        client.request("hello", {"client_id": f"busy-{sessions}", "topics": topics})
        ids = [client.request("sessions.create", {})["id"] for _ in range(sessions)]
        start = time.perf_counter()
        sends = 0
        for turn in range(turns):
            for session_id in ids:
                sends += 1
                frame = {
                    "v": 1,
                    "id": f"send-{sends}",
                    "type": "sessions.send",
                    "payload": {"id": session_id, "text": f"hi {turn}"},
                }
                client.sock.send(msgpack.packb(frame, use_bin_type=True))
        sent: set[str] = set()  # the message ids the sends were acknowledged with
        outcomes: dict[str, bool] = {}  # turn (message id) -> answered by the local model
        failures: list[str] = []
        refused = 0
        deadline = time.monotonic() + DONE_TIMEOUT_S
        while (len(sent) + refused < sends or not sent <= outcomes.keys()) and (
            time.monotonic() < deadline
        ):
            try:
                message = msgpack.unpackb(client.sock.recv(), raw=False)
            except zmq.Again:
                continue
            if "re" in message:  # the reply to a send
                if message.get("ok"):
                    sent.add(message["result"]["message_id"])
                else:
                    refused += 1
                    failures.append(str(message["error"])[:200])
                continue
            data = message.get("data") or {}
            if "turn" not in data or data.get("tool_calls"):
                continue
            text = str(data.get("text", ""))
            ok = message.get("event") == "session.message" and text.startswith("(local model)")
            outcomes[data["turn"]] = ok
            if not ok:
                failures.append((text or str(data.get("error")))[:200])
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    answered = sum(1 for turn in sent if turn in outcomes)
    return {
        "sessions": sessions,
        "turns": sends,
        "refused": refused,
        "answered": answered,
        "unanswered": len(sent) - answered,
        "failed": refused + sum(1 for turn in sent if outcomes.get(turn) is False),
        "failures": failures[:5],
        "seconds": round(elapsed, 2),
        "turns_per_s": round(answered / elapsed, 1) if elapsed else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cases = [(64, 3)] if args.quick else [(64, 5), (400, 5)]
    with workspace() as (tmp, ctx, servers):
        echo = start_echo(tmp)
        servers.append(echo)
        gateway = start_gateway(tmp, log_level="WARNING")
        servers.append(gateway)
        wait_ready(ctx, echo)
        wait_ready(ctx, gateway)
        floor = RawClient(ctx, echo.endpoint)
        try:
            floor_rtt = statistics.median(floor.sequential(2000) / 2000 for _ in range(3))
        finally:
            floor.close()
        results = [run(ctx, gateway.endpoint, n, k) for n, k in cases]
    floor_ms = floor_rtt * 1000
    for result in results:
        # a turn every so many floor round trips: what one turn costs the system under load
        result["floor_trips_per_turn"] = round(1000 / result["turns_per_s"] / floor_ms, 1)
    result_all = {"machine": machine_info(), "floor_round_trip_ms": round(floor_ms, 3)}
    result_all["cases"] = results
    summary = "; ".join(
        f"{r['sessions']} sessions: {r['failed']} of {r['turns']} turns failed, "
        f"{r['unanswered']} unanswered, {r['turns_per_s']} turns/s "
        f"({r['floor_trips_per_turn']} floor round trips a turn)"
        for r in results
    )
    emit(result_all, summary, args.json)


if __name__ == "__main__":
    main()
