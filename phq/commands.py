"""Small commands of the shared core: `phq migrate`, `phq produce`, `phq schema`, `phq topics`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phq.settings import Settings

SCHEMA_PATH = Path("docs/event.schema.json")


def migrate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phq migrate", description="Apply database migrations (Alembic).")
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    args = parser.parse_args(argv)
    from phq.db import migrate, safe_url

    url = Settings().db_url()
    migrate(url, args.revision)
    print(f"phq migrate: database at {safe_url(url)} is at {args.revision}", file=sys.stderr)
    return 0


def topics_main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="phq topics", description="Create the contract's topics.").parse_args(argv)
    from phq.kafka_admin import ensure_topics

    created = ensure_topics(Settings())
    print(f"phq topics: created {len(created)} topic(s) {' '.join(sorted(created))}".rstrip(), file=sys.stderr)
    return 0


def schema_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phq schema", description="Write the chat event's JSON Schema.")
    parser.add_argument("--out", default=str(SCHEMA_PATH), help=f"file to write (default {SCHEMA_PATH}; - for stdout)")
    args = parser.parse_args(argv)
    from phq.events import event_json_schema

    text = json.dumps(event_json_schema(), indent=2) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


def read_event_lines(path: Path, *, strict: bool, settings: Settings):
    """Yield (line_no, key, raw_bytes) for each line, with key and raw None for a bad line (reported on stderr)."""
    from phq.events import InvalidEvent, read_event_file

    limits = dict(max_clock_skew_s=settings.max_clock_skew_s, max_event_bytes=settings.max_event_bytes)
    for line_no, raw, event in read_event_file(path, **limits):
        if not strict:
            event = _loose_key(raw)
        if isinstance(event, InvalidEvent):
            print(f"{path}:{line_no}: skipped: {event.reason}", file=sys.stderr)
            yield line_no, None, None
        else:
            yield line_no, event.user_id, raw


def _loose_key(raw: bytes):
    """With --no-validate only a string user_id (the message key) is needed."""
    from types import SimpleNamespace

    from phq.events import InvalidEvent

    try:
        obj = json.loads(raw)
    except ValueError as exc:
        return InvalidEvent(f"event is not JSON: {exc}")
    key = obj.get("user_id") if isinstance(obj, dict) else None
    return SimpleNamespace(user_id=key) if isinstance(key, str) else InvalidEvent("no string user_id to key the event by")


def produce_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="phq produce", description="Send chat events from a JSON-lines file to chat.events (key: user_id)."
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--no-validate", action="store_true",
                        help="send lines as they are (only a user_id is needed); the stream processor DLQs bad ones")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"{args.file}: no such file")
    from confluent_kafka import Producer

    from phq import topics

    settings = Settings()
    topic = settings.topic(topics.CHAT_EVENTS)
    producer = Producer({
        "bootstrap.servers": settings.kafka(), "enable.idempotence": True, "acks": "all",
        "linger.ms": 20, "compression.type": "lz4",
    })
    failures: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            failures.append(str(err))

    sent = skipped = 0
    for _line_no, key, raw in read_event_lines(args.file, strict=not args.no_validate, settings=settings):
        if raw is None:
            skipped += 1
            continue
        while True:
            try:
                producer.produce(topic, value=raw, key=key.encode("utf-8"), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.5)
        sent += 1
        producer.poll(0)
    producer.flush(60)
    print(f"phq produce: sent {sent - len(failures)} event(s) to {topic}, skipped {skipped} bad line(s)"
          + (f", {len(failures)} failed: {failures[0]}" if failures else ""), file=sys.stderr)
    return 1 if failures else 0
