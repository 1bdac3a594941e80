"""pytest plugin (`-p tek_actors.testing.plugin`).

- Every test must leave no thread, actor or child process behind (an autouse check).
- Fixtures for programs built on the gateway: `tek_home`, `tek_gateway` (embedded, test hooks
  on) and `tek_client`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pykka
import pytest

from tek_actors.client import Client
from tek_actors.gateway import Gateway
from tek_actors.testing.process import running_gateway


def _ours(thread: threading.Thread) -> bool:
    return thread.is_alive() and (
        thread.name.startswith("tek-")
        or "Actor" in thread.name
        or thread.name.startswith(("Supervisor", "Ticker"))
    )


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    before_threads = {t.ident for t in threading.enumerate()}
    before_children = {p.pid for p in psutil.Process().children(recursive=True)}
    before_actors = {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}
    yield
    left = [t for t in threading.enumerate() if t.ident not in before_threads and _ours(t)]
    for thread in left:
        thread.join(5.0)  # a stopping thread may need a moment to unwind; it must finish
    names = [t.name for t in left if t.is_alive()]
    new_actors = [r for r in pykka.ActorRegistry.get_all() if r.actor_urn not in before_actors]
    actors = [str(ref) for ref in new_actors]
    children = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before_children
        and p.is_running()
        and p.status() != psutil.STATUS_ZOMBIE
        and not _spare_of(p, before_children)
    ]
    for ref in new_actors:  # so one leak does not cascade into the next test
        ref.stop(block=False)
    for child in children:
        child.kill()
    assert not names, f"threads left running: {names}"
    assert not actors, f"actors left running: {actors}"
    assert not children, f"child processes left running: {[c.pid for c in children]}"


def _spare_of(process: psutil.Process, earlier: set[int]) -> bool:
    """A runner that a zygote of a gateway started before this test forked on its own (the
    zygote keeps one spare forked ahead of every start): it belongs to that gateway's lifetime,
    not to the test. Its tool, if it runs one, is still a leftover of the test."""
    try:
        return process.ppid() in earlier and any("zygote.py" in a for a in process.cmdline())
    except psutil.Error:
        return False


@pytest.fixture
def tek_home() -> Iterator[Path]:
    """A private, short folder for a gateway's home (Unix socket paths are limited in length)."""
    path = Path(tempfile.mkdtemp(prefix="tek", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tek_gateway(tek_home: Path) -> Iterator[Gateway]:
    """An embedded gateway with test hooks on (the `probe` actor, `test.crash`)."""
    with running_gateway(tek_home) as gateway:
        yield gateway


@pytest.fixture
def tek_client(tek_gateway: Gateway) -> Iterator[Client]:
    """A Client connected to `tek_gateway` over inproc."""
    client = tek_gateway.client()
    try:
        yield client
    finally:
        client.close()
