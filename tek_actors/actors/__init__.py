"""The domain actors, one module each. The spine ships the journal's retention ticker; config,
approvals, providers, sessions and the process monitor arrive with their issues."""

from tek_actors.actors.retention import RetentionTicker

__all__ = ["RetentionTicker"]
