"""Where a Client connects, and with what: the endpoint (given, or from the home's connection
file) and the credentials the home's gateway asks for."""

from __future__ import annotations

from tek_actors.errors import Unavailable
from tek_actors.home import TekHome
from tek_actors.transport import ClientAuth, client_auth

__all__ = ["endpoint_of", "locate"]


def endpoint_of(home: TekHome | None) -> str | None:
    """The endpoint the home's connection file names, if any."""
    info = home.read_connection() if home is not None else None
    endpoint = info.get("endpoint") if info else None
    return endpoint if isinstance(endpoint, str) else None


def locate(
    endpoint: str | None, home: str | TekHome | None, token: str | None, auth: ClientAuth | None
) -> tuple[TekHome | None, str, ClientAuth | None]:
    """(home, endpoint, auth); Unavailable if neither an endpoint nor a running gateway is
    known."""
    where = home if isinstance(home, TekHome) or home is None else TekHome.resolve(home)
    if endpoint is None:
        where = where or TekHome.resolve(None)
        endpoint = endpoint_of(where)
        if endpoint is None:
            raise Unavailable(
                f"no gateway is running on {where.run_dir} (no connection file); "
                "start one with `tek gateway start`",
                retry_after_ms=1000,
            )
    if auth is None:  # what the home's gateway asks for: its CURVE key, or a token
        auth = client_auth(
            endpoint,
            root=where.config_dir if where is not None else None,
            info=where.read_connection() if where is not None else None,
            token=token,
        )
    return where, endpoint, auth
