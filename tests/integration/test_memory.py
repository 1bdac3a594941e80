"""Hostile clients cannot make the gateway keep what it refuses: requests with ~1 MiB fields of
every type and random frames, against the real gateway process. RSS stays within a bound, and
every well-formed request is answered.

The figures for the full runs (1,000 big requests, 100,000 frames) are in docs/performance.md,
from tools/bench/bench_memory.py; this test runs a shorter load with the same bound."""

from __future__ import annotations

from pathlib import Path

from tek_actors.testing import GatewayProcess
from tek_actors.testing.memory import HostileClient, MemoryRun, big_requests, fuzz_frames

GROWTH_BOUND_MIB = 50  # the bound for the full runs


def test_big_fields_and_random_frames_keep_memory_bounded(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path / "home") as gw:
        run = MemoryRun(gw.pid)
        client = HostileClient(gw.wait_connection_file()["endpoint"], window=16)
        try:
            run.sample()
            for i, (kind, payload) in enumerate(big_requests(300)):
                client.request(kind, payload, f"big-{i}")
                if i % 50 == 0:
                    run.sample()
            assert client.drain() == 0, "a request with a big field was never answered"
            run.sample()
            for i, (frame, well_formed) in enumerate(fuzz_frames(20_000)):
                client.send(frame, request_id=i if well_formed else None)
                if i % 2_000 == 0:
                    run.sample()
            assert client.drain() == 0, "a well-formed fuzz request was never answered"
            run.sample()
        finally:
            client.close()
        assert run.growth < GROWTH_BOUND_MIB, f"RSS grew {run.growth:.0f} MiB: {run.samples}"
        with gw.client() as check:
            assert check.ping()["state"] == "running"
