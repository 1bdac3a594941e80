"""`python -m tek_actors ...` is the same CLI as `tek ...`."""

from tek_actors.cli import main

main()
