"""Where the embedded broker's jars come from.

The broker is the real Apache Kafka, resolved from Maven Central by the small pom
in ``deploy/local/`` into ``.local/kafka/libs`` (git-ignored), and the Prometheus
JMX exporter java agent into ``.local/kafka/agent`` (kept off the class path).
Resolution runs only when a jar is missing, so normal runs never touch the network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from services.core.errors import ConfigError

KAFKA_VERSION = "4.0.1"
BROKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
JMX_EXPORTER_VERSION = "1.0.1"  # deploy/local/pom.xml: jmx.exporter.version
JMX_EXPORTER_JAR = f"jmx_prometheus_javaagent-{JMX_EXPORTER_VERSION}.jar"
LIBS_SUBDIR = Path(".local/kafka/libs")
POM = Path("deploy/local/pom.xml")
_MVN_TIMEOUT_S = 900


def libs_dir(repo_root: Path) -> Path:
    return repo_root / LIBS_SUBDIR


def jmx_exporter_jar(libs: Path) -> Path:
    """The JMX exporter agent resolved beside a libs folder (``<libs>/../agent``)."""
    return libs.parent / "agent" / JMX_EXPORTER_JAR


def ensure_kafka_libs(repo_root: Path) -> Path:
    """Return the directory holding the Kafka jars, resolving them with Maven if needed."""
    target = libs_dir(repo_root).resolve()
    agent = jmx_exporter_jar(target)
    if (target / BROKER_JAR).is_file() and agent.is_file():
        return target
    pom = repo_root / POM
    if not pom.is_file():
        raise ConfigError("the Kafka pom is missing", path=pom)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError(
            f"Kafka {KAFKA_VERSION} jars are missing and Maven (mvn) is not installed; "
            f"install Maven or copy the jars into {target}"
        )
    print(f"concord: resolving Kafka {KAFKA_VERSION} jars into {target} ...", file=sys.stderr)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "dependency:copy@jmx-exporter",
        f"-DoutputDirectory={target}",
        f"-Djmx.exporter.dir={agent.parent}",
    ]
    try:
        done = subprocess.run(  # noqa: S603 - Maven as found on PATH, with our own arguments
            cmd, cwd=repo_root, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError("Maven did not finish resolving the Kafka jars", timeout_s=exc.timeout) from exc
    if done.returncode != 0 or not (target / BROKER_JAR).is_file() or not agent.is_file():
        tail = (done.stdout + done.stderr).strip().splitlines()[-20:]
        raise ConfigError(
            "Maven failed to resolve the Kafka jars:\n" + "\n".join(tail),
            command=" ".join(cmd),
            exit_code=done.returncode,
        )
    return target


def classpath(libs: Path) -> str:
    """A JVM class path naming every jar in *libs* explicitly, in a stable order.

    Explicit names (rather than ``libs/*``) keep the order deterministic and make
    a missing directory fail here instead of as a ``ClassNotFoundException``.
    """
    jars = sorted(p for p in libs.glob("*.jar") if p.is_file())
    if not any(p.name == BROKER_JAR for p in jars):
        raise ConfigError(f"{BROKER_JAR} not found", libs_dir=libs)
    return ":".join(str(p) for p in jars)
