"""``make observe``: Prometheus (Debian's package) scraping the running local exchange.

Start ``make run`` in one terminal and ``make observe`` in another.  Prometheus
runs as a plain process with its data under ``<home>/prometheus/``; its
configuration is ``deploy/prometheus/prometheus.yml`` with the file_sd lists and
the rule file pointed at this home and this repository, so the targets are
whatever the local stack registered under ``<home>/run/scrape/`` (services that
start later are picked up, services that stop drop out).  Ctrl-C or SIGTERM stops
the Prometheus this command started, and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from services.home import Home
from services.localstack import free_port
from services.settings import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"


def prometheus_config(
    home: Path, *, template: Path = PROMETHEUS_DIR / "prometheus.yml", scrape_interval: str | None = None
) -> dict[str, Any]:
    """The committed configuration, with file_sd and rule paths made absolute for ``home``."""
    conf: dict[str, Any] = yaml.safe_load(template.read_text())
    conf["rule_files"] = [str((template.parent / f).resolve()) for f in conf.get("rule_files", [])]
    scrape = Home(home.resolve()).scrape
    for job in conf["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(scrape / Path(f).name) for f in sd["files"]]
    if scrape_interval:
        conf["global"]["scrape_interval"] = scrape_interval
        conf["global"]["scrape_timeout"] = scrape_interval
        conf["global"]["evaluation_interval"] = scrape_interval
    return conf


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Prometheus:
    """One Prometheus process with its config and data under ``<home>/prometheus``."""

    def __init__(self, home: Path, port: int, scrape_interval: str | None = None) -> None:
        self.home = home.resolve()
        self.port = port
        self.dir = Home(self.home).prometheus
        self.config = self.dir / "prometheus.yml"
        self.log = Home(self.home).log("prometheus")
        self.scrape_interval = scrape_interval
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise SystemExit("prometheus is not installed: `make prometheus` installs Debian's package")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        conf = prometheus_config(self.home, scrape_interval=self.scrape_interval)
        self.config.write_text(yaml.safe_dump(conf, sort_keys=False))
        Home(self.home).scrape.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - Debian's prometheus, our own arguments
                [
                    binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    "--storage.tsdb.retention.time=2d",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
                raise SystemExit(f"prometheus exited with status {self.proc.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"prometheus did not become ready in {timeout:.0f}s; see {self.log}")
            time.sleep(0.2)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        r.raise_for_status()
        return list(r.json()["data"]["result"])


def where_to_look(prom: Prometheus) -> str:
    scrape = Home(prom.home).scrape
    targets = sorted(p.stem for p in scrape.glob("*.json"))
    grafana = GRAFANA_DIR.resolve()
    lines = [
        f"Prometheus  {prom.url}   (pid {prom.proc.pid if prom.proc else '?'}; data in {prom.dir})",
        f"  targets   {prom.url}/targets     alerts {prom.url}/alerts     rules {prom.url}/rules",
        (
            f"  scraping  {', '.join(targets) if targets else 'nothing yet: start `make run` in another terminal'}"
            f" (from {scrape})"
        ),
        "",
        "Grafana is not in Debian's main repositories; point any Grafana 11 at the provisioning folder:",
        f"  CONCORD_PROMETHEUS_URL={prom.url} \\",
        f"  CONCORD_GRAFANA_DASHBOARDS={grafana / 'dashboards'} \\",
        f"  GF_PATHS_PROVISIONING={grafana / 'provisioning'} grafana server",
        "  (or import deploy/grafana/dashboards/*.json in Grafana: Dashboards > New > Import)",
        "",
        "Ctrl-C stops Prometheus.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make observe", description="Prometheus on the running local exchange")
    p.add_argument("--home", default=os.environ.get("CONCORD_HOME", ".local"))
    p.add_argument("--port", type=int, default=9090, help="web port (another free one if it is taken)")
    args = p.parse_args(argv)
    port = args.port if _port_free(args.port) else free_port()
    prom = Prometheus(Path(args.home), port)
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    prom.start()
    try:
        print(where_to_look(prom), flush=True)
        while not stop and prom.proc is not None and prom.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping Prometheus", file=sys.stderr)
        prom.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
