"""Every setting of phq-monitor, read from `PHQ_`-prefixed environment variables.

The README lists each one with its default; this class is the single source of both.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_DIR_DEFAULT = ".phq/dev"
ROLES = ("api", "worker", "notify")  # each connects as Postgres role phq_<role> (migration 0004 grants)


def _dev_state(dev_dir: str) -> dict:
    """The services `phq dev up` started here, if any (so `phq ...` works without `phq dev env`)."""
    path = Path(dev_dir) / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHQ_", extra="ignore")

    # Services
    kafka_bootstrap: str = ""  # empty: the broker `phq dev up` started, else 127.0.0.1:9092
    database_url: str = ""  # empty: the Postgres `phq dev up` started, else postgresql+psycopg://phq@127.0.0.1:5432/phq
    # Each process's own role (least privilege); empty: PHQ_DATABASE_URL with user phq_<role>, no password
    api_database_url: str = ""
    worker_database_url: str = ""
    notify_database_url: str = ""
    # Secret key of the keyed hash (HMAC-SHA256) kept instead of a user id where records outlive an erasure
    id_hash_key: SecretStr = SecretStr("")  # empty: the one `phq dev up` generated; required elsewhere
    dev_dir: str = DEV_DIR_DEFAULT
    topic_prefix: str = ""  # prepended to every topic name; tests use their own
    partitions: int = Field(6, ge=1)
    transcript_retention_days: float = Field(30, gt=0)
    request_retention_days: float = Field(7, gt=0)

    # Events and sessions (CONTRACT sections 1 and 2)
    max_clock_skew_s: float = Field(300, ge=0)
    max_event_bytes: int = Field(64 * 1024, gt=0)
    session_idle_s: float = Field(1800, gt=0)
    window_days: float = Field(14, gt=0)
    transcript_max_bytes: int = Field(512 * 1024, gt=0)

    # Scoring
    model_dir: str = ".phq/models"
    model_path: str = ""  # empty: the newest directory under model_dir
    backend: str = "auto"  # auto | transformers | vllm
    batch_max_wait_ms: int = Field(200, ge=0)
    batch_token_budget: int = Field(16384, gt=0)
    evidence_retention_days: float = Field(30, gt=0)  # phq9_item_evidence excerpts are deleted after this

    # Change events (CONTRACT section 3)
    reliable_change: float = Field(5, gt=0)
    clinical_threshold: float = Field(10, ge=0, le=27)

    # Processes
    metrics_port: int = Field(0, ge=0, le=65535)
    log_level: str = "INFO"
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=0, le=65535)

    # Stream processor (phq stream)
    stream_store: str = "rocksdb"  # rocksdb (local state survives restarts) | memory (replays the changelog)
    stream_state_dir: str = ".phq/stream-state"  # local RocksDB stores, one slot dir per process on a host
    stream_batch_max: int = Field(5000, gt=0)  # events per Kafka transaction at most
    stream_batch_wait_ms: int = Field(100, ge=0)  # how long a transaction waits to fill
    stream_transaction_timeout_ms: int = Field(10000, gt=0)  # a crashed processor's partitions stall at most this
    session_timeout_ms: int = Field(10000, ge=6000)  # both roles: how soon a dead member's partitions move on
    stream_replay_horizon_days: float = Field(7, ge=0)  # sessions unseen for window + this long are forgotten
    stream_window_cache_mb: int = Field(128, ge=1)  # users' windows kept in memory per process

    # Scoring worker (phq score-worker)
    worker_max_in_flight: int = Field(512, gt=0)  # requests held before partitions are paused (backpressure)
    worker_max_poll_interval_ms: int = Field(300000, gt=0)
    worker_db_retry_max_s: float = Field(30, gt=0)  # cap of the backoff while Postgres is unreachable
    worker_scorer: str = ""  # module:callable building the scorer; empty: scoring.engine.Scorer.from_settings

    # Alert delivery (phq notify)
    notify_group: str = "phq-notify"  # consumer group of `phq notify` (PHQ_TOPIC_PREFIX is prepended)
    webhook_retry_horizon_s: float = Field(86400, gt=0)  # a delivery is retried this long, then marked failed
    webhook_backoff_s: float = Field(1.0, ge=0)  # first retry delay; doubles each attempt
    webhook_max_backoff_s: float = Field(60.0, ge=0)
    webhook_timeout_s: float = Field(10.0, gt=0)

    # Care-team API (phq api)
    api_pool_size: int = Field(10, ge=1)  # Postgres connections of one API process
    api_pool_timeout_s: float = Field(2.0, gt=0)  # a request waits this long for one, then answers 503

    def kafka(self) -> str:
        return self.kafka_bootstrap or _dev_state(self.dev_dir).get("kafka", {}).get("bootstrap") or "127.0.0.1:9092"

    def db_url(self, role: str | None = None) -> str:
        """The SQLAlchemy URL of the migrations' role (None), or of one process role in ROLES."""
        owner = (
            self.database_url
            or _dev_state(self.dev_dir).get("postgres", {}).get("database_url")
            or "postgresql+psycopg://phq@127.0.0.1:5432/phq"
        )
        if role is None:
            return owner
        if role not in ROLES:
            raise ValueError(f"unknown database role {role!r}; one of {', '.join(ROLES)}")
        explicit = getattr(self, f"{role}_database_url")
        if explicit:
            return explicit
        from sqlalchemy.engine import URL, make_url

        base = make_url(owner)  # the owner's password is not the role's: it comes from libpq's ~/.pgpass, if any
        return URL.create(base.drivername, f"phq_{role}", None, base.host, base.port, base.database,
                          base.query).render_as_string(hide_password=False)

    def hash_key(self) -> bytes:
        """The key of the keyed user-id hash: PHQ_ID_HASH_KEY, else the dev services' generated one."""
        key = self.id_hash_key.get_secret_value() or _dev_state(self.dev_dir).get("id_hash_key", "")
        if not key:
            raise RuntimeError("PHQ_ID_HASH_KEY is not set: set it to one long random secret shared by every "
                               "phq process (e.g. `openssl rand -hex 32`), or run `phq dev up` for a dev one")
        return key.encode()

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
