"""The checks that ask the gateway again, at rest: every acknowledged request sent again
under its idem key (6: the first reply, and nothing changes), and the whole event stream
replayed from seq 0 to a new client (5: the very stream the follower got). Run on the
controller thread after `_Checks`; they block on the gateway's replies."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import zmq

from tek_actors.testing.chaos._follower import _Follower
from tek_actors.testing.chaos._link import _Link, _unpack
from tek_actors.testing.chaos._report import ChaosReport, _ranges, _short
from tek_actors.testing.chaos._rest import _Final, _Rest
from tek_actors.testing.chaos._state import Op, _Run


def _check_resends(rest: _Rest, link: _Link, before: _Final, report: ChaosReport) -> None:
    """6: every acknowledged request again, under its idem key: its first reply, and no
    change (head, processes and their folders, commands run, session entries). Counts them
    in `report.counts["resends"]`."""
    s, follower = rest.run, rest.follower
    resent: Counter[str] = Counter()
    for op in [o for o in s.ops if o.acked]:
        again = link.perform(Op(op.kind, op.payload, op.idem))
        resent[op.kind] += 1
        if not again.acked:
            s.found("resend_refused", idem=op.idem, first=op.result, again=again.error)
        elif again.result != op.result:
            s.found("resend_other_reply", idem=op.idem, first=op.result, again=again.result)
    report.counts["resends"] = dict(resent)
    rest.quiesce("after the resends")
    after = rest.gather(link, logs=False)
    if after.head != before.head:
        follower.wait_seq(after.head, 10.0)  # for the details
        new = [
            {"seq": q, "event": e["event"], "data": _short(e["data"])}
            for q, e in sorted(follower.snapshot().items())
            if q > before.head
        ]
        s.found("resend_journaled", head=[before.head, after.head], events=new[:20])
    new_records = sorted({p["id"] for p in after.procs} - {p["id"] for p in before.procs})
    new_folders = sorted(set(after.folders) - set(before.folders))
    if new_records or new_folders:
        s.found("resend_started", records=new_records, folders=new_folders)
    if after.tool_marker != before.tool_marker or after.proc_marker != before.proc_marker:
        tokens = after.tool_marker[len(before.tool_marker) :]
        s.found("resend_ran", tokens=tokens, procs=after.proc_marker[len(before.proc_marker) :])
    for session, view in after.sessions.items():
        was = before.sessions.get(session, {}).get("count")
        if view["count"] != was:
            s.found("resend_entries", session=session, count=[was, view["count"]])


def _check_replay(run: _Run, follower: _Follower, head: int) -> None:
    """5: a replay from seq 0 to a new client is the very stream the follower got."""
    link = _Link(run, "replay", keep_events=True)
    try:
        reply = link.hello("chaos-replay", 0)
        if reply is None or not reply.get("ok"):
            run.found("replay_failed", reply=reply)
            return
        got: dict[int, dict[str, Any]] = {}
        repeated: list[int] = []
        pending = list(link.events)
        sock = link.socket
        assert sock is not None
        deadline = time.monotonic() + 30.0
        while len(got) < head and time.monotonic() < deadline:
            if not pending and sock.poll(200, zmq.POLLIN):
                pending.append(_unpack(sock.recv()))
            for event in pending:
                seq = event.get("seq") if isinstance(event, dict) else None
                if seq is not None and event.get("event") != "sync.snapshot":
                    if seq in got:
                        repeated.append(seq)
                    got[seq] = event
            pending = []
        if repeated:
            run.found("replay_repeated", len(repeated), seqs=repeated[:20])
        missing = [q for q in range(1, head + 1) if q not in got]
        if missing:
            run.found("replay_missing", len(missing), missing=_ranges(missing))
        live = follower.snapshot()
        differ = [q for q, e in got.items() if q in live and _same(e) != _same(live[q])]
        if differ:
            q = differ[0]
            live_q, got_q = _short(live[q]), _short(got[q])
            run.found("replay_differs", seqs=differ[:20], live=live_q, replayed=got_q)
    finally:
        link.close()


def _same(event: dict[str, Any]) -> tuple[Any, ...]:
    """What a replayed event must share with the live one (its envelope may differ)."""
    return (event.get("event"), event.get("boot"), event.get("data"))
