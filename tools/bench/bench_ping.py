"""`gateway.ping` round trips of the real gateway against a bare pyzmq+msgpack floor.

Two server processes, driven by the same raw client (a pyzmq DEALER + msgpack, nothing from
tek_actors) from this process:

  echo     tools/bench/echo_server.py: a ROUTER that decodes each frame and answers a ping-shaped
           reply map, nothing else; the floor for one Python process doing ZeroMQ + MessagePack.
  gateway  `python -m tek_actors gateway run` with TEK_HOME in a fresh temp dir, on its default
           endpoint ipc://<TEK_HOME>/run/gateway.sock.

Two modes: sequential (send one request, wait for its reply) and pipelined (keep WINDOW requests
in flight). Turns alternate (echo seq, gateway seq, echo pipe, gateway pipe) for --rounds rounds,
after one unrecorded warm-up turn each; many short turns rather than a few long ones, because
rates on a small shared VM drift by tens of percent from one second to the next. The report gives
per mode the median rate of each server and the ratio gateway/echo against the project's targets,
the spread of the per-round (paired) ratios, and each server's CPU time per message (every thread
of the server process, from /proc/<pid>/task/*/schedstat), which is far steadier than the rates.
Missing a target is reported, not an error: the exit code is 0 whenever the measurement ran.

    /work/venv/bin/python tools/bench/bench_ping.py            # full run (about 40 s on 2 cores)
    /work/venv/bin/python tools/bench/bench_ping.py --quick    # about 10 s
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zmq

ECHO_SERVER = Path(__file__).with_name("echo_server.py")
TARGETS = {"sequential": 0.65, "pipelined": 0.5}
WINDOW = 100
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
RECV_TIMEOUT_MS = 10_000

Turns = dict[str, dict[str, list[dict[str, Any]]]]  # mode -> server -> every turn's figures


class RawClient:
    """One DEALER socket speaking the wire envelope by hand; the same code for both servers."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
        self.sock.connect(endpoint)
        self.next_id = 0

    def close(self) -> None:
        self.sock.close(0)

    def request(self, type_name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One request and its result, skipping any event that arrives first; a gateway that
        is still starting (`unavailable`) is asked again after the delay it gives."""
        self.next_id += 1
        frame = {"v": 1, "id": self.next_id, "type": type_name, "payload": payload}
        self.sock.send(msgpack.packb(frame, use_bin_type=True))
        while True:
            message = msgpack.unpackb(self.sock.recv(), raw=False)
            if "event" in message:
                continue  # nothing is waited for yet, or it predates this request
            if not message.get("ok") and message["error"]["code"] == "unavailable":
                time.sleep(message["error"].get("retry_after_ms", 100) / 1000)
                return self.request(type_name, payload)
            if not message.get("ok"):
                raise RuntimeError(f"{type_name} failed: {message}")
            return dict(message["result"])

    def _send_ping(self) -> int:
        self.next_id += 1
        frame = msgpack.packb(
            {"v": 1, "id": self.next_id, "type": "gateway.ping", "payload": {}}, use_bin_type=True
        )
        self.sock.send(frame)
        return self.next_id

    def _recv_reply(self) -> dict[str, Any]:
        reply: dict[str, Any] = msgpack.unpackb(self.sock.recv(), raw=False)
        if not reply.get("ok"):
            raise RuntimeError(f"the server answered an error: {reply}")
        return reply

    def sequential(self, n: int) -> float:
        """Send one, wait for its reply, n times; the elapsed seconds."""
        start = time.perf_counter()
        for _ in range(n):
            sent = self._send_ping()
            reply = self._recv_reply()
            if reply["re"] != sent:
                raise RuntimeError(f"reply to {reply['re']!r}, expected {sent}")
        return time.perf_counter() - start

    def pipelined(self, n: int, window: int = WINDOW) -> float:
        """n requests with `window` of them in flight at any time; the elapsed seconds."""
        start = time.perf_counter()
        sent = received = 0
        while sent < min(window, n):
            self._send_ping()
            sent += 1
        while received < n:
            self._recv_reply()
            received += 1
            if sent < n:
                self._send_ping()
                sent += 1
        return time.perf_counter() - start


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_server(
    name: str, argv: list[str], endpoint: str, log_path: Path, env: dict[str, str] | None = None
) -> Server:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    return Server(name, proc, endpoint, log_path)


@contextlib.contextmanager
def workspace() -> Iterator[tuple[Path, zmq.Context[Any], list[Server]]]:
    """A temp folder (short: ipc paths are limited), a zmq context, and a list to put started
    servers in; afterwards every server is stopped and everything removed."""
    tmp = Path(tempfile.mkdtemp(prefix="tb", dir="/tmp"))
    ctx: zmq.Context[Any] = zmq.Context()
    servers: list[Server] = []
    try:
        yield tmp, ctx, servers
    finally:
        for server in reversed(servers):
            stop_server(server)
        ctx.term()
        shutil.rmtree(tmp, ignore_errors=True)


def start_echo(tmp: Path) -> Server:
    """The floor: echo_server.py on ipc://<tmp>/echo.sock."""
    endpoint = f"ipc://{tmp}/echo.sock"
    return start_server(
        "echo", [sys.executable, str(ECHO_SERVER), endpoint], endpoint, tmp / "echo.log"
    )


def start_gateway(
    tmp: Path, config: dict[str, Any] | None = None, log_level: str | None = None
) -> Server:
    """`tek gateway run` on a fresh TEK_HOME=<tmp>/home (no token, tcp or test hooks), with
    `config` as its config.json if given."""
    home = tmp / "home"
    if config is not None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEK_")}
    env["TEK_HOME"] = str(home)
    if log_level:
        env["TEK_LOG_LEVEL"] = log_level
    return start_server(
        "gateway",
        [sys.executable, "-m", "tek_actors", "gateway", "run"],
        f"ipc://{home}/run/gateway.sock",
        tmp / "gateway.log",
        env,
    )


def wait_ready(ctx: zmq.Context[Any], server: Server, ready_file: Path | None = None) -> None:
    """Send gateway.ping until the server answers (and `ready_file` exists, if given)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(server.endpoint)
            sock.send(msgpack.packb({"v": 1, "id": 0, "type": "gateway.ping", "payload": {}}))
            if sock.poll(200, zmq.POLLIN):
                reply = msgpack.unpackb(sock.recv(), raw=False)
                if reply.get("ok") and (ready_file is None or ready_file.exists()):
                    return
        finally:
            sock.close(0)
        time.sleep(0.05)
    raise RuntimeError(
        f"{server.name} did not answer within {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}"
    )


def stop_server(server: Server) -> None:
    """SIGTERM, wait for the exit; SIGKILL only if it does not go within STOP_TIMEOUT_S."""
    if server.proc.poll() is not None:
        return
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(
            f"warning: {server.name} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killing it",
            file=sys.stderr,
        )
        server.proc.kill()
        server.proc.wait()


def emit(result: dict[str, Any], summary: str, json_path: Path | None) -> None:
    """Print a benchmark's figures and its one-line summary; save the figures if asked."""
    print(json.dumps(result, indent=2))
    print(summary)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2))


def machine_info() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far (Linux /proc, ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):  # the thread just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def run_turn(client: RawClient, server: Server, mode: str, n: int, window: int) -> dict[str, Any]:
    """One turn: its rate and the server's CPU microseconds per message."""
    cpu_before = cpu_seconds(server.proc.pid)
    elapsed = client.sequential(n) if mode == "sequential" else client.pipelined(n, window)
    cpu = cpu_seconds(server.proc.pid) - cpu_before
    return {"rate": n / elapsed, "cpu_us": cpu / n * 1e6}


def run_turns(
    clients: dict[str, RawClient],
    servers: dict[str, Server],
    rounds: int,
    sizes: dict[str, int],
    window: int,
) -> Turns:
    """Alternating turns (echo seq, gateway seq, echo pipe, gateway pipe) after a warm-up."""
    plan = [(mode, name) for mode in TARGETS for name in ("echo", "gateway")]
    for mode, name in plan:  # warm-up, not recorded
        run_turn(clients[name], servers[name], mode, max(100, sizes[mode] // 5), window)
    turns: Turns = {m: {"echo": [], "gateway": []} for m in TARGETS}
    for r in range(rounds):
        for mode, name in plan:
            turn = run_turn(clients[name], servers[name], mode, sizes[mode], window)
            turns[mode][name].append(turn)
            print(
                f"  round {r + 1:>2}/{rounds}  {mode:<10}  {name:<7}  {turn['rate']:>9,.0f} "
                f"msgs/s  {turn['cpu_us']:>6.1f} us CPU/msg in the server",
                flush=True,
            )
    return turns


def report(turns: Turns, sizes: dict[str, int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    print()
    print(
        f"{'mode':<11} {'msgs/turn':>9} {'echo msgs/s':>12} {'gateway msgs/s':>15} "
        f"{'gateway/echo':>13} {'target':>7}  verdict"
    )
    for mode, target in TARGETS.items():
        echo = statistics.median(t["rate"] for t in turns[mode]["echo"])
        gateway = statistics.median(t["rate"] for t in turns[mode]["gateway"])
        ratio = gateway / echo
        verdict = "PASS" if ratio >= target else "BELOW"
        paired = [
            g["rate"] / e["rate"]
            for e, g in zip(turns[mode]["echo"], turns[mode]["gateway"], strict=True)
        ]
        summary[mode] = {
            "echo": echo,
            "gateway": gateway,
            "ratio": ratio,
            "target": target,
            "verdict": verdict,
            "round_ratios": paired,
            "echo_cpu_us": statistics.median(t["cpu_us"] for t in turns[mode]["echo"]),
            "gateway_cpu_us": statistics.median(t["cpu_us"] for t in turns[mode]["gateway"]),
            "turns": turns[mode],
        }
        print(
            f"{mode:<11} {sizes[mode]:>9,} {echo:>12,.0f} {gateway:>15,.0f} "
            f"{ratio:>13.2f} {'>=' + str(target):>7}  {verdict}"
        )
    print()
    print("server CPU per message (median over turns, every thread of the server process):")
    for mode, s in summary.items():
        print(
            f"  {mode:<11} echo {s['echo_cpu_us']:6.1f} us   "
            f"gateway {s['gateway_cpu_us']:6.1f} us   "
            f"({s['gateway_cpu_us'] / s['echo_cpu_us']:.1f}x)"
        )
    print("per-round gateway/echo ratios (paired turns; shows the noise):")
    for mode, s in summary.items():
        ratios = sorted(s["round_ratios"])
        print(
            f"  {mode:<11} min {ratios[0]:.2f}  median {statistics.median(ratios):.2f}  "
            f"max {ratios[-1]:.2f}"
        )
    print()
    for mode, s in summary.items():
        print(
            f"{mode} target (gateway/echo >= {s['target']}): {s['verdict']} "
            f"(ratio of medians {s['ratio']:.2f})"
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 short rounds (about 10 s)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--seq-n", type=int, default=1_500, help="messages per sequential turn")
    parser.add_argument("--pipe-n", type=int, default=20_000, help="messages per pipelined turn")
    parser.add_argument("--window", type=int, default=WINDOW, help="requests in flight (pipelined)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seq_n, args.pipe_n = 3, 1_000, 10_000

    info = machine_info()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(
        f"rounds {args.rounds}, {args.seq_n:,} msgs per sequential turn, "
        f"{args.pipe_n:,} per pipelined turn, window {args.window}"
    )

    tmp = Path(tempfile.mkdtemp(prefix="tb", dir="/tmp"))  # short: ipc paths max ~100 chars
    ctx = zmq.Context()
    servers: list[Server] = []
    clients: dict[str, RawClient] = {}
    try:
        echo = start_echo(tmp)
        servers.append(echo)
        home = tmp / "home"
        gateway = start_gateway(tmp)
        servers.append(gateway)
        wait_ready(ctx, echo)
        wait_ready(ctx, gateway, ready_file=home / "run" / "gateway.json")
        clients = {s.name: RawClient(ctx, s.endpoint) for s in servers}
        sizes = {"sequential": args.seq_n, "pipelined": args.pipe_n}
        turns = run_turns(clients, {s.name: s for s in servers}, args.rounds, sizes, args.window)
        summary = report(turns, sizes)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": info,
                        "args": vars(args) | {"json": str(args.json)},
                        "results": summary,
                    },
                    indent=2,
                )
            )
    finally:
        for client in clients.values():
            client.close()
        for server in servers:
            stop_server(server)
        ctx.term()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
