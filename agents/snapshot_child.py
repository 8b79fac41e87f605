"""The engine's snapshot taken by a forked child, while the engine goes on.

Pickling the whole state stops the engine for as long as it takes (54 ms at 20,000 events, seconds at a
million persons), and every alert arriving meanwhile waits. A child made with fork() sees the state as it
was at that instant (the kernel copies a page only when one of the two processes writes to it), so it can
pickle and compress it on the other core while the engine applies the next records. The engine pauses only
for the fork itself (page tables: milliseconds).

The child runs no event loop and touches nothing but the state and a pipe, then leaves with os._exit:
threads of the parent (the Kafka client's) do not exist in it, and nothing it inherited is flushed or
closed twice. A child that fails or dies is reported as `SnapshotFailed`; the worker then snapshots in
process as before.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from agents.snapshots import compress

AVAILABLE = hasattr(os, "fork")


class SnapshotFailed(Exception):
    """The child did not hand back a whole snapshot."""


@dataclass(slots=True)
class SnapshotChild:
    pid: int
    fd: int  # the read end of the pipe the child writes the compressed snapshot to

    def collect(self) -> bytes:
        """The compressed snapshot (agents.snapshots.compress of the engine's pickle), once the child has
        exited. Blocks: run it in a thread. Reads until the child closes its end, then reaps it."""
        chunks = []
        try:
            while chunk := os.read(self.fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self.fd)
            _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SnapshotFailed(f"snapshot child {self.pid} exited with {code}")
        return b"".join(chunks)


def start(take: Callable[[], bytes]) -> SnapshotChild:
    """Fork a child that writes compress(take()) to a pipe and exits; `take` runs in the child only."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read_end)
            gc.disable()  # nothing to collect in a process that lives for one pickle
            data = compress(take())
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
            code = 0
        except BaseException:  # the child must reach os._exit whatever happens
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    return SnapshotChild(pid, read_end)
