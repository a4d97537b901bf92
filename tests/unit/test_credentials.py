"""SCRAM credentials: one private file per principal, an environment password for the user it names only,
rotation through a pending file, and services noticing a new password."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from services.core.errors import ConfigError
from services.core.principals import FANOUT
from services.credentials import (
    CredentialsWatch,
    begin_rotation,
    credentials_path,
    ensure_credentials,
    finish_rotation,
    pending_path,
    read_password,
    write_credentials,
)
from services.kafka_access import KafkaAccess
from services.settings import Settings

pytestmark = pytest.mark.unit


def test_each_principal_gets_a_private_file_of_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "credentials"
    passwords = ensure_credentials(folder, [FANOUT, "court"])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name, password in passwords.items():
        path = credentials_path(folder, name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text()) == {"username": name, "password": password}
    assert passwords["court"] != passwords[FANOUT]
    assert ensure_credentials(folder, ["court"]) == {"court": passwords["court"]}  # kept, not regenerated


def test_a_shared_credentials_file_of_an_older_setup_is_split_and_removed(tmp_path: Path) -> None:
    legacy = tmp_path / "credentials.json"
    legacy.write_text(json.dumps({"court": "old-court", "rail": "old-rail"}))
    got = ensure_credentials(tmp_path / "credentials", ["court", "tax"], legacy=legacy)
    assert got["court"] == "old-court" and got["tax"] != "old-court"
    assert read_password(tmp_path / "credentials", "rail") == "old-rail"
    assert not legacy.exists()


def test_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = write_credentials(tmp_path, "court", "secret")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="may be read by other users"):
        read_password(tmp_path, "court")


def test_a_file_naming_another_user_is_refused(tmp_path: Path) -> None:
    path = write_credentials(tmp_path, "court", "secret")
    path.rename(credentials_path(tmp_path, "rail"))
    with pytest.raises(ConfigError, match="expected"):
        read_password(tmp_path, "rail")


def _settings(tmp_path: Path, **env: Any) -> Settings:
    (tmp_path / "concord.json").write_text(json.dumps({"bootstrap": "127.0.0.1:9093", "namespace": "c"}))
    return Settings(home=tmp_path, **env)


def test_an_environment_password_applies_only_to_the_user_it_names(tmp_path: Path) -> None:
    write_credentials(tmp_path / "credentials", "rail", "rail-from-file")
    settings = _settings(tmp_path, username="court", password="court-from-env")
    court = settings.access("court")
    assert court.password is not None and court.password.get_secret_value() == "court-from-env"
    assert court.credentials_file is None
    rail = settings.access("rail")
    assert rail.password is not None and rail.password.get_secret_value() == "rail-from-file"
    assert rail.credentials_file == credentials_path(tmp_path / "credentials", "rail")
    with pytest.raises(ConfigError, match="no credentials for principal 'tax'"):
        settings.access("tax")
    with pytest.raises(ConfigError, match="without CONCORD_USERNAME"):
        _settings(tmp_path, password="whose").access("rail")


def test_rotation_keeps_the_old_password_until_the_broker_has_the_new_one(tmp_path: Path) -> None:
    write_credentials(tmp_path, "court", "old")
    watch = CredentialsWatch(credentials_path(tmp_path, "court"), "court")
    new = begin_rotation(tmp_path, "court")
    assert read_password(tmp_path, "court") == "old"  # the broker does not know the new one yet
    assert stat.S_IMODE(pending_path(tmp_path, "court").stat().st_mode) == 0o600
    assert watch.changed() is None
    finish_rotation(tmp_path, "court")
    assert read_password(tmp_path, "court") == new != "old"
    assert watch.changed() == new
    assert watch.changed() is None  # told once


class _Client:
    def __init__(self) -> None:
        self.set: tuple[str, str] | None = None
        self._sasl_plain_password = "old"

    def set_sasl_credentials(self, username: str, password: str) -> None:
        self.set = (username, password)


class _AioProducer:
    def __init__(self) -> None:
        self.client = _Client()


def test_running_clients_are_given_the_new_password_for_their_next_connections() -> None:
    access = KafkaAccess(bootstrap="b:1").as_principal("court", "new")
    rd = _Client()
    access.refresh_confluent(rd)
    assert rd.set == ("court", "new")
    aio = _AioProducer()
    access.refresh_aiokafka(aio, None)
    assert aio.client._sasl_plain_password == "new"  # noqa: SLF001 - what aiokafka logs in with
