"""`tek gateway run|start|stop|restart|status|logs|install|uninstall`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import psutil

from tek_actors.cli import _systemd
from tek_actors.cli._liveness import stale_gateway
from tek_actors.cli._output import Output, fail, gateway_client
from tek_actors.cli._render import visible
from tek_actors.errors import Conflict, NotFound, TekError
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


# -- the log -----------------------------------------------------------------------------------

_FOLLOW_POLL_S = 0.2  # how often -f looks for more (tail -f looks every second)


def _last_lines(path: Path, count: int) -> tuple[list[bytes], int]:
    """The last `count` complete or partial lines of `path`, and the size read up to."""
    with open(path, "rb") as log:
        end = log.seek(0, os.SEEK_END)
        if count == 0:
            return [], end
        block, data = 64 << 10, b""
        position = end
        while position > 0 and data.count(b"\n") <= count:
            step = min(block, position)
            position -= step
            log.seek(position)
            data = log.read(step) + data
    lines = data.splitlines()
    return lines[-count:], end


def _show(out: Output, raw: bytes) -> None:
    text = raw.decode(errors="replace")
    if out.json:
        out.emit({"line": text})
    else:  # the log quotes what clients, models and tools sent: data, never control
        click.echo(visible(text, lines=True))


def _follow(out: Output, path: Path, offset: int) -> None:
    """Print what `path` gains after `offset`, line by line, until interrupted. A rotation
    (the file renamed away and a new one made, as loguru rotates) is followed: the rest of the
    old file first, then the new one from its start; a file cut shorter is read from its start."""
    log = open(path, "rb") if path.exists() else None  # noqa: SIM115 (reopened on rotation)
    if log is not None:
        log.seek(offset)
    pending = b""
    try:
        while True:
            chunk = log.read(1 << 20) if log is not None else b""
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    _show(out, line)
                continue
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None  # between the rename and the new file
            if now is not None and (log is None or now.st_ino != os.fstat(log.fileno()).st_ino):
                if pending:
                    _show(out, pending)
                    pending = b""
                if log is not None:
                    log.close()
                log = open(path, "rb")  # noqa: SIM115
                continue
            if now is not None and log is not None and now.st_size < log.tell():
                log.seek(0)  # truncated in place
                pending = b""
                continue
            time.sleep(_FOLLOW_POLL_S)
    except KeyboardInterrupt:
        if pending:
            _show(out, pending)
    finally:
        if log is not None:
            log.close()


@gateway.command()
@click.option(
    "-n",
    "--lines",
    "count",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Show the last N lines.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C ends it).")
@click.pass_obj
def logs(out: Output, count: int, follow: bool) -> None:
    """Print the gateway's log file (<state>/gateway.log); -f follows it, across rotations.

    The gateway writes it when started with `tek gateway start`, by the systemd unit, or with
    `tek gateway run --log-file`."""
    path = out.home.log_path
    if not path.exists() and not follow:
        fail(
            out,
            NotFound(
                f"there is no log at {path} yet: the gateway writes it when started with "
                "`tek gateway start` (or `tek gateway run --log-file`)",
                details={"path": str(path)},
            ),
        )
    offset = 0
    if path.exists():
        lines, offset = _last_lines(path, count)
        for line in lines:
            _show(out, line)
    if follow:
        if not path.exists() and not out.json:
            click.echo(f"waiting for {visible(str(path))} …", err=True)
        _follow(out, path, offset)


# -- the systemd user unit ---------------------------------------------------------------------


def _reload(warnings: list[str]) -> None:
    why = _systemd.systemctl("daemon-reload")
    if why is not None:
        warnings.append(f"{why}; run `systemctl --user daemon-reload` by hand")


def _warn(out: Output, warnings: list[str]) -> None:
    if not out.json:
        for warning in warnings:
            click.echo(f"{click.style('warn', fg='yellow')}  {visible(warning)}", err=True)


def _not_ours(path: Path) -> TekError:
    return Conflict(
        f"{path} was not written by `tek gateway install`; --force replaces or removes it",
        details={"path": str(path)},
    )


@gateway.command()
@click.option("--force", is_flag=True, help="Replace a unit file that tek did not write.")
@click.pass_obj
def install(out: Output, force: bool) -> None:
    """Write the systemd user unit (tek-gateway.service) that runs this tek's gateway."""
    path = _systemd.unit_path()
    args = _systemd.exec_start(out.home)
    text = _systemd.unit_text(_systemd.quote(args))
    if path.exists() and not force and _systemd.MARKER not in path.read_text(errors="replace"):
        fail(out, _not_ours(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)  # a unit is read whole by systemd: never half-written
    warnings: list[str] = []
    _reload(warnings)
    _warn(out, warnings)
    out.done(
        {"installed": True, "path": str(path), "exec_start": args, "warnings": warnings},
        f"wrote {path}\n  ExecStart={_systemd.quote(args)}\n"
        "start it now and at every login: systemctl --user enable --now tek-gateway",
    )


@gateway.command()
@click.option("--force", is_flag=True, help="Remove a unit file that tek did not write.")
@click.pass_obj
def uninstall(out: Output, force: bool) -> None:
    """Remove the systemd user unit (disabled first; a gateway it runs keeps running)."""
    path = _systemd.unit_path()
    if not path.exists():
        out.done({"removed": False, "path": str(path)}, f"no unit at {path}: nothing to remove")
        return
    if not force and _systemd.MARKER not in path.read_text(errors="replace"):
        fail(out, _not_ours(path))
    warnings: list[str] = []
    why = _systemd.systemctl("disable", _systemd.UNIT_NAME)
    if why is not None:
        warnings.append(f"{why}; run `systemctl --user disable {_systemd.UNIT_NAME}` by hand")
    path.unlink(missing_ok=True)
    _reload(warnings)
    _warn(out, warnings)
    out.done(
        {"removed": True, "path": str(path), "warnings": warnings},
        f"removed {path} (a gateway it started runs on: `tek gateway stop`)",
    )
