"""Start-up of the `tek` command against the interpreter's own, measured in the same run.

Four commands, each a fresh process, run in interleaved rounds (the order rotates every round,
after one unrecorded warm-up round), so that a machine that gets busier or quieter during the
run weighs on all of them alike:

  python    `python -c pass`: the floor, the interpreter of the same virtualenv starting up
  version   `tek --version`
  help      `tek --help`
  ping      `tek ping` against a real gateway process (tek_actors.testing.GatewayProcess on a
            fresh TEK_HOME, started before the rounds and stopped after them)

`tek` is the virtualenv's console script next to the interpreter (or `python -m tek_actors`
where there is none). For each command the report gives the median wall time and the median CPU
time (user + system of that child process, from wait4; steadier than wall time on a shared
machine), and the ratio of each median to the floor's against the target of 5x: PASS or BELOW.
The exit code is 0 whenever the measurement ran; a command that fails is an error (exit 1).

    .venv/bin/python tools/bench/bench_cli.py            # 30 rounds, about 30 s on 2 cores
    .venv/bin/python tools/bench/bench_cli.py --quick    # 8 rounds
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tek_actors.errors import TekError
from tek_actors.testing.process import GatewayProcess

TARGET = 5.0
FLOOR = "python"


def tek_command() -> list[str]:
    script = Path(sys.executable).with_name("tek")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tek_actors"]


@contextmanager
def running_gateway() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="tekcli-", dir="/tmp"))  # short: ipc paths are bounded
    gateway = GatewayProcess(home)
    try:
        try:
            gateway.start(timeout=60)
        except TekError as exc:
            raise SystemExit(f"the gateway did not start: {exc}") from None
        yield home
    finally:
        try:
            gateway.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill9()
        shutil.rmtree(home, ignore_errors=True)


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `argv` (which must exit 0)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    errors = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {errors.decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(commands: dict[str, list[str]], rounds: int) -> dict[str, dict[str, list[float]]]:
    env = dict(os.environ, TEK_LOG_LEVEL="WARNING")
    figures: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in commands}
    names = list(commands)
    for round_no in range(rounds + 1):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = run_once(commands[name], env)
            if round_no > 0:  # round 0 warms the page cache and the gateway
                figures[name]["wall"].append(wall)
                figures[name]["cpu"].append(cpu)
    return figures


def report(figures: dict[str, dict[str, list[float]]], rounds: int) -> None:
    print(
        f"tek start-up, {rounds} rounds, python {platform.python_version()}, "
        f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}"
    )
    floor_wall = statistics.median(figures[FLOOR]["wall"])
    floor_cpu = statistics.median(figures[FLOOR]["cpu"])
    print(f"{'command':<10}{'wall p50':>10}{'ratio':>8}{'cpu p50':>10}{'ratio':>8}  target")
    for name, runs in figures.items():
        wall = statistics.median(runs["wall"])
        cpu = statistics.median(runs["cpu"])
        ratio = wall / floor_wall
        verdict = "" if name == FLOOR else ("PASS" if ratio <= TARGET else "BELOW")
        print(
            f"{name:<10}{wall * 1000:>8.1f}ms{ratio:>7.2f}x{cpu * 1000:>8.1f}ms"
            f"{cpu / floor_cpu:>7.2f}x  {verdict}"
        )
    print(f"target: each tek command's wall p50 <= {TARGET:g}x the floor's (python -c pass)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="8 rounds")
    args = parser.parse_args()
    rounds = 8 if args.quick else args.rounds
    tek = tek_command()
    with running_gateway() as home:
        commands = {
            FLOOR: [sys.executable, "-c", "pass"],
            "version": [*tek, "--version"],
            "help": [*tek, "--help"],
            "ping": [*tek, "--home", str(home), "ping"],
        }
        figures = measure(commands, rounds)
    report(figures, rounds)


if __name__ == "__main__":
    main()
