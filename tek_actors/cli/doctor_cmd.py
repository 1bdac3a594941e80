"""`tek doctor`: what is wrong with this tek, each finding one line and what to do about it.

    ok    home /home/me/tek is private (0700, yours)
    warn  gateway: stale connection file from pid 4242  (`tek gateway start` replaces it)
    fail  config.json: is not valid JSON (line 3, column 1)  (`tek config validate` ...)

Checks: the home's folders (0700, owned by this user), the gateway (running, or a connection
file a killed one left), the home lock (who holds it, read from /proc/locks: taking it to see
would make a gateway that starts at that moment fail), config.json (valid; private; and, with a
gateway running, that it runs on the file, not on a backup), keys/ and the token (private), one
request to each provider (`providers.test`, when a gateway runs), the systemd user unit (if
installed: its ExecStart names a tek that exists, and this home), and free disk space. Exit 0
if nothing failed, 1 if something did; warnings do not fail. Nothing is changed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import click

from tek_actors.cli import _systemd
from tek_actors.cli._liveness import stale_gateway
from tek_actors.cli._output import EXIT_ERROR, Output
from tek_actors.cli._render import visible
from tek_actors.errors import TekError
from tek_actors.home import TekHome

__all__ = ["Finding", "doctor"]

FAIL_FREE_BYTES = 100 << 20  # below this the journal will soon refuse changes
WARN_FREE_BYTES = 1 << 30
PROBE_TIMEOUT_S = 30.0  # per provider; they are asked at the same time


@dataclass(frozen=True)
class Finding:
    status: Literal["ok", "warn", "fail"]
    check: str
    message: str
    fix: str = ""


def _mode_problem(path: Path, *, private: int) -> tuple[str, str] | None:
    """Why `path` is not private enough (mode bits beyond `private`, or another owner)."""
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.getuid():
        return f"is owned by uid {info.st_uid}, not you", f"chown {os.getuid()} {path}"
    if mode & ~private & 0o077:
        return f"is mode {mode:04o} (others may read it)", f"chmod {private:o} {path}"
    return None


def _home(home: TekHome) -> list[Finding]:
    found = []
    for name, folder in (
        ("home", home.config_dir),
        ("state", home.state_dir),
        ("run", home.run_dir),
    ):
        if not folder.exists():
            found.append(
                Finding("ok", name, f"{folder} does not exist yet (made at the first start)")
            )
            continue
        problem = _mode_problem(folder, private=0o700)
        if problem is None:
            found.append(Finding("ok", name, f"{folder} is private (0700, yours)"))
        else:
            found.append(Finding("fail", name, f"{folder} {problem[0]}", problem[1]))
    return found


def _held_flock(path: Path) -> int | None:
    """The pid holding an flock on `path` (from /proc/locks), or None; None also where there
    is no /proc/locks."""
    try:
        inode = path.stat().st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            return int(fields[4])
    return None


def _gateway(home: TekHome, endpoint: str | None) -> tuple[list[Finding], bool]:
    """The gateway and the lock; and whether a gateway (probably) runs."""
    info = home.read_connection()
    found: list[Finding] = []
    running = False
    if endpoint is not None:
        found.append(Finding("ok", "gateway", f"asked at {endpoint} (--endpoint)"))
        running = True
    elif info is None:
        found.append(Finding("ok", "gateway", "not running", "`tek gateway start`"))
    elif (pid := stale_gateway(info)) is not None:
        found.append(
            Finding(
                "warn",
                "gateway",
                f"stale connection file from pid {pid} (a gateway killed or crashed)",
                "`tek gateway start` replaces it; `tek gateway logs` says why it ended",
            )
        )
    else:
        found.append(Finding("ok", "gateway", f"running (pid {info.get('pid')})"))
        running = True
    lock = home.lock_path
    if lock.exists():
        holder = _held_flock(lock)
        written = lock.read_text(errors="replace").strip() or "?"
        if holder is not None:
            found.append(Finding("ok", "lock", f"held by pid {holder}"))
        elif Path("/proc/locks").exists():
            found.append(
                Finding(
                    "ok",
                    "lock",
                    f"left by pid {written}, held by nobody (the next start takes it)",
                )
            )
    return found, running


def _config(home: TekHome, client: Any) -> list[Finding]:
    from tek_actors.config.document import load
    from tek_actors.config.store import ConfigStore

    path = home.config_path
    found: list[Finding] = []
    try:
        raw = ConfigStore(path).read_raw(path)
        if raw is None:
            found.append(Finding("ok", "config", f"no {path} (the defaults: the `local` model)"))
        else:
            load(raw)
            problem = _mode_problem(path, private=0o600)
            if problem is not None:  # it may hold API keys
                found.append(Finding("fail", "config", f"{path} {problem[0]}", problem[1]))
            else:
                found.append(Finding("ok", "config", f"{path} is valid"))
    except TekError as exc:
        fix = "`tek config validate` lists every error; fix it, or `tek config restore NAME`"
        found.append(Finding("fail", "config", f"{path}: {exc.message}", fix))
    if client is not None:
        reply = client.call("config.get", {"path": "default_model"})
        if reply.get("problem"):
            found.append(
                Finding(
                    "fail",
                    "config",
                    f"the gateway runs on {reply.get('source')}: {reply['problem']}",
                    "fix config.json; the gateway applies it once it is valid",
                )
            )
    return found


def _secrets(home: TekHome) -> list[Finding]:
    found = []
    keys = home.config_dir / "keys"
    secrets = [home.config_dir / "token"]
    if keys.is_dir():
        problem = _mode_problem(keys, private=0o700)
        if problem is not None:
            found.append(Finding("fail", "keys", f"{keys} {problem[0]}", problem[1]))
        secrets += [p for p in keys.rglob("*") if p.is_file() and not p.name.endswith(".key")]
    for secret in secrets:
        if secret.exists():
            problem = _mode_problem(secret, private=0o600)
            if problem is not None:
                found.append(Finding("fail", "keys", f"{secret} {problem[0]}", problem[1]))
    if not found:
        said = "keys/ and the token are private" if keys.is_dir() else "no keys/ (ipc only)"
        found.append(Finding("ok", "keys", said))
    return found


def _providers(client: Any) -> list[Finding]:
    names = sorted(client.call("providers.list")["providers"])
    asked: dict[str, Future[Any]] = {
        name: client.submit("providers.test", {"name": name}, timeout=PROBE_TIMEOUT_S)
        for name in names
    }
    found = []
    for name, future in asked.items():
        check = f"provider {name}"
        try:
            result = future.result(PROBE_TIMEOUT_S + 5)
        except TekError as exc:
            found.append(Finding("warn", check, exc.message, f"`tek providers test {name}`"))
            continue
        except TimeoutError:
            found.append(Finding("fail", check, f"no answer within {PROBE_TIMEOUT_S:.0f} s"))
            continue
        if result["ok"]:
            found.append(Finding("ok", check, f"answered in {result['latency_ms']} ms"))
        else:
            error = result.get("error") or {}
            found.append(
                Finding(
                    "fail",
                    check,
                    f"{error.get('kind')}: {error.get('message')}",
                    f"check its base_url and key (`tek config get providers.{name}`)",
                )
            )
    return found


def _unit(home: TekHome) -> list[Finding]:
    path = _systemd.unit_path()
    if not path.exists():
        return [Finding("ok", "systemd", "no user unit (optional)", "`tek gateway install`")]
    text = path.read_text(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("ExecStart=")), None)
    if line is None:
        return [
            Finding("fail", "systemd", f"{path} has no ExecStart", "`tek gateway install --force`")
        ]
    words = shlex.split(line.removeprefix("ExecStart=").replace("%%", "%").replace("$$", "$"))
    program = words[0] if words else ""
    if not (os.path.isfile(program) and os.access(program, os.X_OK)):
        return [
            Finding(
                "fail",
                "systemd",
                f"{path} runs {program or '(nothing)'}, which is not an executable file",
                "`tek gateway install` (again, from the tek you use)",
            )
        ]
    found = [Finding("ok", "systemd", f"{path} runs {program}")]
    wanted = _systemd.exec_start(home)
    home_of = words[words.index("--home") + 1] if "--home" in words[:-1] else None
    if home_of != (wanted[wanted.index("--home") + 1] if "--home" in wanted else None):
        found.append(
            Finding(
                "warn",
                "systemd",
                f"the unit serves another home ({home_of or 'the platform folders'})",
                "`tek gateway install` from this home replaces it",
            )
        )
    if _systemd.MARKER not in text:
        found.append(Finding("warn", "systemd", f"{path} was not written by tek"))
    return found


def _disk(home: TekHome) -> Finding:
    where = home.state_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    said = f"{free / (1 << 30):.1f} GiB free under {where}"
    if free < FAIL_FREE_BYTES:
        return Finding("fail", "disk", said, "free space there: the journal needs it")
    if free < WARN_FREE_BYTES:
        return Finding("warn", "disk", said, "free space there soon")
    return Finding("ok", "disk", said)


def examine(out: Output) -> list[Finding]:
    """Every check's findings, in order. Reads only."""
    home = out.home
    found = _home(home)
    running_found, running = _gateway(home, out.endpoint)
    found += running_found
    client = None
    if running:
        from tek_actors.client import Client

        try:
            client = Client(out.endpoint, home=home, timeout=10.0)
            client.ping()
        except TekError as exc:
            found.append(
                Finding("fail", "gateway", f"does not answer: {exc.message}", "`tek gateway logs`")
            )
            if client is not None:
                client.close()
            client = None
    try:
        found += _config(home, client)
        found += _secrets(home)
        if client is not None:
            found += _providers(client)
    finally:
        if client is not None:
            client.close()
    found += _unit(home)
    found.append(_disk(home))
    return found


_COLOURS = {"ok": "green", "warn": "yellow", "fail": "red"}


@click.command()
@click.pass_obj
def doctor(out: Output) -> None:
    """Check the home, the config, the providers and the systemd unit; say what to fix."""
    found = examine(out)
    failed = any(f.status == "fail" for f in found)
    if out.json:
        out.emit({"ok": not failed, "checks": [asdict(f) for f in found]})
    else:
        for f in found:
            status = click.style(f"{f.status:<4}", fg=_COLOURS[f.status])
            fix = f"  ({f.fix})" if f.fix else ""
            click.echo(f"{status}  {visible(f.check)}: {visible(f.message)}{visible(fix)}")
    if failed:
        raise SystemExit(EXIT_ERROR)
