"""The Faust app, built from the one settings object.

Producers use acks=all with idempotence on: aiokafka's defaults are weaker and faust exposes no
setting for idempotence outside `exactly_once`, whose open bugs duplicate and crash, so we turn it
on in the transport instead and keep at-least-once processing with deterministic outputs.

The consumer reads read_committed: member units publishing through a spool (`jpc publish --spool`)
write in transactions, and a record of an aborted one must never reach the engine. Faust asks for
read_committed only under `exactly_once`, so the transport sets it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.fetching import SeekAwareFetch
from streams.logging import get_logger
from streams.settings import Settings

log = get_logger("consumer")
COMMIT_TIMEOUT_S = 15.0  # a healthy commit takes milliseconds
FETCH_MAX_WAIT_MS = 20  # idle, a fetch every 20 ms per broker: cheap; busy, fetches return at once anyway


class IdempotentProducer(faust_aiokafka.Producer):  # type: ignore[misc]
    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # read by AIOKafkaConsumer.start(), which comes later
        # Faust asks the broker to hold a fetch up to 1.5 s for data. The client keeps one fetch in flight per
        # broker and leaves out partitions whose records the worker has not taken yet, so a fetch sent for the
        # quiet partitions alone held the busy ones back for the whole 1.5 s, at each of the two hops: 4 runs in
        # 11 at 800 events/s had a latency median of 2.6-3.4 s instead of 45-70 ms (0 in 7 with this).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    def highwater(self, tp: Any) -> Any:
        # The last stable offset: records past it belong to open transactions and cannot be read yet.
        return self._ensure_consumer().last_stable_offset(tp)


class ReadCommittedConsumer(SeekAwareFetch, faust_aiokafka.Consumer):  # type: ignore[misc]
    def _new_consumer_thread(self) -> ReadCommittedConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    _pending: dict[Any, int] | None = None  # lowest offset still held per partition, during one commit

    _owed: dict[Any, int] | None = None  # offsets of a commit given up, for the next commit to carry

    async def _commit(self, offsets: Any) -> bool:
        """Faust's commit, given up after COMMIT_TIMEOUT_S. After a broker restart the client's commit could
        hang for minutes (found by the long broker fault test), and with it every later commit. Faust counts
        offsets as committed whatever the outcome, so the ones given up are owed and the next commit (the
        timer's, every second, idle or not) carries them."""
        owed = self._owed if self._owed is not None else {}
        try:
            done: bool = await asyncio.wait_for(super()._commit(offsets), COMMIT_TIMEOUT_S)
        except TimeoutError:
            log.warning("offset commit not acknowledged in time; the next commit carries it", seconds=COMMIT_TIMEOUT_S)
            self._owed = {**owed, **{tp: max(o, owed.get(tp, o)) for tp, o in offsets.items()}}
            return False
        if done:
            self._owed = {tp: o for tp, o in owed.items() if o > offsets.get(tp, -1)}
        return done

    def _filter_committable_offsets(self, tps: Any) -> dict[Any, int]:
        # Ask the agents once per commit what they hold, not once per partition.
        self._pending = self._held_by_agents()
        try:
            offsets: dict[Any, int] = super()._filter_committable_offsets(tps)
        finally:
            self._pending = None
        if self._owed:
            assigned = self.assignment()
            self._owed = {tp: o for tp, o in self._owed.items() if tp in assigned}  # else the next owner's
            for tp, owed in self._owed.items():
                offsets[tp] = max(owed, offsets.get(tp, owed))
        return offsets

    def _held_by_agents(self) -> dict[Any, int]:
        """Per partition, the lowest offset an agent holds unacked on purpose (app.jpc_holding, set by the
        worker). Not Faust's own list of unacked messages: it keeps messages it discarded itself at a
        rebalance, and waiting for those stalled the commit (found by the fault tests)."""
        holding = getattr(self.app, "jpc_holding", None)
        return holding() if holding is not None else {}

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for `tp`, never past a record an agent still holds.

        Faust's own rule commits past a record still held when later ones are acked: committed 100,
        acked 101 and 102, 100 held (the intake holds records to sort them, the engine until its
        snapshot) gives 103, and a crash then loses 100 (found by the fault tests: 2 kill runs in 41 had
        an event that never reached the engine). Its leniency is on purpose (offsets that carry no record,
        such as transaction markers, are never acked), so we keep it and only hide from it the acked
        offsets at or past the lowest record still held.
        """
        pending = self._pending if self._pending is not None else self._held_by_agents()
        limit = pending.get(tp)
        acked: list[int] = self._acked[tp]
        later = [] if limit is None else [offset for offset in acked if offset >= limit]
        if not later:
            return super()._new_offset(tp)  # type: ignore[no-any-return]
        acked[:] = [offset for offset in acked if offset < limit]
        try:
            return super()._new_offset(tp) if acked else None  # type: ignore[no-any-return]
        finally:
            acked.extend(later)  # _new_offset sorts the list before it reads it


class RawRecords(faust.Schema):  # type: ignore[misc]
    """Records as they are on the wire: the key and value bytes, no codec. Faust's own decoding of raw bytes
    (its serializer registry, per record, for both) was a few per cent of the worker's time for nothing."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def compile(self, app: Any, *, on_key_decode_error: Any = None, on_value_decode_error: Any = None,
                default_propagate: bool = False) -> Any:
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode


def lowest_offsets(messages: Iterable[Any]) -> dict[Any, int]:
    """Per partition, the lowest offset among `messages`."""
    lowest: dict[Any, int] = {}
    for m in messages:
        if m.offset < lowest.get(m.tp, m.offset + 1):
            lowest[m.tp] = m.offset
    return lowest


class IdempotentTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    Producer = IdempotentProducer
    Consumer = ReadCommittedConsumer


def make_app(settings: Settings) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b}" for b in settings.bootstrap],
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        env_prefix="JPC_FAUST_",  # faust otherwise lets stray env vars (BROKER_URL, WEB_PORT) win
        autodiscover=False,
        processing_guarantee="at_least_once",
        producer_acks="all",
        producer_max_request_size=2 * 1024 * 1024,
        producer_request_timeout=settings.request_timeout_s,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # Commit on the timer only: Faust's fetch loop otherwise commits inline every 10,000 acks, and a commit
        # that hangs (after a broker restart) then stopped fetching altogether (found by the fault tests).
        broker_commit_every=2**62,
        # On a rebalance, do not wait for every record an agent holds to be acked: the intake holds records
        # to put them in reporting order and leaves those of revoked partitions to be read again (acking
        # them would mean sending them out of order). Processing is at-least-once and idempotent anyway.
        stream_wait_empty=False,
        # A worker killed with -9 holds its partitions until its session expires: keep that short so a
        # restarted worker (or a standby) takes over within seconds, not Faust's default minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        topic_allow_declare=False,  # we provision every topic ourselves (jpc topics create)
        topic_disable_leader=True,
        topic_partitions=1,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
        # Only the worker's own pages (/metrics, /health): Faust's table pages would serve the engine's
        # state, personal data included, and its router and statistics pages are of no use here.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.transport = IdempotentTransport(app.conf.broker_consumer, app)
    return app
