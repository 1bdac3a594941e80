"""Serve a fake OpenAI or Anthropic API on 127.0.0.1 until Ctrl-C, for trying adapters by hand.

Prints the base URL on stdout. --script loads a JSON list of scripted responses (the dicts of
`tek_actors.testing.fake_providers.FakeProvider.script`), queued before serving; once they are
used up, requests get the default echo reply.

It serves with tek_actors' own test server, so it runs with the python that has tek_actors
installed (the project's virtualenv), from the repository's root:

    .venv/bin/python tools/fake_providers.py --kind openai --port 8000
    .venv/bin/python tools/fake_providers.py --kind anthropic --port 0 --script faults.json
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

try:
    from tek_actors.testing.fake_providers import KINDS, FakeProvider
except ModuleNotFoundError as missing:  # another python than the one tek is installed in
    if missing.name is None or missing.name.split(".")[0] != "tek_actors":
        raise
    sys.exit(
        f"tools/fake_providers.py needs the tek_actors package, which {sys.executable} cannot "
        "import: run it with the python of the virtualenv tek is installed in "
        "(`.venv/bin/python tools/fake_providers.py ...`), or `pip install -e .` for this one"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI or Anthropic API.")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="a JSON file: a list of scripted responses")
    args = parser.parse_args(argv)
    try:
        scripts = json.loads(args.script.read_text()) if args.script else []
    except (OSError, ValueError) as exc:
        parser.error(f"--script: {exc}")
    if not isinstance(scripts, list) or not all(isinstance(s, dict) for s in scripts):
        parser.error("--script must hold a JSON list of objects")
    fake = FakeProvider(args.kind, args.port)
    try:
        fake.script(*scripts)
    except ValueError as exc:
        parser.error(str(exc))
    with fake:
        print(fake.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
