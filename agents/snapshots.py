"""Engine snapshots as table entries: compressed, split under Kafka's record size, self-checking."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

import orjson

CHUNK = 512 * 1024  # well under the broker's default 1 MB record limit
META = "meta"


def pack(blob: bytes, applied_offset: int) -> dict[str, bytes]:
    packed = zlib.compress(blob, level=1)  # speed over ratio: this runs after every batch
    chunks = [packed[i:i + CHUNK] for i in range(0, len(packed), CHUNK)] or [b""]
    entries = {f"chunk/{i}": c for i, c in enumerate(chunks)}
    entries[META] = orjson.dumps({"applied_offset": applied_offset, "chunks": len(chunks),
                                  "sha256": hashlib.sha256(packed).hexdigest()})
    return entries


def unpack(get: Callable[[str], bytes | None]) -> tuple[bytes, int] | None:
    """The engine blob and the last intake offset it includes; None when there is no snapshot."""
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
    return zlib.decompress(packed), int(meta["applied_offset"])
