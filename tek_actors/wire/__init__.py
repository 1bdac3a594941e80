"""Pure bytes <-> models: envelopes, the codec and its bounds. No sockets, no threads.

Each name loads its module on first use: a client encodes and decodes frames with the codec and
never needs the pydantic models of requests (the gateway validates with them).
"""

from typing import TYPE_CHECKING

from tek_actors import _lazy_exports

if TYPE_CHECKING:
    from tek_actors.wire.codec import (
        DEFAULT_MAX_FRAME_BYTES,
        Codec,
        FrameError,
        invalid_request_from,
    )
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

_CODEC = "tek_actors.wire.codec"
_ENVELOPE = "tek_actors.wire.envelope"

__getattr__ = _lazy_exports(
    __name__,
    {
        "DEFAULT_MAX_FRAME_BYTES": _CODEC,
        "PROTOCOL_VERSION": _ENVELOPE,
        "Codec": _CODEC,
        "EmptyPayload": _ENVELOPE,
        "FrameError": _CODEC,
        "GracePayload": _ENVELOPE,
        "HelloPayload": _ENVELOPE,
        "Request": _ENVELOPE,
        "WireModel": _ENVELOPE,
        "durable_event": _ENVELOPE,
        "ephemeral_event": _ENVELOPE,
        "error_reply": _ENVELOPE,
        "invalid_request_from": _CODEC,
        "ok_reply": _ENVELOPE,
    },
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
