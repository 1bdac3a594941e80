"""A process's output as numbered lines: what its log files gained since the stored offsets.

The monitor journals what `read_output` returns (`proc.output` events carrying the new offsets),
so a restarted monitor resumes exactly at the offsets the journal holds: nothing is read twice,
nothing written while it was down is skipped. Reading only; runs on the monitor's thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tek_actors.procs.state import ProcRecord
from tek_actors.store import NewEvent

__all__ = ["BATCH", "BATCH_BYTES", "MAX_LINE", "READ_CHUNK", "read_output"]

READ_CHUNK = 1 << 20  # per stream per read
MAX_LINE = 16 << 10  # longer lines are cut (the rest is dropped, with a marker)
BATCH = 500  # lines per proc.output event at most ...
BATCH_BYTES = 256 << 10  # ... and bytes of text: an event must fit in a client's frame


def read_output(record: ProcRecord, *, final: bool, keep: int) -> tuple[list[NewEvent], bool]:
    """The `proc.output` events for what the logs gained past `record.offsets` (at most
    READ_CHUNK per stream), and whether there is more to read. `final`: the process has ended,
    so a last line without a newline counts too. No events if nothing was gained."""
    lines: list[dict[str, Any]] = []
    offsets = dict(record.offsets)
    n = record.next_n
    more = False
    for stream in ("stdout", "stderr"):
        data = _read(Path(record.dir) / f"{stream}.log", offsets[stream])
        whole = len(data) < READ_CHUNK  # the end of the file is in `data`
        more = more or not whole
        end = data.rfind(b"\n") + 1
        if final and whole:
            end = len(data)
        elif end == 0 and len(data) >= MAX_LINE:
            end = len(data)  # a very long line with no newline yet: cut it here
        for raw in data[:end].splitlines():
            text = raw.decode(errors="replace")
            if len(text) > MAX_LINE:
                text = text[:MAX_LINE] + " …[line cut]"
            lines.append({"n": n, "stream": stream, "text": text})
            n += 1
        offsets[stream] += end
    if offsets == record.offsets:
        return [], False
    events = [
        NewEvent(
            "proc.output",
            # one transaction: the last batch's offsets count
            {"id": record.id, "lines": batch, "offsets": offsets, "keep": keep},
        )
        for batch in _batches(lines)
    ]
    return events, more


def _batches(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`lines` cut into runs of at most BATCH lines and BATCH_BYTES of text (one at least)."""
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for line in lines:
        cost = len(line["text"]) + 16
        if out[-1] and (len(out[-1]) >= BATCH or size + cost > BATCH_BYTES):
            out.append([])
            size = 0
        out[-1].append(line)
        size += cost
    return out


def _read(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(READ_CHUNK)
    except FileNotFoundError:
        return b""
