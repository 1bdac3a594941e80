"""A seeded, randomized kill -9 chaos run against a real gateway process.

    report = run_chaos(ChaosSettings(cycles=12, seed=7), home="/tmp/tc...")
    print(format_report(report)); assert report.ok

The gateway runs as a real process (`GatewayProcess`) on `home`, with the built-in `local` model
and an approval policy under which `sh -c ...` shell calls are approved by a rule and
`/bin/sh -c ...` ones wait for a person. Raw clients load it at once, each a thread owning one
DEALER socket and speaking nothing but MessagePack envelopes:

    config      config.set of limits.proc_output_lines, strictly increasing values
    senders     sessions.create, then sessions.send of numbered messages
    tools       sessions.send of `tool: shell {"argv": [...]}`, or (3 in 10) of a tool of the
                run's MCP server (tek_actors/testing/mcp_server.py: `mcp__chaos__mark` by a
                rule, `mcp__chaos__mark_asked` by a person); each call appends its token to a
                marker file (half approved by the rule, half wait for a person)
    decider     approvals.list {"status": "pending"} -> approvals.decide (some are denied)
    procs       procs.start of `sh -c` printing 1..40 (some slowly), each with its idem in argv
    follower    hello {since_seq: the last seq it got} after every reconnect; keeps every
                durable event


Every state-changing request carries an idem key. A request that got no reply (the gateway
died, or the attempt timed out) is sent again under the same key on a fresh socket; so is one
answered `unavailable`, `overloaded`, `timeout` or `internal`. A socket has one attempt in flight
and is closed when that attempt is given up, so a late reply is never read, let alone counted.

Each cycle lets the load run a random while, then SIGKILLs the gateway and starts it again; a
share of the restarts is killed again at a random moment around its start (before it answers,
while its actors rehydrate, or just after). At quiescence (bounded) the run checks every entry
of FINDINGS: six numbered checks, plus liveness (the gateway comes up, requests get answers,
the system comes to rest) and the one-reply-per-request rule. `harness_errors` are this
harness's own problems (a worker crashed); they fail a run too, never as a violation.

Only the standard library, pyzmq and msgpack speak to the gateway; `GatewayProcess` starts it.

The parts, each importing only those above it:

    _report     ChaosSettings, FINDINGS, ChaosReport, format_report
    _state      _Run, what the threads share; Op, one request until its final reply
    _link       the raw DEALER link: envelopes, attempts, resends under one idem key
    _workload   the load's worker threads: config, senders, tools, decider, procs
    _follower   the event follower
    _schedule   the gateway process: first start, kills, restarts
    _rest       quiescence, and what the gateway and the disk hold at rest (_Final)
    _checks     checks 1-5 on what is there at rest (_Checks)
    _replays    checks 5-6 that ask the gateway again: resends, a replay from seq 0
    _run        run_chaos: the harness that composes them
"""

from tek_actors.testing.chaos._report import FINDINGS, ChaosReport, ChaosSettings, format_report
from tek_actors.testing.chaos._run import run_chaos

__all__ = ["FINDINGS", "ChaosReport", "ChaosSettings", "format_report", "run_chaos"]
