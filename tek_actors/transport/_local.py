"""The requests the frontend answers itself: hello (with replay or snapshot resync), bye,
gateway.ping, gateway.status, gateway.restart, gateway.shutdown, and the test-only test.crash.
A mixin of Frontend; runs on the frontend thread."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

from loguru import logger
from pydantic import Field, StrictInt, StrictStr, ValidationError

from tek_actors.errors import Unauthorized, Unavailable, UnknownType
from tek_actors.transport._clients import ClientSession, compile_topics, topic_prefixes
from tek_actors.transport._contract import GatewayControl
from tek_actors.transport._delivery import Delivery
from tek_actors.wire import (
    EmptyPayload,
    GracePayload,
    HelloPayload,
    Request,
    WireModel,
    durable_event,
    invalid_request_from,
    ok_reply,
)

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


class LocalRequests(Delivery):
    """Handlers keyed by type in LOCAL; each answers on the client's session."""

    _control: GatewayControl
    _post: Callable[[tuple[Any, ...]], None]  # Frontend's thread-safe post to its own loop
    _version: str
    _unanswered: Callable[[bytes, object], bool]  # Frontend: requests of a client not answered

    def _hello(self, client: ClientSession, request: Request) -> None:
        hello = _strict(HelloPayload, request)
        if self.settings.token is not None:
            expected = self.settings.token
            given = (hello.token or "").encode()
            if expected is None or not hmac.compare_digest(given, expected.encode()):
                raise Unauthorized("the token in hello is missing or wrong")
            client.authed = True
        previous = self._by_client_id.get(hello.client_id)
        if previous is not None and previous != client.identity:
            self._drop_client(previous)  # the same client, reconnected: it resumes here
        self._by_client_id[hello.client_id] = client.identity
        client.client_id = hello.client_id
        client.topics = compile_topics(hello.topics)
        client.domains = topic_prefixes(hello.topics)
        client.floors = {}
        client.clear_events()
        self._catching_up.discard(client.identity)
        head = self._head
        since = hello.since_seq
        if since is None:
            resync, client.cursor, client.mode = "none", head, "live"
        elif since > head or since < self._journal.first_seq() - 1:
            resync = "snapshot"
        elif since == head:
            resync, client.cursor, client.mode = "none", head, "live"
        else:
            resync, client.cursor, client.mode = "replay", since, "catchup"
        client.sent_cursor = client.cursor
        self._reply(
            client,
            ok_reply(
                request.id,
                {
                    "protocol": 1,
                    "gateway_version": self._version,
                    "boot_id": self.boot_id,
                    "head_seq": head,
                    "resync": resync,
                },
            ),
        )
        if resync == "snapshot":
            self._gather_snapshots(client)
        elif resync == "replay":
            self._catching_up.add(client.identity)

    def _bye(self, client: ClientSession, request: Request) -> None:
        """The client is closing: once every request it sent is answered, answer bye (so its
        replies come first), then forget its session."""
        _strict(EmptyPayload, request)
        client.closing = (request.id,)
        self._close_when_answered(client)

    def _close_when_answered(self, client: ClientSession, *, besides: object = None) -> None:
        """If `client` said bye and nothing it sent (other than `besides`, being answered now)
        is still unanswered: bye's reply, then its session is gone."""
        if client.closing is None or self._unanswered(client.identity, besides):
            return
        self._reply(client, ok_reply(client.closing[0], {}))
        self._flush(client)  # now: the session, and its queue, are gone next
        self._drop_client(client.identity)

    def _ping(self, client: ClientSession, request: Request) -> None:
        """Answered in every state (it says the process is alive, not that it serves:
        `state` says that; domain requests are served once it is "running" or "degraded")."""
        _strict(EmptyPayload, request)
        result = {"boot_id": self.boot_id, "head_seq": self._head, "state": self._control.state}
        self._reply(client, ok_reply(request.id, result))

    def _status(self, client: ClientSession, request: Request) -> None:
        _strict(EmptyPayload, request)
        status = self._control.status()
        status["clients"] = len(self._clients)
        status["head_seq"] = self._head
        self._reply(client, ok_reply(request.id, status))

    def _restart(self, client: ClientSession, request: Request, *, shutdown: bool) -> None:
        grace = _strict(GracePayload, request)
        reason = f"{request.type} requested by {client.client_id or 'a client'}"
        self._control.request_restart(grace.grace_ms, shutdown=shutdown, reason=reason)
        self._reply(client, ok_reply(request.id, {"accepted": True, "grace_ms": grace.grace_ms}))

    def _test_crash(self, client: ClientSession, request: Request) -> None:
        crash = _strict(CrashPayload, request)
        actor = crash.actor
        done = self._control.inject_fault(actor, crash.fail_starts)
        if done is None:
            raise UnknownType("test hooks are off in this gateway", details={"type": request.type})
        if not done:
            raise Unavailable(f"no running actor named {actor!r}", retry_after_ms=200)
        self._reply(client, ok_reply(request.id, {"crashed": actor}))

    LOCAL: ClassVar[dict[str, Callable[[Any, ClientSession, Request], None]]] = {
        "hello": _hello,
        "bye": _bye,
        "gateway.ping": _ping,
        "gateway.status": _status,
        "gateway.restart": lambda self, c, r: self._restart(c, r, shutdown=False),
        "gateway.shutdown": lambda self, c, r: self._restart(c, r, shutdown=True),
        "test.crash": _test_crash,
    }

    def _gather_snapshots(self, client: ClientSession) -> None:
        """Ask the actors for their state off this thread (they may take a while); the answer
        comes back as a post and is sent by `_send_snapshots`. Events meanwhile are not lost:
        the client then catches up from the journal."""
        client.mode = "resyncing"
        identity, wants = client.identity, client.wants_domain

        def gather() -> None:
            try:
                states = self._control.sync_states(wants)
            except Exception:
                logger.opt(exception=True).error("gathering sync.snapshot states failed")
                states = []
            self._post(("snapshots", identity, states))

        threading.Thread(target=gather, name="tek-resync", daemon=True).start()

    def _send_snapshots(
        self, client: ClientSession, states: list[tuple[str, str, int, Any]]
    ) -> None:
        if client.mode != "resyncing":
            return  # it said hello again meanwhile: that hello decides
        for domain, actor, seq, state in states:
            client.floors[actor] = seq
            frame = self._codec.encode(
                durable_event(
                    "sync.snapshot",
                    seq,
                    self.boot_id,
                    time.time(),
                    {"domain": domain, "actor": actor, "state": state},
                )
            )
            client.queue(frame)
        seqs = [seq for _, _, seq, _ in states]
        client.cursor = min([self._head, *seqs])
        client.sent_cursor = client.cursor
        client.mode = "catchup"
        self._catching_up.add(client.identity)
        self._flush(client)
