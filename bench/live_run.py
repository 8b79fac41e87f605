"""The broker half of the benchmark, in order, each broker and worker stopped before the next starts.

One broker: the limit (pass-through), the live worker on the same bytes, then recovery of that worker;
then every topic is deleted and provisioned again, so the latency worker starts on empty topics instead
of chewing through the live backlog first.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bench.kafka import Broker, delete_all_topics, start_broker
from bench.loadgen import LoadSpec, records
from bench.measure_live import Worker, measure_latency, measure_limit, measure_live, measure_recovery, provision
from schemas.directory import Directory

ROOT = Path(__file__).resolve().parent.parent
BROKER_DATA = ROOT / ".cache" / "bench-kafka"


class _Skip(Exception):
    """The live worker is not among the figures asked for."""


def run_broker_figures(directory: Directory, directory_path: Path, plan: Any, seed: int, out_dir: Path,
                       say: Callable[[str], None], starting: Future[Broker] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    load = list(records(directory, LoadSpec(events=plan.live_events, seed=seed)))
    last_event_at = max(datetime.fromisoformat(orjson.loads(v)["occurred_at"]) for _, _, v in load[-50:])
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)

    if starting is None:
        say("broker: starting (deploy/kafka.sh on free ports)")
        broker = start_broker(BROKER_DATA)
    else:
        broker = starting.result()
    try:
        worker = Worker(broker, directory_path, "jpc-bench-live", "event", work / "live", plan.profile)
        try:
            if plan.wants("limit"):
                say(f"limit: aiokafka pass-through of {len(load):,} records")
                results["limit"] = asyncio.run(measure_limit(broker.bootstrap, load))
            if not plan.wants("live"):
                raise _Skip
            provision(broker, directory_path, worker.app_id)
            worker.start()
            say(f"live: publishing {len(load):,} events into `jpc worker --clock event` "
                f"(cap {plan.live_timeout_s:.0f} s)")
            live = asyncio.run(measure_live(broker, worker, load, plan.live_timeout_s))
            live["ratio_to_limit"] = round(live["events_per_s"] / results["limit"]["events_per_s"], 3)
            results["live"] = live
            if plan.wants("recovery"):
                say("recovery: kill -9, restart, time to the first new escalation")
                results["recovery"] = asyncio.run(measure_recovery(broker, worker, directory, last_event_at))
        except _Skip:
            pass
        finally:
            worker.stop()
        if not plan.wants("latency"):
            return results
        say("latency: deleting the topics, so the latency worker does not start on the live backlog")
        asyncio.run(delete_all_topics(broker.bootstrap))
        worker = Worker(broker, directory_path, "jpc-bench-latency", "wall", work / "latency", plan.profile)
        try:
            provision(broker, directory_path, worker.app_id)
            worker.start()
            say(f"latency: {plan.latency_rate:,} events/s for {plan.latency_seconds:.0f} s into "
                "`jpc worker --clock wall`")
            results["latency"] = asyncio.run(measure_latency(broker, worker, directory, plan.latency_rate,
                                                             plan.latency_seconds, seed))
        finally:
            worker.stop()
    finally:
        broker.stop()
    return results
