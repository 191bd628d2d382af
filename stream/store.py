"""One partition's transcript state: a local store (RocksDB, or a dict for tests) behind a write overlay.

Writes of a Kafka transaction stay in the overlay until that transaction has committed; only then do
they reach the local store, together with the changelog offset they came to, in one atomic write.
So the local store never holds what Kafka aborted, and a restart replays the changelog from there.
"""

from __future__ import annotations

import bisect
import shutil
from collections.abc import Iterator
from pathlib import Path

CHECKPOINT_KEY = b"\x00changelog-offset"  # sorts before every state key (b"m...", b"v...")


class _MemoryBackend:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items_from(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.data.items() if k.startswith(prefix)))

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


class PartitionStore:
    """The Store of stream.transcripts for one partition, with the overlay of the open transaction."""

    def __init__(self, partition: int, path: Path | None):
        self.partition = partition
        self.path = path
        self._backend = _RocksBackend(path) if path else _MemoryBackend()
        self.pending: dict[bytes, bytes | None] = {}
        self._pending_keys: list[bytes] = []  # sorted, so a prefix scan of the overlay is a bisect

    # -- the Store protocol (reads see the open transaction's writes)

    def get(self, key: bytes) -> bytes | None:
        if key in self.pending:
            return self.pending[key]
        return self._backend.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        if key not in self.pending:
            bisect.insort(self._pending_keys, key)
        self.pending[key] = value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        merged: dict[bytes, bytes | None] = {}
        for key, value in self._backend.items_from(prefix):
            if not key.startswith(prefix):
                break
            merged[key] = value
        keys = self._pending_keys
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            if not keys[i].startswith(prefix):
                break
            merged[keys[i]] = self.pending[keys[i]]
        for key in sorted(merged):
            if merged[key] is not None:
                yield key, merged[key]

    # -- transactions and recovery

    def checkpoint(self) -> int | None:
        """The changelog offset the local store has applied up to (inclusive), or None when empty."""
        raw = self._backend.get(CHECKPOINT_KEY)
        return int(raw) if raw is not None else None

    def commit(self, changelog_offset: int | None) -> None:
        """The transaction holding `pending` committed: make it local, with the offset it reached."""
        changes = dict(self.pending)
        if changelog_offset is not None:
            changes[CHECKPOINT_KEY] = str(changelog_offset).encode()
        if changes:
            self._backend.write(changes)
        self.discard()

    def size_estimate(self) -> int:
        return self._backend.size_estimate()

    def discard(self) -> None:
        self.pending.clear()
        self._pending_keys.clear()

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

    def close(self) -> None:
        self._backend.close()
