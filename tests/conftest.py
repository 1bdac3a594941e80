"""Shared fixtures. `home` is the plugin's `tek_home`: a short private folder (ipc socket paths
are limited in length), removed afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tek_home: Path) -> Path:
    return tek_home
