"""Engine snapshots as table entries: compressed, split under Kafka's record size, self-checking."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import orjson

CHUNK = 512 * 1024  # well under the broker's default 1 MB record limit
META = "meta"


def pack(blob: bytes, applied_offset: int) -> dict[str, bytes]:
    return pack_compressed(compress(blob), applied_offset)


def compress(blob: bytes) -> bytes:
    return zlib.compress(blob, level=1)  # speed over ratio: this runs every few seconds


def pack_compressed(packed: bytes, applied_offset: int) -> dict[str, bytes]:
    """The table entries of a snapshot already compressed (by `compress`)."""
    chunks = [packed[i:i + CHUNK] for i in range(0, len(packed), CHUNK)] or [b""]
    entries = {f"chunk/{i}": c for i, c in enumerate(chunks)}
    entries[META] = orjson.dumps({"applied_offset": applied_offset, "chunks": len(chunks),
                                  "sha256": hashlib.sha256(packed).hexdigest()})
    return entries


def unpack(get: Callable[[str], bytes | None]) -> tuple[bytes, int] | None:
    """The engine blob and the last intake offset it includes; None when there is no snapshot."""
    restored = unpack_compressed(get)
    return None if restored is None else (zlib.decompress(restored[0]), restored[1])


def unpack_compressed(get: Callable[[str], bytes | None]) -> tuple[bytes, int] | None:
    """The engine blob as stored (compressed, checked against its checksum) and the last intake offset it
    includes; None when there is no snapshot."""
    meta_raw = get(META)
    if not meta_raw:
        return None
    meta = orjson.loads(meta_raw)
    parts = [get(f"chunk/{i}") for i in range(meta["chunks"])]
    if any(p is None for p in parts):
        raise RuntimeError("engine snapshot is incomplete: a chunk is missing from the changelog")
    packed = b"".join(p for p in parts if p is not None)
    if hashlib.sha256(packed).hexdigest() != meta["sha256"]:
        raise RuntimeError("engine snapshot does not match its checksum")
    return packed, int(meta["applied_offset"])


@dataclass(slots=True)
class Cadence:
    """When the engine writes its next snapshot: `every_s` after the first record it does not cover, or once
    `every_records` are waiting, whichever comes first. A whole-state snapshot grows with the state (seconds
    at a million persons), so the gap between two is also kept at least `1 / max_share` times the work the
    last one took (not its wait for the broker's acknowledgement: after a broker restart that is seconds
    of nothing): snapshots never take more than that share of the engine's time. Until a snapshot covers them,
    records stay unacknowledged (uncommitted), and a restarted engine applies them again."""

    every_s: float
    every_records: int
    max_share: float = 0.1
    records: int = 0  # applied since the last snapshot
    first_at: float | None = None  # when the oldest of them was applied
    last_at: float = float("-inf")  # when the last snapshot was written
    last_took: float = 0.0

    def applied(self, count: int, now: float) -> None:
        if count and self.first_at is None:
            self.first_at = now
        self.records += count

    def due(self, now: float) -> bool:
        if not self.records or self.first_at is None:
            return False
        if now - self.last_at < self.last_took / self.max_share:
            return False
        return self.records >= self.every_records or now - self.first_at >= self.every_s

    def written(self, at: float, took: float) -> None:
        self.forget()
        self.finished(at, took)

    def finished(self, at: float, took: float) -> None:
        """A snapshot taken in a child is written (forget() was called when its content was fixed)."""
        self.last_at, self.last_took = at, took

    def forget(self) -> None:
        """The records are no longer waiting: left to be applied again (a rebalance took the engine's
        partition), or in a snapshot a child is taking."""
        self.records, self.first_at = 0, None
