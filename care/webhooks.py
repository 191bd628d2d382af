"""What a webhook is: an https:// URL (http:// only on loopback, by explicit choice, for development),
and a body signed with the team's secret. Shared by `phq team webhook`, `phq notify` and receivers."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-PHQ-Signature"
TIMESTAMP_HEADER = "X-PHQ-Timestamp"
ALLOW_HTTP_HINT = "--allow-http (loopback hosts only, for local development)"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", so a receiver can reject replays of old deliveries."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, presented: str, max_age_s: float = 300) -> bool:
    """What a receiver does: a matching signature over a recent timestamp."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), presented)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, allow_http: bool = False) -> str | None:
    """Why a webhook URL may not be used (None: it may). The body is health data: https:// only."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "webhook URL is not a valid URL"
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host:
        if not allow_http:
            return f"webhook URL must be https:// (alerts are health data); http:// needs {ALLOW_HTTP_HINT}"
        if not is_loopback(host):
            return "http:// is allowed only for a loopback host (localhost, 127.0.0.1, ::1); use https://"
        return None
    return "webhook URL must be https://host/..."


def masked(url: str) -> str:
    """The URL without a password or query string (either may hold a credential), for output."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        if parts.username:
            netloc = f"{parts.username}:***@{netloc}"
    except ValueError:
        return "<invalid URL>"
    return parts._replace(netloc=netloc, query="***" if parts.query else "", fragment="").geturl()
