"""The client layer: `Client` (reconnect, resync, durable outbox) over any transport.

Each name loads its module on first use, like the other packages of tek_actors.
"""

from typing import TYPE_CHECKING

from tek_actors import _lazy_exports

if TYPE_CHECKING:
    from tek_actors.client.client import READ_ONLY_VERBS, Client, is_state_changing
    from tek_actors.client.outbox import Outbox, OutboxEntry

__getattr__ = _lazy_exports(
    __name__,
    {
        "READ_ONLY_VERBS": "tek_actors.client.client",
        "Client": "tek_actors.client.client",
        "Outbox": "tek_actors.client.outbox",
        "OutboxEntry": "tek_actors.client.outbox",
        "is_state_changing": "tek_actors.client.client",
    },
)

__all__ = ["READ_ONLY_VERBS", "Client", "Outbox", "OutboxEntry", "is_state_changing"]
