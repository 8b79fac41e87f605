"""Child process of the memory figure: an engine fed until it holds N distinct people, then weighed.

    python -m bench.engine_memory --directory bench-out/directory.yaml --persons 1000000 --out m.json

Feeds the replay path (decode, engine) with a load in which every checkpoint alert is a new person,
all within one contact window, then reports resident memory, the state's size, and what the live
worker pays for its whole-state snapshot after every batch (agents.snapshots.pack) and to restore it.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from agents.core.engine import Engine
from agents.replay import replay_lines
from agents.snapshots import pack, unpack
from bench.loadgen import LoadSpec, Mix, lines
from bench.system import memory_mb
from schemas.directory import load_directory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--persons", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    directory = load_directory(args.directory)
    baseline = memory_mb()
    engine = Engine(directory, clock="event")
    spec = LoadSpec(events=args.persons * 2, persons=args.persons, distinct_persons=True,
                    mix=Mix(heartbeat=0.05, alert=0.93, case=0.02))
    contacts = engine.state.contacts
    fed = 0

    def until_enough() -> Iterator[bytes]:
        nonlocal fed
        for line in lines(directory, spec):
            if len(contacts.sightings) >= args.persons:
                return
            fed += 1
            yield line

    start = time.perf_counter()
    revisions = sum(1 for _ in replay_lines(engine, until_enough()))
    feed_s = time.perf_counter() - start
    gc.collect()
    held = memory_mb()

    start = time.perf_counter()
    blob = engine.snapshot()
    pickle_s = time.perf_counter() - start
    start = time.perf_counter()
    entries = pack(blob, fed)
    pack_s = time.perf_counter() - start
    packed_bytes = sum(len(v) for v in entries.values())
    after_snapshot = memory_mb()
    del blob
    start = time.perf_counter()
    restored = unpack(entries.get)
    assert restored is not None
    Engine.restore(directory, restored[0])
    restore_s = time.perf_counter() - start

    figures = {
        "persons": len(contacts.sightings), "events": fed, "revisions": revisions,
        "baseline_rss_mb": baseline["rss_mb"], "rss_mb": held["rss_mb"],
        "peak_rss_mb_before_snapshot": held["peak_rss_mb"],
        "peak_rss_mb": after_snapshot["peak_rss_mb"], "bytes_per_person": round(
            (held["rss_mb"] - baseline["rss_mb"]) * 1024 * 1024 / max(1, len(contacts.sightings))),
        "feed_seconds": round(feed_s, 2), "snapshot_pickle_seconds": round(pickle_s, 3),
        "snapshot_pack_seconds": round(pack_s, 3), "snapshot_pickled_mb": round(len(restored[0]) / 2**20, 1),
        "snapshot_packed_mb": round(packed_bytes / 2**20, 1), "snapshot_chunks": len(entries) - 1,
        "restore_seconds": round(restore_s, 3),
    }
    args.out.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
