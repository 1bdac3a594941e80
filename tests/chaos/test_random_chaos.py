"""Seeded random kill -9 chaos against a real gateway process (tek_actors.testing.chaos).

Mixed load from raw pyzmq + msgpack clients (config writes, session messages, tool calls that
are approved by a rule or by a person, process starts, an event follower), the gateway killed
at random moments (a quarter of the restarts killed again around their start), then the checks
of the chaos module at rest. A failure prints the seed and the whole report; rerun it with
`python tools/chaos.py --cycles 12 --seed SEED`. `TEK_CHAOS_SEED=N` adds a run with seed N.

The fast tests below feed the checks a small consistent world, then that world with one fault
each, so a check that could never fire does not go unnoticed."""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tek_actors.testing.chaos import FINDINGS, ChaosReport, ChaosSettings, format_report, run_chaos
from tek_actors.testing.chaos._checks import _Checks
from tek_actors.testing.chaos._follower import _Follower
from tek_actors.testing.chaos._report import CONFIG_PATH
from tek_actors.testing.chaos._rest import _Final
from tek_actors.testing.chaos._state import Op, _Run

FIXED_SEED = 20_240_611
SEEDS = [FIXED_SEED]
if os.environ.get("TEK_CHAOS_SEED", "").strip():
    SEEDS.append(int(os.environ["TEK_CHAOS_SEED"]))


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_kill9_at_random_loses_duplicates_and_contradicts_nothing(
    tek_home: Path, seed: int
) -> None:
    report = run_chaos(ChaosSettings(cycles=12, seed=seed), home=tek_home)
    assert report.kills >= 12
    assert report.ok, (
        f"seed {seed} (rerun: python tools/chaos.py --cycles 12 --seed {seed}):\n"
        + format_report(report)
    )


# -- the checks see what they claim to ---------------------------------------------------------

ARGV = ["sh", "-c", "echo chaos-proc-00001 >> m; i=1; ..."]
CALL = ["/bin/sh", "-c", "echo TOK00001 >> t"]
LINES = [{"n": i, "stream": "stdout", "text": str(i)} for i in range(1, 41)]


def _world() -> tuple[list[Op], dict[int, dict[str, Any]], _Final]:
    """One config write, one session with a message and a tool call a person approved (it
    ran once), one process that printed 1..40: all consistent."""

    def op(kind: str, payload: dict[str, Any], idem: str, result: Any, **meta: Any) -> Op:
        return Op(kind, payload, idem, meta, attempts=1, result=result, done=True)

    ops = [
        op(
            "config.set", {"path": CONFIG_PATH, "value": 20_001}, "c1", {"version": 1}, value=20_001
        ),
        op("sessions.create", {"title": "chaos-x-s0"}, "chaos-x-s0", {"id": "s1"}),
        op("sessions.send", {"id": "s1", "text": "hi"}, "m1", {"message_id": "m-1"}, session="s1"),
        op(
            "sessions.send",
            {"id": "s1", "text": "tool: shell ..."},
            "t1",
            {"message_id": "m-2"},
            session="s1",
            token="TOK00001",
        ),
        op("approvals.decide", {"id": "a-1", "decision": "approve"}, "d1", {}, approval="a-1"),
        op("procs.start", {"argv": ARGV}, "chaos-proc-00001", {"id": "p-1"}, argv=ARGV),
    ]
    data = [
        ("config.changed", {"changes": {CONFIG_PATH: 20_001}, "version": 1}),
        ("approval.requested", {"id": "a-1", "status": "pending"}),
        ("approval.decided", {"id": "a-1", "status": "approved", "decided_by": "person"}),
        ("approval.running", {"id": "a-1", "status": "running"}),
        ("proc.started", {"id": "p-2", "argv": CALL, "tool_call": "a-1", "dir": "/x/p-2"}),
        ("approval.executed", {"id": "a-1", "status": "executed"}),
        ("proc.started", {"id": "p-1", "argv": ARGV, "tool_call": None, "dir": "/x/p-1"}),
        ("proc.output", {"id": "p-1", "lines": LINES}),
        ("proc.exited", {"id": "p-1", "state": "exited", "exit_code": 0}),
    ]
    events = {
        seq: {"seq": seq, "event": name, "boot": "b", "data": d}
        for seq, (name, d) in enumerate(data, 1)
    }
    entries = [
        {"id": "m-1", "role": "user", "text": "hi"},
        {"id": "m-3", "role": "assistant", "turn": "m-1", "text": "you said hi"},
        {"id": "m-2", "role": "user", "text": "tool: shell ..."},
        {"id": "m-4", "role": "assistant", "turn": "m-2", "tool_calls": [{"name": "shell"}]},
        {"id": "m-5", "role": "tool", "turn": "m-2", "approval": "a-1", "status": "executed"},
        {"id": "m-6", "role": "assistant", "turn": "m-2", "text": "it returned"},
    ]
    approval = {
        "id": "a-1",
        "session": "s1",
        "status": "executed",
        "decided_by": "person",
        "arguments": {"argv": CALL},
        "finished_at": 100.0,
    }
    final = _Final(
        head=len(events),
        sessions={"s1": {"entries": entries, "count": len(entries)}},
        session_list=[{"id": "s1", "title": "chaos-x-s0"}],
        approvals=[approval],
        procs=[{"id": "p-2", "argv": CALL}, {"id": "p-1", "argv": ARGV}],
        logs={"p-1": LINES},
        config_value=20_001,
        folders={"p-1": (" ".join(ARGV), 50.0), "p-2": (" ".join(CALL), 99.0)},
        tool_marker=["TOK00001"],
        proc_marker=["chaos-proc-00001"],
    )
    return ops, events, final


def _kinds(
    tmp_path: Path, fault: Callable[[list[Op], dict[int, dict[str, Any]], _Final], None]
) -> set[str]:
    ops, events, final = _world()
    fault(ops, events, final)
    run = _Run(ChaosSettings(), tmp_path)
    try:
        run.ops, run.decisions, run.plain_sessions = ops, {"a-1": "approve"}, ["s1"]
        follower = _Follower(run, threading.Event())
        follower.events, follower.last_seq = events, max(events, default=0)
        _Checks(run, final, follower, ChaosReport(seed=0, cycles=0, home="")).run_all()
    finally:
        run.context.destroy(linger=0)
    return {v["kind"] for v in run.violations}


def _drop_event(seq: int) -> Callable[..., None]:
    return lambda ops, events, final: events.pop(seq)


def _tool_result(status: str) -> Callable[..., None]:
    def fault(ops: list[Op], events: dict[int, dict[str, Any]], final: _Final) -> None:
        final.sessions["s1"]["entries"][4]["status"] = status

    return fault


def _late_start(ops: list[Op], events: dict[int, dict[str, Any]], final: _Final) -> None:
    events[5], events[6] = copy.deepcopy(events[6]), copy.deepcopy(events[5])
    events[5]["seq"], events[6]["seq"] = 5, 6


FAULTS: dict[str, Callable[..., None]] = {
    "seqs_missing": _drop_event(2),
    "config_lost": _drop_event(1),
    "start_lost": _drop_event(7),
    "decision_lost": _drop_event(3),
    "output_wrong": lambda o, e, f: e[8]["data"]["lines"].pop(7),
    "exit_wrong": lambda o, e, f: e[9]["data"].update(exit_code=1),
    "config_last": lambda o, e, f: setattr(f, "config_value", 20_000),
    "message_twice": lambda o, e, f: f.sessions["s1"]["entries"].append(
        {"id": "m-9", "role": "user", "text": "hi"}
    ),
    "message_lost": lambda o, e, f: f.sessions["s1"]["entries"].pop(0),
    "message_unanswered": lambda o, e, f: f.sessions["s1"]["entries"].pop(1),
    "token_twice": lambda o, e, f: f.tool_marker.append("TOK00001"),
    "executed_not_once": lambda o, e, f: f.tool_marker.clear(),
    "outcome_disagrees": _tool_result("unknown"),
    "started_after_close": _late_start,
    "launched_after_close": lambda o, e, f: f.folders.update(p2=(" ".join(CALL), 101.0)),
    "idem_two_processes": lambda o, e, f: f.folders.update(p3=(" ".join(ARGV), 50.0)),
    "session_twice": lambda o, e, f: f.session_list.append({"id": "s2", "title": "chaos-x-s0"}),
    "refused": lambda o, e, f: setattr(o[2], "error", {"code": "not_found"}),
}


def test_the_checks_find_nothing_in_a_consistent_world(tmp_path: Path) -> None:
    assert _kinds(tmp_path, lambda ops, events, final: None) == set()


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_each_check_reports_its_fault(tmp_path: Path, kind: str) -> None:
    assert kind in FINDINGS
    assert kind in _kinds(tmp_path, FAULTS[kind])
