"""Opaque cursors for the list endpoints: the sort key of a page's last item, base64url-encoded JSON."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

MAX_BIGINT = 2**63 - 1


class BadCursor(ValueError):
    def __init__(self) -> None:
        super().__init__("invalid cursor: pass the next_cursor of the previous page unchanged")


def encode(*key: object) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode(cursor: str, types: tuple[type, ...]) -> tuple:
    """The key `encode` made, each part checked against its expected type; anything else is a BadCursor."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise BadCursor() from exc
    if not isinstance(key, list) or len(key) != len(types):
        raise BadCursor()
    return tuple(_part(value, t) for value, t in zip(key, types))


def _part(value: object, expected: type):
    if expected is int and type(value) is int and -MAX_BIGINT <= value <= MAX_BIGINT:
        return value
    if expected is str and isinstance(value, str) and "\x00" not in value:
        return value
    if expected is datetime and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadCursor() from None
        if parsed.tzinfo is not None:
            return parsed
    raise BadCursor()
