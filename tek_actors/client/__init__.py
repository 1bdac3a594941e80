"""The client layer: `Client` (reconnect, resync, durable outbox) over any transport."""

from tek_actors.client.client import READ_ONLY_VERBS, Client, is_state_changing
from tek_actors.client.outbox import Outbox, OutboxEntry

__all__ = ["READ_ONLY_VERBS", "Client", "Outbox", "OutboxEntry", "is_state_changing"]
