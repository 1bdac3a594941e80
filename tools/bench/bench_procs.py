"""Lines per second from a tool process to a subscribed client, end to end, nothing lost.

A real gateway (`tek gateway run`, fresh TEK_HOME) and the bare pyzmq+msgpack echo (the floor).
A raw client (pyzmq DEALER + msgpack, nothing from tek_actors) subscribes to `proc.output`,
starts a Python process that prints N numbered lines as fast as it can, and counts the lines
that arrive, checking each number once and in order, until the last one. The rate is N / (time
from the `procs.start` reply to the last line received). The floor is the echo's pipelined
message rate in the same run; the report gives lines/s, the ratio to the floor, and the journal
events per second it took. A measurement, not a test: the exit code is 0 whenever it ran.

    /work/venv/bin/python tools/bench/bench_procs.py            # 3 rounds of 200,000 lines
    /work/venv/bin/python tools/bench/bench_procs.py --quick    # 1 round of 50,000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

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


class Subscriber(RawClient):
    def run_printer(self, n: int) -> dict[str, Any]:
        script = f"import sys\nw = sys.stdout.write\nfor i in range(1, {n + 1}): w(f'{{i}}\\n')\n"
        started = self.request("procs.start", {"argv": [sys.executable, "-c", script]})
        t0 = time.perf_counter()
        proc_id, expected, events = started["id"], 1, 0
        while expected <= n:
            message = msgpack.unpackb(self.sock.recv(), raw=False)
            if message.get("event") != "proc.output" or message["data"]["id"] != proc_id:
                continue
            events += 1
            for line in message["data"]["lines"]:
                if line["n"] != expected or line["text"] != str(expected):
                    raise RuntimeError(f"line {line} where {expected} was due")
                expected += 1
        elapsed = time.perf_counter() - t0
        return {"lines_per_s": n / elapsed, "events": events, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lines", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    n = args.lines or (50_000 if args.quick else 200_000)
    rounds = args.rounds or (1 if args.quick else 3)
    with workspace() as (tmp, ctx, servers):
        echo = start_echo(tmp)
        servers.append(echo)
        gateway = start_gateway(tmp, log_level="WARNING")
        servers.append(gateway)
        wait_ready(ctx, echo)
        wait_ready(ctx, gateway)
        floor = RawClient(ctx, echo.endpoint)
        sub = Subscriber(ctx, gateway.endpoint)
        try:
            sub.request("hello", {"client_id": "bench", "topics": ["proc.output"]})
            floors, runs = [], []
            for _ in range(rounds):
                floors.append(20_000 / floor.pipelined(20_000))
                runs.append(sub.run_printer(n))
        finally:
            floor.close()
            sub.close()
        rate = statistics.median(r["lines_per_s"] for r in runs)
        floor_rate = statistics.median(floors)
        result = {
            "machine": machine_info(),
            "lines": n,
            "rounds": rounds,
            "lines_per_s": round(rate),
            "floor_msgs_per_s": round(floor_rate),
            "lines_per_floor_msg": round(rate / floor_rate, 2),
            "events_per_run": [r["events"] for r in runs],
            "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs],
        }
        summary = (
            f"{rate:,.0f} lines/s end to end, nothing lost ({rate / floor_rate:.2f}x the floor's "
            f"{floor_rate:,.0f} messages/s)"
        )
        emit(result, summary, args.json)


if __name__ == "__main__":
    main()
