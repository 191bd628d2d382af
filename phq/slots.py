"""Process slots on one host: a small stable number per running process of a role.

A slot keeps a process's transactional.id (and the stream processor's local stores) stable across
restarts, so a restarted process fences and aborts what its killed predecessor left open at once,
while two processes on one host never share one.
"""

from __future__ import annotations

import fcntl
import socket
from pathlib import Path


def claim_slot(base: Path):
    """The first free slot under `base`: (number, its dir, the open lock file that holds it)."""
    base.mkdir(parents=True, exist_ok=True)
    for slot in range(1024):
        lock = open(base / f"slot-{slot}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        return slot, base / f"slot-{slot}", lock
    raise RuntimeError(f"no free slot under {base}; are 1024 processes of this role running here?")


def transactional_id(group: str, slot: int) -> str:
    return f"{group}-{socket.gethostname()}-{slot}"
