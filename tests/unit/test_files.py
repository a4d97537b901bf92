"""Concord's own files: written whole, private where they hold secrets, nothing left behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.files import create_private, private_folder, write_atomic, write_private

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_replaces_the_old_one_and_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"]


def test_a_public_file_is_0644_and_takes_bytes(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert _mode(path) == 0o644


def test_creating_a_private_file_never_overwrites_one(tmp_path: Path) -> None:
    path = tmp_path / "key"
    create_private(path, b"first")
    with pytest.raises(FileExistsError):
        create_private(path, b"second")
    assert path.read_bytes() == b"first"
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_write_that_cannot_happen_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "missing-folder" / "file"
    with pytest.raises(FileNotFoundError):
        write_private(path, "x")
    assert list(tmp_path.iterdir()) == []


def test_a_private_folder_is_0700_even_if_it_existed(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o755)
    private_folder(folder)
    assert _mode(folder) == 0o700
