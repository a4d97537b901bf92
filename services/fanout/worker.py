"""``concord fanout worker``: one fan-out worker, its engine, its web port and its signals."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from services.core.errors import ConfigError
from services.fanout.app import Fanout, FanoutConfig
from services.fanout.engine import EngineConfig, TransactionalEngine, topic_partitions
from services.fanout.web import health, serve

log = logging.getLogger("concord.fanout")


def _say(message: str) -> None:
    print(f"[fanout] {message}", file=sys.stderr, flush=True)


def check_topics(fanout: Fanout, cfg: FanoutConfig) -> None:
    """Every topic the worker reads or writes exists with the partitions the world declares."""
    want = dict.fromkeys(fanout.input_topics, fanout.partitions)
    want[fanout.changelog_topic] = fanout.partitions
    for topic, count in fanout.directive_topics.values():
        want[topic] = count
    have = topic_partitions(cfg.access, want)
    missing = sorted(t for t, n in have.items() if n == 0)
    if missing:
        raise ConfigError(
            f"topics missing or not readable by {cfg.access.username}: {', '.join(missing)} (run `concord acl apply`)"
        )
    wrong = sorted(f"{t} has {have[t]}, not {n}" for t, n in want.items() if have[t] != n)
    if wrong:
        raise ConfigError("topics differ from topics/topics.yaml: " + "; ".join(wrong))


def run_worker(cfg: FanoutConfig, *, host: str = "127.0.0.1") -> int:
    fanout = Fanout(cfg)
    check_topics(fanout, cfg)
    engine = TransactionalEngine(
        EngineConfig(
            access=cfg.access,
            group=cfg.app_id,
            name=cfg.name,
            topics=fanout.input_topics,
            changelog=fanout.changelog_topic,
            state_dir=cfg.state_dir,
            commit_interval=cfg.commit_interval,
            progress=_say,
        ),
        fanout,
    )
    fanout.engine = engine

    def stop(signum: int, frame: FrameType | None) -> None:
        engine.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if cfg.web_port is not None:

        def detail() -> dict[str, object]:
            out: dict[str, object] = {
                "worker": cfg.name,
                "partitions": sorted(engine.stores),
                "world_rev": fanout.world_rev,
            }
            if cfg.registry is not None:
                # The serial it routes by (the watch may already hold a newer one, taken with the next record).
                out["registry"] = {**cfg.registry.status().to_json(), "serial": fanout.serial}
            return out

        def problem() -> str | None:
            status = cfg.registry.status() if cfg.registry is not None else None
            if status is None or status.fresh:
                return None
            return f"withholding APPLYs (LIFTs still flow): {status.reason}"

        pages = {
            "/healthz": health(lambda: engine.ready, lambda: engine.last_loop, detail, problem=problem),
            "/coverage": lambda: (200, fanout.coverage),
        }
        server = serve(host, cfg.web_port, cfg.metrics.registry, pages)
        _say(f"serving /metrics, /healthz and /coverage on {host}:{server.server_address[1]}")
    _say(f"worker {cfg.name} joining group {cfg.app_id}; state in {cfg.state_dir}")
    try:
        engine.run()
    finally:
        if cfg.registry is not None:
            cfg.registry.stop()
    _say(f"worker {cfg.name} stopped")
    return 0
