"""Pure bytes <-> models: envelopes, the codec and its bounds. No sockets, no threads."""

from tek_actors.wire.codec import DEFAULT_MAX_FRAME_BYTES, Codec, FrameError, invalid_request_from
from tek_actors.wire.envelope import (
    PROTOCOL_VERSION,
    EmptyPayload,
    GracePayload,
    HelloPayload,
    Request,
    WireModel,
    durable_event,
    ephemeral_event,
    error_reply,
    ok_reply,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "Codec",
    "EmptyPayload",
    "FrameError",
    "GracePayload",
    "HelloPayload",
    "Request",
    "WireModel",
    "durable_event",
    "ephemeral_event",
    "error_reply",
    "invalid_request_from",
    "ok_reply",
]
