"""What a conversation turn costs in the gateway, and what a tool call adds to it.

A real gateway (`tek gateway run`, fresh TEK_HOME, the built-in `local` model, `shell`
approved by policy) and the bare pyzmq+msgpack echo (the floor). A raw client (pyzmq DEALER +
msgpack, nothing from tek_actors) subscribes to `session.message`, then, one after another:

    a plain turn    sessions.send "hello N" -> the final session.message arrives
    a tool turn     sessions.send `tool: shell {"argv": ["true"]}` -> the final answer, after
                    the approval (by policy), the process, its exit and its logs

Each is timed from the send to the final answer (the durable write of the user message, the
model call, the journaled answer and the event fan-out are all inside). The report gives the
medians in milliseconds and in floor round trips, measured in the same run. A measurement, not
a test: the exit code is 0 whenever it ran.

    /work/venv/bin/python tools/bench/bench_sessions.py            # 200 plain, 50 tool turns
    /work/venv/bin/python tools/bench/bench_sessions.py --quick    # 50 and 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import msgpack

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


class Talker(RawClient):
    def turn(self, session_id: str, text: str) -> float:
        """Seconds from the send to the turn's final answer."""
        t0 = time.perf_counter()
        sent = self.request("sessions.send", {"id": session_id, "text": text})
        while True:
            message = msgpack.unpackb(self.sock.recv(), raw=False)
            data = message.get("data") or {}
            final = message.get("event") == "session.message" and not data.get("tool_calls")
            if final and data.get("turn") == sent["message_id"]:
                if data["text"].startswith("(local model)"):
                    return time.perf_counter() - t0
                raise RuntimeError(f"unexpected answer {data['text']!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    plain_n, tool_n = (50, 10) if args.quick else (200, 50)
    with workspace() as (tmp, ctx, servers):
        echo = start_echo(tmp)
        servers.append(echo)
        config = {"approvals": {"tools": {"shell": "auto"}}}
        gateway = start_gateway(tmp, config=config, log_level="WARNING")
        servers.append(gateway)
        wait_ready(ctx, echo)
        wait_ready(ctx, gateway)
        floor = RawClient(ctx, echo.endpoint)
        talker = Talker(ctx, gateway.endpoint)
        try:
            talker.request("hello", {"client_id": "bench", "topics": ["session.message"]})
            session = talker.request("sessions.create", {"cwd": str(tmp)})["id"]
            floor_rtt = statistics.median(floor.sequential(2000) / 2000 for _ in range(3))
            plain = [talker.turn(session, f"hello {i}") for i in range(plain_n)]
            tool = [talker.turn(session, 'tool: shell {"argv": ["true"]}') for _ in range(tool_n)]
        finally:
            floor.close()
            talker.close()
    plain_ms, tool_ms = statistics.median(plain) * 1000, statistics.median(tool) * 1000
    floor_ms = floor_rtt * 1000
    result = {
        "machine": machine_info(),
        "floor_round_trip_ms": round(floor_ms, 3),
        "plain_turns": plain_n,
        "plain_turn_ms": round(plain_ms, 2),
        "plain_turn_floor_trips": round(plain_ms / floor_ms, 1),
        "plain_turn_p90_ms": round(sorted(plain)[int(0.9 * plain_n)] * 1000, 2),
        "tool_turns": tool_n,
        "tool_turn_ms": round(tool_ms, 2),
        "tool_turn_floor_trips": round(tool_ms / floor_ms, 1),
        "tool_adds_ms": round(tool_ms - plain_ms, 2),
    }
    summary = (
        f"a plain turn: {plain_ms:.1f} ms ({plain_ms / floor_ms:.0f} floor round trips of "
        f"{floor_ms * 1000:.0f} µs); a turn with one shell call: {tool_ms:.1f} ms"
    )
    emit(result, summary, args.json)


if __name__ == "__main__":
    main()
