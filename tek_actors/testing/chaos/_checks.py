"""The checks on what is there at rest (`_Checks`): the run's requests and their replies,
the follower's events and the final state, against each other. Pure: they read what the run
gathered and report FINDINGS through the run; they send nothing.

    1  every acknowledged request took effect once: config values, sessions, messages (each
       answered), decisions, process starts
    2  each tool call's command ran as its approval says (the marker file's tokens)
    3  approvals, the sessions' tool results, the policy and the decisions agree; no process
       starts after its approval closed
    4  each process printed 1..40 and exited 0; one process per procs.start idem key
    5  the follower got every durable seq once, in order (the replay is in `_replays`)"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tek_actors.testing.chaos._follower import _Follower
from tek_actors.testing.chaos._report import (
    CONFIG_BASE,
    CONFIG_PATH,
    LINES,
    MCP_ASKED,
    MCP_AUTO,
    ChaosReport,
    _ranges,
    _short,
)
from tek_actors.testing.chaos._rest import OPEN_APPROVAL, _Final
from tek_actors.testing.chaos._state import Op, _Run

CLOSING = frozenset(
    {"approval.executed", "approval.failed", "approval.unknown", "approval.expired"}
)
KEEP_FINISHED = 200  # the monitor keeps this many finished processes in procs.list


class _Checks:
    """One pass over a run at rest, on the calling thread: `run_all` reports each violation
    through `run.found` and adds the run's figures to `report.counts`."""

    def __init__(self, run: _Run, final: _Final, follower: _Follower, report: ChaosReport) -> None:
        self.s = run
        self.final = final
        self.follower = follower
        self.report = report
        self.events = follower.snapshot()
        self.ordered = [self.events[q] for q in sorted(self.events)]
        self.acked = [op for op in run.ops if op.acked]
        self.approvals = {a["id"]: a for a in final.approvals}
        self.by_token: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in final.approvals:
            token = _token_in(json.dumps(item.get("arguments") or {}))  # shell or MCP
            if token:
                self.by_token[token].append(item)
        self.unknown_starts = 0

    def found(self, kind: str, tally: int = 1, /, **detail: Any) -> None:
        self.s.found(kind, tally, **detail)

    def of(self, type_: str) -> list[tuple[int, dict[str, Any]]]:
        return [(e["seq"], e["data"]) for e in self.ordered if e["event"] == type_]

    def ops(self, kind: str, *, acked: bool = True) -> list[Op]:
        return [op for op in (self.acked if acked else self.s.ops) if op.kind == kind]

    def run_all(self) -> None:
        for check in (self.errors, self.config, self.sessions, self.decisions, self.starts):
            check()
        for check in (self.tokens, self.agreement, self.launches, self.outputs, self.stream):
            check()
        tool_calls = Counter(a["status"] for a in self.final.approvals)
        self.report.counts.update(
            acknowledged=dict(Counter(op.kind for op in self.acked)),
            operations=len(self.s.ops),
            unknown_outcomes=tool_calls["unknown"] + self.unknown_starts,
            tool_calls=dict(tool_calls),
            processes=len(self.final.folders),
            head_seq=self.final.head,
            hellos=len(self.follower.hellos),
            resent_after=dict(sum((op.retried for op in self.s.ops), Counter())),
        )

    def errors(self) -> None:
        """Final error replies. A procs.start whose start the gateway cannot know (`conflict`)
        or knows did not happen (`invalid_value`) is an unknown outcome, and `outputs` checks
        it had one effect at most; any other refusal is a violation."""
        for op in self.s.ops:
            if op.abandoned:
                self.found("never_answered", request=op.kind, idem=op.idem)
            if op.error is None:
                continue
            code = op.error.get("code")
            if op.kind == "procs.start" and code in ("conflict", "invalid_value"):
                self.unknown_starts += 1
                why = f"{code}: {op.error.get('message')}"
                self.report.notes.append(f"procs.start {op.idem} ({op.attempts} attempts) {why}")
                continue
            detail = {"attempts": op.attempts, "retried": dict(op.retried), "error": op.error}
            self.found("refused", request=op.kind, idem=op.idem, **detail)

    def config(self) -> None:
        """1: each acknowledged value in the journal once, in the writer's order, and last."""
        values = [op.meta["value"] for op in self.ops("config.set")]
        journal = [
            (q, d["changes"][CONFIG_PATH], d.get("version"))
            for q, d in self.of("config.changed")
            if CONFIG_PATH in (d.get("changes") or {})
        ]
        seen = Counter(v for _, v, _ in journal)
        for op in self.ops("config.set"):
            value = op.meta["value"]
            if seen[value] != 1:
                kind = "config_lost" if not seen[value] else "config_twice"
                self.found(
                    kind, idem=op.idem, value=value, seqs=[j for j in journal if j[1] == value]
                )
            elif op.result.get("changed") is not False:
                [(q, _, version)] = [j for j in journal if j[1] == value]
                if version != op.result.get("version"):
                    self.found(
                        "config_version", idem=op.idem, reply=op.result, journaled=[q, version]
                    )
        order = list(dict.fromkeys(v for _, v, _ in journal if v in set(values)))
        if order != [v for v in values if v in seen]:
            self.found("config_order", acknowledged=values[-20:], journaled=order[-20:])
        sent = {CONFIG_BASE} | {op.meta["value"] for op in self.ops("config.set", acked=False)}
        if strangers := [v for _, v, _ in journal if v not in sent]:
            self.found("config_stranger", values=strangers)
        if values and self.final.config_value != values[-1]:
            self.found("config_last", acknowledged=values[-1], config_get=self.final.config_value)

    def sessions(self) -> None:
        """1: one session per create; each acknowledged message once, in send order, answered."""
        titles = Counter(item.get("title") for item in self.final.session_list)
        for op in self.ops("sessions.create"):
            if titles[op.idem] != 1:
                kind = "session_lost" if not titles[op.idem] else "session_twice"
                self.found(kind, idem=op.idem, count=titles[op.idem])
        sends = defaultdict(list)
        for op in self.ops("sessions.send", acked=False):
            sends[op.meta["session"]].append(op)
        for session, ops in sends.items():
            if session in self.final.sessions:
                self._messages(session, self.final.sessions[session]["entries"], ops)

    def _messages(self, session: str, entries: list[dict[str, Any]], ops: list[Op]) -> None:
        users = [e for e in entries if e["role"] == "user"]
        ids = Counter(e["id"] for e in users)
        texts = Counter(e["text"] for e in users)
        for op in ops:
            text = op.payload["text"]
            if texts[text] > 1:
                stored = [e["id"] for e in users if e["text"] == text]
                self.found("message_twice", idem=op.idem, session=session, ids=stored)
            elif not op.acked and texts[text]:
                self.found("message_refused_stored", idem=op.idem, error=op.error)
        acked = [op for op in ops if op.acked]
        for op in acked:
            mid = op.result["message_id"]
            if ids[mid] != 1:
                kind = "message_lost" if not ids[mid] else "message_twice"
                self.found(kind, idem=op.idem, session=session, message_id=mid, count=ids[mid])
                continue
            answers = [e for e in entries if e.get("turn") == mid and e["role"] != "user"]
            last = answers[-1] if answers else None
            if last is None or (last["role"] == "assistant" and last.get("tool_calls")):
                answered = [_short(a, 200) for a in answers]
                self.found("message_unanswered", idem=op.idem, message_id=mid, answers=answered)
        sent = [op.result["message_id"] for op in acked]
        stored = list(dict.fromkeys(e["id"] for e in users if e["id"] in set(sent)))
        if stored != [m for m in sent if m in ids]:
            self.found("message_order", session=session, sent=sent, stored=stored)

    def decisions(self) -> None:
        """1: each acknowledged approvals.decide journaled once, as decided."""
        decided = defaultdict(list)
        for q, d in self.of("approval.decided"):
            if d.get("decided_by") == "person":
                decided[d["id"]].append((q, d.get("status")))
        for op in self.ops("approvals.decide"):
            mine = decided[op.meta["approval"]]
            want = "approved" if op.payload["decision"] == "approve" else "denied"
            kind = "decision_lost" if not mine else "decision_twice" if len(mine) > 1 else None
            if kind is None and mine[0][1] != want:
                kind = "decision_wrong"
            if kind:
                self.found(kind, idem=op.idem, decision=want, journaled=mine)

    def starts(self) -> None:
        """1: each acknowledged procs.start journaled once, with its argv, and listed once
        (procs.list keeps the newest KEEP_FINISHED finished: past that, the journal only)."""
        started = defaultdict(list)
        for _, d in self.of("proc.started"):
            started[d["id"]].append(d)
        listed = Counter(p["id"] for p in self.final.procs)
        complete = len(self.final.folders) <= KEEP_FINISHED
        for op in self.ops("procs.start"):
            pid = op.result["id"]
            journaled = started[pid]
            if len(journaled) != 1:
                kind = "start_lost" if not journaled else "start_twice"
                self.found(kind, idem=op.idem, id=pid, count=len(journaled))
            elif journaled[0].get("argv") != op.meta["argv"]:
                self.found("start_argv", idem=op.idem, id=pid, argv=journaled[0].get("argv"))
            if complete and listed[pid] != 1:
                kind = "listed_lost" if not listed[pid] else "listed_twice"
                self.found(kind, idem=op.idem, id=pid, count=listed[pid])
        if not complete:
            self.report.notes.append(
                f"{len(self.final.folders)} processes: past procs.list's {KEEP_FINISHED} "
                "finished, acknowledged starts were checked in the journal only"
            )

    def tokens(self) -> None:
        """2: the tool marker against each call's approval."""
        tokens = Counter(self.final.tool_marker)
        ops = [op for op in self.ops("sessions.send", acked=False) if "token" in op.meta]
        known = {op.meta["token"] for op in ops}
        for token, n in tokens.items():
            if n > 1:
                calls = [(a["id"], a["status"]) for a in self.by_token[token]]
                self.found("token_twice", token=token, times=n, approvals=calls)
            if token not in known:
                self.s.harness_error(f"the tool marker has a token nobody sent: {token!r}")
        for op in ops:
            token = op.meta["token"]
            items = self.by_token.get(token, [])
            if op.acked and len(items) != 1:
                calls = [(a["id"], a["status"]) for a in items]
                kind = "call_unasked" if not items else "call_asked_twice"
                self.found(kind, token=token, idem=op.idem, approvals=calls)
            for item in items:
                status, n = item["status"], tokens[token]
                detail = {"token": token, "approval": item["id"], "status": status, "times": n}
                if status == "executed" and n != 1:
                    self.found("executed_not_once", **detail)
                elif status in ("denied", "expired", "failed") and n:
                    self.found("closed_but_ran", **detail)
                elif status in OPEN_APPROVAL:
                    self.found("call_open", **detail)

    def agreement(self) -> None:
        """3: approvals against the sessions' tool results, the policy and the decisions."""
        results = defaultdict(list)
        for session, view in self.final.sessions.items():
            for entry in view["entries"]:
                if entry["role"] == "tool":
                    results[entry.get("approval")].append((session, entry["status"]))
        for approval, got in results.items():
            if approval not in self.approvals:
                self.found("result_no_approval", approval=approval, results=got)
        for item in self.final.approvals:
            status, by = item["status"], item.get("decided_by")
            detail = {"approval": item["id"], "status": status, "decided_by": by}
            got = results.get(item["id"], [])
            if [r for _, r in got] != [status] or any(s != item["session"] for s, _ in got):
                self.found("outcome_disagrees", **detail, session_results=got)
            argv0 = ((item.get("arguments") or {}).get("argv") or [""])[0]
            if (argv0 == "sh" or item.get("tool") == MCP_AUTO) and by != "policy":
                self.found("rule_call_by_person", **detail)
            asked = argv0 == "/bin/sh" or item.get("tool") == MCP_ASKED
            if asked and by == "policy" and status != "denied":
                self.found("person_call_by_rule", **detail)
            decision = self.s.decisions.get(item["id"])
            if decision == "deny" and status != "denied":
                self.found("denied_not_denied", **detail)
            if decision == "approve" and status not in ("executed", "unknown", "failed"):
                self.found("approved_no_outcome", **detail)

    def launches(self) -> None:
        """3: no process starts after its approval closed: in the journal (proc.started after
        the closing event), and on disk (a folder written after the closing time)."""
        closing: dict[str, int] = {}
        running: dict[str, int] = {}
        for e in self.ordered:
            name, d = e["event"], e["data"]
            denied = (
                name in ("approval.decided", "approval.requested") and d.get("status") == "denied"
            )
            if name in CLOSING or denied:
                closing.setdefault(d.get("id"), e["seq"])
            if name == "approval.running":
                running.setdefault(d.get("id"), e["seq"])
        starts = defaultdict(list)
        for q, d in self.of("proc.started"):
            if d.get("tool_call"):
                starts[d["tool_call"]].append((q, Path(d.get("dir") or "").name))
        for approval, seqs in starts.items():
            status = self.approvals.get(approval, {}).get("status")
            if len(seqs) > 1:
                self.found("call_two_starts", approval=approval, started=seqs)
            for q, folder in seqs:
                if approval in closing and q > closing[approval]:
                    mtime = self.final.folders.get(folder, ("", None))[1]
                    at = self.approvals.get(approval, {}).get("finished_at")
                    launched = round(mtime - at, 3) if mtime and at else None
                    self.found(
                        "started_after_close",
                        approval=approval,
                        status=status,
                        started_seq=q,
                        closed_seq=closing[approval],
                        launched_s_after_close=launched,
                    )
                if running.get(approval, q + 1) > q:
                    self.found(
                        "started_before_running",
                        approval=approval,
                        started_seq=q,
                        running_seq=running.get(approval),
                    )
        folders = defaultdict(list)
        for name, (argv, mtime) in self.final.folders.items():
            if token := _token_in(argv):
                folders[token].append((name, mtime))
        for token, found in folders.items():
            if len(found) > 1:
                self.found("call_launched_twice", token=token, folders=[n for n, _ in found])
            for item in self.by_token.get(token, []):
                status, closed = item["status"], item.get("finished_at")
                late = [(n, round(m - closed, 3)) for n, m in found if closed and m > closed]
                if status in ("denied", "expired"):
                    self.found("closed_call_launched", approval=item["id"], status=status)
                elif late:  # coarse mtimes are never late: each one here is really after
                    self.found(
                        "launched_after_close",
                        approval=item["id"],
                        status=status,
                        folders_s_after_close=late,
                    )

    def outputs(self) -> None:
        """4: each process's output (journal and procs.logs), and one process per idem key:
        in procs.list, in the folders on disk, and in the commands' own marker file."""
        output: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for _, d in self.of("proc.output"):
            output[d["id"]] += d.get("lines") or []
        exited = {d["id"]: d for _, d in self.of("proc.exited")}
        ran = Counter(self.final.proc_marker)
        listed = defaultdict(list)
        for p in self.final.procs:
            listed[" ".join(p.get("argv") or [])].append(p["id"])
        for op in self.ops("procs.start", acked=False):
            idem = op.idem
            folders = [n for n, (argv, _) in self.final.folders.items() if idem in argv]
            records = listed.get(" ".join(op.meta["argv"]), [])
            if max(len(folders), ran[idem], len(records)) > 1:
                answer = op.result if op.acked else op.error
                self.found(
                    "idem_two_processes",
                    idem=idem,
                    folders=folders,
                    ran=ran[idem],
                    records=records,
                    answered=answer,
                )
            if not op.acked:
                continue
            pid = op.result["id"]
            if ran[idem] == 0:
                self.found("never_ran", idem=idem, id=pid)
            self._output(pid, idem, "the journal", output.get(pid, []))
            logs = self.final.logs.get(pid)
            if logs is not None and not any(x.get("stream") == "dropped" for x in logs):
                self._output(pid, idem, "procs.logs", logs)
            end = exited.get(pid)
            if end is None or end.get("exit_code") != 0 or end.get("state") != "exited":
                self.found("exit_wrong", idem=idem, id=pid, exited=end)

    def _output(self, pid: str, idem: str, where: str, lines: list[dict[str, Any]]) -> None:
        numbers = [x.get("n") for x in lines]
        texts = [x.get("text") for x in lines if x.get("stream") == "stdout"]
        if numbers != list(range(1, len(lines) + 1)) or texts != [
            str(i) for i in range(1, LINES + 1)
        ]:
            self.found(
                "output_wrong",
                idem=idem,
                id=pid,
                where=where,
                numbers=numbers[:60],
                texts=texts[:60],
            )

    def stream(self) -> None:
        """5: the follower got every durable seq 1..head exactly once, in order."""
        f, head = self.follower, self.final.head
        missing = [q for q in range(1, head + 1) if q not in self.events]
        if missing and not f.snapshot_mode:
            self.found("seqs_missing", len(missing), missing=_ranges(missing), head=head)
        elif missing:
            self.report.notes.append(f"seqs only in sync.snapshot state: {_ranges(missing)[:5]}")
        if f.repeats:
            self.found("seqs_repeated", len(f.repeats), seqs=f.repeats[:50])
        if f.stream_gaps:
            self.found("stream_skipped", expected_got=f.stream_gaps[:20])
        if beyond := [q for q in self.events if q > head]:
            self.found("seqs_beyond_head", seqs=beyond[:20], head=head)


def _token_in(text: str) -> str | None:
    """The first tool token (TOK and five digits) in `text`."""
    at = text.find("TOK")
    while at >= 0:
        if text[at + 3 : at + 8].isdigit() and len(text[at + 3 : at + 8]) == 5:
            return text[at : at + 8]
        at = text.find("TOK", at + 1)
    return None
