"""`jpc demo`: the whole bus on the Guangyuan directory, New Year's Eve 2020, shown as it happens.

Provisions topics, starts a worker (event clock), publishes the scenario at a watchable pace, and
prints each escalation as it arrives on `jpc.escalations`: what happened, who it went to, who is on
duty there, and why. Ctrl-C stops the worker cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import click
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents import scenario
from agents.views import render
from schemas.codec import Refusal, decode_event
from schemas.directory import Directory
from schemas.escalation import Escalation
from streams.client import MemberUnitClient
from streams.topics import ESCALATIONS


async def _watch(bootstrap: list[str], directory: Directory, ready: asyncio.Event, stop: asyncio.Event,
                 shown: list[Escalation]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(ESCALATIONS, p) for p in sorted(consumer.partitions_for_topic(ESCALATIONS) or [])]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # pin the start before anything is published
        ready.set()
        seen: set[tuple[str, int]] = set()
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    revision = Escalation.model_validate_json(record.value or b"{}")
                    if (revision.escalation_id, revision.revision) in seen:
                        continue  # delivered twice (at-least-once): shown once
                    seen.add((revision.escalation_id, revision.revision))
                    shown.append(revision)
                    click.echo(render(revision, directory, now=revision.updated_at, colour=sys.stdout.isatty()))
                    click.echo()
    finally:
        await consumer.stop()


async def _publish(bootstrap: list[str], pace_s_per_minute: float) -> tuple[int, int]:
    published = refused = 0
    previous: datetime | None = None
    async with MemberUnitClient(bootstrap) as bus:
        for raw in scenario.lines():
            event = decode_event(raw)
            at = datetime.fromisoformat(orjson.loads(raw)["occurred_at"])
            if previous is not None and at > previous:
                await asyncio.sleep(min((at - previous).total_seconds() / 60 * pace_s_per_minute, 2.0))
            previous = max(previous or at, at)
            if isinstance(event, Refusal):
                refused += 1
                click.secho(f"  (refused at the source, never published: {event.reason})", dim=True)
                continue
            await bus.send(event, raw)
            published += 1
    return published, refused


async def _run(bootstrap: list[str], directory: Directory, pace: float, linger_s: float | None,
               shown: list[Escalation]) -> None:
    ready, stop = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(_watch(bootstrap, directory, ready, stop, shown))
    await ready.wait()
    published, refused = await _publish(bootstrap, pace)
    click.secho(f"-- scenario published: {published} events ({refused} refused at the source); "
                "watching for escalations, Ctrl-C to stop --", bold=True)
    try:
        if linger_s is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(linger_s)
    finally:
        stop.set()
        await watcher


def run_demo(brokers: str, directory: Directory, directory_path: Path | None, data_dir: Path, pace: float,
             linger_s: float | None) -> int:
    app_id = f"jpc-demo-{int(time.time())}"  # a fresh group and state: the demo always starts at 18:00
    common = ["--brokers", brokers] + (["--directory", str(directory_path)] if directory_path else [])
    jpc = str(Path(sys.executable).with_name("jpc"))
    created = subprocess.run([jpc, "topics", "create", *common, "--app-id", app_id], capture_output=True, text=True)
    if created.returncode != 0:
        click.echo(created.stderr.strip(), err=True)
        return 2
    click.echo(created.stdout.strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"{app_id}.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([jpc, "worker", *common, "--clock", "event", "--app-id", app_id,
                                   "--data-dir", str(data_dir / app_id)], stdout=log, stderr=subprocess.STDOUT)
    click.secho(f"-- worker {app_id} started (pid {worker.pid}, log {log_path}); "
                "24 January 2020, New Year's Eve, Guangyuan --", bold=True)
    shown: list[Escalation] = []  # filled as revisions arrive, so Ctrl-C still reports them
    try:
        asyncio.run(_run(brokers.split(","), directory, pace, linger_s, shown))
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            code = worker.wait()
    ids = {r.escalation_id for r in shown}
    click.secho(f"-- stopped: {len(shown)} revisions of {len(ids)} escalations shown; worker exited {code}. "
                "The broker is still running: deploy/kafka.sh stop --", bold=True)
    return 0 if code in (0, -signal.SIGTERM) else 1
