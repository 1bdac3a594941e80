"""Logging for the `tek` command and the gateway daemon (the library itself adds no sinks).

Defaults come from configs/logging.json (shipped in the package as tek_actors/cli/logging.json);
`--log-level` or TEK_LOG_LEVEL override the level. pykka's stdlib logger is routed into loguru so
an actor's unhandled exception shows up in the same place as ours.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from loguru import logger

__all__ = ["configure_logging", "logging_defaults"]


def logging_defaults() -> dict[str, Any]:
    text = resources.files("tek_actors.cli").joinpath("logging.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)  # logs may name paths and clients: owner only


def configure_logging(
    level: str | None = None, *, log_file: Path | None = None, stderr: bool = True
) -> None:
    defaults = logging_defaults()
    level = (level or os.environ.get("TEK_LOG_LEVEL") or defaults["level"]).upper()
    logger.remove()
    logger.configure(extra={"actor": "-"})
    logger.enable("tek_actors")
    if stderr:
        logger.add(
            sys.stderr, level=level, format=defaults["format"], backtrace=False, diagnose=False
        )
    if log_file is not None:
        logger.add(
            log_file,
            level=level,
            format=defaults["format"],
            rotation=defaults["rotation"],
            retention=defaults["retention"],
            backtrace=False,
            diagnose=False,
            opener=_private,
        )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
