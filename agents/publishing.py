"""`jpc publish`: validate a file of events line by line, and publish the valid ones — straight to the
bus, or through a local spool that forwards them exactly once (store and forward).

Input is read in a thread, in chunks of whatever is available, so a slow pipe (`tail -f ... | jpc
publish -`) is validated and sent line by line as it comes, while a file streams at full speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aiokafka.structs import RecordMetadata

from agents.progress_bar import ProgressBar
from schemas.codec import Refusal, decode_event
from schemas.events import InputEvent
from streams.client import MemberUnitClient
from streams.forwarder import Forwarder, GaveUp, LinkState
from streams.spool import Admission, Spool

IN_FLIGHT = 2000  # bounded: a million-line file must not become a million pending futures
CHUNK = 64 * 1024

Line = tuple[int, bytes]


@dataclass(frozen=True, slots=True)
class RefusedLine:
    line: int
    field: str | None
    reason: str


@dataclass(slots=True)
class PublishReport:
    lines: int = 0  # lines with an event on them (blank lines are skipped)
    accepted: int = 0  # published, or newly spooled
    refused: list[RefusedLine] = field(default_factory=list)
    duplicates: int = 0  # spool: already in the spool with the same content, skipped
    sent: int | None = None  # spool: forwarded to the bus by this run
    waiting: int | None = None  # spool: still in the spool, not yet on the bus
    spool: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lines": self.lines, "accepted": self.accepted,
                               "refused": [{"line": r.line, "field": r.field, "reason": r.reason}
                                           for r in self.refused]}
        if self.spool is not None:
            out.update(spool=self.spool, duplicates=self.duplicates, sent=self.sent, waiting=self.waiting)
        return out


class InputLines:
    """The numbered lines of a binary stream, read in a thread; blank lines are skipped."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.read_bytes = 0
        self.total_bytes: int | None = None
        try:
            info = os.fstat(source.fileno())
            if stat.S_ISREG(info.st_mode):
                self.total_bytes = info.st_size
        except (OSError, ValueError, AttributeError):
            pass
        self.done = False

    @property
    def fraction(self) -> float | None:
        return self.read_bytes / self.total_bytes if self.total_bytes else None

    async def batches(self) -> AsyncIterator[list[Line]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[Line] | BaseException | None] = asyncio.Queue(maxsize=8)

        def hand_over(item: list[Line] | BaseException | None) -> None:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        def read() -> None:
            last: BaseException | None = None
            try:
                self._read_into(hand_over)
            except BaseException as exc:  # the reader's failure is the command's: carry it across
                last = exc
            with contextlib.suppress(Exception):  # the loop is gone when the command failed first
                hand_over(last)

        # A daemon: a reader blocked on a silent pipe must not keep the process alive after an error.
        threading.Thread(target=read, name="jpc-publish-input", daemon=True).start()
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
        self.done = True

    def _read_into(self, hand_over: Callable[[list[Line]], None]) -> None:
        read_some = getattr(self._source, "read1", self._source.read)
        line_no, rest = 0, b""
        while chunk := read_some(CHUNK):
            self.read_bytes += len(chunk)
            *complete, rest = (rest + chunk).split(b"\n")
            batch = []
            for raw in complete:
                line_no += 1
                if raw.strip():
                    batch.append((line_no, raw.rstrip(b"\r")))
            if batch:
                hand_over(batch)
        if rest.strip():  # a last line without its newline
            hand_over([(line_no + 1, rest.rstrip(b"\r"))])


def _validate(batch: list[Line], report: PublishReport) -> list[tuple[int, InputEvent, bytes]]:
    valid = []
    for line_no, raw in batch:
        report.lines += 1
        decoded = decode_event(raw)
        if isinstance(decoded, Refusal):
            report.refused.append(RefusedLine(line_no, decoded.field, decoded.reason))
        else:
            valid.append((line_no, decoded, raw))
    return valid


async def publish_lines(bootstrap: list[str], lines: InputLines, report: PublishReport, bar: ProgressBar,
                        timeout_s: float = 30.0) -> None:
    """Straight to the bus. `report` is filled as it goes, so a failure midway still tells how far it got."""
    pending: list[asyncio.Future[RecordMetadata]] = []

    async def settle() -> None:
        await asyncio.gather(*pending)
        report.accepted += len(pending)
        pending.clear()

    async with MemberUnitClient(bootstrap, timeout_s) as bus:
        async for batch in lines.batches():
            for _, event, raw in _validate(batch, report):
                pending.append(await bus.send_soon(event, raw))
                if len(pending) >= IN_FLIGHT:
                    await settle()
            bar.show(lines.fraction, f"{report.lines:,} lines · {report.accepted + len(pending):,} sent · "
                                     f"{len(report.refused):,} refused")
        await settle()


async def spool_lines(spool: Spool, lines: InputLines | None, report: PublishReport, bar: ProgressBar, *,
                      bootstrap: list[str] | None, give_up_after_s: float | None = None,
                      on_link: Callable[[LinkState], None] | None = None, timeout_s: float = 30.0) -> None:
    """Through the spool: each batch of valid lines is on disk before the next is read; with `bootstrap`,
    a forwarder sends the spool meanwhile and this returns once the spool is empty."""
    report.spool = str(spool.directory)
    forwarder = task = None
    if bootstrap is not None:
        forwarder = Forwarder(spool, bootstrap, timeout_s=timeout_s, give_up_after_s=give_up_after_s,
                              on_link=on_link, on_sent=lambda _: _show_spool(bar, lines, report, forwarder))
        task = asyncio.create_task(forwarder.run(), name="jpc-spool-forwarder")
    try:
        if lines is not None:
            async for batch in lines.batches():
                valid = _validate(batch, report)
                admissions = spool.append([(event, raw) for _, event, raw in valid])
                for (line_no, event, _), admission in zip(valid, admissions, strict=True):
                    if admission is Admission.SPOOLED:
                        report.accepted += 1
                    elif admission is Admission.DUPLICATE:
                        report.duplicates += 1
                    else:
                        report.refused.append(RefusedLine(
                            line_no, "event_id", f"event_id: {event.event_id!r} from {event.source_unit} is "
                                                 "already spooled with different content"))
                if forwarder is not None and task is not None:
                    forwarder.wake()
                    if task.done() and not isinstance(task.exception(), GaveUp):
                        task.result()  # forwarding failed for good: stop reading, say why
                    # Given up on the link: the rest of the input is still spooled, for the next run to send.
                _show_spool(bar, lines, report, forwarder)
        if forwarder is not None and task is not None:
            forwarder.finish()
            await task
    finally:
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if forwarder is not None:
            report.sent = forwarder.sent
        known = forwarder.position if forwarder is not None else None
        report.waiting = spool.waiting(known if known is not None else spool.sent_hint())


def _show_spool(bar: ProgressBar, lines: InputLines | None, report: PublishReport,
                forwarder: Forwarder | None) -> None:
    sent = forwarder.sent if forwarder is not None else 0
    text = f"{report.lines:,} lines · {report.accepted:,} spooled · {len(report.refused):,} refused"
    if forwarder is not None:
        text += f" · {sent:,} sent"
    if lines is not None and not lines.done:
        bar.show(lines.fraction, text)
    elif forwarder is not None:
        waiting = forwarder.spool.waiting(forwarder.position) if forwarder.position is not None else None
        bar.show(sent / (sent + waiting) if waiting is not None and sent + waiting else None, "sending · " + text)
