"""The public pytest fixtures that host programs use to test against a real gateway."""

from __future__ import annotations

from tek_actors import Client, Gateway


def test_the_fixtures_give_a_served_gateway_and_a_client(
    tek_gateway: Gateway, tek_client: Client
) -> None:
    assert tek_client.ping()["boot_id"] == tek_gateway.boot_id
    assert tek_client.call("probe.append", {"key": "k"})["count"] == 1
    assert tek_gateway.status()["state"] == "running"
