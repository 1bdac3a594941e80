"""Conversations: the SessionManager and one ModelSessionActor per live session."""

from tek_actors.sessions.manager import SessionManager
from tek_actors.sessions.session import ModelSessionActor

__all__ = ["ModelSessionActor", "SessionManager"]
