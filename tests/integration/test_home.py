"""One home, one gateway: the lock, the folders' modes, and a too-long socket path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tek_actors import Conflict, Gateway, InvalidValue, TekHome


def test_a_second_gateway_on_the_same_home_is_refused(home: Path) -> None:
    with Gateway.embedded(home) as gateway:
        assert gateway.endpoint.startswith("inproc://")
        assert sorted(p.name for p in (home / "run").iterdir()) == ["gateway.lock"]  # no socket
        with pytest.raises(Conflict) as caught:
            Gateway(home).start()
        assert str(os.getpid()) in caught.value.message
        assert stat.S_IMODE(os.stat(home / "run").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(home / "state").st_mode) == 0o700
    with Gateway.embedded(home):  # released on stop: the next one starts
        pass
    assert not (home / "run" / "gateway.lock").exists()


def test_a_socket_path_too_long_for_unix_sockets_is_refused_clearly(home: Path) -> None:
    deep = home / ("d" * 120)
    with pytest.raises(InvalidValue) as caught:
        TekHome.resolve(deep).default_endpoint()
    assert "longer than a Unix socket allows" in caught.value.message


def test_tcp_beyond_loopback_needs_allow_remote(home: Path) -> None:
    for endpoint in ("tcp://0.0.0.0:*", "tcp://*:*"):
        with pytest.raises(InvalidValue) as caught:
            Gateway(home, endpoint=endpoint).start()
        assert caught.value.details["path"] == "gateway.allow_remote"
    assert not (home / "run" / "gateway.json").exists()


def test_a_weak_token_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEK_TOKEN", "abc")
    with pytest.raises(InvalidValue) as caught:
        Gateway(home, endpoint="tcp://127.0.0.1:*").start()
    assert "at least 16" in caught.value.message
