"""RetentionTicker: keeps the journal from growing without end.

Every `retention.prune_interval_s` it drops events older than the newest `retention.keep_events`
(never one an actor still needs to rehydrate: only events covered by every actor's newest
snapshot go) and idempotency records older than `retention.idem_retention_s`. A client that
resumes from before the oldest kept event gets a `sync.snapshot` resync instead of a replay.
The three numbers apply live: a change takes effect before `config.applied`. A prune gives the
pages it emptied back to the disk (the journal shrinks at its next checkpoint). A prune that a
full or read-only disk refuses is skipped until the next tick.
"""

from __future__ import annotations

from typing import Any

from tek_actors.config import Config, ConfigDependent
from tek_actors.config.model import RetentionConfig
from tek_actors.errors import StorageUnavailable
from tek_actors.runtime import ActorContext, Ticker

__all__ = ["RetentionTicker"]


class RetentionTicker(ConfigDependent, Ticker):
    interval_s = 300.0

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.pruned = 0
        self.retention = RetentionConfig()

    def configure(self, config: Config) -> None:
        self.retention = config.retention
        if self.retention.prune_interval_s != self.every:
            self.reschedule(self.retention.prune_interval_s)

    def tick(self) -> None:
        try:
            deleted = self.ctx.journal.prune(
                keep_events=self.retention.keep_events,
                idem_max_age_s=self.retention.idem_retention_s,
            ).result(60)
        except StorageUnavailable as refused:
            self.log.warning("no prune this time: {}", refused)
            return
        self.pruned += deleted
        if deleted:
            self.log.info("pruned {} old events from the journal", deleted)

    def status(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "pruned": self.pruned, "every_s": self.every}
