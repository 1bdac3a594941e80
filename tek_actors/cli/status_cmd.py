"""`tek status`: the whole gateway on one screen, or as one JSON object.

Gateway (state, pid, version, endpoint, uptime, boot id, head seq), every actor (state,
restarts, last error), trouble with the configuration (config.json refused: running on a
backup or the defaults, and why), every provider's breakers (the provider's own and each of its
models'), sessions (stored, live), processes (running), and where the log is. Five reads of
the gateway, nothing changed. With no gateway running it exits 3 with the error every command
gives, and still says where the log is (where to look for why).
"""

from __future__ import annotations

import time
from typing import Any

import click

from tek_actors.cli._liveness import stale_gateway
from tek_actors.cli._output import Output, fail
from tek_actors.cli._render import print_table, visible, when
from tek_actors.errors import TekError, Unavailable

__all__ = ["gather", "status"]


def gather(out: Output) -> dict[str, Any]:
    """Everything `tek status` shows, read from the gateway. Raises the TekError that stopped
    it (Unavailable when none runs, at once for a stale connection file)."""
    from tek_actors.client import Client

    if out.endpoint is None:
        pid = stale_gateway(out.home.read_connection())
        if pid is not None:  # the words check_alive uses, so every command says the same
            raise Unavailable(
                f"the gateway is not running (stale connection file from pid {pid}); "
                "start it with `tek gateway start`",
                details={"pid": pid, "path": str(out.home.connection_file)},
                retry_after_ms=1000,
            )
    found: dict[str, Any] = {"log": str(out.home.log_path)}
    with Client(out.endpoint, home=out.home, timeout=10.0) as client:
        gateway = found["gateway"] = client.status()
        started = gateway.get("started_at")
        gateway["uptime_s"] = round(time.time() - started, 1) if started else None
        if gateway.get("state") not in ("running", "degraded"):
            return found  # starting, restarting, stopping: the domains answer `unavailable`
        config = client.call("config.get", {"path": "default_model"})
        found["config"] = {"source": config.get("source"), "problem": config.get("problem")}
        found["providers"] = client.call("providers.status")["providers"]
        sessions = client.call("sessions.list")
        found["sessions"] = {"count": len(sessions["items"]), "live": sessions["live"]}
        running = client.call("procs.list", {"state": "running"})["items"]
        found["processes"] = {"running": len(running)}
    return found


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _breaker_rows(providers: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, entry in sorted(providers.items()):
        rows.append([name, "", entry["state"], entry["breaker"], when(entry["until"])])
        rows[-1].append(entry["last_error"] or "")
        for model, health in sorted(entry.get("models", {}).items()):
            until = when(health["until"])
            error = health["last_error"] or ""
            rows.append([name, model, health["state"], health["breaker"], until, error])
    return rows


def _show(found: dict[str, Any]) -> None:
    gw = found["gateway"]
    state = visible(gw.get("state", "?"))
    colour = {"running": "green", "degraded": "yellow"}.get(state, "red")
    click.echo(
        f"gateway {click.style(state, fg=colour, bold=True)}  pid {gw.get('pid')}  "
        f"version {visible(gw.get('version'))}  up {_uptime(gw.get('uptime_s'))} "
        f"(since {when(gw.get('started_at'))})"
    )
    click.echo(f"  boot {visible(gw.get('boot_id'))}  head_seq {gw.get('head_seq')}")
    click.echo(f"  endpoint {visible(gw.get('endpoint'))}")
    click.echo(f"  log {visible(found['log'])}")
    print_table(
        ["actor", "state", "restarts", "last error"],
        [
            [name, actor.get("state"), actor.get("restarts"), actor.get("last_error") or ""]
            for name, actor in sorted(gw.get("actors", {}).items())
        ],
    )
    if "config" not in found:
        click.echo(f"(the gateway is {state}: its domains answer once it serves)")
        return
    config = found["config"]
    if config["problem"]:
        click.echo(
            click.style("config trouble", fg="yellow", bold=True)
            + visible(f": running on {config['source']}: {config['problem']}")
            + "\n  fix config.json (`tek config validate`), or `tek config restore NAME`"
        )
    else:
        click.echo(f"config {visible(config['source'])}: ok")
    sessions, procs = found["sessions"], found["processes"]
    click.echo(
        f"sessions {sessions['count']} ({sessions['live']} live)  "
        f"processes {procs['running']} running"
    )
    print_table(
        ["provider", "model", "state", "breaker", "until", "last error"],
        _breaker_rows(found["providers"]),
    )


@click.command()
@click.pass_obj
def status(out: Output) -> None:
    """Everything about the gateway on one screen: actors, config, providers, sessions, log."""
    try:
        found = gather(out)
    except TekError as exc:  # still say where to look for why
        exc.details = {**exc.details, "log": str(out.home.log_path)}
        fail(out, exc)
    if out.json:
        out.emit(found)
        return
    _show(found)
