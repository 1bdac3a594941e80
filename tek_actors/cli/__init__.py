"""`tek`: the command line, a thin shell over Client (and Gateway for `gateway run`)."""

from tek_actors.cli.main import cli, main

__all__ = ["cli", "main"]
