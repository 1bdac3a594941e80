"""kill -9 of the real gateway right after `sessions.send` answered: the message is there after
the restart, and its turn completes without anyone asking."""

from __future__ import annotations

from pathlib import Path

import pytest

from tek_actors.testing import GatewayProcess, write_config
from tek_actors.testing.fake_providers import FakeProvider

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_kill9_after_send_answered_keeps_the_message_and_completes_its_turn(home: Path) -> None:
    with FakeProvider("openai") as server:
        write_config(
            home,
            {
                "providers": {
                    "lab": {"kind": "openai", "base_url": server.base_url, "api_key": "sk-k9-1"}
                },
                "models": {"lab": {"provider": "lab", "model": "m"}},
                "default_model": "lab",
            },
        )
        server.script({"delay_s": 30.0, "text": "never seen"}, {"text": "the answer"})
        gateway = GatewayProcess(home).start()
        with gateway.client(timeout=30) as client:
            session = client.call("sessions.create", {"title": "k9"})
            sent = client.call("sessions.send", {"id": session["id"], "text": "remember me"})
            server.wait_for_requests(1)  # the turn is under way
            gateway.kill9()
        again = GatewayProcess(home).start()
        try:
            with again.client(timeout=30) as client:
                client.hello(since_seq=0, topics=["session.message"])
                while True:  # nobody asks: the restarted gateway resumes the turn by itself
                    event = client.next_event(30)
                    assert event is not None, "the turn did not complete after the restart"
                    if event["data"].get("turn") == sent["message_id"]:
                        break
                assert event["data"]["text"] == "the answer"
                entries = client.call("sessions.get", {"id": session["id"]})["entries"]
                assert [(e["role"], e["text"]) for e in entries] == [
                    ("user", "remember me"),
                    ("assistant", "the answer"),
                ]
        finally:
            assert again.terminate() == 0
