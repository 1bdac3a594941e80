"""A client in another language: Node.js with its own ZMTP 3.0 and MessagePack code (no
packages) runs the basic conversation against the real gateway process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conformance.conformance_client import GatewayProcess

NODE = shutil.which("node")
SCRIPT = Path(__file__).parent / "js" / "client.mjs"


@pytest.mark.skipif(NODE is None, reason="node is not installed on this machine")
def test_a_nodejs_client_speaks_the_protocol(own_gateway: GatewayProcess) -> None:
    assert NODE is not None
    run = subprocess.run(
        [NODE, str(SCRIPT), str(own_gateway.socket_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["ping"]["ok"] is True
    assert seen["ping"]["result"]["boot_id"] == own_gateway.read_connection()["boot_id"]
    assert seen["status_state"] == "running"
    assert seen["garbage"]["re"] is None and seen["garbage"]["error"]["code"] == "bad_frame"
    assert seen["no_type"]["error"]["code"] == "invalid_request"
    assert seen["no_type"]["error"]["details"]["field"] == "type"
    assert seen["unknown"]["error"]["code"] == "unknown_type"
    assert seen["first"]["result"] == seen["again"]["result"] == {"key": "from-js", "count": 1}
    assert seen["hello"]["result"]["resync"] == "replay"
    [event] = seen["events"]
    assert event["data"] == {"key": "from-js", "value": [1, "two", None]}
    assert isinstance(event["seq"], int) and event["boot"] == seen["ping"]["result"]["boot_id"]
