"""How other actors (sessions) ask the ProviderActor for a completion, and hear back.

send("providers", Complete(call_id, alias, request, reply_to=self.actor_ref, session=sid))
-> CompletionDelta(call_id, text)     zero or more, as text streams in
-> CompletionDone(call_id, completion, error)   exactly once

A provider at capacity makes the call wait its turn (published as `provider.waiting`); nothing
is sent to the caller meanwhile. The wait ends in the CompletionDone: the answer, or `timeout`
if the call's deadline passed while it waited, or `overloaded` if the provider's queue was full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pykka

from tek_actors.errors import TekError
from tek_actors.providers.types import Completion, ModelRequest

__all__ = ["CallKnown", "CallQuery", "Complete", "CompletionDelta", "CompletionDone"]


@dataclass(frozen=True, slots=True)
class Complete:
    """`session`: the session the call is for. A provider at capacity serves waiting calls
    round robin per session (per `reply_to` actor without one), and `provider.waiting` names
    it, so a client can show which conversation waits."""

    call_id: str
    alias: str | None  # None: the default model
    request: ModelRequest = field(repr=False)
    reply_to: pykka.ActorRef[Any] = field(repr=False)
    session: str | None = None


@dataclass(frozen=True, slots=True)
class CompletionDelta:
    call_id: str
    text: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CompletionDone:
    """`completion` (possibly `incomplete`, with the partial text), or `error`."""

    call_id: str
    completion: Completion | None = field(repr=False)
    error: TekError | None = None


@dataclass(frozen=True, slots=True)
class CallQuery:
    """Is call `call_id` still on its way? Answered with CallKnown. Messages from the provider
    actor arrive in order, so a caller told `known=False` that has no CompletionDone for the
    call knows it was lost (the provider actor restarted) and may send it again."""

    call_id: str
    reply_to: pykka.ActorRef[Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class CallKnown:
    call_id: str
    known: bool
