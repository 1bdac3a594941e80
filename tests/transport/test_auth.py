"""Which mechanism a gateway asks of its peers, and the settings that must refuse to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tek_actors.errors import InvalidValue
from tek_actors.transport import KeyRing, client_auth, is_loopback, read_token, server_auth

STRONG = "s" * 24


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5599", True),
        ("tcp://127.0.0.1:*", True),
        ("tcp://127.9.9.9:1", True),
        ("tcp://[::1]:5599", True),
        ("tcp://localhost:5599", True),
        ("tcp://0.0.0.0:5599", False),
        ("tcp://*:5599", False),
        ("tcp://*:*", False),
        ("tcp://[::]:5599", False),
        ("tcp://192.168.1.4:5599", False),
        ("tcp://eth0:5599", False),
    ],
)
def test_loopback(endpoint: str, loopback: bool) -> None:
    assert is_loopback(endpoint) is loopback


def test_ipc_needs_no_mechanism(tmp_path: Path) -> None:
    auth = server_auth(
        f"ipc://{tmp_path}/s", root=tmp_path, token=STRONG, mechanism=None, allow_remote=False
    )
    assert auth.mechanism == "none"
    assert not (tmp_path / "keys").exists()


def test_a_token_on_loopback_is_plain_and_curve_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEK_TOKEN", raising=False)
    token = server_auth(
        "tcp://127.0.0.1:*", root=tmp_path, token=STRONG, mechanism=None, allow_remote=False
    )
    assert (token.mechanism, token.token) == ("token", STRONG)
    assert "server_key" not in token.describe() and STRONG not in repr(token.describe())
    curve = server_auth(
        "tcp://127.0.0.1:*", root=tmp_path, token=None, mechanism=None, allow_remote=False
    )
    assert curve.mechanism == "curve"
    assert curve.describe()["server_key"] == curve.public_key.decode()  # type: ignore[union-attr]
    forced = server_auth(
        "tcp://127.0.0.1:*", root=tmp_path, token=STRONG, mechanism="curve", allow_remote=False
    )
    assert forced.mechanism == "curve"


def test_remote_binds_need_allow_remote_and_curve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEK_TOKEN", raising=False)
    with pytest.raises(InvalidValue) as caught:
        server_auth(
            "tcp://0.0.0.0:1", root=tmp_path, token=None, mechanism=None, allow_remote=False
        )
    assert caught.value.details["path"] == "gateway.allow_remote"
    with pytest.raises(InvalidValue) as caught:
        server_auth(
            "tcp://0.0.0.0:1", root=tmp_path, token=STRONG, mechanism="token", allow_remote=True
        )
    assert caught.value.details["path"] == "gateway.auth"
    remote = server_auth(
        "tcp://0.0.0.0:1", root=tmp_path, token=STRONG, mechanism=None, allow_remote=True
    )
    assert remote.mechanism == "curve"  # a token never guards a remote bind


def test_token_mechanism_without_a_token_says_where_to_put_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEK_TOKEN", raising=False)
    with pytest.raises(InvalidValue) as caught:
        server_auth(
            "tcp://127.0.0.1:1", root=tmp_path, token=None, mechanism="token", allow_remote=False
        )
    assert "TEK_TOKEN" in caught.value.message and str(tmp_path / "token") in caught.value.message


def test_tokens_are_strong_and_their_file_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEK_TOKEN", raising=False)
    assert read_token(tmp_path) is None
    path = tmp_path / "token"
    path.write_text(STRONG + "\n")
    path.chmod(0o644)
    with pytest.raises(InvalidValue) as caught:
        read_token(tmp_path)
    assert "chmod 600" in caught.value.message
    path.chmod(0o600)
    assert read_token(tmp_path) == STRONG
    monkeypatch.setenv("TEK_TOKEN", "abc")
    with pytest.raises(InvalidValue) as caught:
        read_token(tmp_path)
    assert "at least 16" in caught.value.message


def test_keys_are_private_and_the_home_client_is_authorized(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path).ensure()
    assert ring.folder.stat().st_mode & 0o777 == 0o700
    for name in ("gateway", "client"):
        assert (ring.folder / f"{name}.key_secret").stat().st_mode & 0o077 == 0
    assert (ring.authorized / "client.key").read_bytes() == (
        ring.folder / "client.key"
    ).read_bytes()
    first = ring.pair("gateway")
    assert KeyRing(tmp_path).ensure().pair("gateway") == first  # made once, then kept


def test_a_client_follows_what_the_connection_file_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEK_TOKEN", raising=False)
    ring = KeyRing(tmp_path).ensure()
    endpoint = "tcp://127.0.0.1:4000"
    gateway_public = ring.public("gateway").decode()
    info = {"endpoint": endpoint, "auth": "curve", "server_key": gateway_public}
    auth = client_auth(endpoint, root=tmp_path, info=info, token=STRONG)
    assert auth is not None and auth.mechanism == "curve"
    assert auth.server_key == gateway_public.encode()
    assert auth.public_key == ring.pair("client")[0]
    plain = client_auth(endpoint, root=tmp_path, info={**info, "auth": "token"}, token=STRONG)
    assert plain is not None and (plain.mechanism, plain.token) == ("token", STRONG)
    assert client_auth(f"ipc://{tmp_path}/s", root=tmp_path, info=None, token=STRONG) is None
