"""The one exception tree of tek_actors.

    TekError                         base; carries the PROTOCOL.md error `code`
    ├── BadFrame          bad_frame        the peer sent bytes that are not a MessagePack map
    ├── InvalidRequest    invalid_request  the caller's envelope or payload fails its schema
    ├── UnknownType       unknown_type     the caller asked for a message type nobody handles
    ├── Unauthorized      unauthorized     the caller did not authenticate
    ├── NotFound          not_found        the caller named something that does not exist
    ├── Conflict          conflict         the caller's request clashes with the current state
    ├── InvalidValue      invalid_value    a value out of its domain (details.path names it)
    ├── RequestTimeout    timeout          the deadline passed before an answer
    ├── Unavailable       unavailable      shutting down, restarting, or a dependency is down
    │   └── StorageUnavailable             the disk is full or read-only: nothing was written
    ├── Overloaded        overloaded       a queue is at its bound
    ├── TooLarge          too_large        a frame or value over its size bound
    ├── RateLimited       rate_limited     a provider or the gateway asks the caller to wait
    ├── Internal          internal         a bug, or a crash while handling the request
    ├── JournalError      internal         the disk failed under the journal (fatal, never retried)
    └── ConnectionLost    unavailable      client side: the gateway stopped answering

Foreign errors (zmq, msgpack, pydantic, sqlite3) are converted into these once, at the boundary of
the layer that meets them. The client rebuilds the typed error from the wire code with
`error_from_wire`.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ERROR_CODES",
    "BadFrame",
    "Conflict",
    "ConnectionLost",
    "Internal",
    "InvalidRequest",
    "InvalidValue",
    "JournalError",
    "NotFound",
    "Overloaded",
    "RateLimited",
    "RequestTimeout",
    "StorageUnavailable",
    "TekError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnknownType",
    "error_from_wire",
]


class TekError(Exception):
    """Base of every error tek_actors raises on purpose."""

    code: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.retry_after_ms = retry_after_ms

    def to_wire(self) -> dict[str, Any]:
        """The `error` object of a reply envelope."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        if self.retry_after_ms is not None:
            error["retry_after_ms"] = self.retry_after_ms
        return error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class BadFrame(TekError):
    """The peer's fault: the frame is not a MessagePack map."""

    code = "bad_frame"


class InvalidRequest(TekError):
    """The caller's fault: the envelope or payload fails its schema; details.field names it."""

    code = "invalid_request"


class UnknownType(TekError):
    """The caller's fault: no actor handles that message type."""

    code = "unknown_type"


class Unauthorized(TekError):
    """The caller's fault: not authenticated (tcp needs a token in hello)."""

    code = "unauthorized"


class NotFound(TekError):
    """The caller's fault: the named thing does not exist."""

    code = "not_found"


class Conflict(TekError):
    """The caller's fault: the request clashes with the current state (e.g. decided twice)."""

    code = "conflict"


class InvalidValue(TekError):
    """The caller's fault: a value outside its domain; details.path names where."""

    code = "invalid_value"


class RequestTimeout(TekError):
    """Nobody's fault yet: the deadline passed. details.started says whether work had begun."""

    code = "timeout"


class Unavailable(TekError):
    """The gateway's state: shutting down, restarting, or a dependency is down; retry later."""

    code = "unavailable"


class StorageUnavailable(Unavailable):
    """The disk's fault: it is full or read-only, and it refused before anything was made
    durable, so nothing was written and nothing changed (unlike JournalError, where nobody can
    know). `details`: `reason` (`disk_full` or `read_only`), `path` (the folder to free or make
    writable) and `retryable: false` (resending helps only once a person has done that)."""

    @classmethod
    def refused(cls, reason: str, folder: str, what: str, then: str) -> StorageUnavailable:
        """The disk holding `folder` refused for `reason`; `what` says what that left undone
        and `then` what to do once there is room (or it is writable)."""
        if reason == "disk_full":
            cause, remedy = f"the disk holding {folder} is full", "Free space there"
        else:
            cause, remedy = (
                f"{folder} is read-only (or not writable by the gateway)",
                "Make it writable",
            )
        return cls(
            f"{cause}: {what}. {remedy}, {then}",
            details={"reason": reason, "path": folder, "retryable": False},
            retry_after_ms=5_000,
        )


class Overloaded(TekError):
    """The gateway's state: a bounded queue is full; retry after retry_after_ms."""

    code = "overloaded"


class TooLarge(TekError):
    """The caller's fault: a frame or value over its size bound."""

    code = "too_large"


class RateLimited(TekError):
    """A provider's or the gateway's request to wait; retry after retry_after_ms."""

    code = "rate_limited"


class Internal(TekError):
    """A bug, or a crash while handling the request (the change may or may not have happened)."""

    code = "internal"


class JournalError(Internal):
    """The disk's fault: a journal write or fsync failed. Fatal to the writer, never retried."""


class ConnectionLost(Unavailable):
    """The peer's fault, client side: the gateway stopped answering within the heartbeat."""


_BY_CODE: dict[str, type[TekError]] = {
    cls.code: cls
    for cls in (
        BadFrame,
        InvalidRequest,
        UnknownType,
        Unauthorized,
        NotFound,
        Conflict,
        InvalidValue,
        RequestTimeout,
        Unavailable,
        Overloaded,
        TooLarge,
        RateLimited,
        Internal,
    )
}

ERROR_CODES: frozenset[str] = frozenset(_BY_CODE)
_STORAGE = frozenset({"disk_full", "read_only"})


def error_from_wire(error: Any) -> TekError:
    """Rebuild the typed error from a reply's `error` object (client side)."""
    if not isinstance(error, dict):
        return Internal(f"malformed error object from the gateway: {error!r}")
    cls = _BY_CODE.get(str(error.get("code")), Internal)
    details = error.get("details")
    if cls is Unavailable and isinstance(details, dict) and details.get("reason") in _STORAGE:
        cls = StorageUnavailable
    retry = error.get("retry_after_ms")
    return cls(
        str(error.get("message", "")),
        details=details if isinstance(details, dict) else None,
        retry_after_ms=retry if isinstance(retry, int) else None,
    )
