"""Durable storage: the journal (events, snapshots, idempotency records) and atomic files."""

from tek_actors.store.files import fsync_dir, refusal, remove_quietly, write_atomic
from tek_actors.store.journal import EventRecord, IdemRecord, Journal, NewEvent, StaleWriter

__all__ = [
    "EventRecord",
    "IdemRecord",
    "Journal",
    "NewEvent",
    "StaleWriter",
    "fsync_dir",
    "refusal",
    "remove_quietly",
    "write_atomic",
]
