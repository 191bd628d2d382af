"""Structured JSON logs and the Prometheus endpoint every long-running process serves.

Log records carry ids, counts and reasons; never message text (a test greps a full run for it).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from prometheus_client import start_http_server

KAFKA_LOG = logging.getLogger("phq.kafka")  # librdkafka's own log lines, passed to clients as "logger"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def serve_metrics(port: int) -> int:
    """Serve /metrics on `port` (0: a free one); returns the port actually bound."""
    server, _thread = start_http_server(port, addr="0.0.0.0")
    return server.server_port
