"""Memory under hostile input: the gateway process's RSS while a raw client sends requests with
~1 MiB fields of every type and random frames (tek_actors/testing/memory.py).

Two loads against a fresh gateway process (`tek gateway run`, its own TEK_HOME): 1,000 requests
each carrying one ~1 MiB field (content types take it and refuse the value; small types refuse
it at their bound), then 100,000 random frames (well-formed requests with junk payloads,
MessagePack junk, random bytes). RSS is sampled as it goes and after a short rest; the target
(issue 13): growth under 50 MiB, and back within 20 MiB of the start. Also counted: requests
never answered (must be 0).

A measurement, not a test: the exit code is 0 whenever it ran.

    .venv/bin/python tools/bench/bench_memory.py            # 1,000 big + 100,000 frames
    .venv/bin/python tools/bench/bench_memory.py --quick    # 200 big + 20,000 frames
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tek_actors.testing import GatewayProcess
from tek_actors.testing.memory import (
    HostileClient,
    MemoryRun,
    big_requests,
    fuzz_frames,
)

GROWTH_MIB, RETURN_MIB = 50, 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--big", type=int, default=1_000)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument(
        "--rest", type=float, default=5.0, help="seconds idle before the last sample"
    )
    args = parser.parse_args()
    big, frames = (200, 20_000) if args.quick else (args.big, args.frames)
    with tempfile.TemporaryDirectory(prefix="tekmem") as home, GatewayProcess(home) as gw:
        run = MemoryRun(gw.pid)
        client = HostileClient(gw.wait_connection_file()["endpoint"], window=32)
        try:
            start = run.sample()
            t0 = time.perf_counter()
            for i, (kind, payload) in enumerate(big_requests(big)):
                client.request(kind, payload, f"big-{i}")
                if i % 50 == 0:
                    run.sample()
            lost_big = client.drain()
            after_big = run.sample()
            for i, (frame, well_formed) in enumerate(fuzz_frames(frames)):
                client.send(frame, request_id=i if well_formed else None)
                if i % 5_000 == 0:
                    run.sample()
            lost_fuzz = client.drain()
            elapsed = time.perf_counter() - t0
            run.sample()
            time.sleep(args.rest)  # the rest before the last reading, not synchronisation
            end = run.sample()
        finally:
            client.close()
    peak = max(run.samples)
    print(f"{big} requests with ~1 MiB fields, then {frames} random frames, in {elapsed:.1f} s")
    print(
        f"RSS MiB: start {start:.1f}, after the big requests {after_big:.1f}, peak {peak:.1f}, "
        f"after {args.rest:.0f} s idle {end:.1f}"
    )
    print(f"unanswered: {lost_big} big, {lost_fuzz} fuzz")
    verdict = "PASS" if peak - start < GROWTH_MIB else "BELOW"
    print(f"{verdict} growth {peak - start:.1f} MiB < {GROWTH_MIB}")
    verdict = "PASS" if end - start < RETURN_MIB else "BELOW"
    print(f"{verdict} back to {end - start:+.1f} MiB of the start (< {RETURN_MIB})")
    print(f"{'PASS' if lost_big + lost_fuzz == 0 else 'BELOW'} every request answered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
