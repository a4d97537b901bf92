"""The embedded broker's storage format seeds SCRAM users without a password on any command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.principals import ADMIN
from services.embedded.broker import EmbeddedKafka
from services.embedded.libs import BROKER_JAR

pytestmark = pytest.mark.unit


def test_the_storage_format_reads_its_scram_seeds_from_a_private_file(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / BROKER_JAR).write_bytes(b"")
    users = {ADMIN: "admin-secret-1", "court": "court-secret-2"}
    broker = EmbeddedKafka(tmp_path / "node", users, libs_dir=libs, jmx_exporter=False)
    state = broker._ensure_state()  # noqa: SLF001 - what a first start formats with
    command, args = broker.format_command(1, state)
    shown = " ".join(command)
    assert all(password not in shown for password in users.values())
    assert command[-1].startswith(f"@{tmp_path / 'node'}") and command[-1].endswith("format.args")
    assert "SCRAM-SHA-512=[name=court,password=court-secret-2]" in args
    assert "format" in args and "kafka.tools.StorageTool" in args
