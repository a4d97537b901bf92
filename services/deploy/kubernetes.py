"""Every Kubernetes object of a Concord deployment, from the declared world (pure: no files, no cluster).

:func:`render` returns the objects grouped by the file they belong in. Besides the Strimzi
resources (:mod:`services.deploy.strimzi`) there are:

* the fan-out workers: a StatefulSet (at most one replica per list partition, since a
  worker without a partition idles) whose state lives on a persistent volume per pod;
* per implementing agency, its subscriber: a StatefulSet with its SQLite store on a
  persistent volume, its check API behind a Service;
* per publishing agency, its adapter: a drop folder on a PersistentVolumeClaim and a
  Deployment publishing every file renamed into it;
* the world (``topics/``) and the Kafka metrics rules as ConfigMaps, the Prometheus alert
  rules and the Grafana dashboards as ConfigMaps;
* NetworkPolicies: Concord's pods accept and open no connection but those listed — each
  talks to the Kafka brokers and DNS, Prometheus scrapes their metrics, and an agency's
  subscriber answers only that agency's own systems (pods or namespaces labelled with
  ``concord/agency: <agency>``), so no agency reaches another agency's pods.

Every Concord pod reads the same settings as on a laptop (``services.settings``): the
bootstrap and CA of the Strimzi cluster, its principal's SCRAM password from the Secret
the User Operator writes for its ``KafkaUser``, the world from the ``concord-world``
ConfigMap, the signing keys from the ``concord-keyring`` ConfigMap (public keyring and the
admin's registry key it is checked against)
and a ``concord-signing-<principal>`` Secret (its private keys), which the operator
creates from ``concord keys`` output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.core.principals import FANOUT
from services.core.world import World
from services.deploy import strimzi
from services.deploy.strimzi import ClusterOptions, Obj
from services.keystore import ANCHOR

HOME = "/var/lib/concord"
HTTP_PORT = 8080
ADAPTER_METRICS_PORT = 9102
PART_OF = {"app.kubernetes.io/part-of": "concord"}


@dataclass(frozen=True)
class DeployOptions:
    """What the world does not say about the deployment."""

    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    kafka_namespace: str = "concord"  # Concord's topic namespace: topics are <kafka_namespace>.lists.court, ...
    image: str = "concord:0.1.0"
    fanout_replicas: int | None = None  # default: one per list partition
    fanout_storage: str = "10Gi"
    store_storage: str = "10Gi"
    inbox_storage: str = "5Gi"
    monitoring_namespace: str = "monitoring"  # where Prometheus runs (it scrapes every Concord pod)


@dataclass(frozen=True)
class Sources:
    """The repository's files that go into ConfigMaps verbatim, by name."""

    world: Mapping[str, str]  # path under topics/ -> text
    kafka_metrics: str  # deploy/prometheus/kafka-jmx.yaml
    alerts: str  # deploy/prometheus/alerts.yml
    dashboards: Mapping[str, str]  # file name -> Grafana JSON


def _labels(role: str, agency: str | None = None, instance: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": f"concord-{role}",
        "app.kubernetes.io/instance": instance or f"concord-{role}",
        **PART_OF,
        "concord/role": role,
    }
    if agency:
        out["concord/agency"] = agency
    return out


def _selector(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def _meta(name: str, opts: DeployOptions, labels: Mapping[str, str] | None = None, **extra: Any) -> Obj:
    meta: Obj = {"name": name, "namespace": opts.cluster.namespace, "labels": dict(labels or PART_OF)}
    meta.update(extra)
    return meta


def _env(principal: str, opts: DeployOptions) -> list[Obj]:
    return [
        {"name": "CONCORD_BOOTSTRAP", "value": opts.cluster.bootstrap},
        {"name": "CONCORD_CA_FILE", "value": "/etc/concord/ca/ca.crt"},
        {"name": "CONCORD_SECURITY_PROTOCOL", "value": "SASL_SSL"},
        {"name": "CONCORD_NAMESPACE", "value": opts.kafka_namespace},
        {"name": "CONCORD_USERNAME", "value": principal},
        {
            "name": "CONCORD_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": strimzi.k8s_name(principal), "key": "password"}},
        },
        {"name": "CONCORD_WORLD_DIR", "value": "/etc/concord/world"},
        {"name": "CONCORD_KEYS_DIR", "value": "/etc/concord/keys"},
        {"name": "CONCORD_HOME", "value": HOME},
    ]


def _config_volumes(principal: str, world_items: list[Obj], opts: DeployOptions) -> tuple[list[Obj], list[Obj]]:
    volumes: list[Obj] = [
        {
            "name": "ca",
            "secret": {"secretName": opts.cluster.ca_secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        },
        {"name": "world", "configMap": {"name": "concord-world", "items": world_items}},
        {"name": "keyring", "configMap": {"name": "concord-keyring"}},
        {
            "name": "signing",
            "secret": {"secretName": f"concord-signing-{strimzi.k8s_name(principal)}", "defaultMode": 0o400},
        },
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[Obj] = [
        {"name": "ca", "mountPath": "/etc/concord/ca", "readOnly": True},
        {"name": "world", "mountPath": "/etc/concord/world", "readOnly": True},
        {"name": "keyring", "mountPath": "/etc/concord/keys/keyring.json", "subPath": "keyring.json", "readOnly": True},
        # The admin's public key, that keyring.json is checked against (the trust anchor).
        {
            "name": "keyring",
            "mountPath": f"/etc/concord/keys/{ANCHOR}",
            "subPath": ANCHOR,
            "readOnly": True,
        },
        {"name": "signing", "mountPath": f"/etc/concord/keys/{principal}", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own scratch space on a read-only root
    ]
    return volumes, mounts


_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _container(
    name: str,
    principal: str,
    command: list[str],
    port: tuple[str, int],
    mounts: list[Obj],
    opts: DeployOptions,
    extra_env: tuple[Obj, ...] = (),
    probe: str | None = None,
) -> Obj:
    c: Obj = {
        "name": name,
        "image": opts.image,
        "command": command,
        "env": [*extra_env, *_env(principal, opts)],
        "ports": [{"name": port[0], "containerPort": port[1], "protocol": "TCP"}],
        "volumeMounts": mounts,
        "securityContext": _SECURITY,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    }
    if probe:
        c["readinessProbe"] = {"httpGet": {"path": probe, "port": port[0]}, "periodSeconds": 10}
        c["livenessProbe"] = {"tcpSocket": {"port": port[0]}, "periodSeconds": 20, "failureThreshold": 6}
    return c


def _pod(labels: Mapping[str, str], containers: list[Obj], volumes: list[Obj], metrics_port: int) -> Obj:
    return {
        "metadata": {
            "labels": dict(labels),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(metrics_port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "securityContext": _POD_SECURITY,
            "automountServiceAccountToken": False,
            "containers": containers,
            "volumes": volumes,
        },
    }


def _claim(name: str, size: str) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def world_config(sources: Sources, opts: DeployOptions) -> tuple[Obj, list[Obj]]:
    """The ``concord-world`` ConfigMap (``topics/`` verbatim) and the volume items that lay it out as folders."""
    keys = {path: path.replace("/", "_") for path in sorted(sources.world)}
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("concord-world", opts),
        "data": {keys[p]: sources.world[p] for p in sorted(sources.world)},
    }
    return cm, [{"key": keys[p], "path": p} for p in sorted(sources.world)]


def fanout(world: World, opts: DeployOptions, world_items: list[Obj]) -> list[Obj]:
    partitions = world.topic_spec("lists", world.publishers()[0].agency_id, opts.kafka_namespace).partitions
    replicas = min(opts.fanout_replicas or partitions, partitions)
    labels = _labels("fanout")
    volumes, mounts = _config_volumes(FANOUT, world_items, opts)
    command = [
        "concord",
        "fanout",
        "worker",
        "--name",
        "$(POD_NAME)",
        "--state-dir",
        f"{HOME}/fanout",
        "--web-port",
        str(HTTP_PORT),
    ]
    pod_name = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    container = _container(
        "fanout",
        FANOUT,
        command,
        ("http", HTTP_PORT),
        [*mounts, {"name": "state", "mountPath": f"{HOME}/fanout"}],
        opts,
        (pod_name,),
        probe="/healthz",
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("concord-fanout", opts, labels),
        "spec": {
            "clusterIP": "None",
            "selector": _selector(labels),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}],
        },
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta("concord-fanout", opts, labels),
        "spec": {
            "serviceName": "concord-fanout",
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": _selector(labels)},
            "template": _pod(labels, [container], volumes, HTTP_PORT),
            "volumeClaimTemplates": [_claim("state", opts.fanout_storage)],
        },
    }
    return [service, sts]


def subscriber(agency: str, opts: DeployOptions, world_items: list[Obj]) -> list[Obj]:
    name = f"subscriber-{agency}"
    labels = _labels("subscriber", agency, name)
    volumes, mounts = _config_volumes(agency, world_items, opts)
    command = [
        "concord",
        "subscriber",
        "run",
        "--agency",
        agency,
        "--host",
        "0.0.0.0",  # noqa: S104 - in its pod
        "--port",
        str(HTTP_PORT),
        "--db",
        f"{HOME}/store/{agency}.sqlite",
    ]
    container = _container(
        "subscriber",
        agency,
        command,
        ("http", HTTP_PORT),
        [*mounts, {"name": "store", "mountPath": f"{HOME}/store"}],
        opts,
        probe="/healthz",
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, opts, labels),
        "spec": {"selector": _selector(labels), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, opts, labels),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": _selector(labels)},
            "template": _pod(labels, [container], volumes, HTTP_PORT),
            "volumeClaimTemplates": [_claim("store", opts.store_storage)],
        },
    }
    return [service, sts]


def adapter(agency: str, opts: DeployOptions, world_items: list[Obj]) -> list[Obj]:
    name = f"adapter-{agency}"
    labels = _labels("adapter", agency, name)
    volumes, mounts = _config_volumes(agency, world_items, opts)
    volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": f"{name}-inbox"}})
    command = [
        "concord",
        "adapter",
        "run",
        "--agency",
        agency,
        "--inbox",
        f"{HOME}/inbox",
        "--metrics-port",
        str(ADAPTER_METRICS_PORT),
        "--metrics-host",
        "0.0.0.0",  # noqa: S104 - in its pod
    ]
    container = _container(
        "adapter",
        agency,
        command,
        ("metrics", ADAPTER_METRICS_PORT),
        [*mounts, {"name": "home", "mountPath": HOME}],
        opts,
    )
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(f"{name}-inbox", opts, labels),
        **{k: v for k, v in _claim(f"{name}-inbox", opts.inbox_storage).items() if k == "spec"},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, opts, labels),
        # one writer of the ledger and the drop folder at a time
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector(labels)},
            "template": _pod(labels, [container], volumes, ADAPTER_METRICS_PORT),
        },
    }
    return [claim, deployment]


def monitoring(sources: Sources, opts: DeployOptions) -> list[Obj]:
    rules = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("concord-prometheus-rules", opts, {**PART_OF, "prometheus_rule": "1"}),
        "data": {"alerts.yml": sources.alerts},
    }
    dashboards = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(
            "concord-grafana-dashboards",
            opts,
            {**PART_OF, "grafana_dashboard": "1"},
            annotations={"grafana_folder": "Concord"},
        ),
        "data": {n: sources.dashboards[n] for n in sorted(sources.dashboards)},
    }
    return [rules, dashboards]


def network_policies(world: World, opts: DeployOptions) -> list[Obj]:
    concord = {"matchLabels": dict(PART_OF)}
    dns = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    brokers = {
        "to": [{"podSelector": {"matchLabels": {"strimzi.io/cluster": opts.cluster.name, "strimzi.io/kind": "Kafka"}}}],
        "ports": [{"protocol": "TCP", "port": strimzi.CLIENT_PORT}],
    }
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": opts.monitoring_namespace}}}

    def policy(name: str, spec: Obj) -> Obj:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(name, opts),
            "spec": spec,
        }

    out = [
        policy("concord-default-deny", {"podSelector": concord, "policyTypes": ["Ingress", "Egress"]}),
        policy("concord-to-kafka", {"podSelector": concord, "policyTypes": ["Egress"], "egress": [brokers, dns]}),
        policy(
            "concord-metrics",
            {
                "podSelector": concord,
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [prometheus],
                        "ports": [
                            {"protocol": "TCP", "port": HTTP_PORT},
                            {"protocol": "TCP", "port": ADAPTER_METRICS_PORT},
                        ],
                    }
                ],
            },
        ),
    ]
    for agency in world.implementers():
        a = agency.agency_id
        own = {"concord/agency": a}
        out.append(
            policy(
                f"subscriber-{a}-callers",
                {
                    "podSelector": {"matchLabels": {**PART_OF, "concord/role": "subscriber", "concord/agency": a}},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [
                                {"namespaceSelector": {"matchLabels": own}},
                                {"podSelector": {"matchLabels": own}},
                            ],
                            "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
                        }
                    ],
                },
            )
        )
    return out


def render(world: World, opts: DeployOptions, sources: Sources, at: datetime) -> dict[str, list[Obj]]:
    """Every object, by the file it is written to (in apply order)."""
    c = opts.cluster
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": c.namespace, "labels": dict(PART_OF)}}
    metrics = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{c.name}-kafka-metrics", opts),
        "data": {"kafka-jmx.yaml": sources.kafka_metrics},
    }
    world_cm, items = world_config(sources, opts)
    files: dict[str, list[Obj]] = {
        "00-namespace.yaml": [namespace],
        "10-kafka.yaml": [*strimzi.kafka(c), metrics],
        "11-topics.yaml": strimzi.topics(world, opts.kafka_namespace, c),
        "12-users.yaml": strimzi.users(world, opts.kafka_namespace, at, c),
        "20-world.yaml": [world_cm],
        "30-fanout.yaml": fanout(world, opts, items),
    }
    for agency in world.implementers():
        files[f"40-subscriber-{agency.agency_id}.yaml"] = subscriber(agency.agency_id, opts, items)
    for agency in world.publishers():
        files[f"50-adapter-{agency.agency_id}.yaml"] = adapter(agency.agency_id, opts, items)
    files["60-monitoring.yaml"] = monitoring(sources, opts)
    files["70-network-policies.yaml"] = network_policies(world, opts)
    return files
