"""One socket's routed requests reach the actors in the order it sent them, also while the
idempotency gate reads the journal for some of them (their later requests wait behind)."""

from __future__ import annotations

import random
from pathlib import Path

from tek_actors import Gateway
from tests.conformance.conformance_client import RawClient, assert_ok


def test_requests_with_and_without_idem_keep_their_order(home: Path) -> None:
    rng = random.Random(1302)
    with Gateway.embedded(home, test_hooks=True) as gw:
        client = RawClient(gw._frontend.context, gw.endpoint, name="o")
        try:
            sent = []
            for i in range(300):
                extra = {"idem": f"order-{i}"} if rng.random() < 0.5 else {}
                env = client.envelope("probe.append", {"key": f"k{i}"}, **extra)
                client.send(env)
                sent.append(env["id"])
            for request_id in sent:
                assert_ok(client.recv_reply(request_id, timeout=20) or {})
            order = client.call("probe.get", {})["order"]
            assert order == [f"k{i}" for i in range(300)]
        finally:
            client.close()
