"""The worker's metrics and health: what `jpc worker` counts, and the pages that show it.

`/metrics` serves Prometheus text and `/health` answers 200 or 503 with a short JSON body saying why,
through Faust's web server on 127.0.0.1 (`--web`, `--web-port`). The worker calls the hooks of
`WorkerWatch` where it does the work; everything they need to know is here, so that each hook in
agents/worker.py stays one line. With the web server off the hooks do nothing.

Lag is what the worker has not finished with: records not fetched yet (the end of the partition,
read_committed, less the consumer's position) plus records fetched but not yet acknowledged (held
for ordering, or in an agent's buffer). Faust starts the web server once tables are recovered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from itertools import repeat
from typing import TYPE_CHECKING, Any

import faust
import orjson
from faust import web

from streams.logging import get_logger
from streams.metrics import BusMetrics, field_label
from streams.settings import Settings
from streams.topics import DEAD_LETTER, ESCALATIONS, INPUT_TOPICS, INTAKE

if TYPE_CHECKING:
    from agents.worker import EngineRuntime

log = get_logger("worker.web")
WATCHED_TOPICS = frozenset((*INPUT_TOPICS, INTAKE))  # not the table changelog, which Faust never reads live
LAG_EVERY_S = 1.0
OFFSETS_TIMEOUT_S = 5.0


class WorkerWatch:
    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.enabled = settings.web_enabled
        self.metrics = BusMetrics(stall_after_s=settings.health_stall_s)
        self._runtime: EngineRuntime | None = None
        self._open: dict[str, str] = {}  # escalation id -> rule, of every escalation open in the engine
        self._open_by_rule: Counter[str] = Counter()
        self._duplicates = 0
        self._was_healthy = True
        self.lag_failing = False  # logged once, not every second

    # ---- intake ----
    def judged(self, judged: tuple[tuple[str, bytes, bytes], Any] | None) -> None:
        """One input record judged: an intake record (counted by kind) or a dead letter (by field)."""
        if not self.enabled or judged is None:
            return
        self.metrics.progressed("intake")
        (topic, _, value), _ = judged
        if topic == DEAD_LETTER:
            self.metrics.dead_letters.labels(field=field_label(orjson.loads(value).get("field"))).inc()
        else:
            self.metrics.events_in.labels(kind=_kind(orjson.loads(value)["event"])).inc()

    def released(self, events: Iterable[Any]) -> None:
        """Intake records the broker has acknowledged, for the input records in `events`."""
        if not self.enabled:
            return
        self._observe_latency("intake", events)

    # ---- engine ----
    def engine_batch(self, runtime: EngineRuntime) -> None:
        """Before a batch: the engine's state is what the last batch left (or a restored one)."""
        if not self.enabled:
            return
        if runtime is not self._runtime:  # new, or restored from the changelog: count its open escalations
            self._runtime = runtime
            book = runtime.engine.book
            self._open = {k: t.rule for k, t in book.escalations.items() if book.status(k) == "open"}
            self._open_by_rule = Counter(self._open.values())
            for rule in list(self._open_by_rule) + _gauge_rules(self.metrics):
                self.metrics.open_escalations.labels(rule=rule).set(self._open_by_rule[rule])
        self._duplicates = runtime.engine.counters["duplicates"]

    def engine_sent(self, runtime: EngineRuntime, records: list[Any], carried: list[int],
                    outputs: list[tuple[str, bytes, bytes]]) -> None:
        """After a batch of intake records, each carrying `carried` events, once the broker has acknowledged
        its outputs."""
        if not self.enabled:
            return
        m = self.metrics
        m.duplicates.inc(max(runtime.engine.counters["duplicates"] - self._duplicates, 0))
        for topic, _, value in outputs:
            if topic == ESCALATIONS:
                self._revision(orjson.loads(value))
            elif topic == DEAD_LETTER:
                m.dead_letters.labels(field=field_label(orjson.loads(value).get("field"))).inc()
        self._observe_latency("engine", records, carried)
        m.progressed("engine")

    def _revision(self, r: dict[str, Any]) -> None:
        m, rule, esc_id = self.metrics, r["rule"], r["escalation_id"]
        m.revisions.labels(rule=rule, severity=r["severity"]).inc()
        if r["revision"] == 1:
            m.opened.labels(rule=rule, severity=r["severity"]).inc()
        was_open = esc_id in self._open
        if r["status"] == "open" and not was_open:
            self._open[esc_id] = rule
            self._open_by_rule[rule] += 1
        elif r["status"] != "open" and was_open:
            del self._open[esc_id]
            self._open_by_rule[rule] -= 1
            if r["status"] == "acknowledged":  # every routed unit has acknowledged it
                taken = datetime.fromisoformat(r["updated_at"]) - datetime.fromisoformat(r["opened_at"])
                m.time_to_ack.labels(rule=rule).observe(max(taken.total_seconds(), 0.0))
        m.open_escalations.labels(rule=rule).set(self._open_by_rule[rule])

    def _observe_latency(self, stage: str, records: Iterable[Any], carried: Iterable[int] | None = None) -> None:
        """One observation per event: `carried` says how many each record held (one each when None)."""
        histogram, now = self.metrics.latency.labels(stage=stage), time.time()
        for record, events in zip(records, carried or repeat(1), strict=False):
            stamp = record.message.timestamp
            if stamp is not None:
                took = max(now - stamp, 0.0)  # a producer's clock ahead of ours: 0, not negative
                for _ in range(events):
                    histogram.observe(took)

    # ---- lag and health ----
    async def refresh_lag(self) -> None:
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in WATCHED_TOPICS]
        ends = await asyncio.wait_for(consumer.highwaters(*tps), OFFSETS_TIMEOUT_S) if tps else {}
        positions = await asyncio.wait_for(asyncio.gather(*(consumer.position(tp) for tp in tps)), OFFSETS_TIMEOUT_S)
        unacked = Counter(m.tp for m in list(consumer.unacked) if not m.acked)
        lag = {}
        for tp, position in zip(tps, positions, strict=True):
            end = ends.get(tp)
            unfetched = max(end - position, 0) if end is not None and end >= 0 and position is not None else 0
            lag[(tp.topic, tp.partition)] = unfetched + unacked[tp]
        self.metrics.set_lag(lag)

    def check_health(self) -> list[str]:
        problems = self.metrics.problems()
        self.metrics.healthy_gauge.set(0 if problems else 1)
        if bool(problems) == self._was_healthy:  # log each change, not every look
            self._was_healthy = not problems
            if problems:
                log.warning("worker unhealthy", problems=problems)
            else:
                log.info("worker healthy again")
        return problems


def install(app: faust.App, settings: Settings) -> WorkerWatch:
    """The watch for `build_worker` to call, with its pages and lag timer when the web server is on."""
    watch = WorkerWatch(app, settings)
    if not watch.enabled:
        return watch

    @app.page("/metrics")
    async def metrics_page(self: web.View, request: web.Request) -> web.Response:
        body, content_type = watch.metrics.render()
        # As a header: aiohttp refuses a content_type argument that carries a charset.
        return self.bytes(body, headers={"Content-Type": content_type})

    @app.page("/health")
    async def health_page(self: web.View, request: web.Request) -> web.Response:
        problems = watch.check_health()
        body = {"status": "unhealthy", "problems": problems} if problems else {"status": "healthy"}
        return self.bytes(json.dumps(body, ensure_ascii=False).encode(), content_type="application/json",
                          status=503 if problems else 200)

    @app.timer(interval=LAG_EVERY_S)
    async def measure_lag() -> None:
        try:  # an exception escaping a timer would stop the whole worker
            await watch.refresh_lag()
            watch.lag_failing = False
        except Exception as exc:  # left unmeasured: /health says so once it has lasted
            if not watch.lag_failing:
                log.warning("consumer lag not measured", error=repr(exc))
            watch.lag_failing = True
        watch.check_health()

    return watch


def _kind(event_text: str) -> str:
    try:
        return str(orjson.loads(event_text)["kind"])
    except orjson.JSONDecodeError:  # what pydantic accepted and orjson does not (integers past 64 bits)
        return str(json.loads(event_text)["kind"])


def _gauge_rules(metrics: BusMetrics) -> list[str]:
    """Rules the open-escalations gauge already shows, so that a restore sets them all again."""
    return [s.labels["rule"] for metric in metrics.open_escalations.collect() for s in metric.samples]
