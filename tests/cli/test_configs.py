"""Everything in configs/ is loaded by a test, so it cannot rot."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

from loguru import logger

from tek_actors.cli._logging import configure_logging, logging_defaults

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_systemd_unit_runs_the_gateway_and_restarts_it_on_failure() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((CONFIGS / "tek-gateway.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("tek gateway run --log-file")
    # ready means ready: the gateway sends READY=1 itself (tests/integration/test_readiness.py)
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert int(service["TimeoutStartSec"]) > 60  # longer than the tree's start timeout
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 30  # longer than the default restart grace
    assert unit["Install"]["WantedBy"] == "default.target"


def test_the_logging_defaults_are_the_ones_the_cli_uses(tmp_path: Path) -> None:
    shipped = json.loads((CONFIGS / "logging.json").read_text())
    assert shipped == logging_defaults()
    log_file = tmp_path / "gateway.log"
    configure_logging("INFO", log_file=log_file)
    try:
        logger.bind(actor="probe").info("hello from a test")
        logger.debug("not at INFO")
    finally:
        logger.remove()
        logger.disable("tek_actors")
    text = log_file.read_text()
    assert "hello from a test" in text and "probe" in text and "not at INFO" not in text
    assert (log_file.stat().st_mode & 0o777) == 0o600


def test_the_example_config_is_valid_and_uses_only_known_fields() -> None:
    from tek_actors.config.document import unknown_paths, validate

    doc = json.loads((CONFIGS / "config.example.json").read_text())
    config = validate(doc)
    assert config.default_model == "qwen" and list(unknown_paths(doc)) == []


def test_every_data_file_in_the_package_ships_in_the_wheel() -> None:
    """The JSON defaults are read with importlib.resources: setup.cfg must list each one."""
    root = CONFIGS.parent
    setup = configparser.ConfigParser(interpolation=None)
    setup.read_string((root / "setup.cfg").read_text())
    listed = {
        f"{package.replace('.', '/')}/{name}"
        for package, names in setup["options.package_data"].items()
        for name in names.replace(",", " ").split()
    }
    data = {
        str(path.relative_to(root))
        for path in (root / "tek_actors").rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"}
    }
    assert data == listed
