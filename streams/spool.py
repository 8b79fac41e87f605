"""Store and forward for checkpoints with poor links: a local spool of validated events.

A spool is a directory that one process at a time owns:

    spool.json          its identity, written once: {"format": "jpc-spool/1", "spool_id": ...}
    lock                flock()ed by the owner; the kernel lets go of it when the owner dies, even by SIGKILL
    0000000001.events   journal segments: one validated event per line, the bytes as received
    0000000001.keys     what is left of a segment once all of it is on the bus: a digest per event,
                        so the same input given again is still recognised
    sent.json           a hint of how far forwarding has got, for reports made offline

An event is spooled once its line has been written and fsync()ed: what a caller was told is spooled
survives a crash or a power cut. A line cut short by a crash has no newline yet and is cut off when
the spool is next opened; it was never reported as spooled, so the same input given again brings it.

Input is idempotent: an event whose (`source_unit`, `event_id`) is already in the spool is skipped
when its content is the same (compared as parsed JSON, as the bus compares duplicates) and refused
when it differs. So a publisher killed while spooling a file is simply run again on the same file.

How far the journal has been sent is not decided here: the forwarder keeps that position in Kafka,
committed in the same transaction as the events it covers (streams/forwarder.py). This module only
turns positions into events and compacts segments once the bus has all of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from schemas.events import InputEvent

FORMAT = "jpc-spool/1"
SEGMENT_BYTES = 16 * 1024 * 1024
# Keys of sent events are kept as long as the input topics keep the events themselves (90 days):
# a file given again after that is new to the bus too.
KEY_HORIZON_S = 90 * 24 * 3600
_DIGEST = 16  # bytes of SHA-256 kept per key and per content: collisions are out of reach at this size


class SpoolError(RuntimeError):
    """The spool cannot be used (held by another process, unreadable, damaged); the message says why."""


@dataclass(frozen=True, order=True, slots=True)
class SpoolPosition:
    """A place in the journal: a segment and a byte offset in it. Positions sort in journal order."""

    segment: int
    offset: int

    def as_json(self) -> dict[str, int]:
        return {"segment": self.segment, "offset": self.offset}


START = SpoolPosition(1, 0)


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    raw: bytes
    end: SpoolPosition  # just after this event's line: where forwarding resumes once it is sent


class Admission(Enum):
    SPOOLED = "spooled"
    DUPLICATE = "duplicate"  # already in the spool with the same content: skipped
    CONFLICT = "conflict"  # already in the spool with different content: refused


def event_key(source_unit: str, event_id: str) -> bytes:
    return hashlib.sha256(f"{source_unit}\x00{event_id}".encode()).digest()[:_DIGEST]


def parse(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """A spooled line's fields, and the digest of its content as parsed JSON, so that two encodings of
    one event are one event (contract §3, duplicates)."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:  # what validation takes and orjson does not: lone surrogates, huge integers
        record = json.loads(raw)
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return record, hashlib.sha256(canonical.encode()).digest()[:_DIGEST]


def content_digest(raw: bytes) -> bytes:
    return parse(raw)[1]


class Spool:
    """An open spool directory. Not thread-safe: one event loop (or thread) uses it."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = self._lock()
        except OSError as exc:
            raise SpoolError(f"cannot use spool {directory}: {exc.strerror or exc}") from exc
        try:
            self.spool_id = self._identity()
            self._index: dict[bytes, bytes] = {}
            self._lines: dict[int, array[int]] = {}  # retained segment → end offset of each line
            self._load()
            self._write_fd = self._open_segment(self._last_segment)
        except OSError as exc:
            os.close(self._lock_fd)
            raise SpoolError(f"cannot use spool {directory}: {exc.strerror or exc}") from exc
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- identity and ownership ------------------------------------------------------------------

    def _lock(self) -> int:
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SpoolError(f"spool {self.directory} is in use by another process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _identity(self) -> str:
        path = self.directory / "spool.json"
        if path.exists():
            try:
                identity = orjson.loads(path.read_bytes())
                if identity["format"] != FORMAT:
                    raise SpoolError(f"{path}: format {identity['format']!r}, this jpc reads {FORMAT!r}")
                return str(identity["spool_id"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise SpoolError(f"{path} is unreadable ({exc}); the spool's identity is lost") from exc
        if any(self.directory.glob("*.events")) or any(self.directory.glob("*.keys")):
            raise SpoolError(f"{self.directory} holds journal segments but no spool.json: not starting a new "
                             "spool over them")
        spool_id = uuid.uuid4().hex
        _write_atomically(path, orjson.dumps({"format": FORMAT, "spool_id": spool_id}) + b"\n")
        return spool_id

    @property
    def transactional_id(self) -> str:
        """Stable for the life of the spool: a restarted forwarder fences and aborts its predecessor."""
        return f"jpc-spool-{self.spool_id}"

    # -- loading -----------------------------------------------------------------------------------

    def _load(self) -> None:
        now = time.time()
        for path in sorted(self.directory.glob("*.keys")):
            if now - path.stat().st_mtime > KEY_HORIZON_S:
                path.unlink()
                continue
            for line in path.read_bytes().splitlines():
                key, digest = line.split(b" ")
                self._index[bytes.fromhex(key.decode())] = bytes.fromhex(digest.decode())
        segments = sorted(int(p.stem) for p in self.directory.glob("*.events"))
        for segment in segments:
            self._lines[segment] = self._scan(segment, last=segment == segments[-1])
        if not segments:  # a new spool, or every segment sent and compacted: continue the numbering
            keys = sorted(int(p.stem) for p in self.directory.glob("*.keys"))
            self._lines[(keys[-1] + 1) if keys else START.segment] = array("Q")

    def _scan(self, segment: int, *, last: bool) -> array[int]:
        path = self._segment_path(segment)
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            if not last:
                raise SpoolError(f"{path}: a torn line in a closed segment; the spool is damaged")
            # The line a crash cut short: it was never reported as spooled (no fsync returned for it).
            with path.open("r+b") as f:
                f.truncate(complete)
                os.fsync(f.fileno())
        ends = array("Q")
        start = 0
        while start < complete:
            end = data.index(b"\n", start) + 1
            raw = data[start:end - 1]
            try:
                record, digest = parse(raw)
                self._index[event_key(record["source_unit"], record["event_id"])] = digest
            except (ValueError, KeyError, TypeError) as exc:
                raise SpoolError(f"{path}: byte {start}: not a spooled event ({exc}); the spool is damaged") from exc
            ends.append(end)
            start = end
        return ends

    # -- writing -----------------------------------------------------------------------------------

    @property
    def _last_segment(self) -> int:
        return max(self._lines)

    def _segment_path(self, segment: int) -> Path:
        return self.directory / f"{segment:010d}.events"

    def _open_segment(self, segment: int) -> int:
        path = self._segment_path(segment)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:
            _fsync_directory(self.directory)  # the new name must survive a power cut too
        return fd

    def append(self, events: Sequence[tuple[InputEvent, bytes]]) -> list[Admission]:
        """Spool validated events (each with its raw line), durably: returns after fsync.

        Each event is admitted, skipped as a duplicate or refused as a conflict, in order; duplicates
        within the batch count too.
        """
        admissions: list[Admission] = []
        lines: list[bytes] = []
        for event, raw in events:
            key, digest = event_key(event.source_unit, event.event_id), content_digest(raw)
            known = self._index.get(key)
            if known is not None:
                admissions.append(Admission.DUPLICATE if known == digest else Admission.CONFLICT)
                continue
            self._index[key] = digest
            admissions.append(Admission.SPOOLED)
            lines.append(raw)
        if lines:
            self._write(lines)
        return admissions

    def _write(self, lines: list[bytes]) -> None:
        chunk: list[bytes] = []
        size = self.end.offset
        for raw in lines:
            if size >= self._segment_bytes:  # segments stay about their size, however large a batch
                self._write_chunk(chunk)
                self._roll()
                chunk, size = [], 0
            chunk.append(raw)
            size += len(raw) + 1
        self._write_chunk(chunk)

    def _roll(self) -> None:
        os.close(self._write_fd)
        segment = self._last_segment + 1
        self._lines[segment] = array("Q")
        self._write_fd = self._open_segment(segment)

    def _write_chunk(self, lines: list[bytes]) -> None:
        if not lines:
            return
        blob = b"".join(raw + b"\n" for raw in lines)
        written = 0
        while written < len(blob):
            written += os.write(self._write_fd, blob[written:])
        os.fsync(self._write_fd)
        ends = self._lines[self._last_segment]
        size = ends[-1] if ends else 0
        for raw in lines:  # only now do the lines exist for readers: the forwarder sends what is durable
            size += len(raw) + 1
            ends.append(size)

    # -- reading -----------------------------------------------------------------------------------

    @property
    def end(self) -> SpoolPosition:
        segment = self._last_segment
        ends = self._lines[segment]
        return SpoolPosition(segment, ends[-1] if ends else 0)

    def _normalise(self, position: SpoolPosition) -> SpoolPosition:
        """The same place in the journal, moved past segment ends and compacted segments."""
        first = min(self._lines)
        if position.segment < first:
            return SpoolPosition(first, 0)
        segment, offset = position.segment, position.offset
        while segment < self._last_segment:
            ends = self._lines.get(segment)
            if ends is not None and offset < (ends[-1] if ends else 0):
                break
            segment, offset = segment + 1, 0
        return SpoolPosition(segment, offset)

    def read(self, start: SpoolPosition, max_events: int = 500, max_bytes: int = 1024 * 1024) -> list[SpooledEvent]:
        """Events from `start` on, within one segment, at most `max_events` and about `max_bytes`."""
        position = self._normalise(start)
        ends = self._lines.get(position.segment)
        if not ends:
            return []
        first = bisect_right(ends, position.offset)
        if first >= len(ends):
            return []
        last = first
        while last + 1 < len(ends) and last + 1 - first < max_events and ends[last + 1] - position.offset <= max_bytes:
            last += 1
        begin = ends[first - 1] if first else 0
        with self._segment_path(position.segment).open("rb") as f:
            f.seek(begin)
            data = f.read(ends[last] - begin)
        out = []
        offset = 0
        for index in range(first, last + 1):
            length = ends[index] - (ends[index - 1] if index else 0)
            out.append(SpooledEvent(data[offset:offset + length - 1], SpoolPosition(position.segment, ends[index])))
            offset += length
        return out

    def waiting(self, sent: SpoolPosition) -> int:
        """How many spooled events lie at or after `sent` (not yet on the bus, if `sent` is current)."""
        position = self._normalise(sent)
        count = 0
        for segment, ends in self._lines.items():
            if segment > position.segment:
                count += len(ends)
            elif segment == position.segment:
                count += len(ends) - bisect_right(ends, position.offset)
        return count

    # -- after sending -----------------------------------------------------------------------------

    def sent_hint(self) -> SpoolPosition:
        """How far forwarding had got when last heard of; never ahead of the truth (kept in Kafka)."""
        try:
            hint = orjson.loads((self.directory / "sent.json").read_bytes())
            return SpoolPosition(int(hint["segment"]), int(hint["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return START

    def mark_sent(self, position: SpoolPosition) -> None:
        """Called once the bus has committed everything before `position`: compact whole segments."""
        _write_atomically(self.directory / "sent.json", orjson.dumps(position.as_json()) + b"\n", sync=False)
        position = self._normalise(position)
        for segment in sorted(self._lines):
            if segment >= position.segment or segment == self._last_segment:
                break
            self._compact(segment)

    def _compact(self, segment: int) -> None:
        path = self._segment_path(segment)
        keys = []
        for raw in path.read_bytes().splitlines():
            record, digest = parse(raw)
            keys.append(b"%s %s\n" % (event_key(record["source_unit"], record["event_id"]).hex().encode(),
                                      digest.hex().encode()))
        # The keys file exists before the segment goes: a crash in between leaves both, never neither.
        _write_atomically(path.with_suffix(".keys"), b"".join(keys))
        path.unlink()
        del self._lines[segment]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._write_fd)
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)  # closing the descriptor releases the flock

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    tmp.replace(path)
    if sync:
        _fsync_directory(path.parent)
