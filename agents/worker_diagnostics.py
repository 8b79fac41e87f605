"""What a stuck worker is doing: `kill -USR1 <pid>` logs one `diagnostics` record.

It holds every asyncio task's chain of awaits, every thread's stack, the consumer's bookkeeping per
partition (high watermark, last read, last committed, acked offsets waiting for a gap to close) and the
intake's reorder buffer. File, line and function only: mode's own SIGUSR1 dump, which this replaces,
prints every frame's local variables, and those hold events (names, phone numbers, ID numbers).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from typing import Any

import faust

from streams.logging import get_logger

log = get_logger("worker")


def task_stacks(loop: asyncio.AbstractEventLoop, limit: int = 12) -> list[dict[str, Any]]:
    """Every asyncio task of the loop with the frames it is suspended in (innermost last), and every
    thread's current frames. File, line and function only: no local variables (they may hold events)."""
    def where(code: Any, line: int | None) -> str:
        return f"{code.co_filename.rsplit('/site-packages/', 1)[-1]}:{line} {code.co_name}"

    out: list[dict[str, Any]] = []
    for task in asyncio.all_tasks(loop):
        # Task.get_stack shows a suspended coroutine's outermost frame only: follow the chain of awaits down.
        stack: list[str] = []
        link: Any = task.get_coro()
        while link is not None and len(stack) < 4 * limit:
            frame = (getattr(link, "cr_frame", None) or getattr(link, "gi_frame", None)
                     or getattr(link, "ag_frame", None))
            if frame is not None:
                stack.append(where(frame.f_code, frame.f_lineno))
            link = (getattr(link, "cr_await", None) or getattr(link, "gi_yieldfrom", None)
                    or getattr(link, "ag_await", None))
        if link is not None:
            stack.append(repr(link)[:120])  # a future or other awaitable at the bottom
        out.append({"task": task.get_name(), "stack": stack[-limit:]})
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.append({"thread": names.get(ident, str(ident)),
                    "stack": [f"{fs.filename.rsplit('/site-packages/', 1)[-1]}:{fs.lineno} {fs.name}"
                              for fs in traceback.extract_stack(frame, limit=limit)]})
    return out


def consumer_state(app: faust.App) -> dict[str, Any]:
    """Per assigned partition (changelogs aside): high watermark, what Faust last read, the offset it
    last committed, and how many acked offsets wait for a gap to close before they can be committed."""
    consumer: Any = app.consumer  # Faust's private bookkeeping below is not in ConsumerT
    state: dict[str, Any] = {}
    for tp in sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition)):
        if tp.topic.endswith("-changelog"):
            continue
        acked = consumer._acked.get(tp) or []  # Faust internals: best effort, for people only
        try:
            highwater = consumer.highwater(tp)
        except Exception:
            highwater = None
        state[f"{tp.topic}:{tp.partition}"] = {
            "highwater": highwater, "read": consumer._read_offset.get(tp),
            "committed": consumer._committed_offset.get(tp), "acked_pending": len(acked),
            "acked_min": min(acked) if acked else None, "acked_runs": _runs(acked),
            "acked_copies": len(acked) - len(set(acked)),
            "indexed_not_acked": sorted(set(consumer._acked_index.get(tp) or ()) - set(acked))[:10],
            "gaps": [[i.begin, i.end] for i in sorted(consumer._gap.get(tp) or ())][:10],
            "paused": tp in consumer._paused_partitions}
    return {"unacked": len(consumer._unacked_messages), "flow_active": consumer.flow_active, "partitions": state}


def _runs(offsets: list[int], most: int = 10) -> list[list[int]]:
    """The first unbroken runs of offsets, as [first, last]: where a commit waits."""
    runs: list[list[int]] = []
    for offset in sorted(set(offsets)):
        if runs and offset == runs[-1][1] + 1:
            runs[-1][1] = offset
        elif len(runs) == most:
            break
        else:
            runs.append([offset, offset])
    return runs


def install_dump_on_sigusr1(worker: faust.Worker, app: faust.App) -> None:
    """kill -USR1 <pid> logs every task's stack and the consumer's and the reorder buffer's state (instead of
    mode's default dump, which prints every frame's local variables: events, names, phone numbers)."""

    def dump() -> None:
        try:
            extra: dict[str, Any] = getattr(app, "jpc_state", dict)()
            # Agents run behind an actor object that hides their coroutine from the task's chain of awaits.
            agents = [line for line in app.agents.human_tracebacks().splitlines() if line.strip()]
            log.warning("diagnostics", agents=agents, tasks=task_stacks(asyncio.get_event_loop()),
                        consumer=consumer_state(app), **extra)
        except Exception:
            log.exception("diagnostics failed")

    worker._on_sigusr1 = dump  # type: ignore[method-assign]  # mode installs it in on_first_start
