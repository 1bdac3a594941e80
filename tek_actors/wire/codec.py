"""Bytes <-> envelopes, with a size bound and MessagePack limits.

Every failure becomes a `TekError` with the PROTOCOL.md code: `too_large` for a frame over the
bound, `bad_frame` for bytes that are not one MessagePack map, `invalid_request` (naming the
field) for a map that is not a valid request. The error carries `request_id`, the id the reply
must echo in `re` (None when the frame had no usable id).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import msgpack

from tek_actors.errors import BadFrame, InvalidRequest, TekError, TooLarge

if TYPE_CHECKING:  # pydantic and the models load only where requests are validated
    from pydantic import ValidationError

    from tek_actors.wire.envelope import Request

DEFAULT_MAX_FRAME_BYTES = 1 << 20
# Containers inside one frame; a frame cannot hold more entries than bytes anyway.
_MAX_CONTAINER_ENTRIES = 100_000


class FrameError(Exception):
    """A frame that cannot be served, with the error to answer and the id to answer it to."""

    def __init__(self, error: TekError, request_id: Any = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.request_id = request_id


class Codec:
    """Encodes and decodes frames under one size bound. Thread-safe: it holds no buffers."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be at least 1024")
        self.max_frame_bytes = max_frame_bytes
        entries = min(_MAX_CONTAINER_ENTRIES, max_frame_bytes)
        self._unpack_limits = {
            "max_str_len": max_frame_bytes,
            "max_bin_len": max_frame_bytes,
            "max_array_len": entries,
            "max_map_len": entries,
            "max_ext_len": 0,
        }

    def encode(self, obj: Any) -> bytes:
        """One frame. Raises TooLarge if the result is over the bound (the caller's value)."""
        try:
            frame: bytes = msgpack.packb(obj, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidRequest(f"value cannot be encoded as MessagePack: {exc}") from exc
        if len(frame) > self.max_frame_bytes:
            raise TooLarge(
                f"encoded frame is {len(frame)} bytes, over the bound of {self.max_frame_bytes}",
                details={"size": len(frame), "max": self.max_frame_bytes},
            )
        return frame

    def decode_map(self, frame: bytes) -> dict[str, Any]:
        """Any envelope as a dict (used by clients for replies and events)."""
        if len(frame) > self.max_frame_bytes:
            raise TooLarge(
                f"frame of {len(frame)} bytes is over the bound of {self.max_frame_bytes}",
                details={"size": len(frame), "max": self.max_frame_bytes},
            )
        try:
            obj = msgpack.unpackb(frame, raw=False, **self._unpack_limits)
        except Exception as exc:  # msgpack raises ValueError, its own errors, and RecursionError
            raise BadFrame(f"frame is not valid MessagePack ({type(exc).__name__}: {exc})") from exc
        if not isinstance(obj, dict):
            raise BadFrame(f"frame must be one MessagePack map, got {type(obj).__name__}")
        return obj

    def decode_request(self, frame: bytes) -> Request:
        """A validated request, or FrameError carrying the error and the id to answer."""
        try:
            obj = self.decode_map(frame)
        except TekError as exc:
            raise FrameError(exc) from exc
        request_id = obj.get("id")
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            request_id = None
        request_model, validation_error = _request_types()
        try:
            return request_model.model_validate(obj)
        except validation_error as exc:
            raise FrameError(invalid_request_from(exc, prefix=""), request_id) from exc


@functools.cache
def _request_types() -> tuple[type[Request], type[ValidationError]]:
    """The request model and pydantic's error, imported at the first decode (a client, which
    only encodes requests, never loads pydantic) and kept."""
    from pydantic import ValidationError

    from tek_actors.wire.envelope import Request

    return Request, ValidationError


def invalid_request_from(exc: ValidationError, *, prefix: str) -> InvalidRequest:
    """An InvalidRequest naming the first failing field, with every error in details."""
    errors = [
        {"field": prefix + ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0]
    field = first["field"] or prefix.rstrip(".") or "envelope"
    return InvalidRequest(
        f"invalid request: {field}: {first['problem']}",
        details={"field": field, "errors": errors},
    )
