"""Request deadlines run on the gateway's Clock: with a FakeClock a test moves time and the
frontend answers `timeout` at once, instead of the test waiting the deadline out."""

from __future__ import annotations

from pathlib import Path

from tek_actors import Gateway
from tek_actors.runtime import FakeClock
from tests.conformance.conformance_client import RawClient, assert_error
from tests.waiting import until


def test_a_deadline_passes_when_the_clock_says_so(home: Path) -> None:
    clock = FakeClock()
    with Gateway.embedded(home, clock=clock, test_hooks=True) as gw:
        # A raw client: tek's Client would resend a request that did not start, by design.
        client = RawClient(gw._frontend.context, gw.endpoint, name="d")
        try:
            # The probe actor is busy with the first request (it runs: "started"); the second
            # waits in its mailbox behind it (it never starts).
            busy = client.envelope("probe.append", {"key": "busy", "work_ms": 5000})
            queued = client.envelope("probe.append", {"key": "queued"})
            for env in (busy, queued):
                client.send({**env, "timeout_ms": 30_000})
            requests = gw._frontend.requests  # read from here only to know both arrived
            until(lambda: len(requests.pending) == 2, "both requests are pending")
            until(lambda: any(t.started for t in list(requests.pending)), "the probe took one")
            clock.advance(31)  # past both deadlines (30 s of the gateway's time)
            # Both answered now, in deadline order, well before the busy request's 5 s end.
            error = assert_error(client.recv_reply(busy["id"], timeout=4), "timeout")
            assert error["details"]["started"] is True
            error = assert_error(client.recv_reply(queued["id"], timeout=4), "timeout")
            assert error["details"]["started"] is False
            # The queued request was cancelled before it ran: only the busy one is there.
            # (probe.get waits in the mailbox until the busy request is done.)
            assert client.call("probe.get", {}, timeout=30)["order"] == ["busy"]
        finally:
            client.close()
