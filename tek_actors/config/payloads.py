"""The payloads of the config actor's requests (configuration.md, PROTOCOL.md)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictStr

from tek_actors.wire import WireModel

__all__ = [
    "GetPayload",
    "PathPayload",
    "ReplacePayload",
    "RestorePayload",
    "SetPayload",
    "ValidatePayload",
]

Path_ = Annotated[StrictStr, Field(min_length=1, max_length=1024)]


class GetPayload(WireModel):
    path: Path_ | None = None


class SetPayload(WireModel):
    path: Path_
    value: Any


class PathPayload(WireModel):
    path: Path_


class ReplacePayload(WireModel):
    document: dict[str, Any]
    base_version: Annotated[int, Field(ge=0)] | None = None


class ValidatePayload(WireModel):
    path: Path_ | None = None
    value: Any = None
    document: dict[str, Any] | None = None


class RestorePayload(WireModel):
    name: Annotated[StrictStr, Field(min_length=1, max_length=256)]
