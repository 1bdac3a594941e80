"""The envelopes of PROTOCOL.md as models, and the builders of outgoing frames.

Incoming requests are validated by a frozen pydantic model (`Request`). Outgoing replies and
events are plain dicts built here, because the gateway builds them from values it already trusts
and the hot path should not pay for validation twice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

PROTOCOL_VERSION = 1

TypeName = Annotated[
    StrictStr, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
]
RequestId = StrictStr | StrictInt


class WireModel(BaseModel):
    """Base of every model at the edge: frozen, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Request(WireModel):
    """A request envelope (client -> gateway)."""

    v: Literal[1]
    id: Annotated[RequestId, Field(union_mode="left_to_right")]
    type: TypeName
    payload: dict[str, Any] = Field(default_factory=dict)
    timeout_ms: Annotated[StrictInt, Field(gt=0, le=86_400_000)] | None = None
    idem: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = None

    @field_validator("v", mode="before")
    @classmethod
    def _integer_version(cls, value: Any) -> Any:
        if type(value) is not int:  # true and 1.0 equal 1 in Python; on the wire they are not
            raise ValueError("v must be the integer 1 (the protocol version)")
        return value


class HelloPayload(WireModel):
    """`hello`: who the client is, where it stopped, which topics it follows."""

    client_id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    since_seq: Annotated[StrictInt, Field(ge=0)] | None = None
    topics: list[Annotated[StrictStr, Field(min_length=1, max_length=128)]] | None = None
    token: Annotated[StrictStr, Field(max_length=1024)] | None = None


class GracePayload(WireModel):
    """`gateway.restart` and `gateway.shutdown`: how long in-flight work may take to finish."""

    grace_ms: Annotated[StrictInt, Field(ge=0, le=600_000)] = 30_000


class EmptyPayload(WireModel):
    """A message type that takes no payload fields."""


def ok_reply(request_id: Any, result: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "re": request_id, "ok": True, "result": result}


def error_reply(request_id: Any, error: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "re": request_id, "ok": False, "error": error}


def durable_event(
    name: str, seq: int, boot_id: str, ts: float, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "event": name,
        "seq": seq,
        "boot": boot_id,
        "ts": ts,
        "data": data,
    }


def ephemeral_event(
    name: str, after: int, boot_id: str, ts: float, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "event": name,
        "seq": None,
        "after": after,
        "boot": boot_id,
        "ts": ts,
        "data": data,
    }
