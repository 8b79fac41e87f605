"""`jpc publish`: validate a file of events line by line and publish the valid ones."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.structs import RecordMetadata

from schemas.codec import Refusal, decode_event
from streams.client import MemberUnitClient

IN_FLIGHT = 2000  # bounded: a million-line file must not become a million pending futures


@dataclass(slots=True)
class PublishReport:
    accepted: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)


async def publish_lines(bootstrap: list[str], lines: Iterable[bytes], progress: bool = False) -> PublishReport:
    report = PublishReport()
    pending: list[asyncio.Future[RecordMetadata]] = []
    async with MemberUnitClient(bootstrap) as bus:
        for line_no, line in enumerate(lines, start=1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            decoded = decode_event(raw)
            if isinstance(decoded, Refusal):
                report.refused.append((line_no, decoded.reason))
                continue
            pending.append(await bus.send_soon(decoded, raw))
            if len(pending) >= IN_FLIGHT:
                await asyncio.gather(*pending)
                report.accepted += len(pending)
                pending.clear()
                if progress:
                    print(f"\rline {line_no}: {report.accepted} published, {len(report.refused)} refused",
                          end="", file=sys.stderr, flush=True)
        await asyncio.gather(*pending)
        report.accepted += len(pending)
    if progress and report.accepted >= IN_FLIGHT:
        print(file=sys.stderr)
    return report
