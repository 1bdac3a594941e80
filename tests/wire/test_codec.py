"""The codec: every bad frame maps to bad_frame, invalid_request (naming the field) or too_large."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tek_actors.wire import Codec, FrameError


@pytest.fixture
def codec() -> Codec:
    return Codec(max_frame_bytes=4096)


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def test_a_valid_request_decodes_with_defaults(codec: Codec) -> None:
    request = codec.decode_request(pack({"v": 1, "id": 7, "type": "gateway.ping"}))
    assert (request.id, request.type, request.payload, request.idem) == (
        7,
        "gateway.ping",
        {},
        None,
    )


@pytest.mark.parametrize(
    ("frame", "code", "re"),
    [
        (b"\xc1", "bad_frame", None),
        (pack([1, 2]), "bad_frame", None),
        (pack("text"), "bad_frame", None),
        (b"", "bad_frame", None),
        (pack({"v": 1, "id": "a"}), "invalid_request", "a"),
        (pack({"v": 2, "id": 3, "type": "gateway.ping"}), "invalid_request", 3),
        (pack({"v": 1, "id": 3.5, "type": "gateway.ping"}), "invalid_request", None),
        (pack({"v": 1, "id": True, "type": "gateway.ping"}), "invalid_request", None),
        (pack({"v": 1, "id": 1, "type": "Bad Type!"}), "invalid_request", 1),
        (pack({"v": 1, "id": 1, "type": "x.y", "payload": [1]}), "invalid_request", 1),
        (pack({"v": 1, "id": 1, "type": "x.y", "extra": 1}), "invalid_request", 1),
        (pack({"v": 1, "id": 1, "type": "x.y", "timeout_ms": 0}), "invalid_request", 1),
        (pack({"v": 1, "id": 1, "type": "x.y", "idem": ""}), "invalid_request", 1),
        (b"\x00" * 5000, "too_large", None),
    ],
)
def test_bad_frames_get_the_protocol_code(
    codec: Codec, frame: bytes, code: str, re: object
) -> None:
    with pytest.raises(FrameError) as caught:
        codec.decode_request(frame)
    assert caught.value.error.code == code
    assert caught.value.request_id == re
    assert caught.value.error.message


def test_invalid_request_names_the_field(codec: Codec) -> None:
    with pytest.raises(FrameError) as caught:
        codec.decode_request(pack({"v": 1, "id": "q"}))
    assert caught.value.error.details["field"] == "type"
    assert "type" in caught.value.error.message


def test_encode_refuses_frames_over_the_bound(codec: Codec) -> None:
    with pytest.raises(Exception) as caught:
        codec.encode({"blob": b"x" * 5000})
    assert getattr(caught.value, "code", None) == "too_large"


def test_deeply_nested_frames_are_refused_not_crashing(codec: Codec) -> None:
    frame = b"\x91" * 3000 + b"\xc0"  # 3000 nested one-element arrays
    with pytest.raises(FrameError) as caught:
        codec.decode_request(frame)
    assert caught.value.error.code == "bad_frame"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_either_decode_or_fail_with_a_protocol_code(frame: bytes) -> None:
    codec = Codec(max_frame_bytes=4096)
    try:
        codec.decode_request(frame)
    except FrameError as exc:
        assert exc.error.code in {"bad_frame", "invalid_request", "too_large"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "id", "type", "payload", "timeout_ms", "idem", "x"]),
        json_values,
        max_size=7,
    )
)
def test_any_map_either_validates_or_names_a_field(envelope: dict[str, object]) -> None:
    codec = Codec(max_frame_bytes=1 << 16)
    try:
        request = codec.decode_request(pack(envelope))
    except FrameError as exc:
        assert exc.error.code == "invalid_request"
        assert exc.error.details["field"]
    else:
        assert request.v == 1 and isinstance(request.type, str)
