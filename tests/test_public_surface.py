"""The public face of the package, and the static checks STYLE.md asks for."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tek_actors
from tek_actors import client, errors, runtime, store, transport, wire

ROOT = Path(__file__).resolve().parents[1]


def _isort_style(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: SCREAMING_CASE, then CamelCase, then the rest."""
    if name.isupper():
        return 0, name
    return (1 if name[0].isupper() else 2), name


def test_the_public_names_are_sorted_and_importable() -> None:
    for module in (tek_actors, client, errors, runtime, store, transport, wire):
        names = module.__all__
        assert names == sorted(names, key=_isort_style), module.__name__
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    assert {"Gateway", "Client", "TekError", "__version__"} <= set(tek_actors.__all__)


def test_every_error_code_of_the_protocol_has_a_class() -> None:
    codes = {
        "bad_frame",
        "invalid_request",
        "unknown_type",
        "unauthorized",
        "not_found",
        "conflict",
        "invalid_value",
        "timeout",
        "unavailable",
        "overloaded",
        "too_large",
        "rate_limited",
        "internal",
    }
    assert codes == errors.ERROR_CODES
    for code in codes:
        rebuilt = errors.error_from_wire({"code": code, "message": "m"})
        assert rebuilt.code == code and isinstance(rebuilt, errors.TekError)


def test_only_transport_imports_zmq() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "tek_actors").rglob("*.py")
        if "transport" not in path.parts
        and "testing" not in path.parts
        and any(
            line.startswith(("import zmq", "from zmq")) for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
    reason="ruff is installed with the [test] extra",
)
def test_ruff_and_mypy_are_clean() -> None:
    bin_dir = Path(sys.executable).parent
    ruff = subprocess.run(
        [str(bin_dir / "ruff"), "check", "tek_actors", "tests", "tools"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout
    mypy = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert mypy.returncode == 0, mypy.stdout
