"""The home folder's layout: one definition, and its description names every part of it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import services.home
from services.home import Home
from services.settings import Settings

pytestmark = pytest.mark.unit


def _paths(home: Home) -> list[Path]:
    out = []
    for name, member in inspect.getmembers(Home):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            out.append(getattr(home, name))
        elif inspect.isfunction(member):
            out.append(getattr(home, name)("court") if name != "broker" else home.broker(3))
    return out


def test_every_path_lies_in_the_home_and_its_first_part_is_described(tmp_path: Path) -> None:
    home = Home(tmp_path)
    described = services.home.__doc__ or ""
    for path in _paths(home):
        top = path.relative_to(tmp_path).parts[0]
        if top.startswith("brokers-"):
            top = "brokers-<n>"
        assert f"    {top}" in described or f"``{top}" in described, top


def test_settings_find_their_files_in_the_same_layout(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.keys_path == Home(tmp_path).keys
    assert settings.credentials_path == Home(tmp_path).credentials
    assert settings.config_file == Home(tmp_path).config
