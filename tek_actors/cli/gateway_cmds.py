"""`tek gateway run|start|stop|restart|status`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from typing import Any

import click
import psutil

from tek_actors.cli._liveness import stale_gateway
from tek_actors.cli._output import Output, fail, gateway_client
from tek_actors.cli._render import visible
from tek_actors.errors import TekError
from tek_actors.home import TekHome

__all__ = ["gateway"]


@click.group()
def gateway() -> None:
    """Run and manage the gateway process."""


@gateway.command()
@click.option("--endpoint", help="Bind here instead of the home's ipc socket (tcp: CURVE keys).")
@click.option("--log-level", help="DEBUG, INFO, WARNING or ERROR (default from logging.json).")
@click.option("--log-file", is_flag=True, help="Also log to <state>/gateway.log (rotated).")
@click.option("--quiet", is_flag=True, help="With --log-file: log only to the file.")
@click.pass_obj
def run(
    out: Output,
    endpoint: str | None,
    log_level: str | None,
    log_file: bool,
    quiet: bool,
) -> None:
    """Run the gateway in the foreground until SIGTERM/SIGINT or gateway.shutdown."""
    from tek_actors.cli._logging import configure_logging
    from tek_actors.gateway import Gateway

    home = out.home
    configure_logging(
        log_level, log_file=home.log_path if log_file else None, stderr=not (quiet and log_file)
    )
    try:
        gw = Gateway(home, endpoint=endpoint or out.endpoint)
        code = gw.run()
    except TekError as exc:
        fail(out, exc)
    sys.exit(code)


def _running_pid(home: TekHome) -> int | None:
    """The pid of the gateway the connection file names, if it lives (not gone, not a zombie,
    not a later process that reused its pid)."""
    info = home.read_connection()
    pid = info.get("pid") if info else None
    if not isinstance(pid, int) or stale_gateway(info) is not None:
        return None
    return pid


@gateway.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait until it serves.")
@click.option("--endpoint", help="Bind here instead of the home's ipc socket.")
@click.pass_obj
def start(out: Output, timeout: float, endpoint: str | None) -> None:
    """Start the gateway in the background and wait until it serves every request.

    The gateway writes its connection file only once its actors have started, so when this
    returns, every domain answers (no `unavailable` "starting")."""
    home = out.home
    pid = _running_pid(home)
    if pid is not None:
        out.done({"started": False, "pid": pid}, f"a gateway is already running (pid {pid})")
        return
    home.ensure()
    args = [
        sys.executable,
        "-m",
        "tek_actors",
        "--home",
        str(home.config_dir),
        "gateway",
        "run",
        "--log-file",
        "--quiet",
    ]
    bind = endpoint or out.endpoint
    if bind:
        args += ["--endpoint", bind]
    out_path = home.state_dir / "gateway.out"  # what the daemon prints before its log is set up
    sink_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    earlier = os.fstat(sink_fd).st_size  # the file is append-only: show this start's part only
    with open(os.devnull, "rb") as devnull, os.fdopen(sink_fd, "ab") as sink:
        proc = subprocess.Popen(
            args, stdin=devnull, stdout=sink, stderr=sink, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + timeout
    with out.spinner("starting the gateway"):
        while True:
            code = proc.poll()
            if code is not None:
                with open(out_path, "rb") as printed:
                    printed.seek(earlier)
                    tail = printed.read()[-2000:].decode(errors="replace")
                tail = visible(tail, lines=True)
                fail(out, TekError(f"the gateway exited with code {code} while starting:\n{tail}"))
            info = home.read_connection()
            if info and info.get("pid") == proc.pid:
                try:
                    with gateway_client(out, timeout=max(0.5, deadline - time.monotonic())) as c:
                        c.ping(timeout=max(0.5, deadline - time.monotonic()))
                    break
                except TekError:
                    pass
            if time.monotonic() > deadline:
                proc.terminate()
                fail(out, TekError(f"the gateway did not start serving within {timeout}s"))
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)  # another process's files: nothing to block on but the process
    out.done(
        {"started": True, "pid": proc.pid, "endpoint": home.read_connection()},
        f"gateway started (pid {proc.pid})",
    )


@gateway.command()
@click.option("--grace-ms", default=30_000, show_default=True, help="Time for in-flight work.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the exit.")
@click.pass_obj
def stop(out: Output, grace_ms: int, timeout: float) -> None:
    """Stop the gateway gracefully and wait until it is gone."""
    home = out.home
    pid = _running_pid(home)
    if pid is None:
        out.done({"stopped": False}, "no gateway is running")
        return
    proc = psutil.Process(pid)
    with out.spinner("stopping the gateway"):
        try:
            with gateway_client(out) as client:
                client.call("gateway.shutdown", {"grace_ms": grace_ms})
        except TekError:
            proc.terminate()  # it no longer answers: SIGTERM is the same graceful path
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            fail(out, TekError(f"the gateway (pid {pid}) did not exit within {timeout}s"))
        except psutil.NoSuchProcess:
            pass
    out.done({"stopped": True, "pid": pid}, f"gateway stopped (pid {pid})")


@gateway.command()
@click.option("--grace-ms", default=30_000, show_default=True, help="Time for in-flight work.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def restart(out: Output, grace_ms: int, timeout: float) -> None:
    """Restart every actor in-process (clients stay connected and resync)."""
    with gateway_client(out) as client:
        client.hello(topics=["gateway.started"])
        client.call("gateway.restart", {"grace_ms": grace_ms})
        with out.spinner("restarting the gateway"):
            event = client.next_event(timeout)
            while event is not None and event.get("event") != "gateway.started":
                event = client.next_event(timeout)
        if event is None:
            fail(out, TekError(f"the gateway did not come back within {timeout}s"))
    boot = event["data"]["boot_id"]
    out.done({"restarted": True, "boot_id": boot}, f"gateway restarted (boot {boot})")


@gateway.command()
@click.pass_obj
def status(out: Output) -> None:
    """Show the gateway's state and every actor's health."""
    with gateway_client(out) as client:
        result: dict[str, Any] = client.status()
    if out.json:
        out.emit(result)
        return
    out.status_table(result)
