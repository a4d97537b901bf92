"""Where a running service takes its world and keys from: the signed registry, or the files.

With a registry followed (:meth:`services.settings.Settings.follows_registry`) a service starts
a :class:`~services.governance.registry.RegistryWatch` as its own principal, waits for a first
verified publication (saying why it waits), and from then on acts on each newer one; the
files (``topics/``, ``keys/keyring.json``) are then not read at all, only the admin's public
key that the registry is checked against (:func:`services.keystore.load_anchor`).  Without a
registry, the files are the only input, as for a local run without one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from services.core.signing import Keyring, Signer
from services.core.world import World, load_world
from services.governance.registry import RegistryWatch, read_registry
from services.kafka_access import KafkaAccess
from services.keystore import load_anchor, load_keyring, load_signer
from services.settings import Settings


@dataclass(frozen=True)
class Governance:
    """What a service acts on at start: the world, the keyring, and the watch that keeps them current.

    ``world`` and ``keyring`` are None only when a service chose not to wait for the registry's first
    publication (it then takes it from ``watch`` when it comes)."""

    world: World | None
    keyring: Keyring | None
    watch: RegistryWatch | None
    serial: int | None

    def signer_for(self, settings: Settings, principal: str) -> Callable[[Keyring], Signer]:
        """How ``principal`` picks its signing key from a keyring: the newest usable one held here."""
        passphrase = settings.passphrase()
        keys = settings.keys_path

        def pick(ring: Keyring) -> Signer:
            return load_signer(keys, principal, passphrase=passphrase, keyring=ring)

        return pick


def _say(name: str, message: str) -> None:
    print(f"[{name}] {message}", file=sys.stderr, flush=True)


def anchor(settings: Settings) -> Keyring:
    return load_anchor(settings.keys_path, settings.anchor_path)


def start_watch(settings: Settings, access: KafkaAccess, name: str) -> RegistryWatch:
    return RegistryWatch(
        access,
        settings.effective_namespace(),
        anchor(settings),
        max_age=timedelta(seconds=settings.max_registry_age()),
        name=name,
    ).start()


def governance(
    settings: Settings, access: KafkaAccess, name: str, *, wait: float | None = None, wait_say: float = 5.0
) -> Governance:
    """The world and keys ``name`` starts with: from the registry (waiting for its first publication
    for ``wait`` seconds, or as long as it takes) or from the files."""
    if not settings.follows_registry():
        keyring = load_keyring(settings.keys_path, anchor=anchor(settings))
        return Governance(load_world(settings.world_dir), keyring, None, None)
    watch = start_watch(settings, access, name)
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        left = wait_say if deadline is None else min(wait_say, deadline - time.monotonic())
        snapshot = watch.wait_first(timeout=max(0.0, left))
        if snapshot is not None:
            break
        _say(name, f"waiting for the signed registry on {watch.topic}: {watch.status().reason}")
        if deadline is not None and time.monotonic() >= deadline:
            return Governance(None, None, watch, None)
    status = watch.status()
    if not status.fresh:
        _say(name, f"the registry is not current, failing closed until it is: {status.reason}")
    return Governance(snapshot.world, snapshot.keyring, watch, snapshot.serial)


def snapshot_once(settings: Settings, access: KafkaAccess) -> tuple[World, Keyring]:
    """For a command that runs once: the world and keys from the registry (refused when stale) or the files."""
    if not settings.follows_registry():
        return load_world(settings.world_dir), load_keyring(settings.keys_path, anchor=anchor(settings))
    started = time.monotonic()
    snap = read_registry(
        access, settings.effective_namespace(), anchor(settings), max_age=timedelta(seconds=settings.max_registry_age())
    )
    if time.monotonic() - started > 5:
        _say(access.username or "registry", f"read the registry in {time.monotonic() - started:.0f}s")
    return snap.world, snap.keyring
