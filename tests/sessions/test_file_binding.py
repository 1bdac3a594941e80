"""A person approves exactly what runs: a file tool's path is resolved once, when the call is
planned, and the tool opens exactly that (its folder walked without following a symlink, the
folder's and the file's identities checked), or fails saying what the path is now and does
nothing. Real files, real symlinks, the real tool loop with a person approving through the
approvals actor, and once against the real gateway process."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from tek_actors import Client
from tek_actors.approvals.policy import evaluate
from tek_actors.config import Config
from tek_actors.config.model import ApprovalsConfig
from tek_actors.providers import ToolCall
from tek_actors.runtime import FakeClock
from tek_actors.sessions.tools import PlannedCall, ToolError, plan_call, run_file_tool
from tek_actors.sessions.writes import open_folder, perform_write, write_intent
from tek_actors.testing import GatewayProcess, write_config
from tests.conftest import Start
from tests.sessions.conftest import until
from tests.sessions.test_tool_loop import _pending_approval as _asked

SECRET = "SECRET, outside the folder"


# -- helpers -----------------------------------------------------------------------------------


def _rooms(tmp_path: Path) -> tuple[Path, Path]:
    """The session's folder and a folder outside it (real paths), each with a sub-folder."""
    work, outside = tmp_path.resolve() / "work", tmp_path.resolve() / "outside"
    for folder in (work / "sub", outside / "sub"):
        folder.mkdir(parents=True)
    (work / "a.txt").write_text("inside")
    (work / "sub" / "d.txt").write_text("inside")
    (outside / "secret.txt").write_text(SECRET)
    (outside / "sub" / "d.txt").write_text(SECRET)
    return work, outside


def _swap_for_symlink(path: Path, target: Path) -> None:
    """`path` becomes a symlink to `target` in one rename (a folder is moved aside first)."""
    if path.is_dir() and not path.is_symlink():
        path.rename(path.with_name(path.name + ".moved"))
    link = path.with_name(".swap")
    link.symlink_to(target)
    link.replace(path)


def _start(client: Client, work: Path, tool: str, arguments: dict[str, Any]) -> str:
    session = str(client.call("sessions.create", {"cwd": str(work)})["id"])
    client.hello(topics=["session.*", "approval.*"])
    text = f"tool: {tool} {json.dumps(arguments)}"
    client.call("sessions.send", {"id": session, "text": text})
    return session


def _result(client: Client, session_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """After the turn's final answer: the tool result entry, and every entry."""
    while True:
        event = client.next_event(30)
        assert event is not None, "no final answer"
        data = event["data"]
        if event["seq"] is None or data.get("session") != session_id:
            continue
        if event["event"] == "session.error" or (
            event["event"] == "session.message" and not data["tool_calls"]
        ):
            break
    entries = client.call("sessions.get", {"id": session_id})["entries"]
    [result] = [e for e in entries if e["role"] == "tool"]
    return result, entries


def _error(result: dict[str, Any]) -> str:
    return str(json.loads(result["text"])["error"])


def _ident(path: Path) -> list[int]:
    st = os.stat(path, follow_symlinks=False)
    return [st.st_dev, st.st_ino]


def _approve(client: Client, asked: dict[str, Any]) -> None:
    client.call("approvals.decide", {"id": asked["id"], "decision": "approve"})


# -- the last component swapped between request and approval -----------------------------------


def test_a_read_swapped_for_a_symlink_after_the_request_reads_nothing(
    gateway_with: Start, tmp_path: Path
) -> None:
    work, outside = _rooms(tmp_path)
    _, client = gateway_with()
    session = _start(client, work, "read_file", {"path": "a.txt"})
    asked = _asked(client, session)
    assert asked["status"] == "pending"
    assert asked["arguments"] == {  # what the person approves: the real path and the file
        "path": str(work / "a.txt"),
        "offset": 0,
        "inode": _ident(work / "a.txt"),
        "folder_inode": _ident(work),
        "outside_workdir": False,
    }

    _swap_for_symlink(work / "a.txt", outside / "secret.txt")
    _approve(client, asked)
    result, entries = _result(client, session)

    assert result["status"] == "failed"
    assert _error(result) == (
        f"read_file: {work / 'a.txt'} changed since it was approved: it is now a symlink to "
        f"{outside / 'secret.txt'}; nothing was read"
    )
    assert not any(SECRET in e["text"] for e in entries)
    assert client.call("approvals.get", {"id": asked["id"]})["status"] == "failed"


@pytest.mark.parametrize("append", [False, True])
def test_a_write_swapped_for_a_symlink_after_the_request_writes_nothing(
    gateway_with: Start, tmp_path: Path, append: bool
) -> None:
    work, outside = _rooms(tmp_path)
    (work / "b.txt").write_text("old")
    _, client = gateway_with()
    arguments = {"path": "b.txt", "content": "new", "append": append}
    session = _start(client, work, "write_file", arguments)
    asked = _asked(client, session)
    assert asked["arguments"]["inode"] == _ident(work / "b.txt")

    _swap_for_symlink(work / "b.txt", outside / "secret.txt")
    _approve(client, asked)
    result, _ = _result(client, session)

    assert result["status"] == "failed"
    assert _error(result) == (
        f"write_file: {work / 'b.txt'} changed since it was approved: it is now a symlink to "
        f"{outside / 'secret.txt'}; nothing was written"
    )
    assert (outside / "secret.txt").read_text() == SECRET
    assert (work / "b.txt").is_symlink()  # left as it was found
    assert sorted(os.listdir(work)) == ["a.txt", "b.txt", "sub"]  # no temp file left behind


@pytest.mark.parametrize("append", [False, True])
def test_a_write_of_a_new_file_never_follows_a_symlink_created_since(
    gateway_with: Start, tmp_path: Path, append: bool
) -> None:
    work, outside = _rooms(tmp_path)
    _, client = gateway_with()
    session = _start(
        client, work, "write_file", {"path": "c.txt", "content": "new", "append": append}
    )
    asked = _asked(client, session)
    assert asked["arguments"]["inode"] is None  # a new file: nothing may be there when it runs

    (work / "c.txt").symlink_to(outside / "planted.txt")  # dangling: O_CREAT would make it
    _approve(client, asked)
    result, _ = _result(client, session)

    assert result["status"] == "failed"
    assert _error(result) == (
        f"write_file: {work / 'c.txt'} changed since it was approved: it now exists (a symlink "
        f"to {outside / 'planted.txt'}); it did not when the call was approved; nothing was "
        "written"
    )
    assert not (outside / "planted.txt").exists()


# -- a folder of the path swapped ---------------------------------------------------------------


@pytest.mark.parametrize(("tool", "done"), [("read_file", "read"), ("write_file", "written")])
def test_a_folder_swapped_for_a_symlink_after_the_request_is_refused(
    gateway_with: Start, tmp_path: Path, tool: str, done: str
) -> None:
    work, outside = _rooms(tmp_path)
    _, client = gateway_with()
    arguments: dict[str, Any] = {"path": "sub/d.txt"}
    if tool == "write_file":
        arguments["content"] = "new"
    session = _start(client, work, tool, arguments)
    asked = _asked(client, session)
    assert asked["arguments"]["folder_inode"] == _ident(work / "sub")

    _swap_for_symlink(work / "sub", outside / "sub")  # same names inside: only the folder moved
    _approve(client, asked)
    result, entries = _result(client, session)

    assert result["status"] == "failed"
    assert _error(result) == (
        f"{tool}: {work / 'sub'} changed since it was approved: it is now a symlink to "
        f"{outside / 'sub'}; nothing was {done}"
    )
    assert (outside / "sub" / "d.txt").read_text() == SECRET
    assert sorted(os.listdir(outside / "sub")) == ["d.txt"]
    assert not any(SECRET in e["text"] for e in entries)


def test_a_new_file_in_a_folder_replaced_by_another_folder_is_not_written(
    gateway_with: Start, tmp_path: Path
) -> None:
    work, _ = _rooms(tmp_path)
    _, client = gateway_with()
    session = _start(client, work, "write_file", {"path": "sub/new.txt", "content": "new"})
    asked = _asked(client, session)

    (work / "sub").rename(work / "sub.old")
    (work / "sub").mkdir()  # a real folder at the same path: no symlink anywhere
    _approve(client, asked)
    result, _ = _result(client, session)

    assert result["status"] == "failed"
    assert "is now another folder (the approved one was replaced)" in _error(result)
    assert not (work / "sub" / "new.txt").exists() and not (work / "sub.old" / "new.txt").exists()


# -- the same name, another file ----------------------------------------------------------------


@pytest.mark.parametrize(("tool", "done"), [("read_file", "read"), ("write_file", "written")])
def test_a_file_replaced_by_another_file_is_not_the_one_approved(
    gateway_with: Start, tmp_path: Path, tool: str, done: str
) -> None:
    work, _ = _rooms(tmp_path)
    _, client = gateway_with()
    arguments: dict[str, Any] = {"path": "a.txt"}
    if tool == "write_file":
        arguments["content"] = "new"
    session = _start(client, work, tool, arguments)
    asked = _asked(client, session)

    (work / "other").write_text("replaced, not approved")
    (work / "other").replace(work / "a.txt")  # a regular file, another inode
    _approve(client, asked)
    result, entries = _result(client, session)

    assert result["status"] == "failed"
    assert _error(result) == (
        f"{tool}: {work / 'a.txt'} changed since it was approved: it is now another file (the "
        f"approved one was replaced); nothing was {done}"
    )
    assert (work / "a.txt").read_text() == "replaced, not approved"
    assert not any("replaced, not approved" in e["text"] for e in entries)


def test_a_fifo_swapped_in_is_refused_and_never_waited_on(tmp_path: Path) -> None:
    work, _ = _rooms(tmp_path)
    call = ToolCall(id="c", name="read_file", arguments={"path": "a.txt"})
    planned = plan_call(call, Config(), work)
    os.mkfifo(work / "fifo")  # opening it for reading would wait for a writer, forever
    (work / "fifo").replace(work / "a.txt")
    with pytest.raises(
        ToolError, match=r"a\.txt changed since it was approved: it is no longer a "
    ):
        run_file_tool(planned, 1024)


@pytest.mark.parametrize(
    ("tool", "path", "why"),
    [
        ("read_file", "nope.txt", "read_file: {work}/nope.txt does not exist"),
        ("write_file", "nodir/x.txt", "write_file: the folder {work}/nodir does not exist"),
        ("read_file", "sub", "read_file: {work}/sub is a folder, not a regular file"),
        ("write_file", "sub", "write_file: {work}/sub is a folder, not a regular file"),
    ],
)
def test_what_cannot_be_bound_is_refused_when_planned(
    tmp_path: Path, tool: str, path: str, why: str
) -> None:
    work, _ = _rooms(tmp_path)
    arguments = {"path": path} | ({"content": "x"} if tool == "write_file" else {})
    with pytest.raises(ToolError) as refused:
        plan_call(ToolCall(id="c", name=tool, arguments=arguments), Config(), work)
    assert str(refused.value) == why.format(work=work)
    assert not (work / "nodir").exists()


# -- outside the session's folder ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["../outside/secret.txt", "sub/../../outside/secret.txt", "{outside}/secret.txt", "link.txt"],
)
def test_a_path_outside_the_folder_is_refused_when_planned(
    gateway_with: Start, tmp_path: Path, path: str
) -> None:
    work, outside = _rooms(tmp_path)
    (work / "link.txt").symlink_to(outside / "secret.txt")  # a symlink inside, leading out
    _, client = gateway_with({"approvals": {"default": "auto"}})
    session = _start(client, work, "read_file", {"path": path.format(outside=outside)})
    result, entries = _result(client, session)

    assert result["status"] == "error"
    assert _error(result) == (
        f"read_file: {outside / 'secret.txt'} is outside the session's folder {work}: file "
        'tools stay inside it (approvals.outside_workdir is "refuse"); nothing was done'
    )
    assert not any(SECRET in e["text"] for e in entries)
    assert client.call("approvals.list", {})["items"] == []  # nobody was asked: nothing runs


def test_a_write_outside_the_folder_is_refused_and_creates_nothing(
    gateway_with: Start, tmp_path: Path
) -> None:
    work, outside = _rooms(tmp_path)
    _, client = gateway_with({"approvals": {"default": "auto"}})
    session = _start(client, work, "write_file", {"path": "../outside/new.txt", "content": "x"})
    result, _ = _result(client, session)
    assert result["status"] == "error" and "is outside the session's folder" in _error(result)
    assert not (outside / "new.txt").exists()


def test_outside_the_folder_with_ask_a_person_decides_even_where_a_rule_says_auto(
    gateway_with: Start, tmp_path: Path
) -> None:
    work, outside = _rooms(tmp_path)
    approvals = {
        "outside_workdir": "ask",
        "tools": {"read_file": "auto"},
        "rules": [{"tool": "read_file", "action": "auto"}],
    }
    _, client = gateway_with({"approvals": approvals})
    session = _start(client, work, "read_file", {"path": "../outside/secret.txt"})
    asked = _asked(client, session)

    assert asked["status"] == "pending" and asked.get("decided_by") is None
    assert asked["arguments"]["outside_workdir"] is True  # shown to the person
    assert asked["arguments"]["path"] == str(outside / "secret.txt")
    _approve(client, asked)
    result, _ = _result(client, session)
    assert result["status"] == "executed"
    assert json.loads(result["text"])["content"] == SECRET  # a person chose to let it read


def test_an_outside_call_approved_after_the_setting_went_back_to_refuse_does_not_run(
    gateway_with: Start, tmp_path: Path
) -> None:
    work, outside = _rooms(tmp_path)
    _, client = gateway_with({"approvals": {"outside_workdir": "ask"}})
    session = _start(client, work, "read_file", {"path": "../outside/secret.txt"})
    asked = _asked(client, session)
    # answered once every dependent (the live session too) has the new setting
    client.call("config.set", {"path": "approvals.outside_workdir", "value": "refuse"})
    _approve(client, asked)
    result, entries = _result(client, session)

    assert result["status"] == "failed"
    assert _error(result) == (
        f"read_file: {outside / 'secret.txt'} is outside the session's folder and "
        'approvals.outside_workdir is now "refuse"; nothing was read'
    )
    assert not any(SECRET in e["text"] for e in entries)


def test_the_policy_never_approves_a_path_outside_the_folder_on_its_own() -> None:
    asking = ApprovalsConfig(default="auto", tools={"read_file": "auto"}, outside_workdir="ask")
    refusing = ApprovalsConfig(default="auto", tools={"read_file": "auto"})
    outside = {"path": "/elsewhere/x", "offset": 0, "outside_workdir": True}
    inside = {"path": "/work/x", "offset": 0, "outside_workdir": False}

    action, why = evaluate(asking, "read_file", outside)
    assert action == "ask" and "outside the session's folder" in why
    assert evaluate(asking, "read_file", inside)[0] == "auto"
    denying = asking.model_copy(update={"tools": {"read_file": "deny"}})
    assert evaluate(denying, "read_file", outside)[0] == "deny"  # the strictest still wins
    # a call asked under "ask" and begun after a change to "refuse" is denied then
    assert evaluate(refusing, "read_file", outside)[0] == "deny"


# -- across a restart of the session -------------------------------------------------------------


def test_after_a_restart_the_call_runs_what_its_approval_binds(
    gateway_with: Start, tmp_path: Path
) -> None:
    work, outside = _rooms(tmp_path)
    clock = FakeClock()
    _, client = gateway_with({"gateway": {"supervision": {"backoff_jitter": 0.0}}}, clock=clock)
    session = _start(client, work, "read_file", {"path": "a.txt"})
    asked = _asked(client, session)

    client.call("test.crash", {"actor": f"session-{session}"})  # the new one plans nothing
    until(lambda: not _live(client, session), "the manager learnt of the crash")
    clock.advance(0.5)
    until(lambda: _live(client, session), "the session started again")
    _swap_for_symlink(work / "a.txt", outside / "secret.txt")
    _approve(client, asked)
    clock.advance(5.0)  # the restarted session's watch, sent again
    result, entries = _result(client, session)

    # a new plan would have resolved the symlink (and refused it as outside, never begun): the
    # approval's own binding ran, was checked, and the approval is closed
    assert result["status"] == "failed" and "is now a symlink to" in _error(result)
    assert not any(SECRET in e["text"] for e in entries)
    assert client.call("approvals.get", {"id": asked["id"]})["status"] == "failed"


def _live(client: Client, session_id: str) -> bool:
    items = client.call("sessions.list")["items"]
    return bool(next(s for s in items if s["id"] == session_id)["live"])


# -- random swaps at random moments ------------------------------------------------------------

SEED = int(os.environ.get("TEK_FILE_BINDING_SEED", "1913"))
ROUNDS = 200
_PARTS = ["f.txt", "d", "d/f.txt", "d/e", "d/e/f.txt"]
_TARGETS = ["f.txt", "d/f.txt", "d/e/f.txt", "d/new.txt", "d/e/new.txt"]
_SWAPS = ["outside", "outside_relative", "inside", "replace", "remove"]
_MOMENTS = ["before_plan", "after_plan", "while_running"]


def _tree(root: Path, text: str) -> None:
    (root / "d" / "e").mkdir(parents=True)
    for part in ("f.txt", "d/f.txt", "d/e/f.txt"):
        (root / part).write_text(text)


def _snapshot(root: Path) -> dict[str, Any]:
    """Everything about a tree that a read can't change and a write would: names, kinds,
    identities, sizes, mtimes and contents (no symlink is followed)."""
    seen: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = os.stat(path, follow_symlinks=False)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if name in files else None
            seen[str(path.relative_to(root))] = (st.st_mode, st.st_ino, st.st_size, digest)
            seen[str(path.relative_to(root)) + "@mtime"] = st.st_mtime_ns
    return seen


def _swap(work: Path, outside: Path, part: str, how: str, n: int) -> None:
    """One swap of `part` of `work`; skipped where the swap itself would reach outside (a folder
    above it is a symlink out), so the test never changes the outside tree on its own."""
    path = work / part
    if not Path(os.path.realpath(path.parent)).is_relative_to(work) or not path.parent.is_dir():
        return
    try:
        _swap_one(path, outside / part, how, path.with_name(f"{path.name}.moved{n}"))
    except (FileExistsError, FileNotFoundError):
        pass  # the tool took or moved the name that instant: this swap did not happen


def _swap_one(path: Path, outside: Path, how: str, moved: Path) -> None:
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        path.rename(moved)
    if how == "outside":
        path.symlink_to(outside)
    elif how == "outside_relative":
        path.symlink_to(os.path.relpath(outside, path.parent))
    elif how == "inside" and moved.exists():
        path.symlink_to(moved.name)  # inside the folder: allowed, and still bound
    elif how == "replace" and moved.is_dir():
        path.mkdir()
        (path / "f.txt").write_text("inside, replaced")
    elif how == "replace" and moved.exists():
        path.write_text("inside, replaced")


def test_random_swaps_at_random_moments_never_read_or_write_outside_the_folder(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    config = Config()
    outside = tmp_path.resolve() / "outside"
    _tree(outside, SECRET)
    before = _snapshot(outside)
    outcomes: dict[str, int] = {}
    for round_ in range(ROUNDS):
        work = tmp_path.resolve() / f"w{round_}"
        _tree(work, "inside")
        tool = rng.choice(["read_file", "write_file"])
        arguments: dict[str, Any] = {"path": rng.choice(_TARGETS)}
        if tool == "write_file":
            arguments |= {"content": f"written {round_}", "append": rng.random() < 0.3}
        swaps = [
            (rng.choice(_MOMENTS), rng.choice(_PARTS), rng.choice(_SWAPS), n)
            for n in range(rng.randint(1, 3))
        ]
        story = f"seed {SEED}, round {round_}: {tool} {arguments} with {swaps}"

        def swap_at(moment: str, swaps: list[Any] = swaps, work: Path = work) -> None:
            for at, part, how, n in swaps:
                if at == moment:
                    _swap(work, outside, part, how, n)

        swap_at("before_plan")
        try:
            planned = plan_call(ToolCall(id="c", name=tool, arguments=arguments), config, work)
        except ToolError:
            outcomes["refused when planned"] = outcomes.get("refused when planned", 0) + 1
            assert _snapshot(outside) == before, story
            continue
        assert planned.arguments["outside_workdir"] is False, story
        swap_at("after_plan")
        racer = threading.Thread(target=swap_at, args=("while_running",))
        racer.start()
        try:
            outcome = _run(planned, round_)
        finally:
            racer.join(30)
        assert not racer.is_alive()
        outcomes[outcome[0]] = outcomes.get(outcome[0], 0) + 1
        if outcome[0] == "read":
            assert SECRET not in outcome[1] and "inside" in outcome[1], story
        if outcome[0] == "written":
            assert _holds(work, f"written {round_}"), story  # it landed inside the folder
        assert _snapshot(outside) == before, story
    # every way the story can end was taken (or the swaps tested little)
    assert set(outcomes) == {"refused when planned", "read", "written", "failed"}, outcomes


def _run(planned: PlannedCall, round_: int) -> tuple[str, str]:
    """Run a planned call as the session does (a read, or a write through its intent's steps):
    ("read", content), ("written", path), or ("failed", why)."""
    try:
        if planned.kind == "read_file":
            return "read", str(run_file_tool(planned, 1 << 16)["content"])
        with open_folder(planned) as folder:
            spec = write_intent(planned, f"w-{round_:012d}", folder)
            return "written", str(perform_write(planned, spec, folder)["path"])
    except ToolError as err:
        return "failed", str(err)


def _holds(root: Path, text: str) -> bool:
    """Some file under `root` (no symlink followed) holds `text`."""
    return any(
        text in (Path(folder) / name).read_text()
        for folder, _, files in os.walk(root)
        for name in files
        if not (Path(folder) / name).is_symlink()
    )


# -- the real gateway process -------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_gateway_process_reads_nothing_through_a_symlink_swapped_in(
    home: Path, tmp_path: Path
) -> None:
    work, outside = _rooms(tmp_path)
    write_config(home, {})
    gateway = GatewayProcess(home).start()
    try:
        with gateway.client(timeout=30) as client:
            session = _start(client, work, "read_file", {"path": "a.txt"})
            asked = _asked(client, session)
            _swap_for_symlink(work / "a.txt", outside / "secret.txt")
            _approve(client, asked)
            result, entries = _result(client, session)
            assert result["status"] == "failed"
            assert _error(result).endswith(
                f"it is now a symlink to {outside / 'secret.txt'}; nothing was read"
            )
            assert not any(SECRET in e["text"] for e in entries)
    finally:
        assert gateway.terminate() == 0
