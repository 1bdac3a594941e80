"""The gateway's own overhead per model call, against calling the provider directly.

Three processes: the loopback OpenAI server (tools/fake_providers.py), the bare pyzmq+msgpack
echo (tools/bench/echo_server.py, the floor), and a real gateway (`tek gateway run`) whose
provider `lab` points at the loopback server. From this process, in alternating turns:

  floor    one ping round trip to the echo process (raw DEALER + msgpack)
  direct   one streamed chat completion from the loopback server with httpx, reading the SSE
           lines as the adapter does
  gateway  one `providers.complete` (stream off) through the gateway over ipc (raw DEALER +
           msgpack): frontend, ProviderActor, worker pool, the same HTTP call, the reply back

The gateway's overhead per call is gateway - direct (medians of the turns); it is reported in
microseconds and as a multiple of the floor round trip measured in the same run. A measurement,
not a test: the exit code is 0 whenever it ran.

    /work/venv/bin/python tools/bench/bench_provider.py            # about 30 s
    /work/venv/bin/python tools/bench/bench_provider.py --quick    # about 8 s
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack

sys.path.insert(0, str(Path(__file__).parent))
from bench_ping import (
    RawClient,
    Server,
    machine_info,
    start_echo,
    start_gateway,
    start_server,
    wait_ready,
    workspace,
)

FAKE = Path(__file__).resolve().parents[1] / "fake_providers.py"
MESSAGES = [{"role": "user", "content": "say something short"}]


def start_fake(tmp: Path) -> tuple[Server, str]:
    log = tmp / "fake.out"
    server = start_server(
        "fake", [sys.executable, str(FAKE), "--kind", "openai", "--port", "0"], "", log
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if "http://" in text:
            return server, text.split()[0].strip()
        if server.proc.poll() is not None:
            raise RuntimeError(f"the fake provider exited:\n{server.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError("the fake provider did not print its URL")


def direct_call(http: httpx.Client, base_url: str) -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with http.stream("POST", f"{base_url}/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "data: [DONE]":
                return
    raise RuntimeError("the stream ended without [DONE]")


class GatewayCalls(RawClient):
    def complete(self) -> None:
        self.next_id += 1
        payload = {"model": "lab", "messages": MESSAGES}
        frame = {"v": 1, "id": self.next_id, "type": "providers.complete", "payload": payload}
        self.sock.send(msgpack.packb(frame, use_bin_type=True))
        reply = self._recv_reply()
        if reply["re"] != self.next_id or not reply["result"]["text"]:
            raise RuntimeError(f"unexpected reply {reply}")


def timed(fn: Any, n: int) -> float:
    """Median microseconds of n calls of fn."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--n", type=int, default=None, help="calls per turn")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 8)
    n = args.n or (50 if args.quick else 150)
    with workspace() as (tmp, ctx, servers):
        fake, base_url = start_fake(tmp)
        servers.append(fake)
        echo = start_echo(tmp)
        servers.append(echo)
        config = {
            "config_version": 2,
            "providers": {"lab": {"kind": "openai", "base_url": base_url, "api_key": "sk-bench"}},
            "models": {"lab": {"provider": "lab", "model": "m"}},
        }
        gateway = start_gateway(tmp, config, log_level="WARNING")
        servers.append(gateway)
        wait_ready(ctx, echo)
        wait_ready(ctx, gateway)
        floor_client, gw_client = RawClient(ctx, echo.endpoint), GatewayCalls(ctx, gateway.endpoint)
        http = httpx.Client(timeout=30)
        try:
            turns: dict[str, list[float]] = {"floor": [], "direct": [], "gateway": []}
            for fn in (lambda: floor_client.sequential(1), lambda: direct_call(http, base_url)):
                timed(fn, 20)  # warm-up
            timed(gw_client.complete, 20)
            for _ in range(rounds):
                turns["floor"].append(timed(lambda: floor_client.sequential(1), n))
                turns["direct"].append(timed(lambda: direct_call(http, base_url), n))
                turns["gateway"].append(timed(gw_client.complete, n))
        finally:
            http.close()
            floor_client.close()
            gw_client.close()
        med = {k: statistics.median(v) for k, v in turns.items()}
        overhead = med["gateway"] - med["direct"]
        result = {
            "machine": machine_info(),
            "rounds": rounds,
            "calls_per_turn": n,
            "median_us": {k: round(v, 1) for k, v in med.items()},
            "overhead_us": round(overhead, 1),
            "overhead_in_floor_round_trips": round(overhead / med["floor"], 2),
            "gateway_over_direct": round(med["gateway"] / med["direct"], 2),
            "turns_us": {k: [round(x, 1) for x in v] for k, v in turns.items()},
        }
        print(json.dumps({k: v for k, v in result.items() if k != "turns_us"}, indent=2))
        print(
            f"per call: direct {med['direct']:.0f} us, through the gateway {med['gateway']:.0f} us;"
            f" overhead {overhead:.0f} us = {overhead / med['floor']:.1f} floor round trips"
            f" ({med['floor']:.0f} us each)"
        )
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
