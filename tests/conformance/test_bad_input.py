"""Frames the gateway must refuse precisely, and go on serving afterwards."""

from __future__ import annotations

from collections.abc import Callable

import msgpack
import pytest

from tests.conformance.conformance_client import (
    DEFAULT_REPLY_TIMEOUT_S,
    GatewayProcess,
    RawClient,
    assert_error,
    assert_ok,
    pack,
)


def _any_reply(msg: dict) -> bool:  # type: ignore[type-arg]
    return "re" in msg


def _still_serving(client: RawClient) -> None:
    reply = client.request("gateway.ping", {})
    assert_ok(reply)


def test_garbage_bytes(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    client = connect(gateway)
    client.send_raw(b"\xc1\xff\x00 this is not msgpack")
    reply = client.recv_reply(None, match=_any_reply)
    assert reply is not None, "no reply to a garbage frame"
    assert_error(reply, "bad_frame", re=None)
    _still_serving(client)


def test_msgpack_array(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    client = connect(gateway)
    client.send_raw(pack([1, "arr-1", "gateway.ping", {}]))
    reply = client.recv_reply(None, match=_any_reply)
    assert reply is not None, "no reply to a MessagePack array"
    assert_error(reply, "bad_frame", re=None)
    _still_serving(client)


def test_map_without_type(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    client = connect(gateway)
    client.send({"v": 1, "id": "nt-1", "payload": {}})
    reply = client.recv_reply("nt-1")
    assert reply is not None, "no reply to a request without type"
    error = assert_error(reply, "invalid_request", re="nt-1")
    assert error["details"]["field"] == "type"
    _still_serving(client)


def test_unknown_envelope_field(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    client = connect(gateway)
    client.send({"v": 1, "id": "xf-1", "type": "gateway.ping", "payload": {}, "bogus": 1})
    reply = client.recv_reply("xf-1")
    assert reply is not None, "no reply to a request with an unknown envelope field"
    error = assert_error(reply, "invalid_request", re="xf-1")
    assert error["details"]["field"] == "bogus"
    _still_serving(client)


@pytest.mark.parametrize("version", [True, 1.0, "1", 2, None])
def test_v_is_the_integer_1_and_nothing_else(
    gateway: GatewayProcess, connect: Callable[..., RawClient], version: object
) -> None:
    client = connect(gateway)
    client.send({"v": version, "id": "v-1", "type": "gateway.ping", "payload": {}})
    reply = client.recv_reply("v-1")
    assert reply is not None, f"no reply to v={version!r}"
    assert assert_error(reply, "invalid_request", re="v-1")["details"]["field"] == "v"
    _still_serving(client)


@pytest.mark.parametrize("type_", ["gateway.ping", "gateway.status", "bye", "hello"])
def test_local_verbs_refuse_unknown_payload_fields(
    gateway: GatewayProcess, connect: Callable[..., RawClient], type_: str
) -> None:
    client = connect(gateway)
    payload = {"client_id": "strict", "bogus": 1} if type_ == "hello" else {"bogus": 1}
    client.send({"v": 1, "id": "sf-1", "type": type_, "payload": payload})
    reply = client.recv_reply("sf-1")
    assert reply is not None, f"no reply to {type_} with an unknown field"
    assert assert_error(reply, "invalid_request", re="sf-1")["details"]["field"] == "payload.bogus"
    _still_serving(client)


def test_unknown_type(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    client = connect(gateway)
    reply = client.request("nosuch.thing", {}, id_="ut-1")
    assert_error(reply, "unknown_type", re="ut-1")
    _still_serving(client)


def test_two_frames(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    client = connect(gateway)
    env = {"v": 1, "id": "tf-1", "type": "gateway.ping", "payload": {}}
    client.send_frames([pack(env), pack(env)])
    reply = client.recv_reply(None, match=_any_reply)
    assert reply is not None, "no reply to a two-frame message"
    assert_error(reply, "bad_frame")
    assert reply["re"] in (None, "tf-1")
    _still_serving(client)


def test_payload_wrong_type(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    client = connect(gateway)
    reply = client.request("probe.append", {"key": 5}, id_="pk-1")
    error = assert_error(reply, "invalid_request", re="pk-1")
    assert error["details"]["field"] == "payload.key"
    _still_serving(client)


def test_too_large_frame(gateway: GatewayProcess, connect: Callable[..., RawClient]) -> None:
    """3 MiB: refused with too_large, or dropped by the socket; the gateway goes on serving."""
    client = connect(gateway, name="big")
    blob = b"x" * (3 << 20)
    frame = msgpack.packb(
        {"v": 1, "id": "big-1", "type": "probe.append", "payload": {"key": "big", "value": blob}},
        use_bin_type=True,
    )
    assert len(frame) > 3 << 20
    client.send_raw(frame)
    reply = client.recv_reply(None, match=_any_reply, timeout=DEFAULT_REPLY_TIMEOUT_S)
    if reply is not None:
        assert_error(reply, "too_large")
        assert reply["re"] in (None, "big-1")
        _still_serving(client)
    fresh = connect(gateway, name="fresh")
    _still_serving(fresh)
    items = fresh.call("probe.get", {})["items"]
    assert "big" not in items
