"""Who may talk to the gateway: ZeroMQ authenticates each connection before any frame of it
reaches the frontend (ZAP, RFC 27), so nothing is keyed on an id a client picks.

- `ipc://` and `inproc://`: no mechanism. The socket's folder is 0700: only the owner connects.
- `tcp://` with CURVE (the default): the gateway has a key pair, and a client is let in if its
  public key is in the home's `keys/authorized/` folder. The traffic is encrypted.
- `tcp://` on loopback with a token: ZAP PLAIN, the token as the password (any user name). The
  token is at least 16 characters and comes from config, `TEK_TOKEN` or the home's `token` file,
  never from a command line.

A peer that fails the handshake never gets a frame through: a second socket that reuses an
authenticated client's routing id, without its key or token, has no connection at all.

The keys live in `<home>/keys/` (0700; secrets 0600), in zmq.auth's certificate format:

    gateway.key, gateway.key_secret   the gateway's pair (its public key is also in gateway.json)
    client.key, client.key_secret     the home's own client pair: `tek` and local programs
    authorized/*.key                  the public keys let in (client.key is put there)
"""

from __future__ import annotations

import hmac
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import zmq
import zmq.auth

from tek_actors._net import loopback_host
from tek_actors.errors import InvalidValue

__all__ = [
    "ClientAuth",
    "KeyRing",
    "Mechanism",
    "ServerAuth",
    "ZapGuard",
    "client_auth",
    "is_loopback",
    "read_token",
    "server_auth",
]

Mechanism = Literal["none", "curve", "token"]
ZAP_DOMAIN = "tek"
MIN_TOKEN_CHARS = 16


def is_loopback(endpoint: str) -> bool:
    """Whether a tcp endpoint binds (or connects to) loopback only."""
    host = urlsplit(endpoint.replace("*", "0", 1) if endpoint.endswith(":*") else endpoint).hostname
    if host in (None, "", "*", "0.0.0.0", "::"):
        return False
    return loopback_host(host)


def read_token(root: Path) -> str | None:
    """The token from `TEK_TOKEN`, else the home's `token` file (which must be 0600)."""
    token = os.environ.get("TEK_TOKEN") or None
    path = root / "token"
    if token is None and path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise InvalidValue(
                f"{path} is readable by others (mode {mode:o}): chmod 600 it",
                details={"path": "token"},
            )
        token = path.read_text().strip() or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise InvalidValue(
            f"the token is {len(token)} characters; it must be at least {MIN_TOKEN_CHARS}",
            details={"path": "token"},
        )
    return token


class KeyRing:
    """The CURVE keys of one home (created on first use, private to the owner)."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "keys"
        self.authorized = self.folder / "authorized"

    def ensure(self) -> KeyRing:
        """Create the gateway's and the home client's key pairs if they are not there yet."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self.authorized.mkdir(mode=0o700, exist_ok=True)
        for name in ("gateway", "client"):
            if not (self.folder / f"{name}.key_secret").exists():
                public, secret = zmq.auth.create_certificates(self.folder, name)
                os.chmod(secret, 0o600)
                os.chmod(public, 0o644)
        trusted = self.authorized / "client.key"
        if not trusted.exists():
            trusted.write_bytes((self.folder / "client.key").read_bytes())
        return self

    def pair(self, name: str) -> tuple[bytes, bytes]:
        """(public, secret) of `gateway` or `client`."""
        public, secret = zmq.auth.load_certificate(self.folder / f"{name}.key_secret")
        if secret is None:
            raise InvalidValue(f"{self.folder}/{name}.key_secret holds no secret key")
        return public, secret

    def public(self, name: str) -> bytes:
        return zmq.auth.load_certificate(self.folder / f"{name}.key")[0]


@dataclass(frozen=True)
class ServerAuth:
    """How the frontend's socket authenticates peers."""

    mechanism: Mechanism = "none"
    public_key: bytes | None = None  # curve
    secret_key: bytes | None = None  # curve
    authorized: Path | None = None  # curve: the folder of public keys let in
    token: str | None = None  # token

    def client_side(self, root: Path) -> ClientAuth | None:
        """What a client of the home at `root` offers this gateway."""
        if self.mechanism == "token":
            return ClientAuth("token", token=self.token)
        if self.mechanism == "curve":
            public, secret = KeyRing(root).pair("client")
            return ClientAuth("curve", self.public_key, public, secret)
        return None

    def describe(self) -> dict[str, Any]:
        """What the connection file says of it (never a secret)."""
        info: dict[str, Any] = {"auth": self.mechanism}
        if self.mechanism == "curve" and self.public_key is not None:
            info["server_key"] = self.public_key.decode()
        return info


@dataclass(frozen=True)
class ClientAuth:
    """How a client's socket authenticates itself."""

    mechanism: Mechanism = "none"
    server_key: bytes | None = None
    public_key: bytes | None = None
    secret_key: bytes | None = None
    token: str | None = None

    def apply(self, sock: zmq.Socket[Any]) -> None:
        if self.mechanism == "curve":
            sock.curve_serverkey = self.server_key
            sock.curve_publickey = self.public_key
            sock.curve_secretkey = self.secret_key
        elif self.mechanism == "token":
            sock.plain_username = b"tek"
            sock.plain_password = (self.token or "").encode()


class _Authorized:
    """zmq.auth's CURVE callback: a key is let in if its file is in the folder. The folder is
    read again when it changes, so a key added (or removed) applies to the next connection."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seen: tuple[int, int] | None = None
        self._keys: frozenset[bytes] = frozenset()
        self._lock = threading.Lock()

    def callback(self, domain: str, key: bytes) -> bool:
        with self._lock:
            try:
                st = self.folder.stat()
            except OSError:
                return False
            stamp = (st.st_mtime_ns, st.st_ino)
            if stamp != self._seen:
                self._keys = frozenset(zmq.auth.load_certificates(self.folder))
                self._seen = stamp
            return key in self._keys


def _authenticator(context: zmq.Context[Any], token: str | None) -> Any:
    """zmq.auth's ZAP handler thread, with PLAIN checking the token in constant time for any
    user name. (Imported here: zmq.auth.thread loads asyncio, which a client never needs.)"""
    from zmq.auth.thread import ThreadAuthenticator

    class Authenticator(ThreadAuthenticator):
        def _authenticate_plain(
            self, domain: str, username: str, password: str
        ) -> tuple[bool, bytes]:
            if token is not None and hmac.compare_digest(password.encode(), token.encode()):
                return True, b"OK"
            return False, b"Invalid token"

    return Authenticator(context)


class ZapGuard:
    """The ZAP handler of one context, and the options that make a socket use it."""

    def __init__(self, context: zmq.Context[Any], auth: ServerAuth) -> None:
        self.auth = auth
        self._handler: Any = None
        if auth.mechanism == "none":
            return
        handler = _authenticator(context, auth.token)
        handler.start()
        if auth.mechanism == "curve":
            assert auth.authorized is not None
            handler.configure_curve_callback(
                ZAP_DOMAIN, credentials_provider=_Authorized(auth.authorized)
            )
        else:
            handler.configure_plain(ZAP_DOMAIN, {})  # any user; the password is checked above
        self._handler = handler

    def secure(self, sock: zmq.Socket[Any]) -> None:
        """Make `sock` (before bind) authenticate every peer through this handler."""
        if self.auth.mechanism == "none":
            return
        sock.zap_domain = ZAP_DOMAIN.encode()
        if self.auth.mechanism == "curve":
            sock.curve_server = True
            sock.curve_publickey = self.auth.public_key
            sock.curve_secretkey = self.auth.secret_key
        else:
            sock.plain_server = True

    def stop(self) -> None:
        if self._handler is not None:
            self._handler.stop()
            self._handler = None


def client_auth(
    endpoint: str, *, root: Path | None, info: dict[str, Any] | None, token: str | None
) -> ClientAuth | None:
    """How a client of the home at `root` authenticates to `endpoint`: what the gateway's
    connection file `info` says it asks for (when it is for that endpoint), else a given
    token, else the home's client keys. None for ipc and inproc."""
    if not endpoint.startswith("tcp://"):
        return None
    asked = info.get("auth") if info is not None and info.get("endpoint") == endpoint else None
    if token is None and asked in (None, "token"):
        token = read_token(root) if root is not None else os.environ.get("TEK_TOKEN") or None
    if asked == "token" or (asked is None and token is not None):
        return ClientAuth("token", token=token)
    if root is None or not (root / "keys" / "client.key_secret").exists():
        return None  # nothing to offer: the handshake will fail, and the client says so
    ring = KeyRing(root)
    public, secret = ring.pair("client")
    server = info.get("server_key") if asked == "curve" and info is not None else None
    server_key = server.encode() if isinstance(server, str) else ring.public("gateway")
    return ClientAuth("curve", server_key=server_key, public_key=public, secret_key=secret)


def server_auth(
    endpoint: str,
    *,
    root: Path,
    token: str | None,
    mechanism: Literal["curve", "token"] | None,
    allow_remote: bool,
) -> ServerAuth:
    """How a gateway of the home at `root` binding `endpoint` authenticates its peers.
    InvalidValue (naming the setting) for a combination that would let anyone in."""
    if not endpoint.startswith("tcp://"):
        return ServerAuth()
    loopback = is_loopback(endpoint)
    if not loopback and not allow_remote:
        raise InvalidValue(
            f"{endpoint} accepts connections from other machines: set gateway.allow_remote "
            "to true to mean it (those connections then need CURVE keys)",
            details={"path": "gateway.allow_remote"},
        )
    if token is None and mechanism != "curve":
        token = read_token(root)
    if mechanism is None:
        mechanism = "token" if token is not None and loopback else "curve"
    if mechanism == "token":
        if not loopback:
            raise InvalidValue(
                "a token is sent in the clear: it may guard a loopback endpoint only; "
                'use gateway.auth "curve" beyond loopback',
                details={"path": "gateway.auth"},
            )
        if token is None:
            raise InvalidValue(
                f'gateway.auth "token" needs a token of {MIN_TOKEN_CHARS}+ characters: in '
                f"TEK_TOKEN, in {root / 'token'} (mode 0600), or in gateway.token",
                details={"path": "gateway.token"},
            )
        return ServerAuth("token", token=token)
    ring = KeyRing(root).ensure()
    public, secret = ring.pair("gateway")
    return ServerAuth("curve", public_key=public, secret_key=secret, authorized=ring.authorized)
