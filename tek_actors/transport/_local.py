"""The requests the frontend answers itself: hello (the feed subscribes the client), bye,
gateway.ping, gateway.status, gateway.restart, gateway.shutdown, and the test-only test.crash.
A mixin of Frontend; runs on the frontend thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from pydantic import Field, StrictInt, StrictStr, ValidationError

from tek_actors.errors import Unavailable, UnknownType
from tek_actors.transport._contract import GatewayControl
from tek_actors.transport.pump import Peer, RouterPump
from tek_actors.wire import (
    EmptyPayload,
    GracePayload,
    HelloPayload,
    Request,
    WireModel,
    invalid_request_from,
    ok_reply,
)

if TYPE_CHECKING:
    from tek_actors.transport.feed import Feed
    from tek_actors.transport.lifecycle import Requests

__all__ = ["CrashPayload", "LocalRequests"]


class CrashPayload(WireModel):
    """`test.crash` (test hooks only): crash `actor` now, and its next `fail_starts` starts."""

    actor: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    fail_starts: Annotated[StrictInt, Field(ge=0, le=100)] = 0


M = TypeVar("M", bound=WireModel)


def _strict(model: type[M], request: Request) -> M:
    """The request's payload as `model` (unknown fields refused); invalid_request otherwise."""
    try:
        return model.model_validate(request.payload)
    except ValidationError as exc:
        raise invalid_request_from(exc, prefix="payload.") from exc


class LocalRequests:
    """Handlers keyed by type in LOCAL; each answers on the peer's connection. Frontend
    provides the pieces they use."""

    feed: Feed
    requests: Requests
    pump: RouterPump
    _control: GatewayControl
    _version: str
    _closing: dict[bytes, list[Any]]
    _send: Callable[[Peer, dict[str, Any]], None]

    def _hello(self, peer: Peer, request: Request) -> None:
        # The connection is authenticated already (ZAP, see _auth.py): `token` is accepted
        # for clients written before that, and means nothing here.
        hello = _strict(HelloPayload, request)
        protocol = {"protocol": 1, "gateway_version": self._version}
        self.feed.hello(peer, request.id, hello, protocol)

    def _bye(self, peer: Peer, request: Request) -> None:
        """The client is closing: once every request it sent is answered, answer bye (so its
        replies come first), then forget its session."""
        _strict(EmptyPayload, request)
        self._closing.setdefault(peer.identity, []).append(request.id)  # each bye is answered
        self._close_when_answered(peer)

    def _close_when_answered(self, peer: Peer) -> None:
        """If `peer` said bye and nothing it sent is still unanswered: bye's reply, then its
        session is gone."""
        identity = peer.identity
        if identity not in self._closing or self.requests.unanswered(identity):
            return
        if identity in self.feed.hellos_out:
            return  # a hello still waits for its read
        for bye_id in self._closing.pop(identity):
            self._send(peer, ok_reply(bye_id, {}))
        self.feed.forget(identity)
        self.pump.forget_when_sent(peer)  # its queue, bye's reply last, goes out first

    def _ping(self, peer: Peer, request: Request) -> None:
        """Answered in every state (it says the process is alive, not that it serves:
        `state` says that; domain requests are served once it is "running" or "degraded")."""
        _strict(EmptyPayload, request)
        result = {"boot_id": self.feed.boot_id, "head_seq": self.feed.head}
        self._send(peer, ok_reply(request.id, {**result, "state": self._control.state}))

    def _status(self, peer: Peer, request: Request) -> None:
        _strict(EmptyPayload, request)
        status = self._control.status()
        status["clients"] = len(self.pump.peers)
        status["head_seq"] = self.feed.head
        self._send(peer, ok_reply(request.id, status))

    def _restart(self, peer: Peer, request: Request, *, shutdown: bool) -> None:
        grace = _strict(GracePayload, request)
        sub = self.feed.subs.get(peer.identity)
        by = sub.client_id if sub is not None else "a client"
        self._control.request_restart(
            grace.grace_ms, shutdown=shutdown, reason=f"{request.type} requested by {by}"
        )
        self._send(peer, ok_reply(request.id, {"accepted": True, "grace_ms": grace.grace_ms}))

    def _test_crash(self, peer: Peer, request: Request) -> None:
        crash = _strict(CrashPayload, request)
        actor = crash.actor
        done = self._control.inject_fault(actor, crash.fail_starts)
        if done is None:
            raise UnknownType("test hooks are off in this gateway", details={"type": request.type})
        if not done:
            raise Unavailable(f"no running actor named {actor!r}", retry_after_ms=200)
        self._send(peer, ok_reply(request.id, {"crashed": actor}))

    LOCAL: ClassVar[dict[str, Callable[[Any, Peer, Request], None]]] = {
        "hello": _hello,
        "bye": _bye,
        "gateway.ping": _ping,
        "gateway.status": _status,
        "gateway.restart": lambda self, c, r: self._restart(c, r, shutdown=False),
        "gateway.shutdown": lambda self, c, r: self._restart(c, r, shutdown=True),
        "test.crash": _test_crash,
    }
