"""RetentionTicker: keeps the journal from growing without end.

Every `prune_interval_s` it drops events older than the newest `journal_keep_events` (never one
an actor still needs to rehydrate: only events covered by every actor's newest snapshot go) and
idempotency records older than `idem_retention_s`. A client that resumes from before the oldest
kept event gets a `sync.snapshot` resync instead of a replay.
"""

from __future__ import annotations

from typing import Any

from tek_actors.runtime import ActorContext, Ticker

__all__ = ["RetentionTicker"]


class RetentionTicker(Ticker):
    interval_s = 300.0

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.pruned = 0

    def tick(self) -> None:
        keep = int(self.ctx.options.get("keep_events", 1_000_000))
        max_age = float(self.ctx.options.get("idem_retention_s", 7 * 86_400.0))
        deleted = self.ctx.journal.prune(keep_events=keep, idem_max_age_s=max_age).result(60)
        self.pruned += deleted
        if deleted:
            self.log.info("pruned {} old events from the journal", deleted)

    def status(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "pruned": self.pruned}
