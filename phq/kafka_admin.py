"""Topic creation and broker readiness, shared by `phq dev up`, `phq topics` and the tests."""

from __future__ import annotations

import socket
import time

from confluent_kafka.admin import AdminClient, NewTopic

from phq import topics
from phq.settings import Settings

DAY_MS = 24 * 3600 * 1000
# chat.events records carry the broker's arrival time: idleness is measured on it (CONTRACT v2 section 2)
ARRIVAL_TIME = {"message.timestamp.type": "LogAppendTime"}


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000, "log_level": 2})


def broker_ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when an admin client can list topics (the contract's readiness check)."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
        admin(bootstrap).list_topics(timeout=timeout_s)
        return True
    except Exception:
        return False


def topic_specs(settings: Settings) -> list[NewTopic]:
    retention = {
        topics.CHAT_EVENTS: settings.transcript_retention_days,
        topics.CHAT_EVENTS_DLQ: settings.transcript_retention_days,
        topics.SCORING_REQUESTS: settings.request_retention_days,
    }
    specs = []
    for name in topics.ALL:
        config = {}
        if name in retention:
            config["retention.ms"] = str(int(retention[name] * DAY_MS))
        if name == topics.CHAT_EVENTS:
            config.update(ARRIVAL_TIME)
        specs.append(NewTopic(settings.topic(name), settings.partitions, 1, config=config))
    for name in topics.COMPACTED:
        specs.append(NewTopic(settings.topic(name), settings.partitions, 1, config={"cleanup.policy": "compact"}))
    return specs


def ensure_topics(settings: Settings, bootstrap: str | None = None, timeout_s: float = 30) -> list[str]:
    """Create the contract's topics that are missing (and give an existing chat.events arrival
    timestamps); returns the names created."""
    client = admin(bootstrap or settings.kafka())
    existing = set(client.list_topics(timeout=10).topics)
    wanted = [spec for spec in topic_specs(settings) if spec.topic not in existing]
    if settings.topic(topics.CHAT_EVENTS) in existing:
        _set_arrival_time(client, settings.topic(topics.CHAT_EVENTS), timeout_s)
    if not wanted:
        return []
    futures = client.create_topics(wanted, operation_timeout=timeout_s)
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # created concurrently by another process is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    _wait_for_metadata(client, [s.topic for s in wanted], timeout_s)
    return created


def _wait_for_metadata(client: AdminClient, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = client.list_topics(timeout=5).topics
        if all(name in meta and meta[name].partitions and not meta[name].error for name in names):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics {names} were created but have no leaders after {timeout_s}s")


def _set_arrival_time(client: AdminClient, name: str, timeout_s: float) -> None:
    """A chat.events created before v2 (CreateTime) switches to LogAppendTime; records already there keep theirs."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    resource = ConfigResource(ResourceType.TOPIC, name)
    current = client.describe_configs([resource])[resource].result(timeout_s)
    if current["message.timestamp.type"].value == ARRIVAL_TIME["message.timestamp.type"]:
        return
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in ARRIVAL_TIME.items()]
    for future in client.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)]).values():
        future.result(timeout_s)
