"""Atomic files: old or new, never torn; private mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tek_actors.store import write_atomic


def test_write_atomic_replaces_the_whole_file_with_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "conn.json"
    target.write_text("old")
    write_atomic(target, b"new contents", mode=0o600)
    assert target.read_bytes() == b"new contents"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["conn.json"]  # no temp file left
