"""docker-compose.kafka.yml and the Dockerfile, checked without a Docker engine.

- the file is valid against the Compose Specification's JSON Schema (tests/fixtures);
- each engine service sets every ``OPS_*`` variable whose default is wrong in a
  container, sets no variable the engine does not read, and its settings load
  (the engine's own settings classes, with the secrets files the stack mounts);
- ports, volumes, secrets and depends_on are consistent, and Prometheus scrapes
  exactly the engine processes at the ports they serve;
- Kafka: three KRaft brokers, replication 3, min ISR 2, as the engine's settings assume;
- the Dockerfile: slim base, ffmpeg, a non-root user.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from connectors.ingress.settings import IngressSettings
from connectors.notify.settings import NotifySettings
from connectors.render.settings import RenderSettings
from connectors.storefront.settings import StorefrontSettings
from connectors.suppliers.registry import SupplierAccounts
from streams.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.kafka.yml"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
SETTINGS_CLASSES = (Settings, IngressSettings, NotifySettings, SupplierAccounts, RenderSettings, StorefrontSettings)

#: Variables whose default is wrong in a container, by engine command, and why.
REQUIRED: dict[str, dict[str, str]] = {
    "all": {
        "OPS_BROKER_URL": "the default is 127.0.0.1:9092, nothing in a container",
        "OPS_REPLICATION": "the default 1 loses data with a broker; the stack has three",
        "OPS_PARTITIONS": "every process must agree (co-partitioned topics and tables)",
        "OPS_DATABASE_URL": "the executor and notifier record there, the syncer keeps freight quotes there; "
                            "/health checks it",
        "OPS_PRODUCER_IDEMPOTENCE": "real Kafka: on (the default is off for the embedded broker)",
    },
    "worker": {
        "OPS_WEB_HOST": "the default 127.0.0.1 is unreachable for Prometheus and the other worker",
        "OPS_CANONICAL_URL": "other workers route table views to this URL",
        "OPS_DATA_DIR": "the default .run/data is not the volume",
        "OPS_STORE": "rocksdb:// on the volume, so a restart only catches up",
        "OPS_WEBHOOK_SECRETS_FILE": "without secrets every webhook is refused",
    },
    "executor": {
        "OPS_WEB_HOST": "the metrics server binds it",
        "OPS_EXECUTOR_METRICS_PORT": "Prometheus scrapes it",
        "OPS_SUPPLIER_SECRETS_FILE": "the supplier accounts",
    },
    "notifier": {
        "OPS_WEB_HOST": "the metrics server binds it",
        "OPS_NOTIFIER_METRICS_PORT": "Prometheus scrapes it",
        "OPS_SMTP_HOST": "the default 127.0.0.1 has no SMTP server in a container",
        "OPS_SMTP_PORT": "the mail server's port",
        "OPS_SMTP_FROM": "the From: of every message",
    },
    "recorder": {
        "OPS_WEB_HOST": "the metrics server binds it",
        "OPS_RECORDER_METRICS_PORT": "Prometheus scrapes it",
    },
    "renderer": {
        "OPS_WEB_HOST": "the metrics server binds it",
        "OPS_RENDER_METRICS_PORT": "Prometheus scrapes it",
        "OPS_RENDER_OUTPUT_DIR": "the shared videos volume the workers serve",
        "OPS_RENDER_WORK_DIR": "the default .run/ is in the read-only image",
    },
    "syncer": {
        "OPS_WEB_HOST": "the metrics server binds it",
        "OPS_SYNCER_METRICS_PORT": "Prometheus scrapes it",
        "OPS_SUPPLIER_SECRETS_FILE": "the supplier accounts",
    },
    "storefront": {
        "OPS_WEB_HOST": "the metrics server binds it",
        "OPS_STOREFRONT_METRICS_PORT": "Prometheus scrapes it",
        "OPS_STOREFRONT_SECRETS_FILE": "the stores' storefront accounts",
        "OPS_PUBLIC_URL": "the callback URL ops-engine shopify (woocommerce) register-webhooks registers",
        "OPS_WEBHOOK_SECRETS_FILE": "the site's secret ops-engine woocommerce register-webhooks signs with",
    },
    "db": {},
}


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR}``/``${VAR:-default}`` with the variables unset (the defaults)."""
    if isinstance(value, str):
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE.read_text())  # safe_load resolves the << merge keys
    return dict(interpolate(raw))


@pytest.fixture(scope="module")
def engine(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from the project's Dockerfile."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def command_of(service: dict[str, Any]) -> str:
    return str(service["command"][0])


def test_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    document = yaml.safe_load(COMPOSE.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_refuses_a_broken_file() -> None:
    schema = json.loads(SCHEMA.read_text())
    document = yaml.safe_load(COMPOSE.read_text())
    document["services"]["worker-1"]["ports"] = "6066"  # a string, not a list
    document["services"]["worker-1"]["restart_policy"] = "always"  # not a service key
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert len(list(validator.iter_errors(document))) == 2


def test_the_engine_processes(engine: dict[str, dict[str, Any]]) -> None:
    commands = sorted(command_of(s) for s in engine.values())
    assert commands == ["db", "executor", "notifier", "recorder", "renderer", "storefront", "syncer", "worker",
                        "worker"]
    assert engine["migrate"]["command"] == ["db", "migrate"]
    assert engine["migrate"]["restart"] == "no"
    images = {s["image"] for s in engine.values()}
    assert len(images) == 1  # one image, built once
    for service in engine.values():
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}


def test_each_engine_service_sets_what_has_no_safe_default(engine: dict[str, dict[str, Any]]) -> None:
    for name, service in engine.items():
        env = service["environment"]
        needed = {**REQUIRED["all"], **REQUIRED[command_of(service)]}
        missing = {var: why for var, why in needed.items() if not str(env.get(var, "")).strip()}
        assert not missing, f"{name} does not set {missing}"


def test_engine_services_set_only_variables_the_engine_reads(engine: dict[str, dict[str, Any]]) -> None:
    known = {ENV_PREFIX + field.upper() for cls in SETTINGS_CLASSES for field in cls.model_fields}
    for name, service in engine.items():
        unknown = sorted(set(service["environment"]) - known)
        assert not unknown, f"{name} sets variables no settings class reads: {unknown}"


def test_the_engine_services_settings_load(
    compose: dict[str, Any], engine: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each engine service's environment, with the secrets files it mounts, passes the engine's validation."""
    secret_files = {name: ROOT / spec["file"] for name, spec in compose["secrets"].items()}
    for name, service in engine.items():
        for var in list(os.environ):
            if var.startswith(ENV_PREFIX):
                monkeypatch.delenv(var)
        for var, value in service["environment"].items():
            if str(value).startswith("/run/secrets/"):
                secret = str(value).rsplit("/", 1)[1]
                assert secret in service.get("secrets", []), f"{name} reads {value} without mounting it"
                value = str(secret_files[secret])
            monkeypatch.setenv(var, str(value))
        settings = Settings()
        assert settings.replication == 3 and settings.broker_url.count(";") == 2, name
        assert settings.database_url is not None and "@postgres:5432/" in settings.database_url
        command = command_of(service)
        if command == "worker":
            IngressSettings.load()
            assert settings.canonical_url == f"http://{service['hostname']}:{settings.web_port}"
            assert settings.store == "rocksdb://"
        if command in ("executor", "syncer"):
            SupplierAccounts.load()
        if command == "notifier":
            NotifySettings.load()
        if command == "renderer":
            assert str(RenderSettings.load().render_output_dir) == "/videos"
        if command == "storefront":
            assert StorefrontSettings.load().public_url
            IngressSettings.load()
    partitions = {s["environment"]["OPS_PARTITIONS"] for s in engine.values()}
    assert len(partitions) == 1, "every engine process must use one partition count"


def test_ports_volumes_secrets_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    host_ports: list[str] = []
    used_volumes: set[str] = set()
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip, host, container = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            host_ports.append(host)
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                used_volumes.add(source)
            assert target.startswith("/")
        depends = service.get("depends_on", {})
        for dependency in depends:
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if isinstance(depends, dict) and depends[dependency].get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck to wait for"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
    assert len(host_ports) == len(set(host_ports)), f"a host port is published twice: {host_ports}"
    assert used_volumes == set(compose["volumes"]), "declared and used named volumes differ"
    for spec in compose["secrets"].values():
        assert (ROOT / spec["file"]).is_file()


def test_workers_have_their_own_disk_and_web_port(engine: dict[str, dict[str, Any]]) -> None:
    workers = {n: s for n, s in engine.items() if command_of(s) == "worker"}
    assert len(workers) == 2
    disks = set()
    for name, service in workers.items():
        port = service["environment"]["OPS_WEB_PORT"]
        assert any(str(p).endswith(f":{port}") for p in service["ports"]), name
        data = [v for v in service["volumes"] if v.endswith(":" + service["environment"]["OPS_DATA_DIR"])]
        assert len(data) == 1, f"{name}: OPS_DATA_DIR is not on a volume"
        disks.add(data[0].split(":")[0])
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert len(disks) == 2, "two workers share one disk"


def test_prometheus_scrapes_every_engine_process(compose: dict[str, Any], engine: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    prometheus = compose["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    targets = {
        target
        for job in config["scrape_configs"]
        if job["job_name"].startswith("ops-engine-")
        for static in job["static_configs"]
        for target in static["targets"]
    }
    port_setting = {
        "worker": "OPS_WEB_PORT", "executor": "OPS_EXECUTOR_METRICS_PORT", "notifier": "OPS_NOTIFIER_METRICS_PORT",
        "recorder": "OPS_RECORDER_METRICS_PORT", "renderer": "OPS_RENDER_METRICS_PORT",
        "syncer": "OPS_SYNCER_METRICS_PORT", "storefront": "OPS_STOREFRONT_METRICS_PORT",
    }
    expected = {
        f"{service['hostname']}:{service['environment'][port_setting[command_of(service)]]}"
        for service in engine.values()
        if command_of(service) in port_setting
    }
    assert targets == expected


def test_grafana_is_provisioned_from_the_repository(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    source = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    host = source["datasources"][0]["url"].split("//", 1)[1].split(":")[0]
    assert compose["services"][host]["hostname"] == host


def test_kafka_three_kraft_brokers(compose: dict[str, Any], engine: dict[str, dict[str, Any]]) -> None:
    brokers = {n: s for n, s in compose["services"].items() if str(s.get("image", "")).startswith("apache/kafka")}
    assert len(brokers) == 3
    envs = [b["environment"] for b in brokers.values()]
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    voters = envs[0]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert sorted(voters) == sorted(f"{e['KAFKA_NODE_ID']}@{b['hostname']}:9093" for e, b in zip(envs, brokers.values()))
    for env in envs:
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    bootstrap = {hp.rsplit(":", 1)[0] for hp in engine["worker-1"]["environment"]["OPS_BROKER_URL"][len("kafka://"):].split(";")}
    assert bootstrap == {b["hostname"] for b in brokers.values()}


def test_dockerfile_slim_non_root_with_ffmpeg() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]-slim", text, re.M)
    assert re.search(r"apt-get install[^\n]*--no-install-recommends[^\n]*\bffmpeg\b", text)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"pip install '\.\[rocksdb\]'", text)
    assert 'ENTRYPOINT ["ops-engine"]' in text
