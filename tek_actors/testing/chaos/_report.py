"""What a run is asked and what it tells: `ChaosSettings`, every finding it can report
(`FINDINGS`), the `ChaosReport`, and `format_report`, its text for a person.

Pure data and formatting: no sockets, no threads, no gateway."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

# The load's fixed figures, which the load, the checks and the findings share.
CONFIG_PATH = "limits.proc_output_lines"  # harmless: any value >= LINES keeps every line
CONFIG_BASE = 20_000
MCP_AUTO = "mcp__chaos__mark"  # the chaos MCP server's tool a rule approves
MCP_ASKED = "mcp__chaos__mark_asked"  # and the one a person decides
LINES = 40

_ACK, _TOK, _AGREE = "1-acknowledged", "2-tokens", "3-agreement"
_PROC, _EVT, _IDEM = "4-processes", "5-events", "6-resend"
_LIVE, _WIRE = "liveness", "protocol"

# Every violation a run can report: key -> (check, what it means, the count it adds to).
FINDINGS: dict[str, tuple[str, str, str | None]] = {
    "refused": (_ACK, "a state-changing request was refused", None),
    "read_refused": (_ACK, "a read about acknowledged state was refused", None),
    "session_lost": (_ACK, "an acknowledged sessions.create has no session", "lost"),
    "session_twice": (_ACK, "one sessions.create made more than one session", "duplicated"),
    "config_lost": (_ACK, "an acknowledged config value is not in the journal", "lost"),
    "config_twice": (_ACK, "a config value was applied more than once", "duplicated"),
    "config_version": (_ACK, "config.set answered another version than it journaled", None),
    "config_order": (_ACK, "config values are journaled out of their writer's order", None),
    "config_stranger": (_ACK, "the journal has config values nobody sent", None),
    "config_last": (_ACK, "config.get is not the last acknowledged value", "lost"),
    "message_lost": (_ACK, "an acknowledged message is not in its session", "lost"),
    "message_twice": (_ACK, "a message is stored more than once", "duplicated"),
    "message_refused_stored": (_ACK, "a refused sessions.send is stored", "duplicated"),
    "message_order": (_ACK, "messages are stored out of their send order", None),
    "message_unanswered": (_ACK, "an acknowledged message never got its answer", "lost"),
    "decision_lost": (_ACK, "an acknowledged decision is not journaled", "lost"),
    "decision_twice": (_ACK, "a person's decision is journaled more than once", "duplicated"),
    "decision_wrong": (_ACK, "the journaled decision is not the one acknowledged", "lost"),
    "start_lost": (_ACK, "an acknowledged procs.start is not journaled", "lost"),
    "start_twice": (_ACK, "an acknowledged procs.start is journaled twice", "duplicated"),
    "start_argv": (_ACK, "a started process runs another argv than asked", None),
    "listed_lost": (_ACK, "an acknowledged process is not in procs.list", "lost"),
    "listed_twice": (_ACK, "a process is in procs.list more than once", "duplicated"),
    "token_twice": (_TOK, "a tool call's command ran more than once", "duplicated"),
    "call_unasked": (_TOK, "an acknowledged tool message has no approval", "lost"),
    "call_asked_twice": (_TOK, "one tool call has more than one approval", "duplicated"),
    "executed_not_once": (_TOK, "an executed call's token is not there once", "disagreement"),
    "closed_but_ran": (_TOK, "a denied, expired or failed call ran", "disagreement"),
    "call_open": (_TOK, "a call is still pending, approved or running at rest", None),
    "outcome_disagrees": (_AGREE, "approval and session disagree on an outcome", "disagreement"),
    "rule_call_by_person": (
        _AGREE,
        "a call the rule approves was not decided by it",
        "disagreement",
    ),
    "person_call_by_rule": (_AGREE, "a call that needs a person ran on the policy", "disagreement"),
    "denied_not_denied": (_AGREE, "a call a person denied is not denied", "disagreement"),
    "approved_no_outcome": (_AGREE, "a call a person approved has no outcome", "disagreement"),
    "result_no_approval": (_AGREE, "a tool result names no known approval", "disagreement"),
    "call_two_starts": (_AGREE, "one call has more than one proc.started", "duplicated"),
    "started_after_close": (_AGREE, "proc.started after its approval closed", "disagreement"),
    "started_before_running": (_AGREE, "proc.started before approval.running", None),
    "closed_call_launched": (_AGREE, "a denied or expired call was launched", "disagreement"),
    "launched_after_close": (_AGREE, "a call was launched after it closed", "disagreement"),
    "call_launched_twice": (_AGREE, "one call was launched more than once", "duplicated"),
    "idem_two_processes": (_PROC, "one procs.start idem key started >1 process", "duplicated"),
    "never_ran": (_PROC, "an acknowledged process never ran", "lost"),
    "output_wrong": (_PROC, f"a process's output is not 1..{LINES} once, in order", None),
    "exit_wrong": (_PROC, "a process did not exit 0", None),
    "head_went_back": (_EVT, "the head went back: events the follower got are gone", "lost"),
    "seqs_missing": (_EVT, "the follower never got these seqs", "gaps"),
    "seqs_repeated": (_EVT, "the follower got these seqs more than once", "repeats"),
    "stream_skipped": (_EVT, "the stream after a hello skipped seqs", None),
    "seqs_beyond_head": (_EVT, "events with a seq beyond the head", None),
    "replay_failed": (_EVT, "a replay hello since_seq 0 failed", None),
    "replay_repeated": (_EVT, "a replay from seq 0 repeated an event", "repeats"),
    "replay_missing": (_EVT, "a replay from seq 0 lacks events", "gaps"),
    "replay_differs": (_EVT, "the replay differs from the live stream", None),
    "resend_refused": (_IDEM, "a resend under its idem key was refused", None),
    "resend_other_reply": (_IDEM, "a resend under its idem key got another reply", None),
    "resend_journaled": (_IDEM, "the resends journaled events", "duplicated"),
    "resend_started": (_IDEM, "the resends started processes", "duplicated"),
    "resend_ran": (_IDEM, "the resends ran commands again", "duplicated"),
    "resend_entries": (_IDEM, "the resends added session entries", "duplicated"),
    "no_start": (_LIVE, "the gateway did not come up", None),
    "exited": (_LIVE, "the gateway process exited by itself", None),
    "no_started_event": (_LIVE, "no gateway.started from the new process", None),
    "no_connection_file": (_LIVE, "no connection file from the gateway", None),
    "worker_stuck": (_LIVE, "a client still waits for a reply", None),
    "never_answered": (_LIVE, "a request never got a final reply", None),
    "no_quiescence": (_LIVE, "the system did not come to rest", None),
    "second_reply": (_WIRE, "a reply to a request that was already answered", None),
}


@dataclass(frozen=True)
class ChaosSettings:
    cycles: int = 12
    seed: int = 0
    load_s: tuple[float, float] = (0.4, 1.2)  # load between two kills
    rehydration_share: float = 0.25  # restarts that are killed again around their start
    sessions: int = 4  # plain-message sessions (two senders share them)
    tool_sessions: int = 2
    deny_share: float = 0.2
    attempt_timeout_s: float = 5.0  # no reply by then: resend, on a fresh socket
    start_timeout_s: float = 30.0
    quiesce_timeout_s: float = 30.0
    tool_queue_bound: int = 6  # a tool session with this many turns waiting gets no more


# -- the report --------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    seed: int
    cycles: int
    home: str
    duration_s: float = 0.0
    kills: int = 0
    restart_kills: dict[str, int] = field(default_factory=dict)  # restarts killed, by moment
    timing: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    violations: list[dict[str, Any]] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations and not self.harness_errors

    def by_check(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for v in self.violations:
            out[v["check"]].append(v)
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "by_check": self.by_check()}


def format_report(report: ChaosReport, *, limit: int = 12) -> str:
    """The figures for a person: seed, schedule, counts, then each violation (at most `limit`
    per check), and the gateway's log tail when something is wrong."""
    c = report.counts
    acked = ", ".join(f"{k} {n}" for k, n in sorted(c.get("acknowledged", {}).items()))
    lines = [
        f"chaos seed={report.seed} cycles={report.cycles} home={report.home}",
        f"  {report.kills} kills in {report.duration_s:.1f}s; restarts killed again: "
        f"{report.restart_kills or 'none'}; median spawn->answer/started {report.timing}",
        f"  acknowledged: {acked or 'nothing'}",
        f"  lost {c.get('lost', 0)}, duplicated effects {c.get('duplicated', 0)}, "
        f"disagreements {c.get('disagreement', 0)}, gaps {c.get('gaps', 0)}, "
        f"repeats {c.get('repeats', 0)}, unknown outcomes {c.get('unknown_outcomes', 0)}",
        f"  tool calls {c.get('tool_calls', {})}; process folders {c.get('processes', 0)}; "
        f"head seq {c.get('head_seq', 0)}; follower hellos {c.get('hellos', 0)}; "
        f"resent after {c.get('resent_after', {})}",
    ]
    lines += [f"  note: {note}" for note in report.notes]
    if report.ok:
        lines.append("  no violations")
    for check, found in report.by_check().items():
        lines.append(f"  violations of {check} ({len(found)}):")
        for v in found[:limit]:
            detail = {k: x for k, x in v.items() if k not in ("check", "kind", "what")}
            lines.append(f"    - {v['what']} [{v['kind']}] {_short(detail, 600)}")
        if len(found) > limit:
            lines.append(f"    ... and {len(found) - limit} more")
    lines += [f"  HARNESS ERROR (not the gateway's): {e}" for e in report.harness_errors]
    if not report.ok and report.log_tail:
        lines.append("  gateway log tail:\n" + report.log_tail)
    return "\n".join(lines)


# -- how details are written -------------------------------------------------------------------


def _ranges(seqs: list[int]) -> list[str]:
    out: list[list[int]] = []
    for q in seqs:
        if out and out[-1][1] == q - 1:
            out[-1][1] = q
        else:
            out.append([q, q])
    return [str(a) if a == b else f"{a}-{b}" for a, b in out]


def _short(value: Any, n: int = 300) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= n else text[:n] + "…"
