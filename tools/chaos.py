"""Randomized kill -9 chaos against a real gateway process (tek_actors.testing.chaos).

    python tools/chaos.py --cycles 200 --seed 7 [--home DIR] [--json FILE]

Prints the seed, the schedule's figures and every violation; exits 1 if there was one. Without
--home the run gets a fresh folder under /tmp, removed afterwards unless something was found."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from tek_actors.testing.chaos import ChaosSettings, format_report, run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", help="an empty, short folder (default: a new one in /tmp)")
    parser.add_argument("--json", help="also write the whole report to this file")
    parser.add_argument("--rehydration-share", type=float, default=0.25)
    args = parser.parse_args(argv)
    made = args.home is None
    home = Path(tempfile.mkdtemp(prefix="tc", dir="/tmp")) if made else Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    if not made and any(home.iterdir()):
        parser.error(f"--home {home} is not empty: a run needs a fresh home")
    settings = ChaosSettings(
        cycles=args.cycles, seed=args.seed, rehydration_share=args.rehydration_share
    )
    report = run_chaos(settings, home=home)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2, default=str))
    if made and report.ok:
        shutil.rmtree(home, ignore_errors=True)
    elif made:
        print(f"the home is kept for a look: {home}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
