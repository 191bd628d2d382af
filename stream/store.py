"""One partition's transcript state: a local store (RocksDB, or a dict for tests) behind a write overlay.

Writes of a Kafka transaction stay in the overlay until that transaction has committed; only then do
they reach the local store, together with the changelog offset they came to, in one WriteBatch.
So the local store never holds what Kafka aborted, and a restart replays the changelog from there.
Decoded records (session and user summaries) are kept for the open transaction, read with one
multi-get per batch and encoded once when the batch ends; each user's window is kept in memory
(`windows`), so a trigger never re-reads two weeks of turns.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

CHECKPOINT_KEY = b"\x00changelog-offset"  # sorts before every state key
ERASURES_KEY = b"\x00erasures-swept"  # how far into phq.erasures this store has been swept (changelogged)
_MISSING = object()


class _MemoryBackend:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return [self.data.get(k) for k in keys]

    def items_from(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.data.items() if k >= prefix))

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def size_estimate(self) -> int:
        return sum(len(k) + len(v) for k, v in self.data.items())

    def close(self) -> None:
        pass


class _RocksBackend:
    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict

        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), Options(raw_mode=True))

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self.db.get(keys)

    def items_from(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.db.items(from_key=prefix)

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db.write(batch)

    def size_estimate(self) -> int:
        live = self.db.property_int_value("rocksdb.estimate-live-data-size") or 0
        unflushed = self.db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
        return live + unflushed

    def close(self) -> None:
        self.db.close()


class WindowCache:
    """Users' windows in memory (least recently used first out), bounded by the bytes of their turns."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._windows: OrderedDict[str, object] = OrderedDict()  # user_id -> stream.transcripts.Window

    def get(self, user_id: str):
        window = self._windows.get(user_id)
        if window is not None:
            self._windows.move_to_end(user_id)
        return window

    def put(self, user_id: str, window) -> None:
        self.drop(user_id)
        self._windows[user_id] = window
        self.bytes += window.bytes
        self.shrink()

    def resized(self, delta: int) -> None:
        self.bytes += delta

    def shrink(self) -> None:
        while self.bytes > self.max_bytes and len(self._windows) > 1:
            _, window = self._windows.popitem(last=False)
            self.bytes -= window.bytes

    def drop(self, user_id: str) -> None:
        window = self._windows.pop(user_id, None)
        if window is not None:
            self.bytes -= window.bytes

    def clear(self) -> None:
        self._windows.clear()
        self.bytes = 0


class PartitionStore:
    """The state of one partition, with the overlay and decoded records of the open transaction."""

    def __init__(self, partition: int, path: Path | None, window_cache_bytes: int = 64 << 20):
        self.partition = partition
        self.path = path
        self._backend = _RocksBackend(path) if path else _MemoryBackend()
        self.pending: dict[bytes, bytes | None] = {}  # encoded writes of the open transaction
        self._pending_by_user: dict[bytes, list[bytes]] = {}  # kind + user id -> its pending keys (scans)
        self.records: dict[bytes, object] = {}  # decoded records of the open transaction (None: absent)
        self._dirty: dict[bytes, Callable[[object], bytes]] = {}  # records written, with their encoder
        self.windows = WindowCache(window_cache_bytes)
        self.touched: set[str] = set()  # users whose windows the open transaction changed

    # -- raw keys (reads see the open transaction's writes)

    def get(self, key: bytes) -> bytes | None:
        value = self.pending.get(key, _MISSING)
        return self._backend.get(key) if value is _MISSING else value

    def put(self, key: bytes, value: bytes | None) -> None:
        if key not in self.pending:
            self._pending_by_user.setdefault(key[:3 + int.from_bytes(key[1:3], "big")], []).append(key)
        self.pending[key] = value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every live key with this prefix, in key order (records not yet encoded included)."""
        if not prefix.startswith(b"v"):  # turns are written encoded; summaries may wait in `records`
            self.flush_records()
        merged: dict[bytes, bytes | None] = {}
        for key, value in self._backend.items_from(prefix):
            if not key.startswith(prefix):
                break
            merged[key] = value
        for key in self._pending_keys_with(prefix):
            merged[key] = self.pending[key]
        for key in sorted(merged):
            if merged[key] is not None:
                yield key, merged[key]

    def _pending_keys_with(self, prefix: bytes) -> list[bytes]:
        """The overlay's keys with this prefix: a user's keys from their group (every scan in a batch is
        one user's), all keys for a shorter prefix."""
        user_len = 3 + int.from_bytes(prefix[1:3], "big") if len(prefix) >= 3 else None
        if user_len is not None and len(prefix) >= user_len:
            keys = self._pending_by_user.get(prefix[:user_len], ())
        else:
            keys = self.pending
        return [k for k in keys if k.startswith(prefix)]

    # -- decoded records of the open transaction

    def prefetch(self, keys: Iterable[bytes], decode: Callable[[bytes, bytes], object]) -> None:
        """One multi-get for the records a batch will read; `decode(key, raw)` builds each."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self.records]
        from_backend = [k for k in wanted if k not in self.pending]
        for key, raw in zip(from_backend, self._backend.get_many(from_backend) if from_backend else []):
            self.records[key] = decode(key, raw) if raw is not None else None
        for key in wanted:
            if key in self.pending:
                raw = self.pending[key]
                self.records[key] = decode(key, raw) if raw is not None else None

    def record(self, key: bytes, decode: Callable[[bytes, bytes], object]):
        if key in self.records:
            return self.records[key]
        raw = self.get(key)
        value = decode(key, raw) if raw is not None else None
        self.records[key] = value
        return value

    def set_record(self, key: bytes, value, encode: Callable[[object], bytes]) -> None:
        """Write a decoded record (None deletes it); encoded once, when the batch ends."""
        self.records[key] = value
        self._dirty[key] = encode

    def flush_records(self) -> None:
        for key, encode in self._dirty.items():
            value = self.records[key]
            self.put(key, None if value is None else encode(value))
        self._dirty.clear()

    # -- transactions and recovery

    def checkpoint(self) -> int | None:
        """The changelog offset the local store has applied up to (inclusive), or None when empty."""
        raw = self._backend.get(CHECKPOINT_KEY)
        return int(raw) if raw is not None else None

    def commit(self, changelog_offset: int | None) -> None:
        """The transaction holding `pending` committed: make it local (one WriteBatch), with its offset."""
        self.flush_records()
        changes = self.pending
        if changelog_offset is not None:
            changes[CHECKPOINT_KEY] = str(changelog_offset).encode()
        if changes:
            self._backend.write(changes)
        self.pending = {}
        self._pending_by_user = {}
        self.records.clear()
        self.touched.clear()

    def discard(self) -> None:
        """The open transaction aborted: forget its writes, and the windows it changed."""
        self.pending = {}
        self._pending_by_user = {}
        self.records.clear()
        self._dirty.clear()
        for user_id in self.touched:
            self.windows.drop(user_id)
        self.touched.clear()

    def size_estimate(self) -> int:
        return self._backend.size_estimate()

    def committed_items(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Committed keys with this prefix from `start` on (the overlay not included)."""
        for key, value in self._backend.items_from(start or prefix):
            if not key.startswith(prefix):
                return
            yield key, value

    def apply_changelog(self, records: list[tuple[bytes, bytes | None]], last_offset: int) -> None:
        changes: dict[bytes, bytes | None] = dict(records)
        changes[CHECKPOINT_KEY] = str(last_offset).encode()
        self._backend.write(changes)

    def wipe(self) -> None:
        """Forget the local copy (the changelog no longer covers it); the caller replays from the start."""
        self._backend.close()
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            self._backend = _RocksBackend(self.path)
        else:
            self._backend = _MemoryBackend()
        self.discard()
        self.windows.clear()

    def close(self) -> None:
        self._backend.close()
