"""One settings object for every process, read from BACKBONE_* environment variables and an
optional TOML file (BACKBONE_CONFIG, default ./backbone.toml). Local defaults need no configuration:
with no Kafka or registry address set, `backbone demo` starts its own on free loopback ports."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from backbone.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_ENV = "BACKBONE_CONFIG"


def _config_file() -> Path:
    return Path(os.environ.get(CONFIG_ENV, "backbone.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKBONE_", extra="forbid", validate_default=True)

    # Where local state lives: Kafka log dirs, the chDB store, process logs, the local PII key.
    run_dir: Path = Field(default=PROJECT_ROOT / "var")
    # Services. Empty means "local mode": the demo or test fixtures start them and fill these in.
    kafka_bootstrap: str = ""
    registry_url: str = ""  # Confluent-compatible API, e.g. http://127.0.0.1:8080/apis/ccompat/v7
    clickhouse_dsn: str = ""  # chdb:///path (embedded) or http://user@host:8123/db (server)
    clickhouse_password: SecretStr = SecretStr("")
    # The query endpoint's own ClickHouse user on a server (an analyst-role user, not the sink's
    # writer): empty means the sink's DSN (the embedded store, where the read-only settings apply).
    query_clickhouse_dsn: str = ""
    query_clickhouse_password: SecretStr = SecretStr("")
    # On a server, the portal's SQL (public_* views only) runs as this user with the `public` role and
    # profile (infra/clickhouse/users.d: `portal`); empty: the query endpoint's own client.
    portal_clickhouse_dsn: str = ""
    portal_clickhouse_password: SecretStr = SecretStr("")
    # Kafka client security, used by every client through backbone/kafka.py (librdkafka and Faust).
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_file: Path | None = None  # PEM CA that signed the brokers' certificates; empty: system CAs
    # Registry basic auth and the CA of its HTTPS certificate (empty: none, system CAs).
    registry_username: str = ""
    registry_password: SecretStr = SecretStr("")
    registry_ca_file: Path | None = None

    catalog_dir: Path = PROJECT_ROOT / "catalog"
    schemas_dir: Path = PROJECT_ROOT / "schemas"
    regions_csv: Path = PROJECT_ROOT / "data" / "bojonegoro_regions.csv"
    # KPI declarations (one file per domain) and the working-day calendar their service levels use.
    kpi_dir: Path = PROJECT_ROOT / "kpis"
    holidays_csv: Path = PROJECT_ROOT / "data" / "holidays_id.csv"

    # Keyed hash for personal data. Production: set BACKBONE_PII_KEY from a secret store.
    # Local mode: a random key is created once in run_dir/pii.key (never in the repo).
    pii_key: SecretStr = SecretStr("")
    # Key that seals the original bytes of dead letters; empty: a local one in <run_dir>/dead-letter.key.
    dead_letter_key: SecretStr = SecretStr("")
    # Bearer token of the query endpoint; empty: a local one in <run_dir>/query.token (mode 0600).
    query_token: SecretStr = SecretStr("")
    # Token of the public portal at the query endpoint (it may read public_* views only); empty: a
    # local one in <run_dir>/portal.token (mode 0600).
    portal_token: SecretStr = SecretStr("")

    # Prepended to every topic name: one broker can hold several environments (or test runs).
    topic_prefix: str = Field(default="", pattern=r"^[a-zA-Z0-9._-]*$")
    topic_partitions: int = Field(default=4, ge=1)
    # Topic-creation replication; 1 for the single local broker.
    topic_replication: int = Field(default=1, ge=1)

    processor_batch_size: int = Field(default=2000, ge=1)
    processor_batch_seconds: float = Field(default=0.05, gt=0)
    processor_app_id: str = "backbone-processor"
    # Worker processes of `backbone processor` (and of `backbone up`), one consumer group: the
    # partitions of every cdc topic are shared among them. More than topic_partitions leaves some idle.
    processor_workers: int = Field(default=1, ge=1, le=32)
    # Data-quality rules beyond the original ones (max, pattern, one_of, compare, references, flags);
    # false only to measure what they cost (make bench).
    processor_dq_rules: bool = True
    # How long a record whose referenced entity is not (yet) known waits for it before its rule's
    # severity applies (its offset is not committed meanwhile).
    processor_reference_wait_seconds: float = Field(default=30.0, ge=0)
    kpi_app_id: str = "backbone-kpi"

    sink_batch_size: int = Field(default=5000, ge=1)
    sink_batch_seconds: float = Field(default=0.5, gt=0)
    # Once caught up, a partial batch is written after this long without a full read (sink._poll_batch).
    sink_linger_seconds: float = Field(default=0.1, gt=0)
    sink_group_id: str = "backbone-sink"
    # The engine decodes the clean topics' Avro itself (FORMAT AvroConfluent, sinks/avro_ingest.py);
    # off: every event is decoded in Python (the path the fast one falls back on).
    sink_engine_decodes: bool = True
    # How long the sink compares a census that differs from the store again before it reports the
    # difference (in-flight changes are not differences): sinks/reconciliation.py.
    reconcile_grace_seconds: float = Field(default=60.0, gt=0)
    # Days a dead letter is kept in the store (TTL on dead_letters, applied to existing tables too).
    dead_letter_retention_days: int = Field(default=28, ge=1)
    # How often the sink refreshes the data-quality gauges (backbone_dq_*) from the dq_* views.
    quality_refresh_seconds: float = Field(default=60.0, gt=0)

    # Ports of the HTTP endpoints. 0 = pick a free loopback port (local mode).
    bind_host: str = "127.0.0.1"
    producer_metrics_port: int = Field(default=0, ge=0, le=65535)
    processor_metrics_port: int = Field(default=0, ge=0, le=65535)
    kpi_metrics_port: int = Field(default=0, ge=0, le=65535)
    # `backbone lag-exporter`: every consumer group's lag (devstack/group_lag.py)
    lag_exporter_port: int = Field(default=9104, ge=0, le=65535)
    sink_metrics_port: int = Field(default=0, ge=0, le=65535)
    query_port: int = Field(default=0, ge=0, le=65535)
    query_timeout_seconds: float = Field(default=10.0, gt=0)
    query_max_rows: int = Field(default=100_000, ge=1)
    query_max_memory_bytes: int = Field(default=1 << 30, ge=1 << 20)  # per analyst query
    # The public portal (`backbone portal`): its port, the query endpoint it reads (empty: the running
    # sink's, from the run state), the smallest person count it shows, its per-client rate limit and
    # the longest its answers are cached (shorter when a dataset's source promises fresher data).
    portal_port: int = Field(default=0, ge=0, le=65535)
    portal_query_url: str = ""
    portal_min_cell: int = Field(default=5, ge=2)
    portal_rate_per_second: float = Field(default=20.0, gt=0)
    portal_rate_burst: int = Field(default=120, ge=1)
    portal_cache_seconds: float = Field(default=5.0, ge=0)
    # The reverse proxy in front of the portal (addresses or networks, JSON list in the environment):
    # when set, a request must come through it and its X-Forwarded-For names the client that is rate
    # limited; empty, the header is ignored (a client could name anyone in it).
    portal_trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list, max_length=64)

    # Local stack: JDKs (Kafka needs 17+, Apicurio Registry 3.3 needs 21+) and versions.
    java_home: Path | None = None
    registry_java_home: Path | None = None
    kafka_version: str = "4.1.1"
    apicurio_version: str = "3.3.3"
    kafka_heap: str = "512m"
    registry_heap: str = "384m"

    log_level: str = "info"
    # text for people, json (one object per line: time, level, stage, system, event_id, message) for a shipper
    log_format: Literal["text", "json"] = "text"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, environment, then the optional TOML file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, _config_file()))

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @property
    def chdb_path(self) -> Path:
        return self.run_dir / "clickhouse"

    @property
    def effective_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.chdb_path}"

    def as_env(self) -> dict[str, str]:
        """These settings as BACKBONE_* variables, for child processes (secrets included)."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            if isinstance(getattr(self, name), SecretStr):
                value = getattr(self, name).get_secret_value()
            env[f"BACKBONE_{name.upper()}"] = str(value)
        return env

    def pii_secret(self) -> bytes:
        """The pseudonymisation key: from the environment, or a local one created on first use."""
        return self._secret(self.pii_key, "pii.key").encode()

    def dead_letter_secret(self) -> str:
        """The key that seals dead letters' original bytes: from the environment, or a local one."""
        return self._secret(self.dead_letter_key, "dead-letter.key")

    def query_secret(self) -> str:
        """The query endpoint's token: from the environment, or a local one created on first use."""
        return self._secret(self.query_token, "query.token")

    def portal_secret(self) -> str:
        """The portal's token at the query endpoint: from the environment, or a local one."""
        return self._secret(self.portal_token, "portal.token")

    def _secret(self, configured: SecretStr, file_name: str) -> str:
        if configured.get_secret_value():
            return configured.get_secret_value()
        key_file = self.run_dir / file_name
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process of the stack made it first
                return key_file.read_text().strip()
            with os.fdopen(fd, "w") as fh:
                fh.write(os.urandom(32).hex())
        return key_file.read_text().strip()


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "?"
            source = f"BACKBONE_{field.upper()}"
            problems.append(f"{source}={err.get('input')!r}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems), hint=f"environment or {_config_file()}") from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML file
        raise ConfigError(f"cannot read settings file {_config_file()}: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
